"""The reporting pipeline on a catalog where only one of the three models was evaluated."""

from __future__ import annotations

from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from image_recognition.datasets import OptionalCSVDataset, OptionalJSONDataset
from image_recognition.pipelines.reporting import create_pipeline
from image_recognition.pipelines.reporting.pipeline import FIGURES, PART_DATASETS


def test_reporting_pipeline_with_only_one_trained_model(evaluated, evaluation_inputs, tmp_path):
    test, report, _ = evaluation_inputs
    datasets = {"dataset_test": MemoryDataset(test), "data_report": MemoryDataset(report)}
    for model in ("simple_cnn", "cnn", "vit"):
        for part, name in PART_DATASETS.items():
            kind = OptionalJSONDataset if part == "metrics" else OptionalCSVDataset
            suffix = "json" if part == "metrics" else "csv"
            dataset = kind(filepath=str(tmp_path / model / f"{name}.{suffix}"))
            if model == "vit":
                dataset.save(evaluated["vit"][part])
            datasets[f"{model}.{name}"] = dataset
    catalog = DataCatalog(datasets)
    outputs = SequentialRunner().run(create_pipeline(["simple_cnn", "cnn", "vit"]), catalog)
    page = outputs["comparison_report"].load()
    assert all(f'id="{name}"' in page for name in FIGURES)
    table = page.split("<h2>Comparison</h2>", 1)[1].split("<h2>", 1)[0]
    assert "<td>vit</td>" in table and "simple_cnn" not in table and "<td>cnn</td>" not in table

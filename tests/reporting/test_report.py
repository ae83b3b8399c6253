"""Figures, comparison table and HTML report, with one model and with several."""

from __future__ import annotations

import json
import re

import plotly.graph_objects as go
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from image_recognition.datasets import OptionalCSVDataset, OptionalJSONDataset
from image_recognition.pipelines.reporting import create_pipeline
from image_recognition.pipelines.reporting.nodes import (
    NoEvaluatedModelsError,
    StaleTestSplitError,
    gather_results,
    plot_error_gallery,
)
from image_recognition.pipelines.reporting.pipeline import FIGURES, PART_DATASETS
from image_recognition.reporting import figures
from image_recognition.reporting.report import comparison_table, render_html

FIGURE_FUNCTIONS = [
    figures.learning_curves,
    figures.confusion_matrices,
    figures.per_class_f1,
    figures.reliability_diagram,
    figures.accuracy_vs_cost,
]


def test_evaluation_record_has_quality_cost_and_provenance(evaluated, evaluation_inputs):
    metrics = evaluated["vit"]["metrics"]
    assert 0 <= metrics["quality"]["accuracy"] <= 1 and metrics["quality"]["tta"] == "flip"
    assert metrics["cost"]["parameters"] > 0 and metrics["cost"]["flops_per_image"] > 0
    assert metrics["cost"]["training_time_s"] == 2.0 and metrics["cost"]["peak_memory_mib"] is None
    assert metrics["provenance"]["data_md5"] == "0" * 32 and metrics["provenance"]["seed"] == 0
    assert metrics["provenance"]["trained_on"]["md5"] == "0" * 32
    assert [row["epoch"] for row in metrics["history"]] == [1, 2]  # the checkpoint's own history
    assert set(metrics["provenance"]) >= {"checkpoint_version", "model_config", "git_commit", "evaluation"}
    assert json.loads(json.dumps(metrics)) == metrics  # storable as JSON
    assert len(evaluated["vit"]["errors"]) == 10
    assert evaluated["vit"]["per_class"]["support"].sum() == len(evaluation_inputs[0]["labels"])


@pytest.mark.parametrize("models", [["vit"], ["simple_cnn", "vit"]])
@pytest.mark.parametrize("draw", FIGURE_FUNCTIONS, ids=lambda f: f.__name__)
def test_figures_with_one_or_more_models(evaluated, models, draw):
    fig = draw({m: evaluated[m] for m in models})
    assert isinstance(fig, go.Figure) and len(fig.data) >= len(models)
    assert go.Figure(json.loads(fig.to_json())).layout.title.text  # survives plotly.JSONDataset's round trip


def test_error_gallery_shows_the_images(evaluated, evaluation_inputs):
    test, _, _ = evaluation_inputs
    fig = figures.error_gallery(evaluated, test["images"], per_model=4)
    images = [trace for trace in fig.data if isinstance(trace, go.Image)]
    assert len(images) == 8
    first_index = int(evaluated["simple_cnn"]["errors"]["index"].iloc[0])
    assert (images[0].z == test["images"][first_index].transpose(1, 2, 0)).all()


def test_report_with_one_model_is_self_contained(evaluated):
    results = {"vit": evaluated["vit"]}
    table = comparison_table(results)
    assert table["model"].tolist() == ["vit"]
    figs = {name: figures.per_class_f1(results) for name in ("a", "b")}
    report = {"source": {"url": "synthetic://cifar10", "md5": "0" * 32}, "sizes": {"test": 200}}
    page = render_html(results, figs, table, report)
    assert page.count("<script") >= 2 and "cdn.plot.ly" not in page.split("<body>", 1)[1][:2000]
    assert 'id="a"' in page and 'id="b"' in page and "Provenance" in page
    assert not re.search(r"<(script|link|img)[^>]*\s(src|href)=", page)  # nothing to fetch: opens offline


def test_gather_results_skips_models_never_evaluated(evaluated):
    inputs = {f"vit__{part}": evaluated["vit"][part] for part in PART_DATASETS}
    inputs.update({f"cnn__{part}": None for part in PART_DATASETS})
    gathered = gather_results(**inputs)
    assert list(gathered) == ["vit"]
    assert gathered["vit"]["history"]["val_accuracy"].tolist() == [0.2, 0.35]  # from the metrics record
    with pytest.raises(NoEvaluatedModelsError, match="no evaluated model"):
        gather_results(**{f"cnn__{part}": None for part in PART_DATASETS})


def test_reporting_pipeline_with_only_one_trained_model(evaluated, evaluation_inputs, tmp_path):
    test, report, _ = evaluation_inputs
    datasets = {"cifar10_test": MemoryDataset(test), "data_report": MemoryDataset(report)}
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


def test_error_gallery_refuses_another_test_split(evaluated, evaluation_inputs):
    test, _, _ = evaluation_inputs
    assert plot_error_gallery(evaluated, test).data  # the split the models were evaluated on
    other = {"images": test["images"][::-1].copy(), "labels": test["labels"][::-1].copy()}
    with pytest.raises(StaleTestSplitError, match="evaluated on another test split .*--load-versions=cifar10_test:"):
        plot_error_gallery(evaluated, other)

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

REPORT = {"source": {"url": "synthetic://cifar10", "md5": "0" * 32}}

FIGURE_FUNCTIONS = [
    figures.learning_curves,
    figures.confusion_matrices,
    figures.per_class_f1,
    figures.reliability_diagram,
    figures.accuracy_vs_cost,
]


def test_evaluation_record_has_quality_cost_and_provenance(evaluated, evaluation_inputs):
    metrics = evaluated["vit"]["metrics"]
    assert 0 <= metrics["quality"]["accuracy"] <= 1 and metrics["quality"]["tta"] == "flip_translate"
    assert metrics["cost"]["parameters"] > 0 and metrics["cost"]["flops_per_image"] > 0
    assert metrics["cost"]["training_time_s"] == 2.0 and metrics["cost"]["peak_memory_mib"] is None
    assert metrics["cost"]["compile_time_s"] == 3.0  # apart from the steady-state training time
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


def test_accuracy_vs_cost_plots_like_with_like(evaluated):
    fig = figures.accuracy_vs_cost(evaluated)
    points = {(trace.name, trace.xaxis): (trace.x[0], trace.y[0]) for trace in fig.data}
    vit, cnn = evaluated["vit"]["metrics"], evaluated["simple_cnn"]["metrics"]
    # vit uses flip_translate: its TTA accuracy sits at the FLOPs and predictions/s of all six views ...
    assert points[("vit, TTA flip_translate, 6 views", "x2")] == (
        vit["cost"]["flops_per_prediction"],
        vit["quality"]["accuracy"],
    )
    assert vit["cost"]["flops_per_prediction"] == 6 * vit["cost"]["flops_per_image"]
    assert points[("vit, TTA flip_translate, 6 views", "x3")] == (
        vit["cost"]["throughput_predictions_per_s"],
        vit["quality"]["accuracy"],
    )
    # ... and its one-view accuracy at one view's cost
    assert points[("vit, no TTA, 1 view", "x2")] == (vit["cost"]["flops_per_image"], vit["quality"]["accuracy_no_tta"])
    # simple_cnn was trained without TTA: one point per panel
    assert [name for name, axis in points if name.startswith("simple_cnn") and axis == "x2"] == [
        "simple_cnn, no TTA, 1 view"
    ]
    assert points[("simple_cnn, no TTA, 1 view", "x2")] == (cnn["cost"]["flops_per_image"], cnn["quality"]["accuracy"])
    assert all("compile 3.0 s" in trace.hovertemplate for trace in fig.data)


def test_comparison_table_states_views_and_compile_time(evaluated):
    table = comparison_table(evaluated).set_index("model")
    assert table.loc["vit", "tta_views"] == 6 and table.loc["simple_cnn", "tta_views"] == 1
    assert table.loc["vit", "flops_per_prediction"] == 6 * table.loc["vit", "flops_per_image"]
    assert table.loc["vit", "compile_time_s"] == 3.0 and table.loc["vit", "training_time_s"] == 2.0
    assert table.loc["vit", "precision"] == "fp32" and table.loc["vit", "memory_format"] == "contiguous"


def test_learning_curves_plot_plain_train_loss_against_val_loss(evaluated):
    fig = figures.learning_curves({"vit": evaluated["vit"]})
    losses = {trace.name: list(trace.y) for trace in fig.data if trace.yaxis == "y3"}  # loss by epoch
    assert losses == {"vit train": [2.0, 1.5], "vit val": [2.1, 1.7]}  # train_loss, not train_objective


def test_record_mode_without_validation_plots_training_curves_only(evaluated):
    """A model trained with ``validation_size: 0`` has NaN/None validation columns; the report still builds."""
    metrics = {**evaluated["vit"]["metrics"]}
    metrics["history"] = [{**row, "val_loss": None, "val_accuracy": None} for row in metrics["history"]]
    inputs = {f"vit__{part}": evaluated["vit"][part] for part in PART_DATASETS}
    inputs.update(
        {"vit__metrics": metrics, **{f"cnn__{part}": evaluated["simple_cnn"][part] for part in PART_DATASETS}}
    )
    results = gather_results(**inputs)
    fig = figures.learning_curves(results)
    names = {trace.name for trace in fig.data}
    assert names == {"vit train (no validation split)", "cnn train", "cnn val"}
    assert "no validation split for vit" in fig.layout.title.text
    record_mode = [trace for trace in fig.data if trace.name.startswith("vit")]
    assert len(record_mode) == 4 and all(len(trace.y) == 2 for trace in record_mode)
    page = render_html(results, {"learning_curves": fig}, comparison_table(results), {**REPORT, "sizes": {"test": 200}})
    assert 'id="learning_curves"' in page

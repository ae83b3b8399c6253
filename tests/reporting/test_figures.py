"""The figures, with one model and with several; record mode without validation curves."""

from __future__ import annotations

import json

import numpy as np
import plotly.graph_objects as go
import pytest

from image_recognition.evaluation.metrics import score_logits
from image_recognition.pipelines.reporting.nodes import gather_results
from image_recognition.pipelines.reporting.pipeline import PART_DATASETS
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


def _scored(classes: int, accuracy_by_class: np.ndarray, seed: int) -> dict:
    """A model's per_class and confusion tables on 20 images a class, right with each class's chance."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), 20)
    right = rng.random(len(labels)) < accuracy_by_class[labels]
    predictions = np.where(right, labels, (labels + 1) % classes)
    logits = np.eye(classes)[predictions] * 5.0
    scores = score_logits({"none": logits}, labels, [f"class_{i:03d}" for i in range(classes)], "none")
    return {"per_class": scores.per_class, "confusion": scores.confusion}


@pytest.mark.parametrize("classes", [10, 100])
def test_confusion_matrices_label_cells_only_while_readable(classes):
    results = {"cnn": _scored(classes, np.full(classes, 0.8), 0), "vit": _scored(classes, np.full(classes, 0.6), 1)}
    fig = figures.confusion_matrices(results)
    assert [trace.z.shape for trace in fig.data] == [(classes, classes)] * 2
    labelled = classes <= figures.MAX_LABELLED_CLASSES
    assert all((trace.texttemplate == "%{text}") is labelled for trace in fig.data)
    assert all("%{text} images" in trace.hovertemplate for trace in fig.data)  # the counts stay on hover
    assert (f"{classes} classes: counts on hover" in fig.layout.title.text) is not labelled


def test_per_class_f1_of_100_classes_shows_the_hardest_and_easiest_sorted():
    accuracy = np.linspace(0.05, 0.95, 100)[np.random.default_rng(2).permutation(100)]
    results = {"cnn": _scored(100, accuracy, 3), "vit": _scored(100, accuracy, 4)}
    fig = figures.per_class_f1(results)
    shown = list(fig.data[0].x)
    assert len(shown) == 2 * figures.PER_CLASS_EXTREMES
    mean_f1 = (results["cnn"]["per_class"]["f1"] + results["vit"]["per_class"]["f1"]) / 2
    ranked = results["cnn"]["per_class"]["class"][np.argsort(mean_f1.to_numpy(), kind="stable")].tolist()
    assert shown == ranked[:10] + ranked[-10:]
    assert "10 lowest and 10 highest of 100 classes" in fig.layout.title.text
    few = figures.per_class_f1({"cnn": _scored(10, np.full(10, 0.5), 5)})
    assert list(few.data[0].x) == [f"class_{i:03d}" for i in range(10)]  # all, in label order

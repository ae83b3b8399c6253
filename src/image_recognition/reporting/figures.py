"""Plotly figures comparing the evaluated models.

Every function takes ``results``: model name -> that model's evaluation
(``metrics`` record, ``history``, ``per_class``, ``confusion``, ``reliability``
and ``errors`` tables), for however many models were evaluated. The classes
are the data's, as many as it has: above :data:`MAX_LABELLED_CLASSES` the
confusion matrices drop their per-cell counts (the hover keeps them) and the
per-class figure shows the hardest and easiest classes only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from image_recognition.models import MODEL_NAMES

# One colour per model across every figure, in the order of MODEL_NAMES
# (simple_cnn grey, cnn blue, vit red); a model without one takes a fallback.
_PALETTE = ("#7f7f7f", "#1f77b4", "#d62728")
MODEL_COLOURS = dict(zip(MODEL_NAMES, _PALETTE, strict=False))
_FALLBACK_COLOURS = ["#2ca02c", "#9467bd", "#8c564b", "#e377c2"]
# Up to this many classes a figure labels every class (CIFAR-10's 10, CIFAR-100's 20
# super-classes); above it, per-cell text and per-class bars would be unreadable.
MAX_LABELLED_CLASSES = 20
# Classes shown at each end (hardest, easiest) of the per-class figure above that.
PER_CLASS_EXTREMES = 10


def colour(model: str, position: int = 0) -> str:
    return MODEL_COLOURS.get(model, _FALLBACK_COLOURS[position % len(_FALLBACK_COLOURS)])


def _layout(fig: go.Figure, title: str, height: int) -> go.Figure:
    fig.update_layout(title=title, height=height, template="plotly_white", margin={"t": 80, "l": 60, "r": 30, "b": 50})
    return fig


def has_values(history: pd.DataFrame, column: str) -> bool:
    """Whether ``column`` holds any number (a record-mode run, without validation split, has none)."""
    return column in history and pd.to_numeric(history[column], errors="coerce").notna().any()


def learning_curves(results: dict[str, Any]) -> go.Figure:
    """Train and validation accuracy and loss, against epoch and against steady-state training time.

    Both losses are plain cross-entropy (the training objective, with label
    smoothing or MixUp, is not plotted), so the curves compare like with like.
    A model trained without a validation split gets its training curves only.
    """
    fig = make_subplots(
        rows=2,
        cols=2,
        subplot_titles=(
            "accuracy by epoch",
            "accuracy by training time",
            "cross-entropy by epoch",
            "cross-entropy by training time",
        ),
        horizontal_spacing=0.08,
        vertical_spacing=0.14,
    )
    without_validation = []
    for position, (model, result) in enumerate(results.items()):
        history = result["history"]
        validated = has_values(history, "val_accuracy") or has_values(history, "val_loss")
        if not validated:
            without_validation.append(model)
        _add_model_curves(fig, model, position, history, validated)
    fig.update_xaxes(title_text="epoch", col=1, row=2)
    fig.update_xaxes(title_text="training time (s, compile excluded)", col=2, row=2)
    title = "Learning curves (dotted: train, solid: validation; loss: plain cross-entropy)"
    if without_validation:
        title += f"<br>no validation split for {', '.join(without_validation)}: training curves only"
    return _layout(fig, title, 700)


def _add_model_curves(fig: go.Figure, model: str, position: int, history: pd.DataFrame, validated: bool) -> None:
    """One model's curves in the four panels: (accuracy, loss) by (epoch, training time); val ones if validated."""
    splits = [("train", "dot"), ("val", "solid")] if validated else [("train", "dot")]
    for row, metric in ((1, "accuracy"), (2, "loss")):
        for col, x_column in ((1, "epoch"), (2, "train_time_s")):
            for split, dash in splits:
                label = f"{model} {split}" if validated else f"{model} train (no validation split)"
                fig.add_trace(
                    go.Scatter(
                        x=history[x_column],
                        y=pd.to_numeric(history[f"{split}_{metric}"], errors="coerce"),
                        name=label,
                        legendgroup=f"{model} {split}",
                        showlegend=row == 1 and col == 1,
                        mode="lines+markers",
                        line={"color": colour(model, position), "dash": dash},
                    ),
                    row=row,
                    col=col,
                )


def confusion_matrices(results: dict[str, Any]) -> go.Figure:
    """Side-by-side confusion matrices, rows normalised to recall; counts in the cells up to MAX_LABELLED_CLASSES classes."""
    fig = make_subplots(rows=1, cols=len(results), subplot_titles=list(results), horizontal_spacing=0.12)
    most = 0
    for col, (model, result) in enumerate(results.items(), start=1):
        table = result["confusion"]
        classes = list(table["true_class"])
        most = max(most, len(classes))
        counts = table[classes].to_numpy(dtype=float)
        recall = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        labelled = len(classes) <= MAX_LABELLED_CLASSES
        fig.add_trace(
            go.Heatmap(
                z=recall,
                x=classes,
                y=classes,
                text=counts.astype(int),
                texttemplate="%{text}" if labelled else None,
                colorscale="Blues",
                zmin=0,
                zmax=1,
                showscale=col == len(results),
                hovertemplate="true %{y}<br>predicted %{x}<br>%{text} images (%{z:.1%})<extra></extra>",
            ),
            row=1,
            col=col,
        )
        fig.update_yaxes(autorange="reversed", title_text="true class" if col == 1 else None, row=1, col=col)
        fig.update_xaxes(title_text="predicted class", row=1, col=col)
        if not labelled:  # every class's name would overlap: let plotly thin the ticks, smaller
            fig.update_xaxes(tickfont_size=8, row=1, col=col)
            fig.update_yaxes(tickfont_size=8, row=1, col=col)
    title = "Confusion matrices (colour: share of the true class)"
    if most > MAX_LABELLED_CLASSES:
        title += f"<br>{most} classes: counts on hover"
    return _layout(fig, title, 520 if most <= MAX_LABELLED_CLASSES else 800)


def per_class_f1(results: dict[str, Any]) -> go.Figure:
    """Per-class F1 of every model, as grouped bars; above MAX_LABELLED_CLASSES classes, the extremes only.

    With many classes the bars are the PER_CLASS_EXTREMES classes of lowest
    and of highest F1 averaged over the models, sorted; every class's scores
    stay in each model's ``per_class`` table.
    """
    tables = {model: result["per_class"] for model, result in results.items()}
    shown = _per_class_shown(tables)
    fig = go.Figure()
    for position, (model, table) in enumerate(tables.items()):
        f1 = table.set_index("class")["f1"].reindex(shown)
        fig.add_trace(go.Bar(x=shown, y=f1, name=model, marker_color=colour(model, position)))
    fig.update_layout(barmode="group", yaxis={"title": "F1", "range": [0, 1]})
    classes = max((len(table) for table in tables.values()), default=0)
    title = "Per-class F1 on the test set"
    if len(shown) < classes:
        title += (
            f"<br>the {PER_CLASS_EXTREMES} lowest and {PER_CLASS_EXTREMES} highest of {classes} classes "
            "by mean F1 over the models; every class is in the per_class tables"
        )
    return _layout(fig, title, 450)


def _per_class_shown(tables: dict[str, pd.DataFrame]) -> list[str]:
    """The classes the per-class figure shows: all, in label order, or the extremes of mean F1, lowest first."""
    if not tables:
        return []
    mean_f1 = pd.concat([table.set_index("class")["f1"] for table in tables.values()], axis=1).mean(axis=1)
    if len(mean_f1) <= MAX_LABELLED_CLASSES:
        return list(mean_f1.index)
    ranked = list(mean_f1.sort_values(kind="stable").index)
    return ranked[:PER_CLASS_EXTREMES] + ranked[-PER_CLASS_EXTREMES:]


def reliability_diagram(results: dict[str, Any]) -> go.Figure:
    """Accuracy against confidence per bin; the diagonal is perfect calibration."""
    fig = go.Figure(
        go.Scatter(
            x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration", line={"color": "black", "dash": "dash"}
        )
    )
    for position, (model, result) in enumerate(results.items()):
        table = result["reliability"]
        filled = table[table["count"] > 0]
        ece = result["metrics"]["quality"]["ece"]
        fig.add_trace(
            go.Scatter(
                x=filled["mean_confidence"],
                y=filled["accuracy"],
                mode="lines+markers",
                name=f"{model} (ECE {ece:.3f})",
                marker={"size": 6 + 14 * np.sqrt(filled["count"] / filled["count"].max())},
                line={"color": colour(model, position)},
                customdata=filled["count"],
                hovertemplate="confidence %{x:.2f}<br>accuracy %{y:.2f}<br>%{customdata} images<extra></extra>",
            )
        )
    fig.update_layout(xaxis={"title": "confidence", "range": [0, 1]}, yaxis={"title": "accuracy", "range": [0, 1]})
    return _layout(fig, "Reliability diagram (marker size: images in the bin)", 480)


def _cost_points(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """Accuracy beside the cost of the same predictions: one view without TTA, every view with it."""
    quality, cost = metrics["quality"], metrics["cost"]
    views = cost.get("tta_views", 1)
    points = [
        {
            "label": "no TTA, 1 view",
            "accuracy": quality["accuracy_no_tta"],
            "flops": cost["flops_per_image"],
            "throughput": cost["throughput_images_per_s"],
            "symbol": "circle",
        }
    ]
    if views > 1:
        points.append(
            {
                "label": f"TTA {quality['tta']}, {views} views",
                "accuracy": quality["accuracy"],
                "flops": cost.get("flops_per_prediction"),
                "throughput": cost.get("throughput_predictions_per_s"),
                "symbol": "diamond",
            }
        )
    return points


def _cost_hover(cost: dict[str, Any]) -> str:
    def seconds(key: str) -> str:
        value = cost.get(key)
        return "–" if value is None else f"{value:,.1f} s"

    return (
        f"training {seconds('training_time_s')} + compile {seconds('compile_time_s')}"
        f"<br>{cost.get('precision', '?')}, {cost.get('memory_format', '?')} on {cost['device']}"
    )


def accuracy_vs_cost(results: dict[str, Any]) -> go.Figure:
    """Test accuracy against parameters, FLOPs and throughput of the predictions that scored it.

    Each model has a point without TTA (one view: FLOPs per image, images/s)
    and, when it uses TTA, one with it (every view: FLOPs per prediction,
    predictions/s), labelled with its view count.
    """
    axes = (
        ("parameters", "parameters"),
        ("flops", "FLOPs per prediction (all its views)"),
        ("throughput", "predictions/s (all its views)"),
    )
    fig = make_subplots(rows=1, cols=3, subplot_titles=[label for _, label in axes], horizontal_spacing=0.08)
    for position, (model, result) in enumerate(results.items()):
        cost = result["metrics"]["cost"]
        hover = _cost_hover(cost)
        for point in _cost_points(result["metrics"]):
            name = f"{model}, {point['label']}"
            for col, (key, _) in enumerate(axes, start=1):
                x = cost["parameters"] if key == "parameters" else point[key]
                fig.add_trace(
                    go.Scatter(
                        x=[x],
                        y=[point["accuracy"]],
                        mode="markers+text",
                        text=[f"{model} ({point['label'].rsplit(', ', 1)[1]})"],
                        textposition="top center",
                        name=name,
                        legendgroup=name,
                        showlegend=col == 1,
                        marker={"size": 14, "color": colour(model, position), "symbol": point["symbol"]},
                        hovertemplate=f"{name}<br>x %{{x:,.4g}}<br>accuracy %{{y:.4f}}<br>{hover}<extra></extra>",
                    ),
                    row=1,
                    col=col,
                )
        fig.update_xaxes(type="log")
    fig.update_yaxes(title_text="test accuracy", col=1)
    return _layout(fig, "Accuracy against the cost of the same predictions (log scale; circle: 1 view)", 440)


def error_gallery(results: dict[str, Any], test_images: np.ndarray, per_model: int = 8) -> go.Figure:
    """The test images each model gets wrong most confidently, one row per model."""
    rows = len(results)
    titles = []
    for model, result in results.items():
        errors = result["errors"].head(per_model)
        titles += [
            f"{model}: {r.predicted_class} ({r.confidence:.0%})<br>true {r.true_class}" for r in errors.itertuples()
        ]
        titles += [""] * (per_model - len(errors))
    fig = make_subplots(rows=rows, cols=per_model, subplot_titles=titles, vertical_spacing=0.12 / max(rows, 1))
    for row, result in enumerate(results.values(), start=1):
        for col, index in enumerate(result["errors"]["index"].head(per_model), start=1):
            image = np.transpose(test_images[int(index)], (1, 2, 0))  # (3, H, W) -> (H, W, 3)
            fig.add_trace(go.Image(z=image, hoverinfo="skip"), row=row, col=col)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_annotations(font_size=10)
    return _layout(fig, "Most confident mistakes on the test set (predicted (confidence), true class)", 230 * rows + 80)

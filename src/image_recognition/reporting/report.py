"""The comparison table and the self-contained HTML report."""

from __future__ import annotations

import html
import json
import math
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

from image_recognition.common.redact import redact_url, redact_urls


def comparison_table(results: dict[str, Any]) -> pd.DataFrame:
    """One row per model: quality, cost and where the numbers came from.

    ``test_accuracy`` is scored with ``tta_views`` forward passes per image,
    as are ``flops_per_prediction`` and ``throughput_predictions_per_s``;
    ``test_accuracy_no_tta`` goes with the one-view ``flops_per_image`` and
    ``throughput_images_per_s``. Compile time is apart from training time.
    """
    rows = []
    for model, result in results.items():
        metrics = result["metrics"]
        quality, cost, provenance = metrics["quality"], metrics["cost"], metrics["provenance"]
        training = metrics.get("training") or {}
        rows.append(
            {
                "model": model,
                "test_accuracy": quality["accuracy"],
                "test_accuracy_no_tta": quality["accuracy_no_tta"],
                "macro_f1": quality["macro_f1"],
                "mean_loss": quality["mean_loss"],
                "ece": quality["ece"],
                "tta": quality["tta"],
                "tta_views": cost.get("tta_views"),
                "parameters": cost["parameters"],
                "flops_per_image": cost["flops_per_image"],  # one view
                "flops_per_prediction": cost.get("flops_per_prediction"),  # every TTA view
                "training_time_s": cost["training_time_s"],  # setup plus steps
                "budget_s": training.get("budget_s"),  # None: trained a set number of epochs
                "planned_steps": training.get("planned_steps"),
                "steps": training.get("steps"),
                "train_images_per_s": training.get("train_images_per_s"),  # achieved, over training_time_s
                "compile_time_s": cost.get("compile_time_s"),
                "throughput_images_per_s": cost["throughput_images_per_s"],  # one view
                "throughput_predictions_per_s": cost.get("throughput_predictions_per_s"),  # every TTA view
                "latency_ms": cost["latency_ms"],  # one image, one view
                "peak_memory_mib": cost["peak_memory_mib"],
                "precision": cost.get("precision"),
                "memory_format": cost.get("memory_format"),
                "device": cost["device"],
                "epochs": training.get("epochs", provenance["epochs"]),
                "checkpoint_version": provenance["checkpoint_version"],
            }
        )
    return pd.DataFrame(rows)


def _budgets(table: pd.DataFrame) -> pd.Series:
    """The models' training budgets, without the models trained to a number of epochs (and none from older tables)."""
    return table["budget_s"].dropna() if "budget_s" in table else pd.Series(dtype=float)


def equal_budget_sentence(table: pd.DataFrame) -> str | None:
    """One sentence on which model got further when two or more trained to the same budget; None otherwise.

    The largest group of models sharing a budget is compared (the CPU recipes
    give cnn and vit the same budget, the baseline a shorter one;
    ``training_budget_s`` gives every model the same).
    """
    counts = _budgets(table).value_counts()
    if counts.empty or counts.iloc[0] < 2:  # noqa: PLR2004
        return None
    budget = counts.index[0]
    group = table[table["budget_s"] == budget].sort_values("test_accuracy", ascending=False)
    first, second = group.iloc[0], group.iloc[1]

    def trained(row: pd.Series) -> str:
        speed = f" at {row['train_images_per_s']:,.0f} images/s" if pd.notna(row["train_images_per_s"]) else ""
        return f"{row['model']} reached {row['test_accuracy']:.2%} in {row['epochs']:.2f} epochs{speed}"

    gap = (first["test_accuracy"] - second["test_accuracy"]) * 100
    return (
        f"With the same training budget of {budget:g} s each, {'; '.join(trained(row) for _, row in group.iterrows())}: "
        f"{first['model']} got further, {gap:.1f} percentage points ahead of {second['model']}."
    )


def _format(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _table_html(table: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_format(v))}</td>" for v in row) + "</tr>"
        for row in table.itertuples(index=False)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1300px; color: #222; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 1rem 0; }
th, td { border: 1px solid #ddd; padding: 0.3rem 0.6rem; text-align: right; }
th { background: #f4f4f4; } td:first-child, th:first-child { text-align: left; }
pre { background: #f7f7f7; padding: 0.8rem; overflow-x: auto; font-size: 0.8rem; }
.figure { margin: 2rem 0; }
"""


def _budget_paragraph(table: pd.DataFrame) -> str:
    """The equal-budget sentence and what a budget means, as a paragraph; nothing without budgets."""
    if _budgets(table).empty:
        return ""
    sentence = equal_budget_sentence(table)
    explained = (
        "<code>budget_s</code> is each model's training time budget: it measured its speed on this machine "
        "(<code>train_images_per_s</code> is what it then achieved) and planned <code>planned_steps</code> to fit; "
        "<code>steps</code> fewer than planned means the machine slowed down and the run stopped on time."
    )
    return f"<p>{html.escape(sentence) + ' ' if sentence else ''}{explained}</p>"


# How the report names each data set kind; another kind is named as it is spelt.
DATASET_TITLES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "image_folder": "Image folder"}


def data_description(data_report: dict[str, Any]) -> tuple[str, str]:
    """The data set's title and a sentence on its classes and image size, from its data report.

    A data report saved before these were recorded is CIFAR-10's: 10 classes of 32 px images.
    """
    source = data_report["source"]
    kind = source.get("kind", "cifar10")
    names = list(data_report.get("class_names") or [])
    count = data_report.get("num_classes") or len(names) or 10
    size = data_report.get("image_size", 32)
    shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")  # noqa: PLR2004
    classes = f"{count} classes ({shown})" if names else f"{count} classes"
    return DATASET_TITLES.get(kind, str(kind)), f"{classes}, {size}×{size} px images"


def render_html(
    results: dict[str, Any], figures: dict[str, go.Figure], table: pd.DataFrame, data_report: dict[str, Any]
) -> str:
    """One HTML file that opens offline: plotly.js is inlined once, figures follow."""
    parts = []
    for position, (name, figure) in enumerate(figures.items()):
        figure_html = pio.to_html(
            figure,
            include_plotlyjs=position == 0,
            full_html=False,
            div_id=f"figure-{name}",
            config={"responsive": True},
        )
        parts.append(f'<div class="figure" id="{html.escape(name)}">{figure_html}</div>')
    # Redacted again: metrics saved before URLs were redacted may still hold the source's credentials.
    provenance = {model: redact_urls(result["metrics"]["provenance"]) for model, result in results.items()}
    source = data_report["source"]
    models = ", ".join(results) or "none"
    title, classes = data_description(data_report)
    fingerprint = source.get("md5") or source.get("fingerprint") or "–"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}: CNN vs Vision Transformer</title>
<style>{_STYLE}</style></head><body>
<h1>{html.escape(title)} model comparison</h1>
<p>Models: {html.escape(models)}. Data: {html.escape(classes)}. Test split: {data_report["sizes"]["test"]:,} images,
never used for training or model selection. Source: <code>{html.escape(redact_url(source["url"]))}</code>,
{"md5" if source.get("md5") else "fingerprint"} <code>{html.escape(str(fingerprint))}</code>.</p>
<h2>Comparison</h2>
<p><code>test_accuracy</code> averages <code>tta_views</code> forward passes per image, as do
<code>flops_per_prediction</code> and <code>throughput_predictions_per_s</code>; <code>test_accuracy_no_tta</code>
goes with the one-view <code>flops_per_image</code>, <code>throughput_images_per_s</code> and
<code>latency_ms</code>. Speeds are measured in each recipe's precision and memory format;
<code>training_time_s</code> is setup (data on the device, model built, whitening) plus every epoch's steps, <code>compile_time_s</code> the warm-up before them.</p>
{_table_html(table)}
{_budget_paragraph(table)}
<h2>Figures</h2>
{"".join(parts)}
<h2>Provenance</h2>
<p>Checkpoint versions, configurations, seeds and the git commit behind every number above.</p>
<pre>{html.escape(json.dumps(provenance, indent=2, default=str))}</pre>
</body></html>
"""

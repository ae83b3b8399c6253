"""Nodes of the reporting pipeline: gather the evaluated models, draw, write the report."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from image_recognition.common.errors import InputError
from image_recognition.reporting import figures
from image_recognition.reporting.report import render_html
from image_recognition.sources.cifar10.split import split_fingerprint

logger = logging.getLogger(__name__)

RESULT_PARTS = ("metrics", "per_class", "confusion", "reliability", "errors")


class NoEvaluatedModelsError(InputError):
    """The report needs at least one evaluated model: the message says how to evaluate one."""


class StaleTestSplitError(InputError):
    """The gallery's error indices belong to another version of the test split."""


def gather_results(**inputs: Any) -> dict[str, dict[str, Any]]:
    """Group ``<model>__<part>`` inputs by model, keeping models that have been evaluated.

    A model never trained or evaluated arrives as ``None`` parts and is left
    out, so the report works with one, two or all three models.
    """
    results: dict[str, dict[str, Any]] = {}
    for key, value in inputs.items():
        model, part = key.split("__", 1)
        results.setdefault(model, {})[part] = value
    complete = {m: parts for m, parts in results.items() if all(parts.get(p) is not None for p in RESULT_PARTS)}
    for parts in complete.values():
        parts["history"] = pd.DataFrame(parts["metrics"]["history"])
    missing = sorted(set(results) - set(complete))
    if missing:
        logger.warning("Not in the report (no evaluation found): %s", ", ".join(missing))
    if not complete:
        raise NoEvaluatedModelsError(
            "no evaluated model found: train and evaluate one first, e.g. "
            "kedro run --pipelines=train_cnn,evaluate_cnn,reporting"
        )
    return complete


def plot_error_gallery(results: dict[str, Any], test_split: dict[str, Any]) -> go.Figure:
    """The most confident mistakes, as images: their indices must point into the evaluated test split.

    Every run of the data stages saves a new version of an identical test
    split, so the check compares contents (md5), not versions.
    """
    loaded = split_fingerprint(test_split)
    for model, result in results.items():
        provenance = result["metrics"]["provenance"]
        evaluated = provenance.get("test_split_md5")
        if evaluated and evaluated != loaded:
            raise StaleTestSplitError(
                f"{model} was evaluated on another test split (dataset_test version "
                f"{provenance.get('test_split_version')}, md5 {evaluated}; the loaded one has md5 {loaded}). "
                f"Rebuild the report with --load-versions=dataset_test:{provenance.get('test_split_version')} "
                f"or evaluate {model} again"
            )
    return figures.error_gallery(results, test_split["images"])


def render_report(
    results: dict[str, Any],
    comparison: pd.DataFrame,
    data_report: dict[str, Any],
    **named_figures: go.Figure,
) -> str:
    """The self-contained HTML report: table, every figure and the provenance."""
    return render_html(results, named_figures, comparison, data_report)

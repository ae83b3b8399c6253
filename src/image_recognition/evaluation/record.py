"""The metrics record of one evaluated model: its quality, its cost, its training history and their provenance.

The record is what the report reads; its provenance says which checkpoint,
test split, data, settings and code the numbers came from.
"""

from __future__ import annotations

import functools
import math
import subprocess
from typing import Any

from image_recognition.common.params import config_to_dict
from image_recognition.common.redact import redact_url, redact_urls
from image_recognition.evaluation.config import EvaluationConfig
from image_recognition.sources.cifar10.split import split_fingerprint


def metrics_record(  # noqa: PLR0913 (the parts of the record, named)
    checkpoint: dict[str, Any],
    test_split: dict[str, Any],
    data_report: dict[str, Any],
    config: EvaluationConfig,
    quality: dict[str, Any],
    cost: dict[str, Any],
) -> dict[str, Any]:
    """The record of ``checkpoint``'s evaluation, with the checkpoint's own history (so the
    report's learning curves belong to this very checkpoint) and the provenance."""
    return {
        "model": checkpoint["model_name"],
        "quality": quality,
        "cost": cost,
        "training": training_length(checkpoint),
        "history": [{key: _plain(value) for key, value in row.items()} for row in checkpoint.get("history") or []],
        "provenance": provenance(checkpoint, test_split, data_report, config),
    }


def provenance(
    checkpoint: dict[str, Any], test_split: dict[str, Any], data_report: dict[str, Any], config: EvaluationConfig
) -> dict[str, Any]:
    """Where an evaluation's numbers come from: the catalog versions (when the run recorded them),
    the data, the model and training configs, the evaluation settings and the code's commit.

    The data's URLs are redacted here too: a data report or checkpoint saved before
    URLs were redacted may still hold the source's credentials.
    """
    training_config = checkpoint.get("training_config")
    return {
        "checkpoint_version": checkpoint.get("_catalog_version"),
        "test_split_version": test_split.get("_catalog_version"),
        "test_split_md5": split_fingerprint(test_split),
        "data_md5": data_report["source"]["md5"],
        "data_url": redact_url(data_report["source"]["url"]),
        "trained_on": redact_urls(checkpoint.get("data") or {}),
        "model_config": checkpoint["model_config"],
        "training_config": training_config,
        "seed": (training_config or {}).get("seed"),
        "epochs": checkpoint.get("epoch"),
        "training_plan": checkpoint.get("plan"),  # the budget, the speed probe and the steps it fixed
        "evaluation": config_to_dict(config),
        "git_commit": git_commit(),
    }


def training_length(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """How long the model trained: its budget (None: a number of epochs), the steps planned and taken, the speeds.

    ``probe_images_per_s`` is what the speed probe measured before planning;
    ``train_images_per_s`` what the run achieved over its training time
    (setup plus steps). A checkpoint saved before budgets existed has no plan:
    its steps and epochs come from its history.
    """
    plan = checkpoint.get("plan") or {}
    final = checkpoint.get("final_metrics") or {}
    history = checkpoint.get("history") or []
    batch_size = (checkpoint.get("training_config") or {}).get("batch_size")
    steps = final.get("steps", checkpoint.get("global_step"))
    train_time = history[-1].get("train_time_s") if history else None
    return {
        "budget_s": plan.get("budget_s"),
        "planned_steps": plan.get("total_steps"),
        "steps": steps,
        "epochs": final.get("epochs", checkpoint.get("epoch")),
        "stopped_early": bool(checkpoint.get("stopped_early", False)),
        "probe_images_per_s": (plan.get("probe") or {}).get("images_per_s"),
        "train_images_per_s": steps * batch_size / train_time if steps and batch_size and train_time else None,
    }


@functools.cache
def git_commit() -> str | None:
    """The commit of the working tree, or None outside a git checkout.

    Asked once per process, so once per run however many models it evaluates.
    """
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


def _plain(value: Any) -> Any:
    """A JSON-storable number: NaN (no validation split) becomes None."""
    if isinstance(value, float) and math.isnan(value):
        return None
    return value

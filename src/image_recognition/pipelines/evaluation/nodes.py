"""Evaluate one trained model on the test split: quality, cost and its worst errors."""

from __future__ import annotations

import logging
import math
import platform
import subprocess
from typing import Any

import numpy as np
import pandas as pd
import torch

from image_recognition.cifar10.split import split_fingerprint
from image_recognition.device import resolve_device
from image_recognition.evaluation.config import EvaluationConfig
from image_recognition.evaluation.cost import inference_recipe, measure_cost, peak_memory_mib, reset_peak_memory
from image_recognition.evaluation.metrics import (
    confusion_matrix,
    expected_calibration_error,
    mean_cross_entropy,
    most_confident_errors,
    per_class_scores,
    reliability_table,
    softmax,
)
from image_recognition.inference import load_model, predict_logits
from image_recognition.models import count_parameters
from image_recognition.params import config_to_dict

logger = logging.getLogger(__name__)


def git_commit() -> str | None:
    """The commit of the working tree, or None outside a git checkout."""
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


def evaluate_model(
    checkpoint: dict[str, Any],
    test_split: dict[str, Any],
    data_report: dict[str, Any],
    params: dict[str, Any],
) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Score a checkpoint on the test split and measure what the model costs.

    Returns the full metrics record (with provenance and the checkpoint's own
    training history, so the report's learning curves belong to this very
    checkpoint), the per-class table, the confusion matrix, the reliability
    table and the most confident errors.

    The headline accuracy uses the checkpoint's own TTA mode unless
    ``evaluation.tta`` names one; predictions and every speed use the
    recipe's precision and memory format on this device, and each cost
    states how many TTA views it includes.
    """
    config = EvaluationConfig.from_dict(params)
    tta = config.tta_for(checkpoint)
    history = checkpoint.get("history") or []
    trained_on = checkpoint.get("data") or {}
    if trained_on.get("md5") and trained_on["md5"] != data_report["source"]["md5"]:
        logger.warning(
            "%s was trained on archive md5 %s but is evaluated on the test split of %s",
            checkpoint["model_name"],
            trained_on["md5"],
            data_report["source"]["md5"],
        )
    device = resolve_device(config.device)
    class_names = list(data_report["class_names"])
    labels = np.asarray(test_split["labels"], dtype=np.int64)
    recipe = inference_recipe(checkpoint.get("training_config"), checkpoint["model_name"], device)
    model = load_model(checkpoint, device)  # uncompiled, whatever the training did
    if recipe.channels_last:
        model = model.to(memory_format=torch.channels_last)
    normalization = checkpoint["normalization"]

    reset_peak_memory(device)
    logits = {
        mode: predict_logits(
            model,
            test_split["images"],
            normalization["mean"],
            normalization["std"],
            batch_size=config.batch_size,
            tta=mode,
            device=device,
            autocast_dtype=recipe.autocast_dtype,
            channels_last=recipe.channels_last,
        ).numpy()
        for mode in dict.fromkeys(("none", tta))
    }
    probabilities = softmax(logits[tta].astype(np.float64))
    predictions = probabilities.argmax(axis=1)
    confusion = confusion_matrix(labels, predictions, len(class_names))
    per_class = per_class_scores(confusion, class_names)
    reliability = reliability_table(probabilities, labels, config.calibration_bins)
    errors = most_confident_errors(probabilities, labels, class_names, config.top_errors)

    cost = {
        "parameters": count_parameters(model),
        **measure_cost(
            model,
            tta=tta,
            recipe=recipe,
            device=device,
            batch_size=config.throughput_batch_size,
            batches=config.throughput_batches,
            latency_repeats=config.latency_repeats,
        ),
        "training_time_s": float(history[-1]["train_time_s"]) if history else None,  # steady state
        "compile_time_s": float(history[-1].get("compile_time_s") or 0.0) if history else None,
        "peak_memory_mib": peak_memory_mib(device),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
    }
    quality = {
        "accuracy": float((predictions == labels).mean()),
        "accuracy_no_tta": float((logits["none"].argmax(axis=1) == labels).mean()),
        "tta": tta,
        "mean_loss": mean_cross_entropy(probabilities, labels),
        "ece": expected_calibration_error(reliability),
        "macro_f1": float(per_class["f1"].mean()),
        "test_images": len(labels),
    }
    record = {
        "model": checkpoint["model_name"],
        "quality": quality,
        "cost": cost,
        "history": [{key: _plain(value) for key, value in row.items()} for row in history],
        "provenance": {
            "checkpoint_version": checkpoint.get("_catalog_version"),
            "test_split_version": test_split.get("_catalog_version"),
            "test_split_md5": split_fingerprint(test_split),
            "data_md5": data_report["source"]["md5"],
            "data_url": data_report["source"]["url"],
            "trained_on": trained_on,
            "model_config": checkpoint["model_config"],
            "training_config": checkpoint.get("training_config"),
            "seed": (checkpoint.get("training_config") or {}).get("seed"),
            "epochs": checkpoint.get("epoch"),
            "evaluation": config_to_dict(config),
            "git_commit": git_commit(),
        },
    }
    logger.info(
        "%s on %d test images: accuracy %.4f (tta %s, %d views; %.4f without), ECE %.4f, "
        "%.0f predictions/s (%.0f images/s) in %s, %s",
        checkpoint["model_name"],
        len(labels),
        quality["accuracy"],
        tta,
        cost["tta_views"],
        quality["accuracy_no_tta"],
        quality["ece"],
        cost["throughput_predictions_per_s"],
        cost["throughput_images_per_s"],
        cost["precision"],
        cost["memory_format"],
    )
    confusion_table = pd.DataFrame(confusion, columns=class_names)
    confusion_table.insert(0, "true_class", class_names)
    return record, per_class, confusion_table, reliability, errors


def _plain(value: Any) -> Any:
    """A JSON-storable number: NaN (no validation split) becomes None."""
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


evaluate_model.records_input_versions = True  # InputVersionsHook adds _catalog_version

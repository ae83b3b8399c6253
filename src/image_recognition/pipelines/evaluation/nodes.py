"""Evaluate one trained model on the test split: quality, cost and its worst errors."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from image_recognition.common.device import resolve_device
from image_recognition.evaluation.config import EvaluationConfig
from image_recognition.evaluation.cost import InferenceRecipe, inference_recipe, measure_cost, reset_peak_memory
from image_recognition.evaluation.metrics import score_logits
from image_recognition.evaluation.record import metrics_record
from image_recognition.models.inference import load_model, predict_logits

logger = logging.getLogger(__name__)

# The metrics record, the per-class table, the confusion matrix, the reliability table and the errors.
EvaluationOutputs = tuple[dict[str, Any], pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]


def evaluate_model(
    checkpoint: dict[str, Any], test_split: dict[str, Any], data_report: dict[str, Any], params: dict[str, Any]
) -> EvaluationOutputs:
    """Score a checkpoint on the test split and measure what the model costs.

    Returns the metrics record (quality, cost, the checkpoint's own training
    history and the provenance) and the report's tables. The accuracy uses the
    checkpoint's own TTA mode unless ``evaluation.tta`` names one; predictions
    and every speed use the recipe's precision and memory format on this
    device, and each cost states how many TTA views it includes.
    """
    config = EvaluationConfig.from_dict(params)
    tta = config.tta_for(checkpoint)
    _warn_if_trained_on_other_data(checkpoint, data_report)
    device = resolve_device(config.device)
    recipe = inference_recipe(checkpoint.get("training_config"), checkpoint["model_name"], device)
    model = load_model(checkpoint, device, channels_last=recipe.channels_last)  # uncompiled, whatever the training did

    reset_peak_memory(device)  # the cost's peak memory includes the predictions
    logits = _test_logits(model, checkpoint, test_split, ("none", tta), recipe, config.batch_size)
    labels = np.asarray(test_split["labels"], dtype=np.int64)
    scores = score_logits(logits, labels, data_report["class_names"], tta, config.calibration_bins, config.top_errors)
    cost = measure_cost(
        model,
        tta=tta,
        recipe=recipe,
        device=device,
        batch_size=config.throughput_batch_size,
        batches=config.throughput_batches,
        latency_repeats=config.latency_repeats,
        history=checkpoint.get("history"),
    )
    record = metrics_record(checkpoint, test_split, data_report, config, scores.quality, cost)
    _log_summary(record)
    return record, scores.per_class, scores.confusion, scores.reliability, scores.errors


def _warn_if_trained_on_other_data(checkpoint: dict[str, Any], data_report: dict[str, Any]) -> None:
    """A checkpoint trained on another source is still evaluated, with a warning that says so.

    Sources are compared by fingerprint (an archive's md5, a hash over a folder's images), else by md5.
    """
    trained, source = checkpoint.get("data") or {}, data_report["source"]
    key = "fingerprint" if trained.get("fingerprint") and source.get("fingerprint") else "md5"
    if trained.get(key) and trained[key] != source.get(key):
        logger.warning(
            "%s was trained on data %s %s but is evaluated on the test split of %s",
            checkpoint["model_name"],
            key,
            trained[key],
            source.get(key),
        )


def _test_logits(  # noqa: PLR0913 (the prediction's inputs, named)
    model: nn.Module,
    checkpoint: dict[str, Any],
    test_split: dict[str, Any],
    modes: tuple[str, ...],
    recipe: InferenceRecipe,
    batch_size: int,
) -> dict[str, np.ndarray]:
    """The test split's logits for each TTA mode in ``modes``, in the recipe's precision and memory format."""
    normalization = checkpoint["normalization"]
    device = next(model.parameters()).device
    return {
        mode: predict_logits(
            model,
            test_split["images"],
            normalization["mean"],
            normalization["std"],
            batch_size=batch_size,
            tta=mode,
            device=device,
            autocast_dtype=recipe.autocast_dtype,
            channels_last=recipe.channels_last,
            tf32=recipe.tf32,
            progress=f"evaluating {checkpoint['model_name']} (tta {mode})",
        ).numpy()
        for mode in dict.fromkeys(modes)
    }


def _log_summary(record: dict[str, Any]) -> None:
    quality, cost = record["quality"], record["cost"]
    logger.info(
        "%s on %d test images: accuracy %.4f (tta %s, %d views; %.4f without), ECE %.4f, "
        "%.0f predictions/s (%.0f images/s) in %s, %s",
        record["model"],
        quality["test_images"],
        quality["accuracy"],
        quality["tta"],
        cost["tta_views"],
        quality["accuracy_no_tta"],
        quality["ece"],
        cost["throughput_predictions_per_s"],
        cost["throughput_images_per_s"],
        cost["precision"],
        cost["memory_format"],
    )

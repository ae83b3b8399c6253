"""Nodes of the training pipeline, reused per model through Kedro namespaces."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from image_recognition.errors import InputError, ParameterError
from image_recognition.models import validate_model_config
from image_recognition.params import config_to_dict
from image_recognition.training.checkpoint import load_checkpoint
from image_recognition.training.config import TrainingConfig
from image_recognition.training.engine import NonFiniteLossError, train

logger = logging.getLogger(__name__)


class TrainingDivergedError(InputError):
    """The loss became NaN or infinite: the recipe needs a lower learning rate or clipping."""


def check_training_params(model: dict[str, Any], training: dict[str, Any]) -> dict[str, Any]:
    """Validate the model and training parameters; return them in full.

    A project hook calls this node before the pipeline starts, so a typo fails
    the run before any data is fetched or decoded.
    """
    if not isinstance(model, dict) or "name" not in model:
        raise ParameterError("parameter model.name is required: one of simple_cnn, cnn, vit")
    name = model["name"]
    overrides = {key: value for key, value in model.items() if key != "name"}
    try:
        model_config = validate_model_config(name, overrides)
        training_config = config_to_dict(TrainingConfig.from_dict(training))
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"{exc}. Fix it in conf/base/parameters_train_*.yml or in --params") from None
    return {"model_name": name, "model_config": model_config, "training": training_config}


check_training_params.validates_parameters = True  # picked up by ValidateParametersHook


def train_model(
    spec: dict[str, Any],
    train_split: dict[str, np.ndarray],
    validation_split: dict[str, np.ndarray],
    normalization: dict[str, Any],
    data_report: dict[str, Any],
    checkpoint_path: str | None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Train one model on the training split, validating on the held-out split.

    ``checkpoint_path`` is where the engine writes a checkpoint every
    ``checkpoint_every`` epochs; with ``resume: true`` an interrupted run
    continues from it, if it was trained on the same data. The final
    checkpoint records which data it was trained on; it and the per-epoch
    history are returned for the catalog to version.
    """
    if spec["training"]["resume"] and checkpoint_path and Path(checkpoint_path).is_file():
        _check_resumable(load_checkpoint(checkpoint_path), normalization, checkpoint_path)
    try:
        result = train(
            spec["model_name"],
            spec["model_config"],
            spec["training"],
            train_split["images"],
            train_split["labels"],
            validation_split["images"],
            validation_split["labels"],
            normalization["mean"],
            normalization["std"],
            checkpoint_path=checkpoint_path,
        )
    except NonFiniteLossError as exc:
        raise TrainingDivergedError(f"{exc}. Lower the learning rate or set grad_clip") from exc
    checkpoint = {
        **result.checkpoint,
        "data": {
            "md5": data_report["source"]["md5"],
            "url": data_report["source"]["url"],
            "train_split_version": train_split.get("_catalog_version"),
            "validation_split_version": validation_split.get("_catalog_version"),
        },
    }
    history = pd.DataFrame(result.history)
    logger.info(
        "Trained %s for %d epochs in %.1f s: validation accuracy %.4f (final, tta=%s)",
        spec["model_name"],
        len(history),
        history["train_time_s"].iloc[-1],
        result.final_metrics.get("val_accuracy", history["val_accuracy"].iloc[-1]),
        spec["training"]["tta"],
    )
    return checkpoint, history


train_model.records_input_versions = True  # InputVersionsHook adds _catalog_version


def _check_resumable(checkpoint: dict[str, Any], normalization: dict[str, Any], path: str) -> None:
    """Refuse to resume a checkpoint trained on other data (another split or archive).

    The normalisation statistics are a fingerprint of the training split: a
    re-split or another archive changes them, and resuming would then train on
    images that are now in the validation split.
    """
    trained_on = checkpoint.get("normalization") or {}
    same = all(
        len(trained_on.get(key) or []) == len(normalization[key])
        and np.allclose(trained_on[key], normalization[key], rtol=0, atol=1e-9)
        for key in ("mean", "std")
    )
    if not same:
        raise ParameterError(
            f"cannot resume from {path}: it was trained on other data (normalisation statistics "
            f"{trained_on.get('mean')} vs {normalization['mean']} now). Delete it, or set training.resume: false"
        )

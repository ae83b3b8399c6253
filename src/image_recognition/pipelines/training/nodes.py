"""Nodes of the training pipeline, reused per model through Kedro namespaces."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from image_recognition.errors import InputError, ParameterError
from image_recognition.models import validate_model_config
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
        training_config = TrainingConfig.from_dict(training).to_dict()
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"{exc}. Fix it in conf/base/parameters_train_*.yml or in --params") from None
    return {"model_name": name, "model_config": model_config, "training": training_config}


check_training_params.validates_parameters = True  # picked up by ValidateParametersHook


def train_model(
    spec: dict[str, Any],
    train_split: dict[str, np.ndarray],
    validation_split: dict[str, np.ndarray],
    normalization: dict[str, Any],
    checkpoint_path: str | None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Train one model on the training split, validating on the held-out split.

    ``checkpoint_path`` is where the engine writes a checkpoint every
    ``checkpoint_every`` epochs; with ``resume: true`` an interrupted run
    continues from it. The final checkpoint and the per-epoch history are
    returned for the catalog to version.
    """
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
    history = pd.DataFrame(result.history)
    logger.info(
        "Trained %s for %d epochs in %.1f s: validation accuracy %.4f (final, tta=%s)",
        spec["model_name"],
        len(history),
        history["train_time_s"].iloc[-1],
        result.final_metrics.get("val_accuracy", history["val_accuracy"].iloc[-1]),
        spec["training"]["tta"],
    )
    return result.checkpoint, history

"""Nodes of the training pipeline, reused per model through Kedro namespaces."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import numpy as np
import pandas as pd

from image_recognition.common.errors import InputError
from image_recognition.common.params import config_to_dict, parameter_error, positive_number
from image_recognition.common.redact import redact_url
from image_recognition.models import MODEL_NAMES, check_model_name, validate_model_config
from image_recognition.sources.cifar10.archive import IMAGE_SHAPE
from image_recognition.training import NonFiniteLossError, train
from image_recognition.training.checkpoint import record_data
from image_recognition.training.config import TrainingConfig
from image_recognition.training.scratch import scratch_run

logger = logging.getLogger(__name__)


class TrainingDivergedError(InputError):
    """The loss became NaN or infinite: the recipe needs a lower learning rate or clipping."""


def check_training_params(
    model: dict[str, Any], training: dict[str, Any], training_budget_s: float | None = None
) -> dict[str, Any]:
    """Validate the model and training parameters; return them in full.

    ``training_budget_s``, when set, gives every model the same time budget
    for an equal-compute comparison: it replaces the model's own ``epochs``
    and ``budget_s``. Tagged ``validates_parameters``: a project hook runs
    this node before the pipeline starts, so a typo fails the run before any
    data is fetched or decoded.
    """
    if not isinstance(model, dict) or "name" not in model:
        raise parameter_error("model.name", f"is required: one of {', '.join(MODEL_NAMES)}")
    name = check_model_name(model["name"])
    if training_budget_s is not None:
        positive_number("training_budget_s", training_budget_s)
        training = {**(training or {}), "epochs": None, "budget_s": training_budget_s}
    overrides = {key: value for key, value in model.items() if key != "name"}
    config = TrainingConfig.from_dict(training, section=f"{name}.training")
    config.check_image_size(*IMAGE_SHAPE[1:], section=f"{name}.training")
    limit = f"{name}.training.max_model_parameters"
    model_config = validate_model_config(name, overrides, config.max_model_parameters, limit)
    training_config = config_to_dict(config)
    return {"model_name": name, "model_config": model_config, "training": training_config}


def train_model(
    spec: dict[str, Any],
    train_split: dict[str, np.ndarray],
    validation_split: dict[str, np.ndarray],
    normalization: dict[str, Any],
    data_report: dict[str, Any],
    scratch_dir: str | None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Train one model; return its final checkpoint, which records the data it was trained on, and history.

    The run writes its own scratch checkpoint in ``scratch_dir``
    (:mod:`image_recognition.training.scratch`); ``resume: true`` continues the
    latest interrupted run there, ``resume: <run>`` a named one. The engine
    refuses a checkpoint trained on other data.
    """
    model_name, training = spec["model_name"], spec["training"]
    if training["distributed"]["node_rank"] > 0:
        # Global rank 0, on node 0, keeps the scratch checkpoints and sends them to every rank.
        scratch_dir = None
    elif training["resume"] is not False and not scratch_dir:
        logger.warning(
            "training.resume is %r but %s has no scratch_dir: starting afresh", training["resume"], model_name
        )
    with scratch_run(scratch_dir, training["resume"]) if scratch_dir else contextlib.nullcontext() as run:
        try:
            result = train(
                model_name,
                model_config_for_data(spec["model_config"], data_report),
                {**training, "resume": bool(run and run.resuming)},
                train_split,
                validation_split,
                normalization,
                run.path if run else None,
            )
        except NonFiniteLossError as exc:
            raise TrainingDivergedError(f"{exc}. Lower the learning rate or set grad_clip") from exc
    history = pd.DataFrame(result.history)
    logger.info(
        "Trained %s for %d steps (%.2f epochs) in %.1f s: validation accuracy %.4f (final, tta=%s)",
        model_name,
        result.final_metrics["steps"],
        result.final_metrics["epochs"],
        history["train_time_s"].iloc[-1],
        result.final_metrics["val_accuracy"],
        training["tta"],
    )
    data = _training_data(data_report, train_split, validation_split)
    # The image size and class names at the top level too, checked against the model: predict and export read them.
    checkpoint = record_data(result.checkpoint, data["class_names"], data["image_size"])
    return {**checkpoint, "data": data}, history


def model_config_for_data(model_config: dict[str, Any], data_report: dict[str, Any]) -> dict[str, Any]:
    """The model's config with the number of classes and the image size of the data it trains on.

    They come from the data report, never from a constant: an image folder of
    five classes at 64 pixels builds a five-way model for 64-pixel inputs.
    ``image_size`` is set only for a model whose config has one.
    """
    data = {"num_classes": len(data_report["class_names"])}
    if "image_size" in model_config and "image_size" in data_report:
        data["image_size"] = int(data_report["image_size"])
    return {**model_config, **data}


def _training_data(
    data_report: dict[str, Any], train_split: dict[str, Any], validation_split: dict[str, Any]
) -> dict[str, Any]:
    """What the checkpoint was trained on: the source, its class names, image size and the splits' catalog versions.

    The versions are the ``_catalog_version`` keys that the project's
    InputVersionsHook adds for nodes tagged ``records_input_versions``.
    """
    return {
        "md5": data_report["source"]["md5"],
        "fingerprint": data_report["source"].get("fingerprint", data_report["source"]["md5"]),
        "image_size": int(data_report.get("image_size", train_split["images"].shape[-1])),
        "url": redact_url(data_report["source"]["url"]),  # a data report saved before URLs were redacted
        "class_names": list(data_report["class_names"]),
        "train_split_version": train_split.get("_catalog_version"),
        "validation_split_version": validation_split.get("_catalog_version"),
    }

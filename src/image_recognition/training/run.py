"""The one entry point, :func:`train`: checks the settings, then trains here or starts data-parallel workers.

It sits above both ways of training so that neither imports the other: the
engine (:mod:`.engine`) trains in this process, the launcher (:mod:`.launch`)
starts the workers, each of which runs the engine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from image_recognition.models import validate_model_config
from image_recognition.training.config import TrainingConfig
from image_recognition.training.ddp import current_group
from image_recognition.training.engine import train_in_process
from image_recognition.training.launch import launch
from image_recognition.training.result import Normalization, Split, TrainResult


def train(
    model_name: str,
    model_config: dict[str, Any] | None,
    training: dict[str, Any] | TrainingConfig,
    train_split: Split,
    validation_split: Split | None,
    normalization: Normalization,
    checkpoint_path: str | Path | None = None,
) -> TrainResult:
    """Train ``model_name`` on the training split and validate it each epoch.

    A split is ``{"images": uint8 (N, 3, H, W), "labels": (N,)}``, as the
    catalog loads it; ``normalization`` holds the per-channel ``mean`` and
    ``std`` on the 0..1 scale (other keys are ignored). The validation split
    may be empty or None (the val columns are then NaN). With
    ``checkpoint_path``, a checkpoint is written every ``checkpoint_every``
    epochs and at the end; with ``resume: true`` an existing one is continued.

    With ``distributed`` asking for more than one process, torch's elastic
    launcher starts them (:func:`image_recognition.training.launch.launch`) and
    rank 0's result is returned; inside a worker, the run trains its shard of
    every global batch in ``DistributedDataParallel``.
    """
    config = training if isinstance(training, TrainingConfig) else TrainingConfig.from_dict(training)
    full_model_config = validate_model_config(
        model_name, model_config, config.max_model_parameters, "training.max_model_parameters"
    )
    arguments = (model_name, full_model_config, config, train_split, validation_split, normalization, checkpoint_path)
    if config.distributed.world_size > 1 and current_group() is None:
        return launch(*arguments)
    return train_in_process(*arguments)

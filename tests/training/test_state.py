"""A run's state: whether this process is the main one, its step counts, and what it writes and validates."""

from __future__ import annotations

from pathlib import Path

import torch

from image_recognition.models import validate_model_config
from image_recognition.training import TrainingConfig, engine
from image_recognition.training.state import TrainingRun


def _setup(training: dict, data_args: dict, checkpoint_path: Path | None = None) -> TrainingRun:
    config = TrainingConfig.from_dict(training)
    model_config = validate_model_config("simple_cnn", {}, config.max_model_parameters, "training.max_model_parameters")
    splits = (data_args["train_split"], data_args["validation_split"])
    with torch.random.fork_rng():  # setup seeds the global generator
        return engine.setup(
            "simple_cnn",
            model_config,
            config,
            torch.device("cpu"),
            None,
            splits,
            data_args["normalization"],
            checkpoint_path,
        )


def test_a_run_of_one_process_is_the_main_one_and_drops_the_ragged_batch(data_args: dict) -> None:
    run = _setup({"epochs": 3, "batch_size": 300}, data_args)
    assert run.is_main and run.rank == 0
    assert run.steps_per_epoch == 3  # 1000 images in batches of 300
    assert run.total_steps == 9
    assert (run.history, run.start_epoch, run.global_step) == ([], 0, 0)
    assert not run.writes_checkpoints  # no checkpoint path
    assert not run.averages_apart  # no EMA


def test_an_ema_without_lookahead_is_validated_apart_and_a_path_is_written(data_args: dict, tmp_path: Path) -> None:
    run = _setup({"epochs": 1, "ema_decay": 0.9}, data_args, tmp_path / "run.pt")
    assert run.averages_apart and run.writes_checkpoints
    assert not _setup({"epochs": 1, "ema_decay": 0.9, "lookahead": True}, data_args).averages_apart

"""Validation during training: NaN without data, and the live weights beside an EMA that differs."""

from __future__ import annotations

import math

from image_recognition.models.tiny import TINY_MODELS
from image_recognition.training import train


def test_without_validation_data_the_val_columns_are_nan(data_args: dict) -> None:
    result = train("simple_cnn", {}, {"epochs": 1, "batch_size": 250}, **{**data_args, "validation_split": None})
    assert math.isnan(result.history[0]["val_accuracy"])


def test_live_and_ema_validation_accuracy_are_both_logged(data_args: dict, caplog) -> None:
    small = {
        **data_args,
        "train_split": {key: value[:256] for key, value in data_args["train_split"].items()},
        "validation_split": {key: value[:128] for key, value in data_args["validation_split"].items()},
    }
    caplog.set_level("INFO", logger="image_recognition.training.monitor")
    training = {"epochs": 2, "batch_size": 64, "optimizer": "adamw", "lr": 3e-3, "ema_decay": 0.9}
    result = train("vit", TINY_MODELS["vit"], training, **small)
    for row in result.history:
        assert 0.0 <= row["live_val_accuracy"] <= 1.0 and math.isfinite(row["live_val_loss"])
    # The EMA and the live weights differ, and so do their losses.
    assert result.history[-1]["live_val_loss"] != result.history[-1]["val_loss"]
    assert any("live weights" in record.getMessage() for record in caplog.records)
    # With lookahead the live weights are the average: one validation is enough.
    lookahead = train("vit", TINY_MODELS["vit"], {**training, "epochs": 1, "lookahead": True}, **small)
    assert "live_val_accuracy" not in lookahead.history[-1]

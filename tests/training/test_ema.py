"""The weight average: it starts from trained weights, keeps its window, and is validated beside the live weights."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from image_recognition.models.tiny import TINY_MODELS
from image_recognition.training import train
from image_recognition.training.config import TrainingConfig
from image_recognition.training.optim import WeightEMA, ema_decay_at
from image_recognition.training.recipes import recipe

# The training split of CIFAR-10 after the validation split is taken out.
TRAINING_IMAGES = 45_000
# The GPU ViT recipe's steps: batches of 512, 200 epochs.
VIT_STEPS = TRAINING_IMAGES // 512 * 200


def _initial_share(config: TrainingConfig, total_steps: int) -> float:
    """The share of the random initial weights left in the EMA after ``total_steps``."""
    share = 1.0
    for step in range(config.ema_every, total_steps + 1, config.ema_every):
        share *= ema_decay_at(step, total_steps, config)
    return share


@pytest.mark.parametrize("name", ["vit", "cnn", "cnn_cpu"])
def test_no_recipe_keeps_the_random_initial_weights_in_its_average(name: str) -> None:
    config = TrainingConfig.from_dict(recipe(name)["training"])
    assert config.ema_decay > 0
    total_steps = TRAINING_IMAGES // config.batch_size * config.epochs
    # The first update takes (nearly) the live weights; a plain 0.9998 would keep 3% of the initial ones.
    assert ema_decay_at(config.ema_every, total_steps, config) < 1e-5
    assert _initial_share(config, total_steps) < 1e-9


def test_the_vit_average_still_spans_about_5000_steps_at_the_end() -> None:
    config = TrainingConfig.from_dict(recipe("vit")["training"])
    decay = ema_decay_at(VIT_STEPS, VIT_STEPS, config)
    assert decay == pytest.approx(0.9998, abs=1e-5)
    assert 4000 < 1 / (1 - decay) < 6000


def test_the_airbench_ramp_is_unchanged() -> None:
    config = TrainingConfig.from_dict({"ema_decay": 0.8, "ema_every": 5, "ema_ramp": True})
    assert ema_decay_at(50, 100, config) == pytest.approx(0.8 * 0.5**3)
    assert ema_decay_at(100, 100, config) == pytest.approx(0.8)


def test_the_bias_corrected_average_is_the_decay_weighted_mean_of_the_weights_seen() -> None:
    decay, every = 0.9, 2
    config = TrainingConfig.from_dict({"ema_decay": decay, "ema_every": every})
    model = nn.Linear(1, 1, bias=False)
    ema = WeightEMA(model)
    seen = []
    for update in range(1, 8):
        with torch.no_grad():
            model.weight.fill_(float(update**2))
        seen.append(float(update**2))
        ema.update(model, ema_decay_at(update * every, 100, config))
    weights = [decay ** (len(seen) - 1 - k) for k in range(len(seen))]
    expected = sum(w * v for w, v in zip(weights, seen, strict=True)) / sum(weights)
    assert ema.state_dict()["weight"].item() == pytest.approx(expected, rel=1e-5)


def test_live_and_ema_validation_accuracy_are_both_logged(data_args: dict, caplog) -> None:
    small = {
        **data_args,
        "train_split": {key: value[:256] for key, value in data_args["train_split"].items()},
        "validation_split": {key: value[:128] for key, value in data_args["validation_split"].items()},
    }
    caplog.set_level("INFO", logger="image_recognition.training.engine")
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

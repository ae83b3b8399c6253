"""The training loop: it learns, is reproducible, leaves the caller's generators alone and runs GPU settings on the CPU."""

from __future__ import annotations

import math

import pytest
import torch

from image_recognition.common.errors import ParameterError
from image_recognition.models.tiny import TINY_MODELS
from image_recognition.training import TIMING_KEYS, train
from tests.training.helpers import CHANCE, LEARNED, LEARNING_RECIPES, TIMING_FREE, assert_same_state, without_timing


@pytest.mark.slow  # trains for more than a few seconds on 2 CPU cores
@pytest.mark.parametrize("name", ["cnn", "vit", "simple_cnn"])
def test_learns_synthetic_classes_well_above_chance(name: str, data_args: dict) -> None:
    training = {**LEARNING_RECIPES[name], "log_every": 5}
    result = train(name, TINY_MODELS[name], training, **data_args)
    assert len(result.history) == training["epochs"]
    last = result.history[-1]
    columns = set(TIMING_FREE) | set(TIMING_KEYS) | {"compiled"}
    if training.get("ema_decay") and not training.get("lookahead"):
        columns |= {"live_val_loss", "live_val_accuracy"}  # the live weights, validated beside the EMA
    assert set(last) == columns
    assert last["val_accuracy"] > LEARNED > CHANCE
    assert result.final_metrics["val_accuracy"] > LEARNED
    assert result.history[0]["train_loss"] > last["train_loss"]


@pytest.mark.slow  # trains for more than a few seconds on 2 CPU cores
def test_same_seed_gives_identical_history_and_weights(data_args: dict) -> None:
    training = {**LEARNING_RECIPES["cnn"], "epochs": 2, "cutout": 4}
    first = train("cnn", TINY_MODELS["cnn"], training, **data_args)
    second = train("cnn", TINY_MODELS["cnn"], training, **data_args)
    assert without_timing(first.history) == without_timing(second.history)
    assert_same_state(first.checkpoint["model_state"], second.checkpoint["model_state"])
    other = train("cnn", TINY_MODELS["cnn"], {**training, "seed": 1}, **data_args)
    assert without_timing(other.history) != without_timing(first.history)


def test_training_leaves_the_global_rng_alone(data_args: dict) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train("simple_cnn", {}, {"epochs": 1, "batch_size": 250}, **data_args)
    torch.testing.assert_close(torch.rand(3), expected)


def test_non_finite_normalisation_statistics_are_refused(data_args: dict) -> None:
    poisoned = {**data_args, "normalization": {**data_args["normalization"], "mean": [math.nan, 0.5, 0.5]}}
    with pytest.raises(ValueError, match="must be finite"):
        train("cnn", TINY_MODELS["cnn"], {"epochs": 1}, **poisoned)


@pytest.mark.slow  # trains for more than a few seconds on 2 CPU cores
def test_gpu_settings_run_on_cpu(data_args: dict) -> None:
    """bf16 autocast, channels_last and a fused optimizer: the CUDA defaults, forced on CPU."""
    training = {
        "epochs": 1,
        "batch_size": 100,
        "autocast": "bf16",
        "channels_last": True,
        "fused_optimizer": True,
        "grad_clip": 1.0,
        "tta": "flip",
    }
    result = train("cnn", TINY_MODELS["cnn"], training, **data_args)
    assert math.isfinite(result.history[-1]["train_loss"])
    assert math.isfinite(result.final_metrics["val_loss"])
    assert result.checkpoint["optimizer_state"]["param_groups"][0]["fused"] is True


@pytest.mark.slow  # trains for more than a few seconds on 2 CPU cores
def test_train_loss_is_plain_cross_entropy_beside_the_smoothed_objective(data_args: dict) -> None:
    training = {**LEARNING_RECIPES["cnn"], "epochs": 2, "label_smoothing": 0.2}
    last = train("cnn", TINY_MODELS["cnn"], training, **data_args).history[-1]
    # Smoothing puts a floor under the objective; plain cross-entropy of a model
    # that has learned sits below it, in the same units as val_loss.
    assert last["train_loss"] < last["train_objective"]
    unsmoothed = train("cnn", TINY_MODELS["cnn"], {**training, "label_smoothing": 0.0}, **data_args).history[-1]
    assert unsmoothed["train_loss"] == pytest.approx(unsmoothed["train_objective"])


@pytest.mark.slow  # trains for more than a few seconds on 2 CPU cores
def test_vit_with_conv_stem_and_strong_augmentation_learns(data_args: dict) -> None:
    model = {"stem": "conv", "stem_channels": [16, 32], "patch_size": 4, "embed_dim": 32, "depth": 1}
    model.update(num_heads=2, global_pool="attn")
    training = {
        "epochs": 8,
        "batch_size": 64,
        "optimizer": "adamw",
        "lr": 3e-3,
        "weight_decay": 0.05,
        "trivial_augment": 0.5,
        "mixup_alpha": 0.8,
        "cutmix_alpha": 1.0,
        "label_smoothing": 0.1,
        "flip": "alternating",
    }
    result = train("vit", model, training, **data_args)
    assert result.final_metrics["val_accuracy"] > 0.5 > CHANCE
    again = train("vit", model, training, **data_args)
    assert without_timing(again.history) == without_timing(result.history)  # seeded end to end


def test_images_of_another_size_than_the_models_are_refused_before_training(data_args: dict) -> None:
    with pytest.raises(ParameterError, match=r"cnn\.model\.image_size is 64 but the images are 32x32"):
        train("cnn", {**TINY_MODELS["cnn"], "image_size": 64}, {"epochs": 1}, **data_args)

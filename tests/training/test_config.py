"""TrainingConfig: every number finite and in range, every flag a real boolean, before any training."""

from __future__ import annotations

import math

import pytest

from image_recognition.common.errors import ParameterError
from image_recognition.training.config import TrainingConfig

# Settings where 0 is allowed (it turns the feature off), and those that must be above 0.
NON_NEGATIVE = ("weight_decay", "grad_clip", "lr_start_factor", "lr_end_factor", "mixup_alpha", "cutmix_alpha")
POSITIVE = ("lr", "bias_lr_scale")


@pytest.mark.parametrize("value", [math.nan, math.inf])
@pytest.mark.parametrize("name", NON_NEGATIVE + POSITIVE)
def test_nan_and_inf_are_refused(name, value):
    # A NaN grad_clip or mixup_alpha used to pass and silently turn the feature off (nan > 0 is false).
    with pytest.raises(ParameterError, match=f"parameter training.{name} must be a finite number, got {value!r}"):
        TrainingConfig.from_dict({name: value})


@pytest.mark.parametrize("name", ["momentum", "ema_decay", "trivial_augment", "mix_switch_prob"])
def test_a_fraction_that_is_not_a_number_is_refused(name):
    with pytest.raises(ParameterError, match=f"training.{name} must be a finite number, got '0.5'"):
        TrainingConfig.from_dict({name: "0.5"})


def test_betas_must_be_finite_numbers():
    with pytest.raises(ParameterError, match="training.betas must be a finite number, got nan"):
        TrainingConfig.from_dict({"betas": [0.9, math.nan]})
    with pytest.raises(ParameterError, match="training.betas must be a list of two numbers"):
        TrainingConfig.from_dict({"betas": 0.9})


def test_translate_must_be_below_the_image_side():
    config = TrainingConfig.from_dict({"translate": 32})
    config.check_image_size(33, 40)
    with pytest.raises(ParameterError, match=r"training.translate must be below the images' side \(32 pixels\)"):
        config.check_image_size(32, 32)


def test_good_values_pass_and_zero_still_turns_a_feature_off():
    config = TrainingConfig.from_dict({"grad_clip": 0, "mixup_alpha": 0.0, "lr": 1e-3, "compile": False})
    assert config.grad_clip == 0 and not config.mixes

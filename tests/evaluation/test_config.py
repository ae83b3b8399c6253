"""Evaluation settings: defaults, refusals, and the TTA a checkpoint is scored with."""

from __future__ import annotations

import pytest

from image_recognition.common.errors import ParameterError
from image_recognition.common.params import config_to_dict
from image_recognition.evaluation.config import EvaluationConfig


def test_settings_default_to_the_checkpoint_tta_and_refuse_bad_values():
    assert EvaluationConfig.from_dict({}).tta is None and EvaluationConfig.from_dict({}).throughput_batches >= 50
    with pytest.raises(ParameterError, match="evaluation.tta must be null"):
        EvaluationConfig.from_dict({"tta": "mirror"})
    with pytest.raises(ParameterError, match="evaluation.throughput_batches must be a positive integer"):
        EvaluationConfig.from_dict({"throughput_batches": 0})


def test_an_unknown_key_names_parameters_evaluation_yml():
    with pytest.raises(ParameterError, match=r"evaluation\.bach_size.*conf/base/parameters_evaluation\.yml"):
        EvaluationConfig.from_dict({"bach_size": 64})


@pytest.mark.parametrize("key", ["batch_size", "calibration_bins", "top_errors"])
@pytest.mark.parametrize("value", [0, 2.5, True])
def test_every_count_is_a_positive_integer(key, value):
    with pytest.raises(ParameterError, match=f"evaluation.{key} must be a positive integer"):
        EvaluationConfig.from_dict({key: value})


def test_settings_are_recorded_as_the_parameters_read():
    settings = config_to_dict(EvaluationConfig.from_dict(None))
    assert settings == {
        "tta": None,
        "batch_size": 1000,
        "throughput_batch_size": 256,
        "throughput_batches": 50,
        "latency_repeats": 20,
        "calibration_bins": 15,
        "top_errors": 24,
        "device": "auto",
    }


@pytest.mark.parametrize(
    ("training_config", "tta"),
    [
        (None, "none"),  # an old checkpoint without a training config
        ({}, "none"),
        ({"tta": "flip"}, "flip"),
        ({"tta": True}, "flip_translate"),
        ({"tta": False}, "none"),
        ({"tta": None}, "none"),
    ],
)
def test_without_a_setting_the_checkpoints_own_tta_is_used(training_config, tta):
    assert EvaluationConfig().tta_for({"model_name": "cnn", "training_config": training_config}) == tta


def test_a_set_tta_overrides_the_checkpoints_and_a_bad_one_is_named():
    checkpoint = {"model_name": "cnn", "training_config": {"tta": "mirror"}}
    assert EvaluationConfig(tta="flip").tta_for(checkpoint) == "flip"
    with pytest.raises(ParameterError, match="cnn checkpoint has training tta 'mirror'; set evaluation.tta"):
        EvaluationConfig().tta_for(checkpoint)

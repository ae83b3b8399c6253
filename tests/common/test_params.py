"""Parameter checks: unknown keys name the file to fix, integers are checked alike everywhere."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from image_recognition.common.errors import ParameterError
from image_recognition.common.params import (
    boolean,
    config_from_dict,
    config_to_dict,
    finite_number,
    non_negative_int,
    non_negative_number,
    one_of,
    parameters_file,
    positive_int,
    positive_number,
    reject_unknown_keys,
    require_positive,
)
from image_recognition.evaluation.config import EvaluationConfig
from image_recognition.models import model_config
from image_recognition.serving.prediction import PredictConfig
from image_recognition.training.config import TrainingConfig


@pytest.mark.parametrize(
    ("section", "path"),
    [
        ("cifar10", "conf/base/parameters_data_processing.yml"),
        ("cifar10.download", "conf/base/parameters_data_processing.yml"),
        ("cifar10.source.url (synthetic query)", "conf/base/parameters_data_processing.yml"),
        ("evaluation", "conf/base/parameters_evaluation.yml"),
        ("vit.training", "conf/base/parameters_train_vit.yml"),
        ("simple_cnn.model", "conf/base/parameters_train_simple_cnn.yml"),
        ("somewhere_else", "conf/base/parameters_*.yml"),
    ],
)
def test_each_section_names_the_file_that_holds_it(section, path):
    assert parameters_file(section) == path


def test_unknown_keys_are_named_with_the_allowed_ones_and_the_file():
    with pytest.raises(ParameterError, match=r"evaluation\.bach_size; 'evaluation' accepts only: batch_size, tta\."):
        reject_unknown_keys("evaluation", {"bach_size": 1}, {"batch_size", "tta"})
    with pytest.raises(ParameterError, match="parameters_evaluation.yml or your --params"):
        reject_unknown_keys("evaluation", {"bach_size": 1}, {"batch_size", "tta"})
    with pytest.raises(ParameterError, match="parameter 'evaluation' must be a mapping, got list"):
        reject_unknown_keys("evaluation", [], {"batch_size"})
    reject_unknown_keys("evaluation", {"tta": None}, {"batch_size", "tta"})


@pytest.mark.parametrize("value", [0, -1, 1.0, "3", True, None])
def test_positive_int_refuses_what_is_not_an_integer_above_zero(value):
    with pytest.raises(ParameterError, match=f"parameter a.b must be a positive integer, got {value!r}"):
        positive_int("a.b", value)


@pytest.mark.parametrize("value", [-1, 0.0, "0", False])
def test_non_negative_int_refuses_what_is_not_an_integer_from_zero(value):
    with pytest.raises(ParameterError, match=f"parameter a.b must be a non-negative integer, got {value!r}"):
        non_negative_int("a.b", value)


def test_valid_integers_are_returned():
    assert positive_int("a", 3) == 3 and non_negative_int("a", 0) == 0


def test_require_positive_names_the_first_bad_value():
    require_positive("vit", depth=1, rate=0.5)
    with pytest.raises(ValueError, match="vit: rate must be > 0, got 0.0"):
        require_positive("vit", depth=1, rate=0.0, width=-1)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "0.1", True, None])
@pytest.mark.parametrize("check", [finite_number, positive_number, non_negative_number])
def test_number_checks_refuse_nan_inf_and_what_is_not_a_number(check, value):
    with pytest.raises(ParameterError, match=r"parameter a\.b must be a finite number, got "):
        check("a.b", value)


def test_number_checks_return_finite_numbers_in_range_and_name_the_bound():
    assert finite_number("a", -1.5) == -1.5 and positive_number("a", 2) == 2 and non_negative_number("a", 0.0) == 0.0
    with pytest.raises(ParameterError, match="parameter a must be a finite number > 0, got 0"):
        positive_number("a", 0)
    with pytest.raises(ParameterError, match=r"parameter a must be a finite number >= 0, got -0\.1"):
        non_negative_number("a", -0.1)


@pytest.mark.parametrize("value", ["false", "true", 0, 1, None])
def test_boolean_refuses_anything_but_true_and_false(value):
    with pytest.raises(ParameterError, match=f"parameter a.b must be true or false, got {value!r}"):
        boolean("a.b", value)
    assert boolean("a.b", False) is False


def test_one_of_compares_type_and_value():
    assert one_of("a", "cpu", ("auto", "cpu")) == "cpu"
    with pytest.raises(ParameterError, match="parameter a must be one of auto, True, got 1"):
        one_of("a", 1, ("auto", True))


def test_require_positive_refuses_infinity():
    with pytest.raises(ValueError, match="vit: mlp_ratio must be finite, got inf"):
        require_positive("vit", depth=1, mlp_ratio=math.inf)


# Every true/false parameter of every config, each built from a quoted "false" (which Python counts as true).
BOOLEAN_PARAMETERS = {
    **{
        f"training.{name}": (TrainingConfig.from_dict, name)
        for name in ("nesterov", "decay_biases", "ema_ramp", "lookahead", "compile", "tf32")
    },
    "vit.model.qkv_bias": (lambda values: model_config("vit", values), "qkv_bias"),
    "cnn.model.train_bn_weight": (lambda values: model_config("cnn", values), "train_bn_weight"),
    "predict.keep_going": (PredictConfig.from_dict, "keep_going"),
}


@pytest.mark.parametrize("parameter", sorted(BOOLEAN_PARAMETERS))
def test_every_boolean_parameter_refuses_a_quoted_false(parameter):
    build, key = BOOLEAN_PARAMETERS[parameter]
    with pytest.raises(ParameterError, match=f"{parameter} must be true or false, got 'false'"):
        build({key: "false"})
    build({key: False})


@pytest.mark.parametrize(
    ("build", "parameter"),
    [(PredictConfig.from_dict, "predict.device"), (EvaluationConfig.from_dict, "evaluation.device")],
)
def test_a_device_that_does_not_exist_is_refused_before_the_run(build, parameter):
    with pytest.raises(ParameterError, match=f"{parameter} must be one of auto, cpu, cuda, mps, got 'gpu'"):
        build({"device": "gpu"})
    assert build({"device": "cpu"}).device == "cpu"


@dataclass
class Example:
    size: int = 1
    shape: tuple[int, int] = (2, 3)


def test_config_round_trips_through_a_plain_dict():
    config = config_from_dict(Example, {"size": 4}, "example")
    assert config == Example(size=4) and config_from_dict(Example, None, "example") == Example()
    assert config_to_dict(config) == {"size": 4, "shape": [2, 3]}  # lists: a weights_only checkpoint holds them
    with pytest.raises(ValueError, match=r"unknown example key\(s\) \['sise'\]; allowed keys are \['shape', 'size'\]"):
        config_from_dict(Example, {"sise": 4}, "example")

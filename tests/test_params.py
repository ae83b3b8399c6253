"""Parameter checks: unknown keys name the file to fix, integers are checked alike everywhere."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from image_recognition.errors import ParameterError
from image_recognition.params import (
    config_from_dict,
    config_to_dict,
    non_negative_int,
    parameters_file,
    positive_int,
    reject_unknown_keys,
    require_positive,
)


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

"""Parameter checks: unknown keys name the file to fix, integers are checked alike everywhere."""

from __future__ import annotations

import math
import re
from dataclasses import InitVar, dataclass

import pytest

from image_recognition.common.errors import ParameterError
from image_recognition.common.params import (
    boolean,
    config_from_dict,
    config_to_dict,
    each,
    finite_number,
    integer,
    non_negative_int,
    non_negative_number,
    null_or_one_of,
    number_in_range,
    number_list,
    one_of,
    parameter_error,
    parameters_file,
    positive_int,
    positive_number,
    reject_unknown_keys,
    text,
)
from image_recognition.evaluation.config import EvaluationConfig
from image_recognition.models import check_model_name, model_config
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
        ("export.model", "conf/base/parameters_export.yml"),
        ("predict.model", "conf/base/parameters_predict.yml"),
        ("somewhere_else", "conf/base/parameters_*.yml"),
        ("training.lr", "conf/base/parameters_train_*.yml"),
        ("model.name", "conf/base/parameters_train_*.yml"),
    ],
)
def test_each_section_names_the_file_that_holds_it(section, path):
    assert parameters_file(section) == path


def test_unknown_keys_are_named_with_the_allowed_ones_and_the_file():
    with pytest.raises(ParameterError, match=r"evaluation\.bach_size; 'evaluation' accepts only: batch_size, tta\."):
        reject_unknown_keys("evaluation", {"bach_size": 1}, {"batch_size", "tta"})
    with pytest.raises(ParameterError, match="parameters_evaluation.yml or your --params"):
        reject_unknown_keys("evaluation", {"bach_size": 1}, {"batch_size", "tta"})
    with pytest.raises(ParameterError, match="parameter evaluation must be a mapping, got list"):
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


def test_each_names_the_first_bad_value():
    each(positive_number, "vit.model", depth=1, rate=0.5)
    with pytest.raises(ParameterError, match="vit.model.rate must be a finite number > 0, got 0.0"):
        each(positive_number, "vit.model", depth=1, rate=0.0, width=-1)
    with pytest.raises(ParameterError, match="vit.model.depth must be a positive integer, got 2.5"):
        each(positive_int, "vit.model", depth=2.5)


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


def test_each_refuses_infinity():
    with pytest.raises(ParameterError, match="vit.model.mlp_ratio must be a finite number, got inf"):
        each(positive_number, "vit.model", depth=1, mlp_ratio=math.inf)


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
    with pytest.raises(
        ParameterError, match=r"unknown parameter\(s\) example.sise; 'example' accepts only: shape, size\."
    ):
        config_from_dict(Example, {"sise": 4}, "example")


@dataclass
class WithSection:
    size: int = 1
    section: InitVar[str] = "example"

    def __post_init__(self, section):
        positive_int(f"{section}.size", self.size)


def test_config_from_dict_refuses_what_is_not_a_mapping_and_passes_init_vars():
    with pytest.raises(ParameterError, match=r"parameter cnn\.training must be a mapping, got list; fix it in "):
        config_from_dict(Example, [], "cnn.training")
    assert config_from_dict(WithSection, {"size": 2}, "example") == WithSection(size=2)
    with pytest.raises(ParameterError, match=r"parameter cnn\.training\.size .* conf/base/parameters_train_cnn\.yml"):
        config_from_dict(WithSection, {"size": 0}, "cnn.training", section="cnn.training")
    with pytest.raises(ParameterError, match=r"unknown parameter\(s\) cnn\.training\.section"):
        config_from_dict(WithSection, {"section": "x"}, "cnn.training")  # an InitVar is no parameter


# Every check names the parameter by its dotted key and the file under conf/ that sets it.
FILE_OF = {
    "cnn.training.x": "conf/base/parameters_train_cnn.yml",
    "predict.x": "conf/base/parameters_predict.yml",
    "cifar10.source.x": "conf/base/parameters_data_processing.yml",
}
BAD_VALUES = [
    (positive_int, (0,)),
    (non_negative_int, (-1,)),
    (integer, (1.5,)),
    (finite_number, (math.nan,)),
    (positive_number, (0,)),
    (non_negative_number, (-1,)),
    (number_in_range, (2, 0, 1)),
    (number_list, (3,)),
    (boolean, ("false",)),
    (one_of, ("c", ("a", "b"))),
    (null_or_one_of, ("c", ("a", "b"), "the default")),
    (text, ("", "a name")),
]


@pytest.mark.parametrize("key", sorted(FILE_OF))
@pytest.mark.parametrize(("check", "args"), BAD_VALUES, ids=[check.__name__ for check, _ in BAD_VALUES])
def test_every_check_names_the_key_and_the_file_to_fix(check, args, key):
    pattern = rf"^parameter {re.escape(key)} .*; fix it in {re.escape(FILE_OF[key])} or your --params$"
    with pytest.raises(ParameterError, match=pattern):
        check(key, *args)


def test_a_parameter_error_is_a_value_error_and_an_option_names_no_file():
    assert isinstance(parameter_error("predict.model", "is wrong"), ValueError)
    assert str(parameter_error("--model", "must be one of a, b")) == "--model must be one of a, b"


def test_integer_with_a_minimum():
    assert integer("export.opset", 18, minimum=17) == 18 and integer("training.seed", -3) == -3
    with pytest.raises(ParameterError, match="parameter export.opset must be an integer >= 17, got 16"):
        integer("export.opset", 16, minimum=17)
    with pytest.raises(ParameterError, match="parameter training.seed must be an integer, got True"):
        integer("training.seed", True)


@pytest.mark.parametrize(
    ("value", "include_low", "include_high", "interval"),
    [(1.0, True, False, r"\[0, 1\)"), (0.0, False, True, r"\(0, 1\]"), (-0.5, True, True, r"\[0, 1\]")],
)
def test_number_in_range_names_the_interval(value, include_low, include_high, interval):
    with pytest.raises(ParameterError, match=rf"parameter a\.b must be in {interval}, got {value}"):
        number_in_range("a.b", value, 0, 1, include_low=include_low, include_high=include_high)
    assert number_in_range("a.b", 0.5, 0, 1, include_low=include_low, include_high=include_high) == 0.5


def test_number_list_checks_each_number():
    assert number_list("a.b", [1, 2.5]) == (1, 2.5)
    with pytest.raises(ParameterError, match="parameter a.b must be a finite number, got inf"):
        number_list("a.b", [1, math.inf])
    with pytest.raises(ParameterError, match="parameter a.b must be a list of numbers, got 8"):
        number_list("a.b", 8)


def test_null_or_one_of_says_what_null_means():
    assert null_or_one_of("predict.tta", None, ("none", "flip"), "the checkpoint's own") is None
    assert null_or_one_of("predict.tta", "flip", ("none", "flip"), "the checkpoint's own") == "flip"
    with pytest.raises(ParameterError, match=r"predict.tta must be null \(the checkpoint's own\) or one of none, flip"):
        null_or_one_of("predict.tta", "all", ("none", "flip"), "the checkpoint's own")


def test_text_matches_its_pattern_and_says_to_quote_a_number():
    md5 = re.compile(r"[0-9a-f]{32}")
    assert text("cifar10.source.md5", "0" * 32, "a 32-character hex md5", md5) == "0" * 32
    with pytest.raises(ParameterError, match="must be a 32-character hex md5, got 'abc'; fix it in"):
        text("cifar10.source.md5", "abc", "a 32-character hex md5", md5)
    with pytest.raises(ParameterError, match=r"got 123 \(quote it: --params reads an all-digit value as a number\)"):
        text("cifar10.source.md5", 123, "a 32-character hex md5", md5)
    with pytest.raises(ParameterError, match="parameter cifar10.cache_dir must be a folder path, got None"):
        text("cifar10.cache_dir", None, "a folder path")


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (
            "model.name",
            r"parameter model\.name must be one of simple_cnn, cnn, vit, got 'resnet'; fix it in conf/base/",
        ),
        ("export.model", r"parameter export\.model .* fix it in conf/base/parameters_export\.yml"),
        ("--model", r"^--model must be one of simple_cnn, cnn, vit, got 'resnet'$"),
    ],
)
def test_the_model_name_is_checked_in_one_place(key, message):
    assert check_model_name("vit", key) == "vit"
    with pytest.raises(ParameterError, match=message):
        check_model_name("resnet", key)
    with pytest.raises(ParameterError, match=message.replace("'resnet'", "1")):
        check_model_name(1, key)

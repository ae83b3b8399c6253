"""Parameter checking, in one place: unknown keys, choices, ranges, finite numbers, booleans and text.

Parameters arrive from YAML; a misspelt key silently falling back to a default
would train or evaluate the wrong thing, so unknown keys are an error that
names them and the file to fix. Every check raises a :class:`ParameterError`
that names the parameter by its dotted key (``cnn.training.lr``) and the file
under ``conf/`` that sets it. Plain Python: models import it without Kedro.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Collection
from typing import Any, TypeVar

from image_recognition.common.errors import ParameterError

ConfigT = TypeVar("ConfigT")

# The conf/base file holding each top-level parameter key. A model's own key
# (``cnn.model``, ``vit.training``, ...) is in parameters_train_<model>.yml.
PARAMETER_FILES = {
    "dataset": "parameters_data_processing.yml",
    "cifar10": "parameters_data_processing.yml",
    "evaluation": "parameters_evaluation.yml",
    "predict": "parameters_predict.yml",
    "export": "parameters_export.yml",
    "tracking": "parameters_tracking.yml",
    "training_budget_s": "parameters_training.yml",
    # A model's block before its name is known: the check names ``model.name`` or ``training.lr``.
    "model": "parameters_train_*.yml",
    "training": "parameters_train_*.yml",
}
_MODEL_SECTIONS = ("model", "training")


def parameters_file(section: str) -> str:
    """The file under conf/ that holds the dotted parameter ``section``, e.g. ``cifar10.download``."""
    top, _, rest = section.partition(".")
    if top not in PARAMETER_FILES and rest.split(".")[0] in _MODEL_SECTIONS:
        return f"conf/base/parameters_train_{top}.yml"
    return f"conf/base/{PARAMETER_FILES.get(top, 'parameters_*.yml')}"


def parameter_error(key: str, problem: str) -> ParameterError:
    """The error for parameter ``key`` (dotted) and its ``problem``, naming the file that sets it.

    A command-line option (``--model``) is named alone, without a file.
    """
    if key.startswith("-"):
        return ParameterError(f"{key} {problem}")
    return ParameterError(f"parameter {key} {problem}; fix it in {parameters_file(key)} or your --params")


def reject_unknown_keys(section: str, given: dict[str, Any], allowed: Collection[str]) -> None:
    """Raise a ParameterError naming any key of ``given`` that is not in ``allowed``, and its file."""
    if not isinstance(given, dict):
        raise parameter_error(section, f"must be a mapping, got {type(given).__name__}")
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise ParameterError(
            f"unknown parameter(s) {', '.join(f'{section}.{k}' for k in unknown)}; "
            f"'{section}' accepts only: {', '.join(sorted(allowed))}. Fix the spelling in "
            f"{parameters_file(section)} or your --params"
        )


def config_from_dict(cls: type[ConfigT], values: dict[str, Any] | None, section: str, /, **init_vars: Any) -> ConfigT:
    """``cls(**values)`` for a config dataclass; a key that is not a field of ``cls`` is refused.

    ``section`` is where ``values`` sit among the parameters (``cnn.training``);
    ``init_vars`` go to the dataclass's ``InitVar`` fields, if it has any.
    """
    values = {} if values is None else values
    reject_unknown_keys(section, values, [field.name for field in dataclasses.fields(cls)])
    return cls(**values, **init_vars)


def positive_int(name: str, value: Any) -> int:
    """``value`` if it is an integer > 0 (a bool is not); else a ParameterError naming parameter ``name``."""
    return _integer_at_least(1, "a positive integer", name, value)


def non_negative_int(name: str, value: Any) -> int:
    """``value`` if it is an integer >= 0 (a bool is not); else a ParameterError naming parameter ``name``."""
    return _integer_at_least(0, "a non-negative integer", name, value)


def integer(name: str, value: Any, minimum: int | None = None) -> int:
    """``value`` if it is an integer (a bool is not), at least ``minimum`` if given; else a ParameterError."""
    return _integer_at_least(minimum, "an integer" if minimum is None else f"an integer >= {minimum}", name, value)


def _integer_at_least(minimum: int | None, kind: str, name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum):
        raise parameter_error(name, f"must be {kind}, got {value!r}")
    return value


def finite_number(name: str, value: Any) -> float:
    """``value`` if it is a finite int or float (a bool is not); else a ParameterError naming parameter ``name``.

    NaN and inf are refused: a NaN compares false with every bound, so it would
    slip through range checks and silently turn a feature off (``grad_clip > 0``).
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise parameter_error(name, f"must be a finite number, got {value!r}")
    return value


def positive_number(name: str, value: Any) -> float:
    """``value`` if it is a finite number > 0; else a ParameterError naming parameter ``name``."""
    if finite_number(name, value) <= 0:
        raise parameter_error(name, f"must be a finite number > 0, got {value!r}")
    return value


def each(check: Callable[[str, Any], Any], section: str, **values: Any) -> None:
    """``check`` each of ``values``, named ``<section>.<keyword>``: ``each(positive_int, "vit.model", depth=0)``."""
    for name, value in values.items():
        check(f"{section}.{name}", value)


def non_negative_number(name: str, value: Any) -> float:
    """``value`` if it is a finite number >= 0; else a ParameterError naming parameter ``name``."""
    if finite_number(name, value) < 0:
        raise parameter_error(name, f"must be a finite number >= 0, got {value!r}")
    return value


def number_in_range(
    name: str, value: Any, low: float, high: float, *, include_low: bool = True, include_high: bool = True
) -> float:
    """``value`` if it is a finite number between ``low`` and ``high`` (each included or not); else a ParameterError."""
    finite_number(name, value)
    above = value >= low if include_low else value > low
    below = value <= high if include_high else value < high
    if not (above and below):
        interval = f"{'[' if include_low else '('}{low:g}, {high:g}{']' if include_high else ')'}"
        raise parameter_error(name, f"must be in {interval}, got {value!r}")
    return value


def number_list(name: str, value: Any) -> tuple[float, ...]:
    """``value`` as a tuple if it is a list (or tuple) of finite numbers; else a ParameterError."""
    if not isinstance(value, list | tuple):
        raise parameter_error(name, f"must be a list of numbers, got {value!r}")
    return tuple(finite_number(name, item) for item in value)


def boolean(name: str, value: Any) -> bool:
    """``value`` if it is true or false; else a ParameterError naming parameter ``name``.

    A quoted ``"false"`` is a non-empty string, which Python counts as true.
    """
    if not isinstance(value, bool):
        hint = " (unquote it: a quoted string is not a boolean)" if isinstance(value, str) else ""
        raise parameter_error(name, f"must be true or false, got {value!r}{hint}")
    return value


def one_of(name: str, value: Any, allowed: Collection[Any]) -> Any:
    """``value`` if it is one of ``allowed``, of the same type (``1`` is not ``True``); else a ParameterError."""
    if not any(value == option and type(value) is type(option) for option in allowed):
        raise parameter_error(name, f"must be one of {', '.join(map(str, allowed))}, got {value!r}")
    return value


def null_or_one_of(name: str, value: Any, allowed: Collection[Any], null_means: str) -> Any:
    """``value`` if it is None (which means ``null_means``) or one of ``allowed``; else a ParameterError."""
    if value is not None and not any(value == option and type(value) is type(option) for option in allowed):
        raise parameter_error(
            name, f"must be null ({null_means}) or one of {', '.join(map(str, allowed))}, got {value!r}"
        )
    return value


def text(name: str, value: Any, description: str, pattern: re.Pattern[str] | None = None) -> str:
    """``value`` if it is a non-empty string, all of it matching ``pattern`` if given; else a ParameterError.

    The error says the parameter must be ``description`` (``a 32-character hex md5``).
    """
    if not (isinstance(value, str) and value and (pattern is None or pattern.fullmatch(value))):
        number = isinstance(value, int | float) and not isinstance(value, bool)
        hint = " (quote it: --params reads an all-digit value as a number)" if number else ""
        raise parameter_error(name, f"must be {description}, got {value!r}{hint}")
    return value


def config_to_dict(config: object) -> dict[str, Any]:
    """Plain-dict form of a config dataclass (tuples become lists).

    Checkpoints are loaded with ``weights_only=True``, which accepts only
    primitives, lists, dicts and tensors, so no dataclass goes into one.
    """
    return {
        key: list(value) if isinstance(value, tuple) else value for key, value in dataclasses.asdict(config).items()
    }

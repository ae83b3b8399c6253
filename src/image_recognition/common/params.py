"""Parameter checking, in one place: unknown keys, numbers, booleans, choices and config dataclasses.

Parameters arrive from YAML; a misspelt key silently falling back to a default
would train or evaluate the wrong thing, so unknown keys are an error that
names them and the file to fix. Plain Python: models import it without Kedro.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection
from typing import Any, TypeVar

from image_recognition.common.errors import ParameterError

ConfigT = TypeVar("ConfigT")

# The conf/base file holding each top-level parameter key. A model's own key
# (``cnn.model``, ``vit.training``, ...) is in parameters_train_<model>.yml.
PARAMETER_FILES = {
    "cifar10": "parameters_data_processing.yml",
    "evaluation": "parameters_evaluation.yml",
    "predict": "parameters_predict.yml",
    "export": "parameters_export.yml",
    "tracking": "parameters_tracking.yml",
}
_MODEL_SECTIONS = ("model", "training")


def parameters_file(section: str) -> str:
    """The file under conf/ that holds the dotted parameter ``section``, e.g. ``cifar10.download``."""
    top, _, rest = section.partition(".")
    if rest.split(".")[0] in _MODEL_SECTIONS:
        return f"conf/base/parameters_train_{top}.yml"
    return f"conf/base/{PARAMETER_FILES.get(top, 'parameters_*.yml')}"


def reject_unknown_keys(section: str, given: dict[str, Any], allowed: set[str]) -> None:
    """Raise a ParameterError naming any key of ``given`` that is not in ``allowed``, and its file."""
    if not isinstance(given, dict):
        raise ParameterError(f"parameter '{section}' must be a mapping, got {type(given).__name__}")
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise ParameterError(
            f"unknown parameter(s) {', '.join(f'{section}.{k}' for k in unknown)}; "
            f"'{section}' accepts only: {', '.join(sorted(allowed))}. Fix the spelling in "
            f"{parameters_file(section)} or your --params"
        )


def positive_int(name: str, value: Any) -> int:
    """``value`` if it is an integer > 0 (a bool is not); else a ParameterError naming parameter ``name``."""
    return _integer_at_least(1, "positive", name, value)


def non_negative_int(name: str, value: Any) -> int:
    """``value`` if it is an integer >= 0 (a bool is not); else a ParameterError naming parameter ``name``."""
    return _integer_at_least(0, "non-negative", name, value)


def _integer_at_least(minimum: int, kind: str, name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ParameterError(f"parameter {name} must be a {kind} integer, got {value!r}")
    return value


def finite_number(name: str, value: Any) -> float:
    """``value`` if it is a finite int or float (a bool is not); else a ParameterError naming parameter ``name``.

    NaN and inf are refused: a NaN compares false with every bound, so it would
    slip through range checks and silently turn a feature off (``grad_clip > 0``).
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ParameterError(f"parameter {name} must be a finite number, got {value!r}")
    return value


def positive_number(name: str, value: Any) -> float:
    """``value`` if it is a finite number > 0; else a ParameterError naming parameter ``name``."""
    if finite_number(name, value) <= 0:
        raise ParameterError(f"parameter {name} must be a finite number > 0, got {value!r}")
    return value


def non_negative_number(name: str, value: Any) -> float:
    """``value`` if it is a finite number >= 0; else a ParameterError naming parameter ``name``."""
    if finite_number(name, value) < 0:
        raise ParameterError(f"parameter {name} must be a finite number >= 0, got {value!r}")
    return value


def boolean(name: str, value: Any) -> bool:
    """``value`` if it is true or false; else a ParameterError naming parameter ``name``.

    A quoted ``"false"`` is a non-empty string, which Python counts as true.
    """
    if not isinstance(value, bool):
        hint = " (unquote it: a quoted string is not a boolean)" if isinstance(value, str) else ""
        raise ParameterError(f"parameter {name} must be true or false, got {value!r}{hint}")
    return value


def one_of(name: str, value: Any, allowed: Collection[Any]) -> Any:
    """``value`` if it is one of ``allowed``, of the same type (``1`` is not ``True``); else a ParameterError."""
    if not any(value == option and type(value) is type(option) for option in allowed):
        raise ParameterError(f"parameter {name} must be one of {', '.join(map(str, allowed))}, got {value!r}")
    return value


def require_positive(what: str, **values: float) -> None:
    """Raise a ValueError for the first value that is not a finite number > 0 (sizes, rates)."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{what}: {name} must be a number > 0, got {value!r}")
        if not value > 0:
            raise ValueError(f"{what}: {name} must be > 0, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"{what}: {name} must be finite, got {value!r}")


def config_from_dict(cls: type[ConfigT], values: dict[str, Any] | None, what: str) -> ConfigT:
    """Return ``cls(**values)``; unknown keys raise a ValueError naming the allowed ones."""
    values = dict(values or {})
    allowed = [field.name for field in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise ValueError(f"unknown {what} key(s) {unknown}; allowed keys are {sorted(allowed)}")
    return cls(**values)


def config_to_dict(config: object) -> dict[str, Any]:
    """Plain-dict form of a config dataclass (tuples become lists).

    Checkpoints are loaded with ``weights_only=True``, which accepts only
    primitives, lists, dicts and tensors, so no dataclass goes into one.
    """
    return {
        key: list(value) if isinstance(value, tuple) else value for key, value in dataclasses.asdict(config).items()
    }

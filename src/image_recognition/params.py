"""Parameter checking, in one place: unknown keys, integer ranges and config dataclasses.

Parameters arrive from YAML; a misspelt key silently falling back to a default
would train or evaluate the wrong thing, so unknown keys are an error that
names them and the file to fix. Plain Python: models import it without Kedro.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from image_recognition.errors import ParameterError

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


def require_positive(what: str, **values: float) -> None:
    """Raise a ValueError for the first value that is not > 0 (any number: sizes, rates)."""
    for name, value in values.items():
        if not value > 0:
            raise ValueError(f"{what}: {name} must be > 0, got {value!r}")


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

"""Build model config dataclasses from plain dicts, refusing keys they do not have.

Parameters arrive from YAML; a misspelt key silently falling back to a default
would train the wrong model, so unknown keys are an error that names them.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

ConfigT = TypeVar("ConfigT")


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


def require_positive(what: str, **values: float) -> None:
    """Raise a ValueError for the first value that is not > 0."""
    for name, value in values.items():
        if not value > 0:
            raise ValueError(f"{what}: {name} must be > 0, got {value!r}")

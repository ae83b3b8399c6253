"""Atomic checkpoint writes and safe (``weights_only``) reads.

A checkpoint is a plain dict of tensors, dicts, lists and primitives, so
``torch.load(..., weights_only=True)`` can read it without unpickling code.
A read refuses, in one line, a file that is not such a dict, and a model whose
config is invalid, too large to build, or does not match the weights beside it.
"""

from __future__ import annotations

import os
import pickle
import re
from typing import IO, Any

import torch

from image_recognition.common.atomic import atomic_write
from image_recognition.common.errors import InputError
from image_recognition.models import MAX_MODEL_PARAMETERS, ModelTooLargeError, meta_model, validate_model_config

CHECKPOINT_FORMAT = 1
# Replace a refused file with one this project wrote.
_FIX = "delete it, or put back a checkpoint saved by this project's training"


class CheckpointError(InputError, ValueError):
    """A checkpoint file is refused: unreadable, pickling code, not ours, or holding a model it cannot build."""


def clean_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip wrapper prefixes (``_orig_mod.``, ``module.``) and detach to the CPU."""
    cleaned = {}
    for name, value in state.items():
        key = name
        for prefix in ("_orig_mod.", "module."):
            while key.startswith(prefix):
                key = key[len(prefix) :]
        cleaned[key] = to_cpu(value)
    return cleaned


def to_cpu(value: Any) -> Any:
    """Copy every tensor in a nested dict/list structure to the CPU (e.g. an optimiser's state)."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, dict):
        return {key: to_cpu(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(to_cpu(item) for item in value)
    return value


def save_checkpoint(obj: dict[str, Any], path: str | os.PathLike) -> None:
    """Write ``obj`` to ``path`` atomically: a temporary file in the same folder, then rename.

    A crash mid-write leaves the previous checkpoint intact, never a torn one,
    and a reader that sees the file sees all of it.
    """
    with atomic_write(path) as file:
        torch.save(obj, file)


def load_checkpoint(
    path: str | os.PathLike | IO[bytes],
    map_location: str | torch.device = "cpu",
    max_model_parameters: int = MAX_MODEL_PARAMETERS,
    limit_name: str = "max_model_parameters",
) -> dict[str, Any]:
    """Read a checkpoint, from a path or an open binary file, with ``weights_only=True`` (no code from the file).

    A file that pickles anything but tensors and plain data, is not a checkpoint,
    or holds a model that :func:`check_checkpoint_model` refuses raises a
    :class:`CheckpointError` naming it; ``limit_name`` is the setting that
    raises ``max_model_parameters``.
    """
    name = getattr(path, "path", getattr(path, "name", path))  # an fsspec or a local file's path
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"checkpoint {name} refused: {_unpickling_problem(exc)}, which a weights-only load does not run; {_FIX}"
        ) from None
    except (RuntimeError, EOFError, KeyError, ValueError) as exc:  # a truncated file, or not a torch file
        problem = str(exc).strip().split(". ")[0].splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"checkpoint {name} cannot be read ({problem[:200]}): it is truncated or not a PyTorch file; {_FIX}"
        ) from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{name} is not an image_recognition checkpoint (format {CHECKPOINT_FORMAT}); "
            "delete it, or set training.resume: false (or name another run)"
        )
    check_checkpoint_model(checkpoint, name, max_model_parameters, limit_name)
    return checkpoint


def check_checkpoint_model(
    checkpoint: dict[str, Any],
    name: object,
    max_model_parameters: int = MAX_MODEL_PARAMETERS,
    limit_name: str = "max_model_parameters",
) -> None:
    """Refuse a checkpoint whose model could not be rebuilt from it, before anything is allocated.

    Its config must be valid and the model no larger than ``max_model_parameters``
    (counted on the meta device), and its weights (and EMA weights) must have
    the model's names and shapes. A dict naming no model and holding no
    weights is left alone.
    """
    if "model_name" not in checkpoint and "model_state" not in checkpoint:
        return
    try:
        config = validate_model_config(
            checkpoint.get("model_name"), checkpoint.get("model_config"), max_model_parameters, limit_name
        )
    except ModelTooLargeError as exc:
        raise CheckpointError(
            f"checkpoint {name} refused: {exc}; raise {limit_name} if you trust this checkpoint, else delete it"
        ) from None
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {name} refused: its model config is invalid ({exc}); {_FIX}") from None
    expected = {
        key: tuple(value.shape) for key, value in meta_model(checkpoint["model_name"], config).state_dict().items()
    }
    for part in ("model_state", "ema_state"):
        state = checkpoint.get(part)
        if state is None and part == "ema_state":
            continue
        problem = _state_mismatch(state, expected)
        if problem:
            raise CheckpointError(
                f"checkpoint {name} refused: its {part} does not fit its {checkpoint['model_name']} "
                f"model config ({problem}); {_FIX}"
            )


def _state_mismatch(state: Any, expected: dict[str, tuple[int, ...]]) -> str | None:
    """What keeps ``state`` from loading into a model whose tensors have ``expected`` shapes; None if nothing."""
    if not isinstance(state, dict):
        return f"a {type(state).__name__}, not a dict of tensors"
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        return f"missing {missing[:3]}, unexpected {unexpected[:3]}"
    for key, shape in expected.items():
        value = state[key]
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != shape:
            found = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            return f"{key} is {found}, the model's is {shape}"
    return None


def _unpickling_problem(exc: pickle.UnpicklingError) -> str:
    """torch's page-long weights-only refusal, in a few words: the global it would have called, if any."""
    found = re.search(r"GLOBAL ([\w.]+)", str(exc))
    if found:
        return f"it pickles a call to {found.group(1)}"
    return "it pickles objects other than tensors and plain data"

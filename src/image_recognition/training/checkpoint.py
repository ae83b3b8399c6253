"""Atomic checkpoint writes and safe (``weights_only``) reads.

A checkpoint is a plain dict of tensors, dicts, lists and primitives, so
``torch.load(..., weights_only=True)`` can read it without unpickling code.
A read refuses, in one line, a file that is not such a dict, and a model whose
config is invalid, too large to build, or does not match the weights beside it.

A checkpoint records the data it takes: ``image_size`` (the side of its square
inputs, as its model config has it) and ``class_names`` (one per logit, the
data's). A read checks them against the model and fills them in for a
checkpoint saved before they were recorded: 32 px, and the class names its
``data`` block held, if any.
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
from image_recognition.models.sizes import DEFAULT_IMAGE_SIZE

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
    return with_data_fields(checkpoint)


def checkpoint_image_size(checkpoint: dict[str, Any]) -> int:
    """The side of the images ``checkpoint``'s model takes: its record, else its model config's, else 32."""
    size = checkpoint.get("image_size") or (checkpoint.get("model_config") or {}).get("image_size")
    return int(size or DEFAULT_IMAGE_SIZE)


def checkpoint_class_names(checkpoint: dict[str, Any]) -> list[str] | None:
    """``checkpoint``'s class names, one per logit: its record, else its ``data`` block's; None if it has neither."""
    names = checkpoint.get("class_names") or (checkpoint.get("data") or {}).get("class_names")
    return list(names) if names else None


def with_data_fields(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """``checkpoint`` with ``image_size`` and (where known) ``class_names`` at its top level, as a read returns it."""
    filled = {**checkpoint, "image_size": checkpoint_image_size(checkpoint)}
    names = checkpoint_class_names(checkpoint)
    if names is not None:
        filled["class_names"] = names
    return filled


def record_data(checkpoint: dict[str, Any], class_names: list[str], image_size: int) -> dict[str, Any]:
    """``checkpoint`` recording the data its model was trained on: ``class_names`` and ``image_size``.

    A CheckpointError if they do not fit its model (one name per logit, the
    model config's image size): a checkpoint that mislabels its outputs is
    never written.
    """
    recorded = {**checkpoint, "class_names": [str(name) for name in class_names], "image_size": int(image_size)}
    problem = _data_mismatch(recorded, recorded.get("model_config") or {})
    if problem:
        raise CheckpointError(f"cannot record the data in a {checkpoint.get('model_name')} checkpoint: {problem}")
    return recorded


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
    problem = _data_mismatch(checkpoint, config)
    if problem:
        raise CheckpointError(f"checkpoint {name} refused: {problem}; {_FIX}")
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


def _data_mismatch(checkpoint: dict[str, Any], config: dict[str, Any]) -> str | None:
    """What keeps ``checkpoint``'s recorded image size and class names from fitting its model ``config``; None if nothing."""
    size = checkpoint.get("image_size")
    model_size = config.get("image_size", DEFAULT_IMAGE_SIZE)
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size != model_size):
        return f"it records image_size {size!r}, but its model takes {model_size} px images"
    names = checkpoint_class_names(checkpoint)
    if names is None:
        return None
    classes = config.get("num_classes", 10)
    if not all(isinstance(item, str) and item for item in names):
        return "its class_names are not all non-empty strings"
    if len(names) != classes:
        return f"it records {len(names)} class names for a model of {classes} classes"
    if len(set(names)) != len(names):
        return "its class_names repeat a name"
    return None


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

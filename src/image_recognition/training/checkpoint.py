"""Atomic checkpoint writes and safe (``weights_only``) reads.

A checkpoint is a plain dict of tensors, dicts, lists and primitives, so
``torch.load(..., weights_only=True)`` can read it without unpickling code.
"""

from __future__ import annotations

import os
from typing import IO, Any

import torch

from image_recognition.atomic import atomic_write

CHECKPOINT_FORMAT = 1


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


def load_checkpoint(path: str | os.PathLike | IO[bytes], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint, from a path or an open binary file, with ``weights_only=True`` (no code from the file)."""
    checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        name = getattr(path, "path", getattr(path, "name", path))  # an fsspec or a local file's path
        raise ValueError(
            f"{name} is not an image_recognition checkpoint (format {CHECKPOINT_FORMAT}); "
            "delete it, or set training.resume: false (or name another run)"
        )
    return checkpoint

"""Decoded images, whatever their source: the one shape every data source hands to the data stage."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class DecodedImages:
    """uint8 images (N, 3, S, S) and int64 labels (N,) of a training set and, where the source has one, a test set.

    ``test_images`` and ``test_labels`` are None for a source without a test
    set of its own (an image folder without ``test/``): the data stage holds one
    out. ``skipped`` says what the source ignored or skipped and why, for the
    data report; ``fingerprint`` identifies the source's content (an archive's
    md5, or a hash over a folder's files).
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray | None
    test_labels: np.ndarray | None
    class_names: list[str]
    image_size: int = 32
    skipped: dict[str, Any] = field(default_factory=dict)
    fingerprint: str | None = None

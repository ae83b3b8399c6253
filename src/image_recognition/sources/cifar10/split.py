"""Seeded stratified hold-out and normalisation statistics, with no Kedro imports."""

from __future__ import annotations

import hashlib

import numpy as np


def stratified_holdout(labels: np.ndarray, holdout_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return sorted (keep, holdout) indices; the holdout keeps the class proportions.

    Each class gives ``holdout_size * class_count / total`` images, rounded so
    the sizes add up exactly (largest remainders get the spare ones).
    """
    total = len(labels)
    if not 0 <= holdout_size <= total:
        raise ValueError(f"holdout size {holdout_size} must be between 0 and the {total} images available")
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    exact = holdout_size * counts / total
    per_class = np.floor(exact).astype(int)
    spare = holdout_size - per_class.sum()
    per_class[np.argsort(-(exact - per_class), kind="stable")[:spare]] += 1
    holdout = np.concatenate(
        [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, per_class, strict=True)]
    )
    mask = np.zeros(total, dtype=bool)
    mask[holdout] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def channel_statistics(images: np.ndarray, chunk: int = 4096) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images (N, 3, H, W), on the 0..1 scale.

    Sums run in float64 over chunks, so 45,000 images never become a float copy.
    """
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"expected a non-empty (N, C, H, W) array, got shape {images.shape}")
    channels = images.shape[1]
    total = np.zeros(channels)
    squares = np.zeros(channels)
    for start in range(0, len(images), chunk):
        block = images[start : start + chunk].astype(np.float64) / 255.0
        total += block.sum(axis=(0, 2, 3))
        squares += np.square(block).sum(axis=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
    return mean.tolist(), std.tolist()


def split_fingerprint(split: dict[str, np.ndarray]) -> str:
    """md5 of a split's images and labels: equal for equal data, whatever its catalog version."""
    digest = hashlib.md5(np.ascontiguousarray(split["images"]).tobytes())
    digest.update(np.ascontiguousarray(split["labels"], dtype=np.int64).tobytes())
    return digest.hexdigest()

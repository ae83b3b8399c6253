"""The synthetic stand-ins for CIFAR-10 and CIFAR-100: balanced, seeded, learnable, and byte-for-byte reproducible archives.

That the archive decodes to the same arrays is tested with the decoder, in ``test_archive.py``.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from image_recognition.common.errors import ParameterError
from image_recognition.sources.cifar10.archive import load_cifar_archive
from image_recognition.sources.cifar10.synthetic import (
    SYNTHETIC_CLASS_NAMES,
    SYNTHETIC_COARSE_NAMES,
    SYNTHETIC_FINE_NAMES,
    coarse_labels,
    make_synthetic_cifar10,
    make_synthetic_cifar100,
    synthetic_archive,
    write_cifar10_archive,
)


def test_splits_are_balanced_uint8_images_with_cifar10s_shapes():
    data = make_synthetic_cifar10(train_per_class=6, test_per_class=2, seed=0)
    assert data.train_images.shape == (60, 3, 32, 32) and data.test_images.shape == (20, 3, 32, 32)
    assert data.train_images.dtype == np.uint8 and data.train_labels.dtype == np.int64
    assert np.bincount(data.train_labels).tolist() == [6] * 10 and np.bincount(data.test_labels).tolist() == [2] * 10
    assert data.class_names == SYNTHETIC_CLASS_NAMES and len(set(data.class_names)) == 10


def test_the_seed_decides_the_images():
    first, again = (make_synthetic_cifar10(train_per_class=2, test_per_class=1, seed=7) for _ in range(2))
    other = make_synthetic_cifar10(train_per_class=2, test_per_class=1, seed=8)
    assert np.array_equal(first.train_images, again.train_images) and np.array_equal(
        first.test_labels, again.test_labels
    )
    assert not np.array_equal(first.train_images, other.train_images)


def test_each_class_has_its_own_tint_whatever_the_seed():
    tints = []
    for seed in (0, 1):
        data = make_synthetic_cifar10(train_per_class=100, test_per_class=1, seed=seed)
        images, labels = data.train_images.astype(np.float64), data.train_labels
        colours = np.stack([images[labels == c].mean(axis=(0, 2, 3)) for c in range(10)])  # (classes, 3)
        tints.append(colours - colours.mean(axis=1, keepdims=True))  # the brightness taken out
    between_seeds = np.abs(tints[0] - tints[1]).max()
    between_classes = min(np.abs(tints[0][a] - tints[0][b]).max() for a in range(10) for b in range(a))
    assert between_classes > 4 * between_seeds


def test_the_archive_is_reproducible_byte_for_byte_and_its_md5_returned(tmp_path):
    data = make_synthetic_cifar10(train_per_class=5, test_per_class=1, seed=0)
    md5 = write_cifar10_archive(data, tmp_path / "a" / "cifar-10-python.tar.gz")
    again = write_cifar10_archive(data, tmp_path / "b" / "cifar-10-python.tar.gz")
    content = (tmp_path / "a" / "cifar-10-python.tar.gz").read_bytes()
    assert md5 == again == hashlib.md5(content).hexdigest()
    assert (tmp_path / "b" / "cifar-10-python.tar.gz").read_bytes() == content


def test_cifar100_mode_is_balanced_over_100_fine_and_20_coarse_classes():
    data = make_synthetic_cifar100(train_per_class=2, test_per_class=1, seed=0)
    assert data.train_images.shape == (200, 3, 32, 32) and data.train_images.dtype == np.uint8
    assert np.bincount(data.train_labels).tolist() == [2] * 100 and np.bincount(data.test_labels).tolist() == [1] * 100
    assert data.class_names == SYNTHETIC_FINE_NAMES and len(set(SYNTHETIC_FINE_NAMES)) == 100
    assert np.bincount(coarse_labels(data.train_labels)).tolist() == [10] * 20 and len(SYNTHETIC_COARSE_NAMES) == 20
    assert coarse_labels(np.array([0, 4, 5, 99])).tolist() == [0, 0, 1, 19]


def _phase_free_features(images: np.ndarray) -> np.ndarray:
    """The grey image's low-frequency power spectrum (angle and frequency, not phase) and its mean colour (hue)."""
    pixels = images.astype(np.float64)
    grey = pixels.mean(axis=1)
    grey -= grey.mean(axis=(1, 2), keepdims=True)
    power = np.abs(np.fft.fft2(grey))[:, :8, :8].reshape(len(images), -1)
    power /= np.linalg.norm(power, axis=1, keepdims=True)
    colour = pixels.mean(axis=(2, 3))
    return np.concatenate([4 * power, (colour - colour.mean(axis=1, keepdims=True)) / 10], axis=1)


@pytest.mark.parametrize(("label", "classes", "at_least"), [("fine", 100, 0.5), ("coarse", 20, 0.8)])
def test_cifar100_classes_are_learnable_far_above_chance(label, classes, at_least):
    # A nearest-centroid classifier on phase-free features: if so simple a model learns it, a CNN does.
    data = make_synthetic_cifar100(train_per_class=30, test_per_class=5, seed=1)
    relabel = coarse_labels if label == "coarse" else np.asarray
    train, test = _phase_free_features(data.train_images), _phase_free_features(data.test_images)
    train_labels, test_labels = relabel(data.train_labels), relabel(data.test_labels)
    centroids = np.stack([train[train_labels == c].mean(axis=0) for c in range(classes)])
    predicted = ((test[:, None] - centroids[None]) ** 2).sum(axis=-1).argmin(axis=1)
    assert (predicted == test_labels).mean() > at_least > 10 / classes


@pytest.mark.parametrize(("kind", "classes"), [("cifar10", 10), ("cifar100", 100)])
def test_synthetic_archive_by_kind_is_reproducible_and_decodes(tmp_path, kind, classes):
    first = synthetic_archive(kind, tmp_path / "a" / "x.tar.gz", train_per_class=1, test_per_class=1, seed=2)
    again = synthetic_archive(kind, tmp_path / "b" / "x.tar.gz", train_per_class=1, test_per_class=1, seed=2)
    assert first == again == hashlib.md5((tmp_path / "a" / "x.tar.gz").read_bytes()).hexdigest()
    decoded = load_cifar_archive(str(tmp_path / "a" / "x.tar.gz"), kind)
    assert len(decoded.class_names) == classes and len(decoded.train_labels) == classes


@pytest.mark.parametrize(
    ("kind", "options", "message"),
    [
        ("cifar1000", {}, r"dataset.kind \(synthetic\) must be one of cifar10, cifar100"),
        ("cifar100", {"size": 3}, "size"),
        ("cifar10", {"seed": -1}, r"synthetic seed\) must be a non-negative integer"),
    ],
)
def test_synthetic_archive_refuses_bad_options_before_writing(tmp_path, kind, options, message):
    with pytest.raises(ParameterError, match=message):
        synthetic_archive(kind, tmp_path / "a.tar.gz", **options)
    assert not (tmp_path / "a.tar.gz").exists()

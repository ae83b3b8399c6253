"""The synthetic stand-in for CIFAR-10: balanced, seeded, learnable, and a byte-for-byte reproducible archive.

That the archive decodes to the same arrays is tested with the decoder, in ``test_archive.py``.
"""

from __future__ import annotations

import hashlib

import numpy as np

from image_recognition.sources.cifar10.synthetic import (
    SYNTHETIC_CLASS_NAMES,
    make_synthetic_cifar10,
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

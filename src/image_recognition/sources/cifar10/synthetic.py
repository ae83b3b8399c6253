"""Synthetic CIFAR-format data: learnable images in the official archive layout.

The demo environment and the tests need CIFAR-10-shaped data without the 170 MB
download. Random noise would not do: later stages must show that the models
really learn. Each class here is a plaid of two sine gratings (their angle
set by the class) over a faint class tint, with a random phase, contrast,
brightness and strong pixel noise per image, so the class can be recovered
from the pixels but not from any single pixel. Neighbouring classes overlap,
so small models make mistakes (in the demo, test accuracy runs from about 80%
for the tutorial CNN to about 95%) and the comparison has something to show.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

from image_recognition.sources.cifar10.archive import (
    BATCH_FOLDER,
    META_BATCH,
    NUM_CLASSES,
    TEST_BATCH,
    TRAIN_BATCHES,
    CIFAR10Arrays,
)

SYNTHETIC_CLASS_NAMES = [f"pattern_{i}" for i in range(NUM_CLASSES)]
_FIXED_MTIME = 1262304000  # fixed tar and gzip times keep the bytes reproducible


def make_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw one uint8 image (3, 32, 32) per label."""
    n = len(labels)
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float32) / 32.0
    xx -= 0.5  # centred, so the mirror image of a plaid is the same plaid
    # Class c: a plaid of two gratings at +-angle, angle = (c + 0.5) * 9 degrees.
    # A plaid is its own horizontal mirror image, so flip augmentation and flip
    # test-time augmentation keep the class, as they do on real photographs.
    angle = (labels + 0.5) * (np.pi / (2 * NUM_CLASSES)) + rng.normal(0.0, 0.07, n)
    frequency = 2.0 + (labels % 3) + rng.uniform(-0.3, 0.3, n)
    phase = rng.uniform(0.0, 2 * np.pi, n)
    grating = np.zeros((n, 32, 32))
    for sign in (1.0, -1.0):
        along = sign * np.cos(angle)[:, None, None] * xx + np.sin(angle)[:, None, None] * yy
        grating += 0.5 * np.sin(2 * np.pi * frequency[:, None, None] * along + phase[:, None, None])  # (N, 32, 32)

    hue = labels * (2 * np.pi / NUM_CLASSES)
    tint = np.stack([np.cos(hue + k * 2 * np.pi / 3) for k in range(3)], axis=1)  # (N, 3)
    contrast = rng.uniform(25.0, 60.0, (n, 1, 1, 1))
    brightness = rng.uniform(90.0, 160.0, (n, 1, 1, 1))
    images = brightness + 8.0 * tint[:, :, None, None] + contrast * grating[:, None]
    images += rng.normal(0.0, 50.0, images.shape)
    return np.clip(images, 0, 255).astype(np.uint8)


def make_synthetic_cifar10(train_per_class: int = 500, test_per_class: int = 100, seed: int = 0) -> CIFAR10Arrays:
    """Make a balanced, shuffled synthetic data set with CIFAR-10's shapes and types."""
    rng = np.random.default_rng(seed)
    splits = []
    for per_class in (train_per_class, test_per_class):
        labels = rng.permutation(np.repeat(np.arange(NUM_CLASSES), per_class)).astype(np.int64)
        splits.append((make_images(labels, rng), labels))
    (train_images, train_labels), (test_images, test_labels) = splits
    return CIFAR10Arrays(train_images, train_labels, test_images, test_labels, list(SYNTHETIC_CLASS_NAMES))


def _add_member(tar: tarfile.TarFile, name: str, payload: dict) -> None:
    blob = pickle.dumps(payload, protocol=2)
    info = tarfile.TarInfo(f"{BATCH_FOLDER}/{name}")
    info.size = len(blob)
    info.mtime = _FIXED_MTIME
    tar.addfile(info, io.BytesIO(blob))


def write_cifar10_archive(data: CIFAR10Arrays, path: str | Path) -> str:
    """Write ``data`` as a CIFAR-10 python archive at ``path``; return its md5.

    The layout and pickle keys match the official ``cifar-10-python.tar.gz``:
    five training batches, a test batch and ``batches.meta``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    flat_train = data.train_images.reshape(len(data.train_images), -1)
    chunks = np.array_split(np.arange(len(flat_train)), len(TRAIN_BATCHES))
    with (
        open(path, "wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w") as tar,
    ):
        meta = {
            b"num_cases_per_batch": len(chunks[0]),
            b"label_names": [name.encode() for name in data.class_names],
            b"num_vis": flat_train.shape[1],
        }
        _add_member(tar, META_BATCH, meta)
        for number, (name, index) in enumerate(zip(TRAIN_BATCHES, chunks, strict=True), start=1):
            _add_member(tar, name, _batch(f"training batch {number} of 5", flat_train[index], data.train_labels[index]))
        flat_test = data.test_images.reshape(len(data.test_images), -1)
        _add_member(tar, TEST_BATCH, _batch("testing batch 1 of 1", flat_test, data.test_labels))
    return hashlib.md5(path.read_bytes()).hexdigest()


def _batch(label: str, images: np.ndarray, labels: np.ndarray) -> dict:
    return {
        b"batch_label": label.encode(),
        b"labels": [int(x) for x in labels],
        b"data": np.ascontiguousarray(images, dtype=np.uint8),
        b"filenames": [f"synthetic_{i:05d}.png".encode() for i in range(len(labels))],
    }

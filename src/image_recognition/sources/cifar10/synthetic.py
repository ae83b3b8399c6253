"""Synthetic CIFAR-format data: learnable images in the official archive layout.

The demo environment and the tests need CIFAR-10-shaped data without the 170 MB
download. Random noise would not do: later stages must show that the models
really learn. Each class here is a plaid of two sine gratings (their angle
set by the class) over a faint class tint, with a random phase, contrast,
brightness and strong pixel noise per image, so the class can be recovered
from the pixels but not from any single pixel. Neighbouring classes overlap,
so small models make mistakes (in the demo, test accuracy runs from about 80%
for the tutorial CNN to about 95%) and the comparison has something to show.

The CIFAR-100-format mode draws 100 fine classes from the same plaids: the
grating's angle and frequency follow ``fine % 10`` as in CIFAR-10, and the tint's
hue follows ``fine // 10`` (stronger, since ten hues must be told apart), so each
fine class is a distinct angle and hue. Coarse class ``fine // 5`` groups five
neighbouring angles of one hue, and is learnable too.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import pickle
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from image_recognition.common.params import non_negative_int, one_of, reject_unknown_keys
from image_recognition.sources.cifar10.archive import (
    BATCH_FOLDER,
    CIFAR100_FOLDER,
    CIFAR100_META,
    CIFAR100_NUM_CLASSES,
    CIFAR100_TEST,
    CIFAR100_TRAIN,
    CIFAR_KINDS,
    META_BATCH,
    NUM_CLASSES,
    TEST_BATCH,
    TRAIN_BATCHES,
)
from image_recognition.sources.decoded import DecodedImages

SYNTHETIC_CLASS_NAMES = [f"pattern_{i}" for i in range(NUM_CLASSES)]
SYNTHETIC_FINE_NAMES = [f"pattern_{i:02d}" for i in range(CIFAR100_NUM_CLASSES["fine"])]
SYNTHETIC_COARSE_NAMES = [f"group_{i:02d}" for i in range(CIFAR100_NUM_CLASSES["coarse"])]
FINE_PER_COARSE = CIFAR100_NUM_CLASSES["fine"] // CIFAR100_NUM_CLASSES["coarse"]
SYNTHETIC_OPTIONS = ("train_per_class", "test_per_class", "seed")
_FIXED_MTIME = 1262304000  # fixed tar and gzip times keep the bytes reproducible


def make_images(
    labels: np.ndarray, rng: np.random.Generator, hues: np.ndarray | None = None, tint_strength: float = 8.0
) -> np.ndarray:
    """Draw one uint8 image (3, 32, 32) per label: angle and frequency by ``labels % 10``, hue by ``hues``.

    ``hues`` (default: the labels) are indices of ten hues around the colour wheel.
    """
    n = len(labels)
    pattern = labels % NUM_CLASSES
    hues = pattern if hues is None else hues
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float32) / 32.0
    xx -= 0.5  # centred, so the mirror image of a plaid is the same plaid
    # Class c: a plaid of two gratings at +-angle, angle = (c + 0.5) * 9 degrees.
    # A plaid is its own horizontal mirror image, so flip augmentation and flip
    # test-time augmentation keep the class, as they do on real photographs.
    angle = (pattern + 0.5) * (np.pi / (2 * NUM_CLASSES)) + rng.normal(0.0, 0.07, n)
    frequency = 2.0 + (pattern % 3) + rng.uniform(-0.3, 0.3, n)
    phase = rng.uniform(0.0, 2 * np.pi, n)
    grating = np.zeros((n, 32, 32))
    for sign in (1.0, -1.0):
        along = sign * np.cos(angle)[:, None, None] * xx + np.sin(angle)[:, None, None] * yy
        grating += 0.5 * np.sin(2 * np.pi * frequency[:, None, None] * along + phase[:, None, None])  # (N, 32, 32)

    hue = hues * (2 * np.pi / NUM_CLASSES)
    tint = np.stack([np.cos(hue + k * 2 * np.pi / 3) for k in range(3)], axis=1)  # (N, 3)
    contrast = rng.uniform(25.0, 60.0, (n, 1, 1, 1))
    brightness = rng.uniform(90.0, 160.0, (n, 1, 1, 1))
    images = brightness + tint_strength * tint[:, :, None, None] + contrast * grating[:, None]
    images += rng.normal(0.0, 50.0, images.shape)
    return np.clip(images, 0, 255).astype(np.uint8)


def make_synthetic_cifar10(train_per_class: int = 500, test_per_class: int = 100, seed: int = 0) -> DecodedImages:
    """Make a balanced, shuffled synthetic data set with CIFAR-10's shapes and types."""
    rng = np.random.default_rng(seed)
    splits = []
    for per_class in (train_per_class, test_per_class):
        labels = rng.permutation(np.repeat(np.arange(NUM_CLASSES), per_class)).astype(np.int64)
        splits.append((make_images(labels, rng), labels))
    (train_images, train_labels), (test_images, test_labels) = splits
    return DecodedImages(train_images, train_labels, test_images, test_labels, list(SYNTHETIC_CLASS_NAMES))


def make_synthetic_cifar100(train_per_class: int = 500, test_per_class: int = 100, seed: int = 0) -> DecodedImages:
    """Make a balanced, shuffled synthetic data set with CIFAR-100's shapes and types; labels are the fine ones.

    The coarse label of fine class ``c`` is ``c // FINE_PER_COARSE`` (``coarse_labels`` below).
    """
    rng = np.random.default_rng(seed)
    fine_classes = CIFAR100_NUM_CLASSES["fine"]
    splits = []
    for per_class in (train_per_class, test_per_class):
        labels = rng.permutation(np.repeat(np.arange(fine_classes), per_class)).astype(np.int64)
        # Ten hues, one per ten fine classes, twice the CIFAR-10 tint: each hue shared by two coarse classes.
        splits.append((make_images(labels, rng, hues=labels // NUM_CLASSES, tint_strength=16.0), labels))
    (train_images, train_labels), (test_images, test_labels) = splits
    return DecodedImages(train_images, train_labels, test_images, test_labels, list(SYNTHETIC_FINE_NAMES))


def coarse_labels(fine_labels: np.ndarray) -> np.ndarray:
    """The synthetic CIFAR-100's coarse (super-class) label of each fine label."""
    return np.asarray(fine_labels, dtype=np.int64) // FINE_PER_COARSE


def _add_member(tar: tarfile.TarFile, name: str, payload: dict, folder: str = BATCH_FOLDER, protocol: int = 2) -> None:
    blob = pickle.dumps(payload, protocol=protocol)
    info = tarfile.TarInfo(f"{folder}/{name}")
    info.size = len(blob)
    info.mtime = _FIXED_MTIME
    tar.addfile(info, io.BytesIO(blob))


def write_cifar10_archive(data: DecodedImages, path: str | Path) -> str:
    """Write ``data`` as a CIFAR-10 python archive at ``path``; return its md5.

    The layout and pickle keys match the official ``cifar-10-python.tar.gz``:
    five training batches, a test batch and ``batches.meta``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    flat_train = data.train_images.reshape(len(data.train_images), -1)
    chunks = np.array_split(np.arange(len(flat_train)), len(TRAIN_BATCHES))
    with _reproducible_tar(path) as tar:
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


def write_cifar100_archive(data: DecodedImages, path: str | Path) -> str:
    """Write ``data`` (fine labels) as a CIFAR-100 python archive at ``path``; return its md5.

    The layout and pickle keys match the official ``cifar-100-python.tar.gz``:
    ``train``, ``test`` and ``meta`` under ``cifar-100-python/``, with fine and
    coarse labels and names. Filenames are pickled as bytes at protocol 4, as the
    official Python 2 pickles hold them: no tuple per filename for the opcode caps.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = {"fine": data.class_names, "coarse": list(SYNTHETIC_COARSE_NAMES)}
    with _reproducible_tar(path) as tar:
        meta = {f"{label}_label_names".encode(): [n.encode() for n in names[label]] for label in names}
        _add_member(tar, CIFAR100_META, meta, CIFAR100_FOLDER, protocol=4)
        for member, images, labels in (
            (CIFAR100_TRAIN, data.train_images, data.train_labels),
            (CIFAR100_TEST, data.test_images, data.test_labels),
        ):
            batch = _batch(member, images.reshape(len(images), -1), labels)
            fine = batch.pop(b"labels")
            batch.update({b"fine_labels": fine, b"coarse_labels": [int(x) for x in coarse_labels(labels)]})
            _add_member(tar, member, batch, CIFAR100_FOLDER, protocol=4)
    return hashlib.md5(path.read_bytes()).hexdigest()


def synthetic_archive(kind: str, path: str | Path, **options: int) -> str:
    """Generate a synthetic ``kind`` (``cifar10`` or ``cifar100``) archive at ``path``; return its md5.

    ``options``: ``train_per_class``, ``test_per_class`` and ``seed``; the bytes depend only on them.
    """
    one_of("dataset.kind (synthetic)", kind, CIFAR_KINDS)
    reject_unknown_keys("dataset.source.url (synthetic options)", options, SYNTHETIC_OPTIONS)
    options = {key: non_negative_int(f"dataset.source.url (synthetic {key})", value) for key, value in options.items()}
    if kind == "cifar100":
        return write_cifar100_archive(make_synthetic_cifar100(**options), path)
    return write_cifar10_archive(make_synthetic_cifar10(**options), path)


@contextlib.contextmanager
def _reproducible_tar(path: Path) -> Iterator[tarfile.TarFile]:
    with (
        open(path, "wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w") as tar,
    ):
        yield tar


def _batch(label: str, images: np.ndarray, labels: np.ndarray) -> dict:
    return {
        b"batch_label": label.encode(),
        b"labels": [int(x) for x in labels],
        b"data": np.ascontiguousarray(images, dtype=np.uint8),
        b"filenames": [f"synthetic_{i:05d}.png".encode() for i in range(len(labels))],
    }

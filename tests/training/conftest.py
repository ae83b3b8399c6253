"""Small synthetic CIFAR-shaped data shared by the engine tests."""

from __future__ import annotations

import pytest

from image_recognition.sources.cifar10.archive import CIFAR10Arrays
from image_recognition.sources.cifar10.split import channel_statistics
from image_recognition.sources.cifar10.synthetic import make_synthetic_cifar10


@pytest.fixture(scope="session")
def synthetic() -> CIFAR10Arrays:
    """100 training and 30 validation images per class."""
    return make_synthetic_cifar10(train_per_class=100, test_per_class=30, seed=0)


@pytest.fixture(scope="session")
def stats(synthetic: CIFAR10Arrays) -> tuple[list[float], list[float]]:
    return channel_statistics(synthetic.train_images)


@pytest.fixture()
def data_args(synthetic: CIFAR10Arrays, stats: tuple[list[float], list[float]]) -> dict:
    """Keyword arguments of ``train`` for the data: validation is the synthetic test split."""
    mean, std = stats
    return {
        "train_split": {"images": synthetic.train_images, "labels": synthetic.train_labels},
        "validation_split": {"images": synthetic.test_images, "labels": synthetic.test_labels},
        "normalization": {"mean": mean, "std": std},
    }

"""Small synthetic CIFAR-shaped data shared by the engine tests, and a data-parallel group of one."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch
import torch.distributed as dist

from image_recognition.sources.cifar10.archive import CIFAR10Arrays
from image_recognition.sources.cifar10.split import channel_statistics
from image_recognition.sources.cifar10.synthetic import make_synthetic_cifar10
from image_recognition.training import engine
from image_recognition.training.ddp import ProcessGroup


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


@pytest.fixture(scope="module")
def small(synthetic: CIFAR10Arrays) -> dict:
    """20 training and 10 validation images per class: 5 steps of 40 per epoch."""
    keep = torch.cat([torch.nonzero(torch.as_tensor(synthetic.train_labels) == c)[:20, 0] for c in range(10)])
    images, labels = synthetic.train_images[keep.numpy()], synthetic.train_labels[keep.numpy()]
    mean, std = channel_statistics(images)
    return {
        "train_split": {"images": images, "labels": labels},
        "validation_split": {"images": synthetic.test_images[:100], "labels": synthetic.test_labels[:100]},
        "normalization": {"mean": mean, "std": std},
    }


@pytest.fixture()
def group_of_one(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[int, int], None]]:
    """A real gloo group of this one process, which the engine takes for rank ``rank`` of ``world_size``.

    The engine then shares each batch and wraps the model in DDP as in a
    worker, in this process, where a test can watch it.
    """
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)

    def join(rank: int, world_size: int) -> None:
        monkeypatch.setattr(engine, "current_group", lambda: ProcessGroup(rank, world_size, 0))

    yield join
    dist.destroy_process_group()

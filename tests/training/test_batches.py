"""Batches: checked splits, and a data-parallel rank makes only its rows, as one process would."""

from __future__ import annotations

import pytest
import torch

from image_recognition.training import batches as batching
from image_recognition.training import train
from image_recognition.training.augment.basic import Rows
from image_recognition.training.batches import rows_made, seed_epoch
from tests.training.helpers import EXACT


def test_mismatched_labels_are_refused(data_args: dict) -> None:
    train_split = {**data_args["train_split"], "labels": data_args["train_split"]["labels"][:10]}
    with pytest.raises(ValueError, match="expected 1000 labels"):
        train("simple_cnn", {}, {"epochs": 1}, **{**data_args, "train_split": train_split})


def test_every_rank_draws_the_same_order_and_augmentation_but_its_own_dropout() -> None:
    device = torch.device("cpu")
    with torch.random.fork_rng():
        first, first_host = seed_epoch(0, 3, 0, device)
        first_dropout = torch.rand(4)
        second, second_host = seed_epoch(0, 3, 1, device)
        second_dropout = torch.rand(4)
    assert torch.equal(torch.rand(4, generator=first), torch.rand(4, generator=second))
    assert torch.equal(torch.rand(4, generator=first_host), torch.rand(4, generator=second_host))
    assert not torch.equal(first_dropout, second_dropout)


def test_a_rank_makes_its_share_and_when_mixing_the_mirrored_share() -> None:
    assert rows_made(0, 2, 4, mixes=False) == Rows(8, (slice(0, 4),))
    assert rows_made(0, 2, 4, mixes=True) == Rows(8, (slice(0, 4), slice(4, 8)))
    assert rows_made(1, 3, 4, mixes=True) == Rows(12, (slice(4, 8),))  # the middle rank is its own mirror


@pytest.mark.slow  # starts worker processes or a gloo group
@pytest.mark.parametrize("mixes", [False, True], ids=["share", "share-and-mirror"])
def test_a_rank_makes_only_its_rows_of_each_batch_and_they_equal_one_process(
    small, monkeypatch, group_of_one, mixes: bool
) -> None:
    """Rank 1 of 2: the random numbers of the whole batch, the pixels of its rows only."""
    training = {**EXACT, "epochs": 1, "flip": "random", "cutout": 8, "trivial_augment": 1.0}
    if mixes:
        training.update(mixup_alpha=0.8, cutmix_alpha=1.0)
    batches, augmented = [], []
    make_batch, augment = batching.Batches.make, batching.augment
    monkeypatch.setattr(batching.Batches, "make", lambda *args: batches.append(make_batch(*args)) or batches[-1])
    monkeypatch.setattr(
        batching, "augment", lambda images, **kwargs: augmented.append(len(images)) or augment(images, **kwargs)
    )
    train("simple_cnn", {}, training, **small)
    whole, batches = batches, []
    group_of_one(1, 2)
    train("simple_cnn", {}, training, **small)
    half = EXACT["batch_size"] // 2
    # Its share, and the mirrored share that MixUp and CutMix pair with it: half the batch, then all of it for 2 ranks.
    assert augmented[len(whole) :] == [2 * half if mixes else half] * len(batches)
    assert len(batches) == len(whole)
    for (images, labels, targets), (all_images, all_labels, all_targets) in zip(batches, whole, strict=True):
        torch.testing.assert_close(images, all_images[half:])
        assert torch.equal(labels, all_labels[half:])
        if mixes:
            torch.testing.assert_close(targets, all_targets[half:])

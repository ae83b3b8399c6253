"""Batches and their augmentation: the splits on the device, each epoch's seeded order, every step's batch.

Determinism: every random number of epoch ``e`` (data order, augmentation,
dropout) comes from generators seeded with ``(seed, e)``, and checkpoints are
written at epoch ends, so a run resumed from a checkpoint takes exactly the
steps the uninterrupted run would have taken (bit for bit on the CPU).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from image_recognition.sources.tensors import Normalizer, as_label_tensor, as_uint8_tensor
from image_recognition.training.augment.basic import Rows, alternating_flips, augment, random_flips
from image_recognition.training.augment.strong import EpochAugmentation, draw_epoch_augmentation, mix_batch
from image_recognition.training.config import TrainingConfig
from image_recognition.training.ddp import ProcessGroup
from image_recognition.training.result import Split

# A step's (images, labels, soft targets or None).
Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]


def epoch_seed(seed: int, epoch: int) -> int:
    """Seed of epoch ``epoch``'s generators: a fixed function of (seed, epoch)."""
    return (seed * 1_000_003 + epoch + 1) % (2**63 - 1)


def seed_epoch(seed: int, epoch: int, rank: int, device: torch.device) -> tuple[torch.Generator, torch.Generator]:
    """Seed epoch ``epoch``'s randomness; return its (device, host) generators.

    Dropout and drop-path draw from the global generator; data order and
    augmentation from the device generator; per-batch choices made on the
    host (TrivialAugment's op counts, MixUp's lambda and box) from a CPU
    generator, so that reading them never waits for the device. In a group,
    every rank draws the same data order and augmentation (of the whole global
    batch), but its own dropout masks (``rank``).
    """
    seed = epoch_seed(seed, epoch)
    torch.manual_seed(seed + rank)
    return torch.Generator(device=device).manual_seed(seed), torch.Generator().manual_seed(seed)


def device_splits(
    train_split: Split, validation_split: Split | None, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train images, train labels, validation images, validation labels) on ``device``, checked.

    A missing or empty validation split becomes empty tensors.
    """
    train_x = as_uint8_tensor(train_split["images"], device)
    train_y = as_label_tensor(train_split["labels"], len(train_x), device)
    if validation_split is None or len(validation_split["images"]) == 0:
        val_x, val_y = train_x[:0], train_y[:0]
    else:
        val_x = as_uint8_tensor(validation_split["images"], device)
        val_y = as_label_tensor(validation_split["labels"], len(val_x), device)
    if len(train_x) == 0:
        raise ValueError("no training images")
    return train_x, train_y, val_x, val_y


def flip_coins(count: int, seed: int, device: torch.device) -> torch.Tensor:
    """One seeded coin per training image, the same for every epoch of the run (and of a resumed run).

    Drawn on the CPU, so that every device agrees.
    """
    return (torch.rand(count, generator=torch.Generator().manual_seed(seed)) < 0.5).to(device)


def rows_made(rank: int, world_size: int, shard_size: int, mixes: bool) -> Rows:
    """The rows of each global batch that rank ``rank`` makes: its share, then the share that mixes with it.

    MixUp and CutMix pair image i with image N - 1 - i (:func:`mix_batch`),
    which for a share is the mirrored share of rank ``world_size - 1 - rank``.
    Rather than gather those images from that rank, this one makes them too:
    mixing its share then its mirror pairs every image as in the whole
    batch, and no step waits on a collective.
    """
    share = slice(rank * shard_size, (rank + 1) * shard_size)
    mirror = world_size - 1 - rank
    if not mixes or mirror == rank:
        return Rows(world_size * shard_size, (share,))
    return Rows(world_size * shard_size, (share, slice(mirror * shard_size, (mirror + 1) * shard_size)))


class Batches:
    """The uint8 splits, moved to the device once, and how each step's batch is made from them.

    Every step has the same shape: the ragged last batch is dropped (no
    recompiles, steady BatchNorm statistics). In a data-parallel group each
    process trains an equal share (``shard_size``) of every global batch.
    """

    def __init__(
        self,
        config: TrainingConfig,
        splits: tuple[Split, Split | None],
        normalize: Normalizer,
        device: torch.device,
        group: ProcessGroup | None,
        channels_last: bool,
        num_classes: int,
    ) -> None:
        self.config, self.normalize, self.device, self.num_classes = config, normalize, device, num_classes
        # Set on each batch after augmentation (whose gathers return NCHW): a
        # channels_last model fed NCHW inputs falls back to slow conversions.
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.train_x, self.train_y, self.val_x, self.val_y = device_splits(*splits, device)
        config.check_image_size(*self.train_x.shape[-2:])
        self.flip_base = flip_coins(len(self.train_x), config.seed, device)
        world = group.world_size if group else 1
        self.batch_size = min(config.batch_size, len(self.train_x))
        self.batch_size -= self.batch_size % world
        if self.batch_size == 0:
            raise ValueError(f"{len(self.train_x)} training images cannot be shared by {world} processes")
        self.shard_size = self.batch_size // world
        # The rows of every global batch whose pixels this process makes (None: all).
        self.rows = rows_made(group.rank, world, self.shard_size, config.mixes) if group else None
        self.steps_per_epoch = len(self.train_x) // self.batch_size

    def make(
        self, index: torch.Tensor, step: int, epoch: int, generator: torch.Generator, drawn: EpochAugmentation
    ) -> Batch:
        """Augmented, normalised images, their labels and (when mixing) soft targets.

        TrivialAugment works on 0..1 pixels, so it runs before normalisation;
        translate, flip and cutout follow on the normalised batch, then MixUp
        or CutMix. Every random number comes from the epoch's device generator
        or was drawn on the host at the epoch's start (``drawn``). In a group,
        every rank draws the random numbers of the whole global batch but makes
        the pixels of its own rows only (``self.rows``): its share comes out as
        in one process, and the run sees what one process would see.
        """
        config, rows = self.config, self.rows
        if rows is not None:
            index = rows.take(index)
        pixels = self.train_x[index]
        if drawn.trivial_augment is not None:
            images = self.normalize.from_unit(drawn.trivial_augment.apply(step, pixels.float() / 255.0))
        else:
            images = self.normalize(pixels)
        images = augment(
            images,
            flips=self._flips(index, epoch, generator),
            translate=config.translate,
            cutout=config.cutout,
            generator=generator,
            rows=rows,
        )
        labels, targets = self.train_y[index], None
        if config.mixes:
            images, targets = mix_batch(
                images,
                labels,
                self.num_classes,
                mixup_alpha=config.mixup_alpha,
                cutmix_alpha=config.cutmix_alpha,
                switch_prob=config.mix_switch_prob,
                generator=drawn.mix_rngs[step],
            )
        if rows is not None:  # the share comes first; a mirrored share made for mixing goes
            images, labels = images[: self.shard_size], labels[: self.shard_size]
            targets = None if targets is None else targets[: self.shard_size]
        return images.contiguous(memory_format=self.memory_format), labels, targets

    def _flips(self, index: torch.Tensor, epoch: int, generator: torch.Generator) -> torch.Tensor | None:
        """Which images of the batch to flip: alternating per image and epoch, random, or none."""
        if self.config.flip == "alternating":
            return alternating_flips(self.flip_base[index], epoch)
        if self.config.flip == "random":
            flips = random_flips(self.batch_size, generator)  # a coin for every image of the global batch
            return flips if self.rows is None else self.rows.take(flips)
        return None


class EpochBatches:
    """One epoch's batches: seeded at its start, its order drawn and its augmentation drawn and uploaded once.

    Iterating makes each step's batch in turn (:meth:`batch`); no step copies
    anything to the device or draws on the host (tests/training/test_host_syncs.py).
    """

    def __init__(self, batches: Batches, epoch: int, rank: int, steps: int | None = None) -> None:
        self.batches, self.epoch = batches, epoch
        # The steps iterated: the whole epoch, or the first ``steps`` of it (a budgeted run's last epoch).
        self.steps = batches.steps_per_epoch if steps is None else steps
        self.generator, host_generator = seed_epoch(batches.config.seed, epoch, rank, batches.device)
        self.order = torch.randperm(len(batches.train_x), generator=self.generator, device=batches.device)
        self.drawn = draw_epoch_augmentation(
            batches.steps_per_epoch,
            batches.batch_size,
            host_generator,
            batches.device,
            trivial_augment=batches.config.trivial_augment,
            mixes=batches.config.mixes,
            rows=batches.rows,
        )

    def __iter__(self) -> Iterator[Batch]:
        return (self.batch(step) for step in range(self.steps))

    def batch(self, step: int) -> Batch:
        """Step ``step``'s batch: its slice of the epoch's order, augmented."""
        size = self.batches.batch_size
        index = self.order[step * size : (step + 1) * size]
        return self.batches.make(index, step, self.epoch, self.generator, self.drawn)

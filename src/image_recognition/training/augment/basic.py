"""Batched augmentation of uint8 image tensors on the device.

Every augmentation here is a handful of tensor ops over a whole batch, with
random numbers from an explicit generator: no per-image Python, no worker
processes, and the same seed gives the same batches.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Rows:
    """Some rows of a batch of ``size`` images: those one data-parallel process makes.

    The random numbers are drawn for all ``size`` images, in the batch's
    order, and only these rows' are used, so the rows come out exactly as the
    same rows of the whole batch augmented in one process.
    """

    size: int
    slices: tuple[slice, ...]

    def take(self, values: torch.Tensor, dim: int = 0) -> torch.Tensor:
        """The entries of these rows along ``dim`` (of length ``size``), slice after slice."""
        parts = [values.narrow(dim, part.start, part.stop - part.start) for part in self.slices]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim)


def _two_per_image(draw: Callable[[tuple[int, int]], torch.Tensor], count: int, rows: Rows | None) -> torch.Tensor:
    """``draw((2, n))`` for ``count`` images, or for the whole batch of ``rows`` and then kept for them."""
    return draw((2, count)) if rows is None else rows.take(draw((2, rows.size)), dim=1)


def random_translate(
    images: torch.Tensor, max_shift: int, generator: torch.Generator, rows: Rows | None = None
) -> torch.Tensor:
    """Shift each image by up to ``max_shift`` pixels in x and y (reflect padding).

    One gather for the whole batch: each image's crop window of the padded
    batch is addressed with per-image row and column offsets. With ``rows``,
    ``images`` are those rows of a larger batch (:class:`Rows`).
    """
    if max_shift == 0:
        return images
    n, c, h, w = images.shape
    padded = F.pad(images, (max_shift,) * 4, mode="reflect")  # (N, C, H + 2s, W + 2s)
    draw = functools.partial(torch.randint, 0, 2 * max_shift + 1, generator=generator, device=generator.device)
    shifts = _two_per_image(draw, n, rows).to(images.device)
    rows = (shifts[0].view(n, 1) + torch.arange(h, device=images.device)).view(n, 1, h, 1)
    cols = (shifts[1].view(n, 1) + torch.arange(w, device=images.device)).view(n, 1, 1, w)
    batch = torch.arange(n, device=images.device).view(n, 1, 1, 1)
    channel = torch.arange(c, device=images.device).view(1, c, 1, 1)
    return padded[batch, channel, rows, cols]  # (N, C, H, W)


def random_flips(count: int, generator: torch.Generator) -> torch.Tensor:
    """A fresh coin per image: True where the image is to be mirrored."""
    return torch.rand(count, generator=generator, device=generator.device) < 0.5  # noqa: PLR2004


def alternating_flips(base: torch.Tensor, epoch: int) -> torch.Tensor:
    """airbench's alternating flip: ``base`` (one seeded coin per image) in even
    epochs, its opposite in odd ones, so each image is seen both ways in any
    two consecutive epochs (more diverse than fresh coins, which repeat a side
    half the time)."""
    return base ^ bool(epoch % 2)


def flip_where(images: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """Mirror left-right the images whose entry in the boolean ``flips`` is True."""
    return torch.where(flips.to(images.device).view(-1, 1, 1, 1), images.flip(3), images)


def random_cutout(
    images: torch.Tensor, size: int, generator: torch.Generator, rows: Rows | None = None
) -> torch.Tensor:
    """Zero a ``size`` x ``size`` square at a random place in each image.

    Zero is the channel mean after normalisation. The centre may sit near the
    border, so part of the square can fall outside (as in DeVries & Taylor).
    With ``rows``, ``images`` are those rows of a larger batch (:class:`Rows`).
    """
    if size == 0:
        return images
    n, _, h, w = images.shape
    draw = functools.partial(torch.rand, generator=generator, device=generator.device)
    centres = _two_per_image(draw, n, rows).to(images.device)
    top = (centres[0] * h).long() - size // 2
    left = (centres[1] * w).long() - size // 2
    rows = torch.arange(h, device=images.device).view(1, h)
    cols = torch.arange(w, device=images.device).view(1, w)
    in_rows = (rows >= top.view(n, 1)) & (rows < top.view(n, 1) + size)  # (N, H)
    in_cols = (cols >= left.view(n, 1)) & (cols < left.view(n, 1) + size)  # (N, W)
    hole = in_rows.view(n, 1, h, 1) & in_cols.view(n, 1, 1, w)  # (N, 1, H, W)
    return images.masked_fill(hole, 0.0)


def augment(
    images: torch.Tensor,
    *,
    flips: torch.Tensor | None,
    translate: int,
    cutout: int,
    generator: torch.Generator,
    rows: Rows | None = None,
) -> torch.Tensor:
    """Translate, mirror where ``flips`` (None: nowhere) and cut out a normalised float batch.

    With ``rows``, ``images`` and ``flips`` are those rows of a larger batch,
    augmented as in the whole batch (:class:`Rows`).
    """
    images = random_translate(images, translate, generator, rows)
    if flips is not None:
        images = flip_where(images, flips)
    return random_cutout(images, cutout, generator, rows)

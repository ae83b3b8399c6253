"""Batched augmentation of uint8 image tensors on the device.

Every augmentation here is a handful of tensor ops over a whole batch, with
random numbers from an explicit generator: no per-image Python, no worker
processes, and the same seed gives the same batches.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_translate(images: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Shift each image by up to ``max_shift`` pixels in x and y (reflect padding).

    One gather for the whole batch: each image's crop window of the padded
    batch is addressed with per-image row and column offsets.
    """
    if max_shift == 0:
        return images
    n, c, h, w = images.shape
    padded = F.pad(images, (max_shift,) * 4, mode="reflect")  # (N, C, H + 2s, W + 2s)
    shifts = torch.randint(0, 2 * max_shift + 1, (2, n), generator=generator, device=generator.device).to(images.device)
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


def random_cutout(images: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Zero a ``size`` x ``size`` square at a random place in each image.

    Zero is the channel mean after normalisation. The centre may sit near the
    border, so part of the square can fall outside (as in DeVries & Taylor).
    """
    if size == 0:
        return images
    n, _, h, w = images.shape
    centres = torch.rand((2, n), generator=generator, device=generator.device).to(images.device)
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
) -> torch.Tensor:
    """Translate, mirror where ``flips`` (None: nowhere) and cut out a normalised float batch."""
    images = random_translate(images, translate, generator)
    if flips is not None:
        images = flip_where(images, flips)
    return random_cutout(images, cutout, generator)

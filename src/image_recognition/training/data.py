"""Data on the device: uint8 images, batched augmentation, normalisation.

Every augmentation here is a handful of tensor ops over a whole batch, with
random numbers from an explicit generator: no per-image Python, no worker
processes, and the same seed gives the same batches.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

# Images are uint8 (N, 3, H, W); the normalisation statistics are on the 0..1 scale.
_UINT8_MAX = 255.0


def as_uint8_tensor(images: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 (N, C, H, W) on ``device``; refuses other dtypes or shapes."""
    tensor = torch.as_tensor(images)
    if tensor.dtype != torch.uint8 or tensor.ndim != 4:  # noqa: PLR2004 (N, C, H, W)
        raise ValueError(f"expected uint8 images of shape (N, C, H, W), got {tensor.dtype} {tuple(tensor.shape)}")
    return tensor.to(device)


def as_label_tensor(labels: np.ndarray | torch.Tensor, count: int, device: torch.device) -> torch.Tensor:
    """int64 labels (N,) on ``device``, checked against the image count."""
    tensor = torch.as_tensor(labels).long()
    if tensor.shape != (count,):
        raise ValueError(f"expected {count} labels, got shape {tuple(tensor.shape)}")
    return tensor.to(device)


class Normalizer:
    """uint8 -> float ``(x / 255 - mean) / std`` per channel, in one fused op."""

    def __init__(self, mean: list[float], std: list[float], device: torch.device) -> None:
        values = [float(v) for v in (*mean, *std)]
        if len(mean) != len(std) or not all(math.isfinite(v) for v in values) or min(std) <= 0:
            raise ValueError(
                f"normalisation mean {list(mean)} and std {list(std)} must be finite, "
                "of equal length, with std > 0; recompute them from the training images"
            )
        std_tensor = torch.tensor(std, dtype=torch.float32, device=device)
        self.scale = (1.0 / (_UINT8_MAX * std_tensor)).view(1, -1, 1, 1)
        self.shift = (-torch.tensor(mean, dtype=torch.float32, device=device) / std_tensor).view(1, -1, 1, 1)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.shift, images.float(), self.scale)

    def from_unit(self, images: torch.Tensor) -> torch.Tensor:
        """The same normalisation for float images already on the 0..1 scale."""
        return torch.addcmul(self.shift, images, self.scale * _UINT8_MAX)


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

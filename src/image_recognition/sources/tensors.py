"""Images and labels as device tensors, and their normalisation: shared by training and inference."""

from __future__ import annotations

import math

import numpy as np
import torch

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

"""Rebuild a trained model from a checkpoint and compute logits, with optional TTA."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from image_recognition.common.device import autocast, configure_backends, resolve_device
from image_recognition.common.progress import JobProgress
from image_recognition.models import build_model
from image_recognition.sources.tensors import Normalizer, as_uint8_tensor

# Test-time augmentation modes and the forward passes each prediction averages,
# as tta_logits computes them: the image; it and its mirror; and for
# flip_translate those two again at two 1-pixel shifts.
TTA_VIEWS = {"none": 1, "flip": 2, "flip_translate": 6}
TTA_MODES = tuple(TTA_VIEWS)


def load_model(
    checkpoint: dict[str, Any], device: str | torch.device | None = None, channels_last: bool = False
) -> nn.Module:
    """The checkpoint's model in eval mode, with its EMA weights when it has them, uncompiled.

    ``channels_last`` stores it in that memory format, for inputs in that format.
    """
    model = build_model(checkpoint["model_name"], checkpoint["model_config"])
    state = checkpoint.get("ema_state") or checkpoint["model_state"]
    model.load_state_dict(state)
    model = model.to(resolve_device(device)).eval()
    return model.to(memory_format=torch.channels_last) if channels_last else model


def tta_mode(tta: bool | str | None) -> str:
    """The mode a TTA setting names: True is ``flip_translate``, False and None are ``none``."""
    if tta is True:
        return "flip_translate"
    if tta is False or tta is None:
        return "none"
    if tta not in TTA_MODES:
        raise ValueError(f"tta must be a bool or one of {', '.join(TTA_MODES)}, got {tta!r}")
    return tta


def tta_logits(model: nn.Module, images: torch.Tensor, tta: bool | str | None) -> torch.Tensor:
    """Logits of a normalised batch, averaged over flips and 1-pixel shifts.

    ``flip``: mean of the image and its mirror. ``flip_translate``: half of
    that, plus half the flip-mean over the batch shifted one pixel up-left and
    one pixel down-right (reflect padding), as in the CIFAR speed records.
    """
    mode = tta_mode(tta)
    if mode == "none":
        return model(images).float()

    def flip_mean(batch: torch.Tensor) -> torch.Tensor:
        return 0.5 * (model(batch).float() + model(batch.flip(3)).float())

    logits = flip_mean(images)
    if mode == "flip":
        return logits
    h, w = images.shape[-2:]
    padded = F.pad(images, (1, 1, 1, 1), mode="reflect")  # (B, C, H + 2, W + 2)
    shifted = [padded[..., :h, :w], padded[..., 2 : h + 2, 2 : w + 2]]
    translated = torch.stack([flip_mean(batch) for batch in shifted]).mean(0)
    return 0.5 * logits + 0.5 * translated


@torch.no_grad()
def predict_logits(  # noqa: PLR0913 (the evaluation API names every input)
    model: nn.Module,
    images: np.ndarray | torch.Tensor,
    mean: list[float],
    std: list[float],
    batch_size: int = 1024,
    tta: bool | str = False,
    device: str | torch.device | None = None,
    autocast_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    progress: str | None = None,
    tf32: bool = True,
) -> torch.Tensor:
    """Float32 logits (N, classes) on the CPU for uint8 images (N, C, H, W).

    ``device`` defaults to the model's. The model is put in eval mode. With
    ``progress`` (a name), a bar or periodic log lines show the batches done.
    The passes run under training's backend settings (:func:`configure_backends`:
    cuDNN autotuning, and TF32 unless ``tf32`` is False), restored afterwards.
    """
    if device is None:
        device = next(model.parameters()).device
    device = resolve_device(device)
    model = model.to(device).eval()
    pixels = as_uint8_tensor(images, device)
    normalize = Normalizer(mean, std, device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    outputs = []
    batches = range(0, len(pixels), batch_size)
    shown = JobProgress(progress, len(batches), batch_size) if progress else None
    if shown:
        shown.start_part(f"{len(pixels):,} images", len(batches))
    with configure_backends(device, tf32), autocast(device, autocast_dtype):
        for start in batches:
            batch = normalize(pixels[start : start + batch_size]).contiguous(memory_format=memory_format)
            outputs.append(tta_logits(model, batch, tta).float().cpu())
            if shown:
                shown.step()
    if shown:
        shown.end_part()
    if not outputs:
        return torch.empty(0, 0)
    return torch.cat(outputs)

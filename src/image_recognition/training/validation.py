"""Validation during training: the EMA's weights swapped in (or the live ones), the uncompiled module, rank 0 only."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from image_recognition.common.device import autocast
from image_recognition.models.inference import tta_logits
from image_recognition.training.state import TrainingRun


@torch.no_grad()
def evaluate(run: TrainingRun, tta: str, ema: bool = True) -> tuple[float, float]:
    """(loss, accuracy) on the validation split with the EMA weights if any (and ``ema``), else the live ones.

    Runs the uncompiled module: eval mode, the short last batch and the TTA
    views would each make torch.compile trace and compile again. In a
    group, rank 0 validates and the others return NaN.
    """
    batches, model, device = run.batches, run.model, run.device
    if len(batches.val_x) == 0 or not run.is_main:
        return math.nan, math.nan
    live = _swap_in_ema(run) if ema else None
    model.eval()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    size = run.config.eval_batch_size
    with autocast(device, run.amp_dtype):
        for start in range(0, len(batches.val_x), size):
            images = batches.normalize(batches.val_x[start : start + size])
            logits = tta_logits(model, images.contiguous(memory_format=batches.memory_format), tta)
            labels = batches.val_y[start : start + size]
            loss_sum += F.cross_entropy(logits.float(), labels, reduction="sum")
            correct += (logits.argmax(1) == labels).sum()
    if live is not None:
        model.load_state_dict(live)
    return loss_sum.item() / len(batches.val_x), correct.item() / len(batches.val_x)


def validation_columns(run: TrainingRun) -> dict[str, float]:
    """The epoch's validation columns: the EMA's (or live) weights, and the live ones beside an EMA that differs."""
    columns = dict(zip(("val_loss", "val_accuracy"), evaluate(run, "none"), strict=True))
    if run.averages_apart:  # what the EMA adds: the live weights' accuracy beside the average's
        columns.update(zip(("live_val_loss", "live_val_accuracy"), evaluate(run, "none", ema=False), strict=True))
    return columns


def _swap_in_ema(run: TrainingRun) -> dict[str, torch.Tensor] | None:
    """Load the EMA into the model; return the live state to put back (or None)."""
    if run.ema is None or run.config.lookahead:
        return None  # with lookahead the live weights were just set from the EMA
    live = {k: v.clone() for k, v in run.model.state_dict().items()}
    run.model.load_state_dict(run.ema.state_dict())
    return live

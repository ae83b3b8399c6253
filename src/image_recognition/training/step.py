"""One optimisation step: the forward pass, the loss, the backward pass, the optimiser, the schedule and the EMA."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from image_recognition.common.device import autocast
from image_recognition.training.augment.strong import soft_target_cross_entropy
from image_recognition.training.optim import ema_decay_at
from image_recognition.training.state import TrainingRun


def train_step(
    run: TrainingRun, images: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Take one step on a batch; return its (objective, loss, float logits), still on the device.

    It reads nothing on the host and copies nothing to the device
    (tests/training/test_host_syncs.py).
    """
    config, model, optimizer = run.config, run.model, run.optimizer
    with autocast(run.device, run.amp_dtype):
        logits = run.train_model(images)
    logits = logits.float()
    objective, loss = losses(logits, labels, targets, config.label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    objective.backward()
    if config.grad_clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    optimizer.step()
    run.scheduler.step()
    run.global_step += 1
    if run.ema is not None and run.global_step % config.ema_every == 0:
        decay = ema_decay_at(run.global_step, run.plan.total_steps, config)
        run.ema.update(model, decay, lookahead=config.lookahead)
    return objective, loss, logits


def losses(
    logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor | None, smoothing: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(objective, loss) of a step's float logits: what is minimised, and what the history logs.

    The objective has the label smoothing and, when mixing, the soft targets.
    The loss is the plain cross-entropy, without smoothing and detached: the
    history's train_loss, the same measure as val_loss.
    """
    if targets is None:
        objective = F.cross_entropy(logits, labels, label_smoothing=smoothing)
        loss = F.cross_entropy(logits.detach(), labels) if smoothing else objective.detach()
    else:
        objective = soft_target_cross_entropy(logits, targets, smoothing)
        loss = soft_target_cross_entropy(logits.detach(), targets) if smoothing else objective.detach()
    return objective, loss

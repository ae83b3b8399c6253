"""Optimiser, learning-rate schedule and weight averaging from a TrainingConfig."""

from __future__ import annotations

import math

import torch
from torch import nn

from image_recognition.training.config import TrainingConfig


def parameter_groups(model: nn.Module, config: TrainingConfig) -> list[dict]:
    """Split trainable parameters into weights (decayed) and 1-D/embedding params.

    Decaying biases and norm shifts mostly just fights the loss, so they are
    spared unless ``decay_biases``; a model may name more in ``no_weight_decay()``.
    """
    skip = model.no_weight_decay() if hasattr(model, "no_weight_decay") else set()
    weights, others = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (weights if param.ndim >= 2 and name not in skip else others).append(param)  # noqa: PLR2004
    scale = config.bias_lr_scale
    other_decay = config.weight_decay / scale if config.decay_biases else 0.0
    groups = [{"params": weights, "weight_decay": config.weight_decay, "lr_scale": 1.0}]
    if others:
        groups.append({"params": others, "weight_decay": other_decay, "lr_scale": scale})
    for group in groups:
        group["lr"] = config.lr * group["lr_scale"]
    return groups


def build_optimizer(model: nn.Module, config: TrainingConfig, fused: bool) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov) or AdamW over :func:`parameter_groups`."""
    groups = parameter_groups(model, config)
    # fused=True is one kernel per step; foreach (the default when not fused)
    # batches the per-tensor loops. fused=None lets PyTorch pick.
    kernel = {"fused": True} if fused else {}
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            groups,
            lr=config.lr,
            momentum=config.momentum,
            nesterov=config.nesterov and config.momentum > 0,
            **kernel,
        )
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, **kernel)


def lr_factor(step: int, total_steps: int, config: TrainingConfig) -> float:
    """Multiplier of the peak lr at ``step``: linear warmup, then the chosen decay."""
    warmup = int(config.warmup_fraction * total_steps)
    start, end = config.lr_start_factor, config.lr_end_factor
    if step < warmup:
        return start + (1.0 - start) * step / warmup
    if config.lr_schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    if config.lr_schedule == "linear":
        return 1.0 + (end - 1.0) * progress
    return end + (1.0 - end) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer, total_steps: int, config: TrainingConfig
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step LambdaLR over :func:`lr_factor`; its state is just the step count."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, total_steps, config))


class WeightEMA:
    """Exponential moving average of a model's floating-point state.

    Buffers (BatchNorm running statistics) are averaged too, so the EMA model
    is usable as is; integer buffers (batch counters) are copied.
    """

    def __init__(self, model: nn.Module) -> None:
        self.state = {key: value.detach().clone() for key, value in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module, decay: float, lookahead: bool = False) -> None:
        """ema = decay * ema + (1 - decay) * live; with lookahead, live = ema after."""
        for key, live in model.state_dict().items():
            average = self.state[key]
            if average.is_floating_point():
                average.lerp_(live, 1.0 - decay)
                if lookahead:
                    live.copy_(average)
            else:
                average.copy_(live)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for key, value in state.items():
            self.state[key].copy_(value)


def ema_decay_at(step: int, total_steps: int, config: TrainingConfig) -> float:
    """EMA decay at ``step``; with ``ema_ramp`` it grows as (progress)**3."""
    if not config.ema_ramp:
        return config.ema_decay
    return config.ema_decay * (step / total_steps) ** 3

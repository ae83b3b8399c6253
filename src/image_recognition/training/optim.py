"""Optimiser, learning-rate schedule and weight averaging from a TrainingConfig."""

from __future__ import annotations

import math

import torch
from torch import nn

from image_recognition.training.config import TrainingConfig


def parameter_groups(model: nn.Module, config: TrainingConfig) -> list[dict]:
    """Group trainable parameters by role: what decays, and what learns faster.

    - Weight matrices and kernels (ndim >= 2, not in the model's
      ``no_weight_decay()``) decay; 1-D parameters (biases, norm shifts) and
      embeddings decay only with ``decay_biases`` (the speed records do;
      transformer recipes do not).
    - BatchNorm parameters, and only they, train at ``bias_lr_scale`` times
      the lr (airbench's "bias scaler"), with their decay divided by the same
      factor so that only their step size grows. Other biases (the whitening
      stem's, a linear head's) train at the base rate.

    Empty groups are left out. Each group's ``lr_scale`` is kept for the schedule.
    """
    skip = model.no_weight_decay() if hasattr(model, "no_weight_decay") else set()
    batchnorm = {
        id(param)
        for module in model.modules()
        if isinstance(module, nn.modules.batchnorm._BatchNorm)
        for param in module.parameters(recurse=False)
    }
    scale = config.bias_lr_scale
    buckets: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        decays = config.decay_biases or (param.ndim >= 2 and name not in skip)  # noqa: PLR2004
        buckets.setdefault((decays, id(param) in batchnorm), []).append(param)
    groups = []
    for (decays, scaled), params in sorted(buckets.items()):
        lr_scale = scale if scaled else 1.0
        weight_decay = config.weight_decay / lr_scale if decays else 0.0
        groups.append(
            {"params": params, "weight_decay": weight_decay, "lr_scale": lr_scale, "lr": config.lr * lr_scale}
        )
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
    is usable as is; integer buffers (batch counters) are copied. Each update
    is one multi-tensor kernel per step (``torch._foreach_*``), not one launch
    per tensor.
    """

    def __init__(self, model: nn.Module) -> None:
        self.state = {key: value.detach().clone() for key, value in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module, decay: float, lookahead: bool = False) -> None:
        """ema = decay * ema + (1 - decay) * live; with lookahead, live = ema after."""
        live_floats, ema_floats = [], []
        for key, live in model.state_dict().items():
            average = self.state[key]
            if average.is_floating_point():
                live_floats.append(live)
                ema_floats.append(average)
            else:
                average.copy_(live)
        torch._foreach_lerp_(ema_floats, live_floats, 1.0 - decay)
        if lookahead:
            torch._foreach_copy_(live_floats, ema_floats)

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

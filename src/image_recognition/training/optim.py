"""Optimiser, learning-rate schedule and weight averaging from a TrainingConfig."""

from __future__ import annotations

import math

import torch
from torch import nn

from image_recognition.training.config import TrainingConfig

# The ``role`` of the parameter group that holds a model's whitening bias
# (``whitening_bias_parameters()``): it trains for ``whiten_bias_epochs`` only.
WHITENING_BIAS = "whitening_bias"


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
    - The whitening stem's bias, in models that have one, is a group of its
      own (``role`` :data:`WHITENING_BIAS`), so that :meth:`StepSchedule.freeze`
      can stop it alone.

    Empty groups are left out. Each group's ``lr_scale`` is kept for the schedule.
    """
    skip = model.no_weight_decay() if hasattr(model, "no_weight_decay") else set()
    batchnorm = {
        id(param)
        for module in model.modules()
        if isinstance(module, nn.modules.batchnorm._BatchNorm)
        for param in module.parameters(recurse=False)
    }
    whitening_bias = (
        {id(param) for param in model.whitening_bias_parameters()}
        if hasattr(model, "whitening_bias_parameters")
        else set()
    )
    scale = config.bias_lr_scale
    buckets: dict[tuple[bool, bool, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        decays = config.decay_biases or (param.ndim >= 2 and name not in skip)  # noqa: PLR2004
        # The whitening bias's group sorts last: group 0, whose lr the history logs, keeps the schedule's.
        buckets.setdefault((id(param) in whitening_bias, decays, id(param) in batchnorm), []).append(param)
    groups = []
    for (whitening, decays, scaled), params in sorted(buckets.items()):
        lr_scale = scale if scaled else 1.0
        weight_decay = config.weight_decay / lr_scale if decays else 0.0
        group = {"params": params, "weight_decay": weight_decay, "lr_scale": lr_scale, "lr": config.lr * lr_scale}
        if whitening:
            group.update(role=WHITENING_BIAS, frozen=False, trained_weight_decay=weight_decay)
        groups.append(group)
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


class StepSchedule(torch.optim.lr_scheduler.LambdaLR):
    """Per-step LambdaLR over :func:`lr_factor` that keeps frozen parameter groups at lr 0.

    A frozen group (:meth:`freeze`) has lr and weight decay 0, so its
    parameters keep their values, not even decayed, while they still get
    gradients. Turning their ``requires_grad`` off instead would make
    torch.compile trace a second graph and DDP build a second reducer mid-run.
    The ``frozen`` flag lives in the group, so it is saved with the optimizer.
    """

    def get_lr(self) -> list[float | torch.Tensor]:
        scheduled = super().get_lr()
        groups = self.optimizer.param_groups
        return [0.0 if group.get("frozen") else lr for group, lr in zip(groups, scheduled, strict=True)]

    def freeze(self, role: str, frozen: bool) -> None:
        """Freeze (or thaw) the parameter groups of ``role``, from the next optimiser step on."""
        groups = zip(self.optimizer.param_groups, self.base_lrs, self.lr_lambdas, strict=True)
        for group, base_lr, factor in groups:
            if group.get("role") != role or group["frozen"] == frozen:
                continue
            group["frozen"] = frozen
            group["lr"] = 0.0 if frozen else base_lr * factor(self.last_epoch)
            group["weight_decay"] = 0.0 if frozen else group["trained_weight_decay"]


def build_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, config: TrainingConfig) -> StepSchedule:
    """Per-step :class:`StepSchedule` over :func:`lr_factor`; its state is just the step count."""
    return StepSchedule(optimizer, lambda step: lr_factor(step, total_steps, config))


class WeightEMA:
    """Exponential moving average of a model's floating-point state.

    Buffers (BatchNorm running statistics) are averaged too, so the EMA model
    is usable as is; integer buffers (batch counters) are copied. Each update
    is one multi-tensor kernel per step (``torch._foreach_*``), not one launch
    per tensor, over lists of the model's tensors built once: the weights are
    updated in place, so the lists stay valid, and ``state_dict()`` is not
    rebuilt (a walk over every module in Python) at every step.
    """

    def __init__(self, model: nn.Module) -> None:
        self.state = {key: value.detach().clone() for key, value in model.state_dict().items()}
        self._model: nn.Module | None = None
        # (live floats, EMA floats, live integers, EMA integers) of self._model.
        self._lists: tuple[list[torch.Tensor], ...] = ([], [], [], [])

    def _tensor_lists(self, model: nn.Module) -> tuple[list[torch.Tensor], ...]:
        """The model's state tensors and their averages, paired; built on the first update of each model."""
        if model is not self._model:
            lists: tuple[list[torch.Tensor], ...] = ([], [], [], [])
            for key, live in model.state_dict().items():
                average = self.state[key]
                offset = 0 if average.is_floating_point() else 2
                lists[offset].append(live)
                lists[offset + 1].append(average)
            self._model, self._lists = model, lists
        return self._lists

    @torch.no_grad()
    def update(self, model: nn.Module, decay: float, lookahead: bool = False) -> None:
        """ema = decay * ema + (1 - decay) * live; with lookahead, live = ema after."""
        live_floats, ema_floats, live_integers, ema_integers = self._tensor_lists(model)
        if live_integers:
            torch._foreach_copy_(ema_integers, live_integers)
        torch._foreach_lerp_(ema_floats, live_floats, 1.0 - decay)
        if lookahead:
            torch._foreach_copy_(live_floats, ema_floats)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for key, value in state.items():
            self.state[key].copy_(value)


def ema_decay_at(step: int, total_steps: int, config: TrainingConfig) -> float:
    """EMA decay of the update at ``step`` (a multiple of ``ema_every``); 0 at the first update.

    Both ways start from the live weights, so none of the random initial
    weights stays in the average (a plain 0.9998 keeps e**-3.5, 3%, of them
    after the ViT's 17,600 steps):

    - with ``ema_ramp`` (airbench) the decay grows as ``ema_decay * progress**3``:
      the average narrows to the last few updates of the run;
    - without, it is bias-corrected: ``d (1 - d**(n-1)) / (1 - d**n)`` at the
      n-th update, which makes the EMA the d-weighted mean of the updates so far
      and tends to ``ema_decay`` itself (an average over about 1 / (1 - d) updates).
    """
    decay = config.ema_decay
    if config.ema_ramp:
        return decay * (step / total_steps) ** 3
    updates = step // config.ema_every
    if updates <= 1:
        return 0.0
    return decay * (1.0 - decay ** (updates - 1)) / (1.0 - decay**updates)

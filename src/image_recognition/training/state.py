"""One training run's state: what it trains, on what, with what, and how far it has come."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from image_recognition.training.batches import Batches
from image_recognition.training.budget import Plan
from image_recognition.training.config import TrainingConfig
from image_recognition.training.ddp import ProcessGroup
from image_recognition.training.optim import StepSchedule, WeightEMA, build_scheduler


@dataclass
class TrainingRun:
    """Everything a run holds, built once before its first step (:func:`image_recognition.training.engine.setup`).

    ``model`` is the plain module (validated, saved); ``train_model`` the one
    the steps call: ``model`` in DDP within a group, compiled if asked.
    ``compiled`` turns False when compiling fails and the run falls back to
    the eager module. ``stopped_early`` is set when a budgeted run stops
    before its planned steps because the machine became slower than measured. ``history``, ``start_epoch`` and ``global_step`` are the
    progress so far: none, or where a resumed checkpoint left off.
    """

    model_name: str
    model_config: dict[str, Any]
    config: TrainingConfig
    device: torch.device
    group: ProcessGroup | None  # this worker's place in a data-parallel group (None: one process)
    checkpoint_path: Path | None
    normalization: dict[str, list[float]]
    amp_dtype: torch.dtype | None
    channels_last: bool
    batches: Batches
    model: nn.Module
    train_model: nn.Module
    compiled: bool
    optimizer: torch.optim.Optimizer
    scheduler: StepSchedule
    ema: WeightEMA | None
    # How many steps, and when the whitening bias freezes (training/budget.py). A
    # budgeted run holds a provisional one-epoch plan until its probe has run.
    plan: Plan
    history: list[dict[str, Any]] = field(default_factory=list)
    start_epoch: int = 0
    global_step: int = 0
    stopped_early: bool = False

    @property
    def is_main(self) -> bool:
        """Whether this process validates, writes checkpoints and logs: the only one, or rank 0."""
        return self.group is None or self.group.is_main

    @property
    def rank(self) -> int:
        return self.group.rank if self.group else 0

    @property
    def steps_per_epoch(self) -> int:
        return self.batches.steps_per_epoch

    @property
    def total_steps(self) -> int:
        return self.plan.total_steps

    def adopt(self, plan: Plan) -> None:
        """Follow ``plan`` from the first step: the schedule is rebuilt for its steps (the EMA reads them too)."""
        self.plan = plan
        self.scheduler = build_scheduler(self.optimizer, plan.total_steps, self.config)

    @property
    def writes_checkpoints(self) -> bool:
        return self.checkpoint_path is not None and self.is_main

    @property
    def averages_apart(self) -> bool:
        """Whether the EMA differs from the live weights (an EMA without lookahead), so both are validated."""
        return self.ema is not None and not self.config.lookahead

"""How long a run trains: a number of epochs, or as many steps as fit a time budget on this machine.

A run given ``training.epochs`` trains that many epochs. A run given
``training.budget_s`` first measures its own steady-state speed on this
machine (:mod:`.probe`): the seconds of a training step, of a validation pass,
of drawing an epoch's batches and of writing a checkpoint. :func:`plan_budget`
then fixes the number of steps that fits what is left of the budget, counting
the per-epoch validation and checkpoints and the final validation with its
test-time augmentation. The learning-rate schedule, the EMA and the whitening
freeze are built for exactly that many steps; the last epoch may be partial.

The plan is recorded in the checkpoint and the metrics, and a resumed run
follows it without measuring again. While the run trains, its clock is
watched: if the machine becomes slower than measured, the run stops early
rather than overrun (:class:`Deadline`), and says so.

Every clock read goes through :func:`clock`, which tests replace.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

from image_recognition.common.params import parameter_error
from image_recognition.models.inference import TTA_VIEWS
from image_recognition.training.config import TrainingConfig

# Share of the budget the plan leaves unused, for the variation of step times
# around the probe's mean; the deadline check catches the rest.
PLAN_MARGIN = 0.02


def clock() -> float:
    """Seconds on a monotonic clock: every time a budgeted run reads (tests replace it)."""
    return time.perf_counter()


@dataclass(frozen=True)
class Probe:
    """What the probe measured on this machine, with this recipe (all in seconds)."""

    step_s: float  # one training step, steady state
    steps: int  # timed steps the mean is over
    validation_s: float  # one validation pass without TTA (0 without validation images)
    epoch_setup_s: float  # drawing one epoch's order and augmentation
    checkpoint_s: float  # serialising one checkpoint
    seconds: float  # the whole probe, warm-up included
    batch_size: int

    @property
    def images_per_s(self) -> float:
        return self.batch_size / self.step_s


@dataclass(frozen=True)
class Plan:
    """How many steps the run takes, and when its whitening bias freezes; with the budget that fixed them, if any."""

    total_steps: int
    steps_per_epoch: int
    whiten_bias_steps: int
    budget_s: float | None = None
    spent_s: float = 0.0  # seconds gone before the first step: setup, compile warm-up, probe
    close_s: float = 0.0  # the planned cost of the end: final validation with TTA and the final checkpoint
    probe: Probe | None = None

    @property
    def epochs(self) -> float:
        """The planned epochs, fractional when the last one is partial."""
        return self.total_steps / self.steps_per_epoch

    @property
    def epoch_count(self) -> int:
        """Epochs begun: the last may stop part-way."""
        return math.ceil(self.total_steps / self.steps_per_epoch)

    def steps_in_epoch(self, epoch: int) -> int:
        """Steps the plan takes in ``epoch`` (0-based): all of them, or what is left in the last."""
        return min(self.steps_per_epoch, self.total_steps - epoch * self.steps_per_epoch)

    def to_dict(self) -> dict[str, Any]:
        """The plan as plain values: for the checkpoint, the metrics and the log."""
        values = asdict(self)
        values.update(epochs=self.epochs)
        if self.probe is not None:
            values["probe"]["images_per_s"] = self.probe.images_per_s
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Plan:
        fields = {key: value for key, value in values.items() if key in cls.__dataclass_fields__}
        probe = fields.get("probe")
        if probe is not None:
            fields["probe"] = Probe(**{key: probe[key] for key in Probe.__dataclass_fields__})
        return cls(**fields)


class Deadline:
    """Watches a budgeted run's clock: whether one more step would leave too little of the budget for the end.

    The next step is taken to cost what the probe measured, or what the
    latest step took if that was longer (the machine has slowed down). The
    end is the epoch's validation, the final validation with its TTA and the
    final checkpoint, at the probe's costs. Without a budget it never stops a run.
    """

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.step_s = plan.probe.step_s if plan.probe else 0.0
        self.last: float | None = None  # the elapsed time at the previous check in this epoch

    def reached(self, elapsed_s: float, first_in_epoch: bool) -> bool:
        """Whether to stop before the next step, at ``elapsed_s`` seconds into the run."""
        plan = self.plan
        if plan.budget_s is None or plan.probe is None:
            return False
        if not first_in_epoch and self.last is not None:  # a step's time, without the epoch's validation
            self.step_s = max(plan.probe.step_s, elapsed_s - self.last)
        self.last = elapsed_s
        ending = plan.close_s + plan.probe.validation_s
        return elapsed_s + self.step_s + ending > plan.budget_s


def plan_epochs(config: TrainingConfig, steps_per_epoch: int) -> Plan:
    """The plan of a run given ``epochs``: every step of every epoch, the bias frozen after whole epochs."""
    if config.epochs is None:
        raise ValueError("plan_epochs needs training.epochs; a budgeted run is planned by plan_budget")
    return Plan(
        total_steps=steps_per_epoch * config.epochs,
        steps_per_epoch=steps_per_epoch,
        whiten_bias_steps=steps_per_epoch * config.whiten_bias_epochs,
    )


def plan_budget(
    config: TrainingConfig, steps_per_epoch: int, probe: Probe, spent_s: float, section: str = "training"
) -> Plan:
    """The most steps that fit in ``budget_s`` after ``spent_s`` seconds, at the probe's measured costs.

    Each epoch begun costs its batches' drawing and a validation pass; each
    epoch but the last a checkpoint when ``checkpoint_every`` asks for one;
    the end a validation with the final TTA and the final checkpoint.
    PLAN_MARGIN of the budget is left for the variation of step times.
    """
    budget = float(config.budget_s)
    close_s = probe.validation_s * TTA_VIEWS[config.tta] + probe.checkpoint_s
    available = budget * (1.0 - PLAN_MARGIN) - spent_s - close_s
    steps = _steps_that_fit(available, steps_per_epoch, probe, config.checkpoint_every)
    if steps < 1:
        need = spent_s + close_s + probe.step_s + probe.validation_s + probe.epoch_setup_s
        raise parameter_error(
            f"{section}.budget_s",
            f"({budget:g} s) leaves no time to train: setup and the speed probe took {spent_s:.1f} s, "
            f"and one step with its validation and checkpoint needs {need - spent_s:.1f} s more; "
            f"give at least {math.ceil(need / (1.0 - PLAN_MARGIN))} s",
        )
    return Plan(
        total_steps=steps,
        steps_per_epoch=steps_per_epoch,
        whiten_bias_steps=round(config.whiten_bias_fraction * steps),
        budget_s=budget,
        spent_s=spent_s,
        close_s=close_s,
        probe=probe,
    )


def _steps_that_fit(available: float, steps_per_epoch: int, probe: Probe, checkpoint_every: int) -> int:
    """The most steps whose epochs, with their validation and checkpoints, take at most ``available`` seconds."""
    best = 0
    epoch_cost = probe.validation_s + probe.epoch_setup_s
    for epochs in range(1, max(1, int(available / probe.step_s / steps_per_epoch)) + 2):
        checkpoints = (epochs - 1) // checkpoint_every if checkpoint_every else 0
        left = available - epochs * epoch_cost - checkpoints * probe.checkpoint_s
        steps = min(epochs * steps_per_epoch, math.floor(left / probe.step_s + 1e-9))  # 0.3 / 0.1 is 2.999...
        if steps > (epochs - 1) * steps_per_epoch:  # this many epochs really begin
            best = max(best, steps)
    return best


def describe(plan: Plan, model_name: str) -> str:
    """The plan in one log line: measured speed, planned steps and epochs, the budget."""
    probe = plan.probe
    return (
        f"{model_name}: budget {plan.budget_s:g} s; measured {probe.images_per_s:,.0f} images/s "
        f"({probe.step_s * 1000:.1f} ms a step over {probe.steps} steps, validation {probe.validation_s:.1f} s); "
        f"planned {plan.total_steps} steps = {plan.epochs:.2f} epochs after {plan.spent_s:.1f} s of setup and probe"
    )

"""What a run reports as it goes: the epoch's running sums, divergence, progress and epoch logs, the ETA warning.

Nothing here reads a device value inside a step except at log points (and,
off CUDA, the loss check): each read waits for the device.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import torch

from image_recognition.common.progress import JobProgress, format_duration
from image_recognition.models import count_parameters
from image_recognition.training import budget
from image_recognition.training.result import NonFiniteLossError
from image_recognition.training.state import TrainingRun

logger = logging.getLogger(__name__)

# A run projected past this many seconds after its first epoch gets a warning naming a faster choice.
ETA_WARNING_S = 3600.0


class EpochSums:
    """An epoch's running sums, kept on the device: read once at the epoch's end, not at every step."""

    def __init__(self, device: torch.device) -> None:
        self.loss = torch.zeros((), device=device)
        self.objective = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device, dtype=torch.long)

    def add(self, objective: torch.Tensor, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Add one step: its objective and loss (the plain cross-entropy; batch means) and its correct predictions."""
        self.loss += loss * len(labels)
        self.objective += objective.detach() * len(labels)
        self.correct += (logits.detach().argmax(1) == labels).sum()


@dataclass
class RunTimes:
    """The run's clocks, carried on from the interrupted run's last history row when it resumes.

    Training time, the one definition (benchmarks, metrics, report): setup
    (data on the device, model built, whitening) plus every epoch's
    synchronised steps, as airbench's timer counts; compile warm-up and
    validation are not in it. Wall time: the interrupted run's, plus this
    one's since it started (setup included).
    """

    started: float  # time.perf_counter() when this run's setup began
    train_time: float
    compile_time: float
    wall_time_before: float

    @classmethod
    def carried_on(cls, history: list[dict[str, Any]], started: float, setup: float, compile_: float) -> RunTimes:
        before = history[-1] if history else {}
        return cls(
            started,
            before.get("train_time_s", 0.0) + setup,
            (before.get("compile_time_s") or 0.0) + compile_,
            before.get("wall_time_s", 0.0),
        )

    def elapsed(self) -> float:
        """The run's wall time so far, the interrupted run's included: what a budget counts."""
        return self.wall_time_before + budget.clock() - self.started

    def add_epoch(self, row: dict[str, Any]) -> None:
        """Add the epoch's time and write the run's totals into its row."""
        self.train_time += row["epoch_time_s"]
        row.update(train_time_s=self.train_time, wall_time_s=self.elapsed(), compile_time_s=self.compile_time)


def watch_step(
    run: TrainingRun,
    progress: JobProgress,
    epoch: int,
    step: int,
    objective: torch.Tensor,
    loss: torch.Tensor,
    sums: EpochSums,
    started: float,
) -> None:
    """Stop on a non-finite loss and log progress every ``log_every`` steps (``started``: the epoch's start).

    Per-step NaN checks force a device sync; on CUDA they run at log points
    only. The progress bar's loss, the epoch's running mean, is read at
    those points only, when the device has just been waited for anyway.
    """
    log_every = run.config.log_every
    logging_now = log_every and (step + 1) % log_every == 0
    if run.device.type != "cuda" or logging_now:
        check_finite(run, objective, epoch, step)
        progress.show_loss(sums.loss.item() / ((step + 1) * run.batches.shard_size))
    if logging_now and run.is_main:
        elapsed = budget.clock() - started
        logger.info(
            "epoch %d/%d step %d/%d: loss %.4f, %.0f img/s",
            epoch + 1,
            run.plan.epoch_count,
            step + 1,
            run.plan.steps_in_epoch(epoch),
            loss.item(),
            (step + 1) * run.batches.batch_size / max(elapsed, 1e-9),
        )


def check_finite(run: TrainingRun, loss: torch.Tensor, epoch: int, step: int) -> None:
    """Raise on a non-finite loss; in a group, on every rank when any rank's is (all stop together)."""
    if run.group is not None:
        loss = run.group.sum(loss.detach().float().clone())
    value = loss.item()
    if not math.isfinite(value):
        raise non_finite_error(run, value, epoch, step)


def non_finite_error(run: TrainingRun, value: float, epoch: int, step: int) -> NonFiniteLossError:
    return NonFiniteLossError(
        f"training loss became {value} at epoch {epoch + 1}, step {step + 1}: the run "
        f"diverged. Lower lr (now {run.config.lr}), set grad_clip, or check the "
        "inputs and normalisation statistics for NaN/inf"
    )


def epoch_row(run: TrainingRun, epoch: int, sums: EpochSums, lr: float, seconds: float, steps: int) -> dict[str, Any]:
    """The history row of an epoch of ``steps`` steps, training columns only; fails if the mean objective is not finite.

    In a group the sums are all-reduced first: the row is the whole global batch's.
    """
    if run.group is not None:
        for total in (sums.loss, sums.objective, sums.correct):
            run.group.sum(total)
    images_seen = steps * run.batches.batch_size
    mean_objective = sums.objective.item() / images_seen
    if not math.isfinite(mean_objective):
        raise non_finite_error(run, mean_objective, epoch, steps - 1)
    return {
        "epoch": epoch + 1,
        "steps": steps,
        "train_loss": sums.loss.item() / images_seen,
        "train_objective": mean_objective,
        "train_accuracy": sums.correct.item() / images_seen,
        "lr": float(lr),
        "epoch_time_s": seconds,
        "images_per_s": images_seen / max(seconds, 1e-9),
    }


def warn_if_long(run: TrainingRun, epoch_seconds: float) -> None:
    """After the first epoch of a run given epochs: warn once when it is projected past ETA_WARNING_S.

    A budgeted run needs no warning: it ends on time by construction.
    """
    projected = epoch_seconds * run.plan.epoch_count
    if run.config.budgeted or projected <= ETA_WARNING_S:
        return
    logger.warning(
        "training %s is projected to take %s on %s (%d epochs at %.0f s each): set training.budget_s "
        "(and epochs: null) to train for a fixed time instead, or lower training.epochs",
        run.model_name,
        format_duration(projected),
        run.device.type,
        run.plan.epoch_count,
        epoch_seconds,
    )


def log_setup(run: TrainingRun) -> None:
    batches = run.batches
    length = (
        f"a budget of {run.config.budget_s:g} s (steps planned after a speed probe)"
        if run.config.budgeted
        else f"{run.config.epochs} epochs"
    )
    logger.info(
        "training %s (%s parameters) on %s: %d images, batch %d%s, %d steps/epoch, "
        "%s, autocast %s, channels_last %s, compile %s",
        run.model_name,
        f"{count_parameters(run.model):,}",
        run.device,
        len(batches.train_x),
        batches.batch_size,
        f" ({batches.shard_size} in each of {run.group.world_size} processes)" if run.group else "",
        run.steps_per_epoch,
        length,
        run.amp_dtype,
        run.channels_last,
        run.config.compile,
    )


def log_epoch(run: TrainingRun, row: dict[str, Any]) -> None:
    live = f" (live weights {row['live_val_accuracy']:.4f}, EMA above)" if "live_val_accuracy" in row else ""
    logger.info(
        "epoch %d/%d: train loss %.4f acc %.4f | val loss %.4f acc %.4f%s | lr %.3g | %.1fs, %.0f img/s",
        row["epoch"],
        run.plan.epoch_count,
        row["train_loss"],
        row["train_accuracy"],
        row["val_loss"],
        row["val_accuracy"],
        live,
        row["lr"],
        row["epoch_time_s"],
        row["images_per_s"],
    )

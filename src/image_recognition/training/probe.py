"""The speed probe of a budgeted run: a few real steps on this machine, then every state put back.

It times what the run will spend its budget on: a training step in steady
state (after warm-up steps, and after any compile warm-up), one validation
pass, drawing an epoch's batches and serialising a checkpoint. The steps run
on the run's own model, optimiser and EMA, which are restored afterwards with
the random generators, so the probe changes nothing the run then does; only
its time is gone from the budget. Measuring first, rather than planning from
the run's own first steps under a provisional schedule, lets the schedule,
EMA and whitening freeze be built once for the whole run, exactly as a run
given that many steps as epochs would build them.
"""

from __future__ import annotations

import copy
import io
from typing import Any

import torch

from image_recognition.common.device import synchronize
from image_recognition.training import budget
from image_recognition.training.batches import EpochBatches
from image_recognition.training.budget import Probe
from image_recognition.training.resume import checkpoint_state
from image_recognition.training.state import TrainingRun
from image_recognition.training.step import train_step
from image_recognition.training.validation import evaluate
from image_recognition.training.wrapping import cuda_devices

WARM_UP_STEPS = 2  # untimed: the first steps allocate memory and pick kernels
MIN_STEPS = 5  # timed steps at least ...
MIN_SECONDS = 2.0  # ... and at least this long, unless ...
MAX_SHARE = 0.03  # ... the timed steps would pass this share of the budget
MAX_STEPS = 200
GROUP_STEPS = 10  # in a data-parallel group every rank times the same steps: each waits for the others


def probe(run: TrainingRun) -> Probe:
    """Measure the run's costs on this machine; leave the run exactly as it was."""
    started = budget.clock()
    saved = _snapshot(run)
    with torch.random.fork_rng(devices=cuda_devices(run.device)):
        drawn = budget.clock()
        batches = EpochBatches(run.batches, 0, run.rank)
        synchronize(run.device)
        epoch_setup_s = budget.clock() - drawn
        step_s, steps = _time_steps(run, batches)
        measured = budget.clock()
        evaluate(run, "none")  # rank 0 validates; the others return at once
        validation_s = budget.clock() - measured if len(run.batches.val_x) else 0.0
    _restore(run, saved)
    measured = budget.clock()
    torch.save(checkpoint_state(run, 0), io.BytesIO())
    checkpoint_s = budget.clock() - measured
    return Probe(
        step_s=step_s,
        steps=steps,
        validation_s=validation_s,
        epoch_setup_s=epoch_setup_s,
        checkpoint_s=checkpoint_s,
        seconds=budget.clock() - started,
        batch_size=run.batches.batch_size,
    )


def _time_steps(run: TrainingRun, batches: EpochBatches) -> tuple[float, int]:
    """(seconds per step, steps timed) after the warm-up steps, on the epoch's batches in turn."""
    run.model.train()
    count = run.steps_per_epoch
    for step in range(WARM_UP_STEPS):
        train_step(run, *batches.batch(step % count))
    synchronize(run.device)
    limit = MAX_SHARE * float(run.config.budget_s or 0.0)
    started, steps = budget.clock(), 0
    while steps < MAX_STEPS:
        train_step(run, *batches.batch((WARM_UP_STEPS + steps) % count))
        steps += 1
        elapsed = budget.clock() - started
        if run.group is not None:
            if steps == GROUP_STEPS:
                break
        elif steps >= MIN_STEPS and (elapsed >= MIN_SECONDS or elapsed >= limit):
            break
    synchronize(run.device)
    return (budget.clock() - started) / steps, steps


def _snapshot(run: TrainingRun) -> dict[str, Any]:
    """What the probe's steps change: weights and buffers, optimiser, schedule, EMA and the step count."""
    return {
        "model": copy.deepcopy(run.model.state_dict()),
        "optimizer": copy.deepcopy(run.optimizer.state_dict()),
        "scheduler": run.scheduler.state_dict(),
        "ema": copy.deepcopy(run.ema.state_dict()) if run.ema is not None else None,
        "global_step": run.global_step,
    }


def _restore(run: TrainingRun, saved: dict[str, Any]) -> None:
    run.model.load_state_dict(saved["model"])
    run.optimizer.load_state_dict(saved["optimizer"])
    run.optimizer.zero_grad(set_to_none=True)
    run.scheduler.load_state_dict(saved["scheduler"])
    if saved["ema"] is not None:
        run.ema.load_state_dict(saved["ema"])
    run.global_step = saved["global_step"]

"""The training loop in one process: plain PyTorch, device-resident data, resumable, reproducible.

:func:`train_in_process` builds the run (:func:`setup`), warms up
torch.compile, runs :func:`fit` (the loop over epochs and steps, read top to
bottom) and returns the result (:func:`finish`). The ideas around it have
modules of their own: batches and augmentation (:mod:`.batches`), the model's
wrapping (:mod:`.wrapping`), resume and checkpoint state (:mod:`.resume`),
validation (:mod:`.validation`) and what the run reports (:mod:`.monitor`).
Several processes are started by :mod:`.launch`; :func:`image_recognition.training.train`
chooses.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from image_recognition.common.device import (
    autocast_dtype,
    configure_backends,
    resolve_device,
    synchronize,
    use_channels_last,
    use_fused_optimizer,
)
from image_recognition.common.progress import JobProgress
from image_recognition.models import CONVNET_NAMES
from image_recognition.models.sizes import DEFAULT_IMAGE_SIZE, check_images_fit
from image_recognition.sources.tensors import Normalizer
from image_recognition.training import budget
from image_recognition.training.batches import Batches, EpochBatches
from image_recognition.training.budget import Deadline, Plan, describe, plan_budget, plan_epochs
from image_recognition.training.checkpoint import save_checkpoint
from image_recognition.training.config import TrainingConfig
from image_recognition.training.ddp import ProcessGroup, current_group
from image_recognition.training.monitor import (
    EpochSums,
    RunTimes,
    epoch_row,
    log_epoch,
    log_setup,
    warn_if_long,
    watch_step,
)
from image_recognition.training.optim import WeightEMA, build_optimizer, build_scheduler
from image_recognition.training.probe import probe
from image_recognition.training.result import Normalization, Split, TrainResult
from image_recognition.training.resume import checkpoint_state, resume
from image_recognition.training.state import TrainingRun
from image_recognition.training.step import train_step
from image_recognition.training.validation import evaluate, validation_columns
from image_recognition.training.wrapping import cuda_devices, freeze_whitening, seeded_model, warm_up_compile, wrap

logger = logging.getLogger(__name__)


def train_in_process(
    model_name: str,
    model_config: dict[str, Any],
    config: TrainingConfig,
    train_split: Split,
    validation_split: Split | None,
    normalization: Normalization,
    checkpoint_path: str | Path | None = None,
) -> TrainResult:
    """Train ``model_name`` in this process: alone, or as one worker of a data-parallel group.

    ``model_config`` is complete and ``config`` checked, as
    :func:`image_recognition.training.train` leaves them. Inside a worker the
    run trains its shard of every global batch in ``DistributedDataParallel``.
    """
    group = current_group()
    device = resolve_device(config.device)
    if group is not None and device.type == "cuda":
        device = torch.device("cuda", group.local_rank)
    # Training reseeds the global generators; fork them so the caller's stay as they were.
    with configure_backends(device, config.tf32), torch.random.fork_rng(devices=cuda_devices(device)):
        started = budget.clock()
        splits = (train_split, validation_split)
        run = setup(model_name, model_config, config, device, group, splits, normalization, checkpoint_path)
        synchronize(device)
        setup_time = budget.clock() - started
        compile_time = warm_up_compile(run)
        times = RunTimes.carried_on(run.history, started, setup_time, compile_time)
        if config.budgeted and run.plan.probe is None:  # a budgeted run that is not resuming its plan
            plan_run(run, times)
        fit(run, times)
        return finish(run, times, setup_time, compile_time)


def setup(
    model_name: str,
    model_config: dict[str, Any],
    config: TrainingConfig,
    device: torch.device,
    group: ProcessGroup | None,
    splits: tuple[Split, Split | None],
    normalization: Normalization,
    checkpoint_path: str | Path | None,
) -> TrainingRun:
    """The run, built before its first step: the data on the device, the model and what updates it, progress so far."""
    statistics = {key: [float(value) for value in normalization[key]] for key in ("mean", "std")}
    normalize = Normalizer(statistics["mean"], statistics["std"], device)
    amp_dtype = autocast_dtype(config.autocast, device)
    channels_last = use_channels_last(config.channels_last, device, model_name in CONVNET_NAMES)
    num_classes = int(model_config.get("num_classes", 10))
    batches = Batches(config, splits, normalize, device, group, channels_last, num_classes)
    check_images_fit(model_name, int(model_config.get("image_size", DEFAULT_IMAGE_SIZE)), batches.train_x.shape)
    model = seeded_model(model_name, model_config, config, batches, group)
    optimizer = build_optimizer(model, config, use_fused_optimizer(config.fused_optimizer, device))
    # A budgeted run's plan waits for its speed probe (plan_run): one epoch until then.
    plan = plan_epochs(config, batches.steps_per_epoch) if not config.budgeted else _provisional(batches)
    scheduler = build_scheduler(optimizer, plan.total_steps, config)
    train_model, compiled = wrap(model, model_name, group, device, config.compile)
    run = TrainingRun(
        model_name=model_name,
        model_config=model_config,
        config=config,
        device=device,
        group=group,
        checkpoint_path=Path(checkpoint_path) if checkpoint_path else None,
        normalization=statistics,
        amp_dtype=amp_dtype,
        channels_last=channels_last,
        batches=batches,
        model=model,
        train_model=train_model,
        compiled=compiled,
        optimizer=optimizer,
        scheduler=scheduler,
        # After DDP's first broadcast: every rank averages the same weights.
        ema=WeightEMA(model) if config.ema_decay > 0 else None,
        plan=plan,
    )
    if run.is_main:
        log_setup(run)
    resume(run)  # none yet, or where the checkpoint left off (its weights loaded)
    return run


def _provisional(batches: Batches) -> Plan:
    """A budgeted run's plan before its probe: one epoch, so the probe's steps have a schedule to follow."""
    return Plan(batches.steps_per_epoch, batches.steps_per_epoch, batches.steps_per_epoch)


def plan_run(run: TrainingRun, times: RunTimes) -> None:
    """Measure this machine's speed (:func:`.probe.probe`) and fix the budgeted run's steps, schedule and EMA.

    In a group, rank 0's plan is every rank's: they must take the same steps.
    """
    measured = probe(run)
    plan = plan_budget(run.config, run.steps_per_epoch, measured, times.elapsed(), f"{run.model_name}.training")
    if run.group is not None:
        plan = run.group.broadcast(plan if run.is_main else None)
    run.adopt(plan)
    if run.is_main:
        logger.info(describe(plan, run.model_name))


def fit(run: TrainingRun, times: RunTimes) -> None:
    """Train the epochs the plan has left; after each, its history row, validation, log line and checkpoint.

    Each step (:func:`.step.train_step`) reads nothing on the host but at log
    points, and copies nothing to the device (tests/training/test_host_syncs.py).
    A budgeted run stops early when the machine has become too slow to finish in time.
    """
    plan, deadline = run.plan, Deadline(run.plan)
    progress = JobProgress(run.model_name, plan.total_steps, run.batches.batch_size, run.global_step, run.is_main)
    for epoch in range(run.start_epoch, plan.epoch_count):
        run.model.train()
        sums, started = EpochSums(run.device), _synchronized_clock(run.device)
        steps = plan.steps_in_epoch(epoch)
        batches = EpochBatches(run.batches, epoch, run.rank, steps)  # seeded order and augmentation, drawn now
        progress.start_part(f"epoch {epoch + 1}/{plan.epoch_count}", steps)
        done, lr = 0, run.optimizer.param_groups[0]["lr"]
        for step, (images, labels, targets) in enumerate(batches):
            if _out_of_time(run, deadline, times.elapsed(), step == 0):
                break
            freeze_whitening(run.scheduler, run.global_step >= plan.whiten_bias_steps)
            lr = run.optimizer.param_groups[0]["lr"]
            objective, loss, logits = train_step(run, images, labels, targets)
            sums.add(objective, loss, logits, labels if targets is None else targets.argmax(1))
            watch_step(run, progress, epoch, step, objective, loss, sums, started)
            progress.step()
            done += 1
        if done:
            _close_epoch(run, times, progress, epoch, sums, lr, started, done)
        if run.stopped_early:
            break
        _checkpoint_every(run, epoch + 1)


def _out_of_time(run: TrainingRun, deadline: Deadline, elapsed: float, first_in_epoch: bool) -> bool:
    """Whether a budgeted run in one process must stop now to end within its budget; logs why, once.

    A data-parallel group follows its plan: a stop decided on one rank's clock
    would leave the others waiting for it.
    """
    if run.group is not None or not deadline.reached(elapsed, first_in_epoch):
        return False
    run.stopped_early = True
    logger.warning(
        "%s: stopping at step %d of %d planned: this machine has become slower than the probe measured "
        "(%.1f ms a step, %.1f ms now), and the budget of %g s must also hold the final validation",
        run.model_name,
        run.global_step,
        run.plan.total_steps,
        run.plan.probe.step_s * 1000,
        deadline.step_s * 1000,
        run.plan.budget_s,
    )
    return True


def _synchronized_clock(device: torch.device) -> float:
    """The time, once the device has finished its queued work: an epoch's clock starts here."""
    synchronize(device)
    return budget.clock()


def _close_epoch(
    run: TrainingRun,
    times: RunTimes,
    progress: JobProgress,
    epoch: int,
    sums: EpochSums,
    lr: float,
    started: float,
    steps: int,
) -> None:
    """Once the epoch's ``steps`` are queued: its history row (training columns, validation, times), logged."""
    synchronize(run.device)
    progress.end_part()
    row = epoch_row(run, epoch, sums, lr, budget.clock() - started, steps)
    progress.show_loss(row["train_loss"])  # the next epoch's bar starts from this epoch's mean
    if epoch == run.start_epoch and run.is_main:
        warn_if_long(run, row["epoch_time_s"])
    row.update(validation_columns(run))
    times.add_epoch(row)
    row["compiled"] = run.compiled
    run.history.append(row)
    if run.is_main:
        log_epoch(run, row)


def _checkpoint_every(run: TrainingRun, done: int) -> None:
    """After ``done`` epochs: a checkpoint every ``checkpoint_every`` epochs (the last is :func:`finish`'s)."""
    every = run.config.checkpoint_every
    if run.writes_checkpoints and every and done % every == 0 and done < run.plan.epoch_count:
        save_checkpoint(checkpoint_state(run, done), run.checkpoint_path)


def finish(run: TrainingRun, times: RunTimes, setup_time: float, compile_time: float) -> TrainResult:
    """Validate with the configured TTA, write the final checkpoint and return the model with its EMA weights."""
    config, model = run.config, run.model
    if run.ema is not None and config.lookahead:
        # Finish on the average: the live weights take the EMA's values.
        run.ema.update(model, 1.0, lookahead=True)
    final = {"tta": config.tta}
    final["val_loss"], final["val_accuracy"] = evaluate(run, config.tta)
    epochs_done = run.history[-1]["epoch"] if run.history else 0
    final.update(steps=run.global_step, epochs=run.global_step / run.steps_per_epoch, wall_time_s=times.elapsed())
    if run.is_main:
        logger.info(
            "finished %s: val accuracy %.4f (tta %s) after %d steps, %.2f epochs, in %.1f s",
            run.model_name,
            final["val_accuracy"],
            config.tta,
            run.global_step,
            final["epochs"],
            final["wall_time_s"],
        )
    checkpoint = checkpoint_state(run, epochs_done)
    checkpoint["final_metrics"] = dict(final)
    if run.writes_checkpoints:
        save_checkpoint(checkpoint, run.checkpoint_path)
    if run.ema is not None:
        model.load_state_dict(run.ema.state_dict())
    return TrainResult(
        checkpoint=checkpoint,
        history=[dict(row) for row in run.history],
        model=model.eval(),
        final_metrics=final,
        setup_time_s=setup_time,
        compile_time_s=compile_time,
        compiled=run.compiled,
    )

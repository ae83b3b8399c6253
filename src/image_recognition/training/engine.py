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
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from image_recognition.common.device import (
    autocast,
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
from image_recognition.training.augment.strong import soft_target_cross_entropy
from image_recognition.training.batches import Batches, EpochBatches
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
from image_recognition.training.optim import WeightEMA, build_optimizer, build_scheduler, ema_decay_at
from image_recognition.training.result import Normalization, Split, TrainResult
from image_recognition.training.resume import checkpoint_state, resume
from image_recognition.training.state import TrainingRun
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
        started = time.perf_counter()
        splits = (train_split, validation_split)
        run = setup(model_name, model_config, config, device, group, splits, normalization, checkpoint_path)
        synchronize(device)
        setup_time = time.perf_counter() - started
        compile_time = warm_up_compile(run)
        fit(run, RunTimes.carried_on(run.history, started, setup_time, compile_time))
        return finish(run, setup_time, compile_time)


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
    scheduler = build_scheduler(optimizer, batches.steps_per_epoch * config.epochs, config)
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
    )
    if run.is_main:
        log_setup(run)
    resume(run)  # none yet, or where the checkpoint left off (its weights loaded)
    return run


def fit(run: TrainingRun, times: RunTimes) -> None:
    """Train every epoch the run has left; after each, its history row, validation, log line and checkpoint.

    A step is the forward pass, the loss, the backward pass, the optimiser
    and schedule step and the EMA; it reads nothing on the host but at log
    points, and copies nothing to the device (tests/training/test_host_syncs.py).
    """
    config, model, optimizer, device = run.config, run.model, run.optimizer, run.device
    progress = JobProgress(run.model_name, run.total_steps, run.batches.batch_size, run.global_step, run.is_main)
    for epoch in range(run.start_epoch, config.epochs):
        freeze_whitening(run.scheduler, epoch >= config.whiten_bias_epochs)
        model.train()
        sums, started = EpochSums(device), _synchronized_clock(device)
        batches = EpochBatches(run.batches, epoch, run.rank)  # seeded order and augmentation, drawn now
        progress.start_part(f"epoch {epoch + 1}/{config.epochs}", run.steps_per_epoch)
        for step, (images, labels, targets) in enumerate(batches):
            lr = optimizer.param_groups[0]["lr"]
            with autocast(device, run.amp_dtype):
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
                decay = ema_decay_at(run.global_step, run.total_steps, config)
                run.ema.update(model, decay, lookahead=config.lookahead)
            sums.add(objective, loss, logits, labels if targets is None else targets.argmax(1))
            watch_step(run, progress, epoch, step, objective, loss, sums, started)
            progress.step()
        row = _close_epoch(run, progress, epoch, sums, lr, started)
        times.add_epoch(row)
        row["compiled"] = run.compiled
        run.history.append(row)
        if run.is_main:
            log_epoch(run, row)
        _checkpoint_every(run, epoch + 1)


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


def _synchronized_clock(device: torch.device) -> float:
    """The time, once the device has finished its queued work: an epoch's clock starts here."""
    synchronize(device)
    return time.perf_counter()


def _close_epoch(
    run: TrainingRun, progress: JobProgress, epoch: int, sums: EpochSums, lr: float, started: float
) -> dict[str, Any]:
    """The epoch's history row once its steps are queued: training columns (synchronised), then validation."""
    synchronize(run.device)
    progress.end_part()
    row = epoch_row(run, epoch, sums, lr, time.perf_counter() - started)
    progress.show_loss(row["train_loss"])  # the next epoch's bar starts from this epoch's mean
    if epoch == run.start_epoch and run.is_main:
        warn_if_long(run, row["epoch_time_s"])
    row.update(validation_columns(run))
    return row


def _checkpoint_every(run: TrainingRun, done: int) -> None:
    """After ``done`` epochs: a checkpoint every ``checkpoint_every`` epochs (the last is :func:`finish`'s)."""
    every = run.config.checkpoint_every
    if run.writes_checkpoints and every and done % every == 0 and done < run.config.epochs:
        save_checkpoint(checkpoint_state(run, done), run.checkpoint_path)


def finish(run: TrainingRun, setup_time: float, compile_time: float) -> TrainResult:
    """Validate with the configured TTA, write the final checkpoint and return the model with its EMA weights."""
    config, model = run.config, run.model
    if run.ema is not None and config.lookahead:
        # Finish on the average: the live weights take the EMA's values.
        run.ema.update(model, 1.0, lookahead=True)
    final = {"tta": config.tta}
    final["val_loss"], final["val_accuracy"] = evaluate(run, config.tta)
    if run.is_main:
        logger.info(
            "finished %s: val accuracy %.4f (tta %s) after %d epochs",
            run.model_name,
            final["val_accuracy"],
            config.tta,
            config.epochs,
        )
    checkpoint = checkpoint_state(run, config.epochs)
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

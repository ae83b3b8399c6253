"""The training loop: plain PyTorch, device-resident data, resumable, reproducible.

Determinism: every random number of epoch ``e`` (data order, augmentation,
dropout) comes from generators seeded with ``(seed, e)``, and checkpoints are
written at epoch ends, so a run resumed from a checkpoint takes exactly the
steps the uninterrupted run would have taken (bit for bit on the CPU).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
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
from image_recognition.common.errors import ParameterError
from image_recognition.common.params import config_to_dict
from image_recognition.common.progress import JobProgress, format_duration
from image_recognition.models import CONVNET_NAMES, build_model, count_parameters, validate_model_config
from image_recognition.models.inference import tta_logits
from image_recognition.sources.tensors import Normalizer, as_label_tensor, as_uint8_tensor
from image_recognition.training.augment import Rows, alternating_flips, augment, random_flips
from image_recognition.training.checkpoint import (
    CHECKPOINT_FORMAT,
    clean_state_dict,
    load_checkpoint,
    save_checkpoint,
    to_cpu,
)
from image_recognition.training.config import AUTO, TrainingConfig
from image_recognition.training.ddp import (
    ProcessGroup,
    convert_sync_batchnorm,
    current_group,
    data_parallel,
    has_batchnorm,
)
from image_recognition.training.optim import (
    WHITENING_BIAS,
    WeightEMA,
    build_optimizer,
    build_scheduler,
    ema_decay_at,
)
from image_recognition.training.strong_augmentation import (
    EpochAugmentation,
    draw_epoch_augmentation,
    mix_batch,
    soft_target_cross_entropy,
)

logger = logging.getLogger(__name__)

ArrayLike = np.ndarray | torch.Tensor
# A data split as the catalog loads it: {"images": uint8 (N, 3, H, W), "labels": (N,)}.
Split = Mapping[str, ArrayLike]
# Per-channel statistics on the 0..1 scale: {"mean": [...], "std": [...]}.
Normalization = Mapping[str, Sequence[float]]

# History columns that measure time and so differ between identical runs.
TIMING_KEYS = ("epoch_time_s", "images_per_s", "train_time_s", "wall_time_s", "compile_time_s")
# Images used to estimate the whitening layer's patch covariance.
WHITENING_SAMPLES = 5000
# Training-config keys that may change on resume without changing the result.
# A checkpoint written by any number of processes resumes in any other, with a
# warning: dropout masks and unsynchronised BatchNorm statistics depend on them.
_OPERATIONAL_KEYS = {"resume", "device", "log_every", "checkpoint_every", "eval_batch_size", "max_model_parameters"}
# A run projected past this many seconds after its first epoch gets a warning naming a faster choice.
ETA_WARNING_S = 3600.0


def _same_values(saved: Sequence[float] | None, current: Sequence[float]) -> bool:
    """Whether two lists of statistics are equal to float precision (a checkpoint stores them as JSON floats)."""
    return saved is not None and len(saved) == len(current) and np.allclose(saved, current, rtol=0, atol=1e-9)


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite: the run has diverged."""


@dataclass
class TrainResult:
    """What :func:`train` returns.

    ``checkpoint`` is the final checkpoint dict (loadable with
    ``weights_only=True`` once saved), ``history`` one dict per epoch, ``model``
    the trained model in eval mode (EMA weights if any) on the training device,
    ``final_metrics`` the validation loss/accuracy with the configured TTA,
    ``setup_time_s`` the time spent before the first step (data upload,
    whitening, model build) and ``compile_time_s`` the time spent warming up
    ``torch.compile`` before the training clock started (0 without compile).
    ``compiled`` says whether the steps ran compiled: False without compile,
    and when compiling failed and the run fell back to the eager module.
    """

    checkpoint: dict[str, Any]
    history: list[dict[str, Any]]
    model: nn.Module
    final_metrics: dict[str, Any] = field(default_factory=dict)
    setup_time_s: float = 0.0
    compile_time_s: float = 0.0
    compiled: bool = False


def epoch_seed(seed: int, epoch: int) -> int:
    """Seed of epoch ``epoch``'s generators: a fixed function of (seed, epoch)."""
    return (seed * 1_000_003 + epoch + 1) % (2**63 - 1)


def train(
    model_name: str,
    model_config: dict[str, Any] | None,
    training: dict[str, Any] | TrainingConfig,
    train_split: Split,
    validation_split: Split | None,
    normalization: Normalization,
    checkpoint_path: str | Path | None = None,
) -> TrainResult:
    """Train ``model_name`` on the training split and validate it each epoch.

    A split is ``{"images": uint8 (N, 3, H, W), "labels": (N,)}``, as the
    catalog loads it; ``normalization`` holds the per-channel ``mean`` and
    ``std`` on the 0..1 scale (other keys are ignored). The validation split
    may be empty or None (the val columns are then NaN). With
    ``checkpoint_path``, a checkpoint is written every ``checkpoint_every``
    epochs and at the end; with ``resume: true`` an existing one is continued.

    With ``distributed`` asking for more than one process, torch's elastic
    launcher starts them (:func:`image_recognition.training.launch.launch`) and
    rank 0's result is returned; inside a worker, the run trains its shard of
    every global batch in ``DistributedDataParallel``.
    """
    config = training if isinstance(training, TrainingConfig) else TrainingConfig.from_dict(training)
    full_model_config = validate_model_config(
        model_name, model_config, config.max_model_parameters, "training.max_model_parameters"
    )
    group = current_group()
    if config.distributed.world_size > 1 and group is None:
        from image_recognition.training.launch import launch  # noqa: PLC0415 (it imports this module)

        return launch(
            model_name, full_model_config, config, train_split, validation_split, normalization, checkpoint_path
        )
    device = resolve_device(config.device)
    if group is not None and device.type == "cuda":
        device = torch.device("cuda", group.local_rank)
    # Training reseeds the global generators; fork them so the caller's stay as they were.
    with configure_backends(device, config.tf32), torch.random.fork_rng(devices=_cuda_devices(device)):
        trainer = _Trainer(
            model_name,
            full_model_config,
            config,
            device,
            train_split,
            validation_split,
            normalization,
            checkpoint_path,
            group,
        )
        return trainer.run()


def _cuda_devices(device: torch.device) -> list[int]:
    """The CUDA device indices whose generators a run on ``device`` draws from."""
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]


def device_splits(
    train_split: Split, validation_split: Split | None, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train images, train labels, validation images, validation labels) on ``device``, checked.

    A missing or empty validation split becomes empty tensors.
    """
    train_x = as_uint8_tensor(train_split["images"], device)
    train_y = as_label_tensor(train_split["labels"], len(train_x), device)
    if validation_split is None or len(validation_split["images"]) == 0:
        val_x, val_y = train_x[:0], train_y[:0]
    else:
        val_x = as_uint8_tensor(validation_split["images"], device)
        val_y = as_label_tensor(validation_split["labels"], len(val_x), device)
    if len(train_x) == 0:
        raise ValueError("no training images")
    return train_x, train_y, val_x, val_y


def _flip_coins(count: int, seed: int, device: torch.device) -> torch.Tensor:
    """One seeded coin per training image, the same for every epoch of the run (and of a resumed run).

    Drawn on the CPU, so that every device agrees.
    """
    return (torch.rand(count, generator=torch.Generator().manual_seed(seed)) < 0.5).to(device)


def _rows_made(rank: int, world_size: int, shard_size: int, mixes: bool) -> Rows:
    """The rows of each global batch that rank ``rank`` makes: its share, then the share that mixes with it.

    MixUp and CutMix pair image i with image N - 1 - i (:func:`mix_batch`),
    which for a share is the mirrored share of rank ``world_size - 1 - rank``.
    Rather than gather those images from that rank, this one makes them too:
    mixing its share then its mirror pairs every image as in the whole
    batch, and no step waits on a collective.
    """
    share = slice(rank * shard_size, (rank + 1) * shard_size)
    mirror = world_size - 1 - rank
    if not mixes or mirror == rank:
        return Rows(world_size * shard_size, (share,))
    return Rows(world_size * shard_size, (share, slice(mirror * shard_size, (mirror + 1) * shard_size)))


class _EpochSums:
    """An epoch's running sums, kept on the device: read once at the epoch's end, not at every step."""

    def __init__(self, device: torch.device) -> None:
        self.loss = torch.zeros((), device=device)
        self.objective = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device, dtype=torch.long)

    def add(self, objective: torch.Tensor, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Add one step: its objective and plain loss (batch means) and its correct predictions."""
        self.loss += loss * len(labels)
        self.objective += objective.detach() * len(labels)
        self.correct += (logits.detach().argmax(1) == labels).sum()


class _Trainer:
    """State of one training run, all of it built in ``__init__``; :func:`train` is the public entry point."""

    def __init__(
        self,
        model_name: str,
        model_config: dict[str, Any],
        config: TrainingConfig,
        device: torch.device,
        train_split: Split,
        validation_split: Split | None,
        normalization: Normalization,
        checkpoint_path: str | Path | None,
        group: ProcessGroup | None = None,
    ) -> None:
        self.started = time.perf_counter()
        # Data-parallel: this worker's place in the group (None: one process).
        self.group = group
        self.is_main = group is None or group.is_main
        # What to train, where and how.
        self.model_name = model_name
        self.model_config = model_config
        self.config = config
        self.device = device
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path else None
        self.normalization = {key: [float(value) for value in normalization[key]] for key in ("mean", "std")}
        self.normalize = Normalizer(self.normalization["mean"], self.normalization["std"], device)
        self.amp_dtype = autocast_dtype(config.autocast, device)
        self.channels_last = use_channels_last(config.channels_last, device, model_name in CONVNET_NAMES)
        # Set on each batch after augmentation (whose gathers return NCHW): a
        # channels_last model fed NCHW inputs falls back to slow conversions.
        self.memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        # The uint8 splits, moved to the device once: batches are sliced from there.
        self.train_x, self.train_y, self.val_x, self.val_y = device_splits(train_split, validation_split, device)
        config.check_image_size(*self.train_x.shape[-2:])
        self.flip_base = _flip_coins(len(self.train_x), config.seed, device)
        self.batch_size = min(config.batch_size, len(self.train_x))
        # Data-parallel: each of the group's processes trains an equal share of every global batch.
        world = group.world_size if group else 1
        self.batch_size -= self.batch_size % world
        if self.batch_size == 0:
            raise ValueError(f"{len(self.train_x)} training images cannot be shared by {world} processes")
        self.shard_size = self.batch_size // world
        # The rows of every global batch whose pixels this process makes (None: all).
        self.rows = _rows_made(group.rank, world, self.shard_size, config.mixes) if group else None
        # Drop the ragged last batch: every step then has the same shape
        # (no recompiles, steady BatchNorm statistics).
        self.steps_per_epoch = len(self.train_x) // self.batch_size
        self.total_steps = self.steps_per_epoch * config.epochs
        # The model and what updates it.
        self.num_classes = int(model_config.get("num_classes", 10))
        self.model = self._build_model()
        self.optimizer = build_optimizer(self.model, config, use_fused_optimizer(config.fused_optimizer, device))
        self.scheduler = build_scheduler(self.optimizer, self.total_steps, config)
        # Whether the steps run compiled: False from the moment compiling fails (:meth:`_fall_back_to_eager`).
        self.compiled = config.compile
        self.train_model = self._wrap()
        # After DDP's first broadcast: every rank averages the same weights.
        self.ema = WeightEMA(self.model) if config.ema_decay > 0 else None
        if self.is_main:
            self._log_setup()
        # Progress: none yet, or where the resumed checkpoint left off (its weights loaded).
        self.history, self.start_epoch, self.global_step = self._resume()

    # --- setup ---------------------------------------------------------------

    def _build_model(self) -> nn.Module:
        """The model, initialised from the run's seed, on the device in its memory format."""
        torch.manual_seed(self.config.seed)  # model initialisation
        model = build_model(self.model_name, self.model_config)
        if hasattr(model, "init_whitening"):
            self._init_whitening(model)
        if self._syncs_batchnorm(model):
            model = convert_sync_batchnorm(model, self.device)
        model = model.to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model

    def _syncs_batchnorm(self, model: nn.Module) -> bool:
        """Whether BatchNorm takes the global batch's statistics: in a group, if asked or on auto."""
        wanted = self.config.distributed.sync_batchnorm
        return self.group is not None and has_batchnorm(model) and (wanted is True or wanted == AUTO)

    def _wrap(self) -> nn.Module:
        """The module the training steps call: the model, in DDP within a group, compiled if asked.

        Built once for the whole run: the whitening bias is frozen in the
        optimiser (:meth:`_freeze_whitening`), so the parameters that train,
        the compiled graph and DDP's reducer stay the same throughout.
        """
        module = self.model if self.group is None else data_parallel(self.model, self.device)
        return self._compile(module) if self.compiled else module

    def _compile(self, module: nn.Module) -> nn.Module:
        """``torch.compile(module)``, or the module itself where torch.compile refuses at once."""
        try:
            return torch.compile(module)
        except Exception as error:  # noqa: BLE001 (e.g. a Python version Dynamo does not support yet)
            self._fall_back_to_eager(error)
            return module

    def _fall_back_to_eager(self, error: Exception) -> None:
        """After a compile failure: warn, and build no compiled module from now on (the caller unwraps its own).

        Inductor and Triton compile kernels with a host C compiler and other
        tools that may be missing or broken; slower eager steps beat a run
        that stops before it starts.
        """
        lines = [line for line in str(error).splitlines() if line.strip()]
        cause = f"{type(error).__name__}: {lines[0][:300] if lines else ''}"
        # Every process says so: in a group, one rank may fail where another compiles.
        logger.warning(
            "torch.compile failed for %s (%s); training continues uncompiled (eager, slower). "
            "To skip compiling, set %s.training.compile=false (kedro run --params=%s.training.compile=false)",
            self.model_name,
            cause,
            self.model_name,
            self.model_name,
        )
        self.compiled = False

    def _freeze_whitening(self, frozen: bool) -> None:
        """Freeze or thaw the whitening stem's bias (models with one), from the next step on.

        Its parameter group's lr and weight decay go to 0 (:meth:`StepSchedule.freeze`),
        and stay there whatever the schedule; its ``requires_grad`` stays on.
        """
        self.scheduler.freeze(WHITENING_BIAS, frozen)

    def _init_whitening(self, model: nn.Module) -> None:
        generator = torch.Generator().manual_seed(self.config.seed)
        count = min(WHITENING_SAMPLES, len(self.train_x))
        index = torch.randperm(len(self.train_x), generator=generator)[:count]
        sample = self.normalize(self.train_x[index.to(self.device)])
        model.init_whitening(sample.contiguous())

    def _log_setup(self) -> None:
        logger.info(
            "training %s (%s parameters) on %s: %d images, batch %d%s, %d steps/epoch, "
            "%d epochs, autocast %s, channels_last %s, compile %s",
            self.model_name,
            f"{count_parameters(self.model):,}",
            self.device,
            len(self.train_x),
            self.batch_size,
            f" ({self.shard_size} in each of {self.group.world_size} processes)" if self.group else "",
            self.steps_per_epoch,
            self.config.epochs,
            self.amp_dtype,
            self.channels_last,
            self.config.compile,
        )

    def _resume(self) -> tuple[list[dict[str, Any]], int, int]:
        """(history, epochs done, steps done): none yet, or those of the checkpoint, whose state is loaded.

        In a group, rank 0 reads the checkpoint and every rank loads its copy.
        """
        checkpoint = self._checkpoint_to_resume() if self.is_main else None
        if self.group is not None:
            checkpoint = self.group.broadcast(checkpoint)
        if checkpoint is None:
            return [], 0, 0
        self.model.load_state_dict(checkpoint["model_state"])
        self.optimizer.load_state_dict(checkpoint["optimizer_state"])
        self.scheduler.load_state_dict(checkpoint["scheduler_state"])
        if self.ema is not None and checkpoint.get("ema_state"):
            self.ema.load_state_dict(checkpoint["ema_state"])
        rng = checkpoint["rng_state"]
        torch.set_rng_state(rng["torch"].cpu())
        if self.device.type == "cuda" and rng.get("cuda") is not None:
            torch.cuda.set_rng_state(rng["cuda"].cpu(), self.device)
        if self.is_main:
            logger.info("resumed from %s after epoch %d", self.checkpoint_path, checkpoint["epoch"])
        return [dict(row) for row in checkpoint["history"]], int(checkpoint["epoch"]), int(checkpoint["global_step"])

    def _checkpoint_to_resume(self) -> dict[str, Any] | None:
        """The checkpoint to continue, checked; None when there is none or no resume was asked for."""
        path = self.checkpoint_path
        if not self.config.resume:
            return None
        if path is None or not path.exists():
            logger.info("resume requested but no checkpoint at %s; starting afresh", path)
            return None
        # On the CPU in a group: rank 0 sends it to the others as a pickle.
        checkpoint = load_checkpoint(
            path,
            map_location=self.device if self.group is None else "cpu",
            max_model_parameters=self.config.max_model_parameters,
            limit_name="training.max_model_parameters",
        )
        self._check_resumable(checkpoint, path)
        return checkpoint

    def _check_resumable(self, checkpoint: dict[str, Any], path: Path) -> None:
        """Refuse a checkpoint of another model or other data; warn when result-changing settings differ.

        The normalisation statistics are a fingerprint of the training split: a
        re-split or another archive changes them, and resuming would then train
        on images that are now in the validation split.
        """
        if checkpoint["epoch"] > self.config.epochs:
            raise ParameterError(
                f"cannot resume from {path}: it has trained {checkpoint['epoch']} epochs already, more than "
                f"training.epochs ({self.config.epochs}); set epochs to at least {checkpoint['epoch']} to "
                "continue it, or resume: false to start afresh"
            )
        if (checkpoint["model_name"], checkpoint["model_config"]) != (self.model_name, self.model_config):
            raise ParameterError(
                f"cannot resume from {path}: it holds {checkpoint['model_name']} with "
                f"{checkpoint['model_config']}, not {self.model_name} with {self.model_config}; "
                "delete the checkpoint or set resume: false"
            )
        saved_groups = len(checkpoint["optimizer_state"]["param_groups"])
        if saved_groups != len(self.optimizer.param_groups):
            raise ParameterError(
                f"cannot resume from {path}: its optimizer has {saved_groups} parameter groups, this version's "
                f"{len(self.optimizer.param_groups)} (it was written by an earlier version of the project); "
                "set training.resume: false to start afresh"
            )
        trained_on = checkpoint.get("normalization") or {}
        if not all(_same_values(trained_on.get(key), self.normalization[key]) for key in ("mean", "std")):
            raise ParameterError(
                f"cannot resume from {path}: it was trained on other data (normalisation statistics "
                f"{trained_on.get('mean')} vs {self.normalization['mean']} now). Delete it, or set "
                "training.resume: false"
            )
        saved = {k: v for k, v in checkpoint["training_config"].items() if k not in _OPERATIONAL_KEYS}
        current = {k: v for k, v in config_to_dict(self.config).items() if k not in _OPERATIONAL_KEYS}
        changed = sorted(k for k in current if saved.get(k) != current[k])
        if changed:
            logger.warning(
                "resuming %s with changed training settings %s: the result will differ from an uninterrupted run",
                path,
                changed,
            )

    def _warm_up_compile(self) -> float:
        """Compile every graph the run will use before the training clock starts.

        A forward and backward pass on a real training batch makes
        torch.compile trace and compile now (one graph: freezing the whitening
        bias later changes no graph), so epoch 1's time is steady-state. The
        model's weights, buffers and the random generators are restored
        afterwards: the run is the same as without the warm-up. Returns the
        seconds spent.
        """
        if not self.compiled:
            return 0.0
        synchronize(self.device)
        started = time.perf_counter()
        saved = {key: value.clone() for key, value in self.model.state_dict().items()}
        images = self.normalize(self.train_x[: self.shard_size]).contiguous(memory_format=self.memory_format)
        labels = self.train_y[: self.shard_size]
        with torch.random.fork_rng(devices=_cuda_devices(self.device)):
            self.model.train()
            try:
                with autocast(self.device, self.amp_dtype):
                    logits = self.train_model(images)
                F.cross_entropy(logits.float(), labels).backward()
            except Exception as error:  # noqa: BLE001 (any compile failure: the eager steps still work)
                self._fall_back_to_eager(error)
                self.train_model = getattr(self.train_model, "_orig_mod", self.train_model)
        self.optimizer.zero_grad(set_to_none=True)
        self.model.load_state_dict(saved)
        synchronize(self.device)
        seconds = time.perf_counter() - started
        if self.compiled and self.is_main:
            logger.info("compiled %s in %.1f s (not counted as training time)", self.model_name, seconds)
        return seconds

    # --- the loop --------------------------------------------------------------

    def run(self) -> TrainResult:
        synchronize(self.device)
        setup_time = time.perf_counter() - self.started
        compile_time = self._warm_up_compile()
        # A resumed run carries the interrupted one's totals on, from its last history row.
        before = self.history[-1] if self.history else {}
        # Training time, the one definition (benchmarks, metrics, report): setup (data on the
        # device, model built, whitening) plus every epoch's synchronised steps, as airbench's
        # timer counts; compile warm-up and validation are not in it.
        train_time = before.get("train_time_s", 0.0) + setup_time
        compile_total = (before.get("compile_time_s") or 0.0) + compile_time
        self.progress = JobProgress(
            self.model_name, self.total_steps, self.batch_size, done_steps=self.global_step, bar=self.is_main
        )
        for epoch in range(self.start_epoch, self.config.epochs):
            row = self._train_epoch(epoch)
            if epoch == self.start_epoch and self.is_main:
                self._warn_if_long(row["epoch_time_s"])
            row.update(zip(("val_loss", "val_accuracy"), self._evaluate("none"), strict=True))
            if self._averages_apart:
                # What the EMA adds: the live weights' accuracy beside the average's.
                row.update(zip(("live_val_loss", "live_val_accuracy"), self._evaluate("none", ema=False), strict=True))
            train_time += row["epoch_time_s"]
            # Wall time: the interrupted run's, plus this one's since it started (setup included).
            wall_time = before.get("wall_time_s", 0.0) + time.perf_counter() - self.started
            row.update(
                train_time_s=train_time, wall_time_s=wall_time, compile_time_s=compile_total, compiled=self.compiled
            )
            self.history.append(row)
            if self.is_main:
                self._log_epoch(row)
            done = epoch + 1
            every = self.config.checkpoint_every
            if self._writes_checkpoints and every and done % every == 0 and done < self.config.epochs:
                save_checkpoint(self._checkpoint(done), self.checkpoint_path)
        return self._finish(setup_time, compile_time)

    @property
    def _writes_checkpoints(self) -> bool:
        return self.checkpoint_path is not None and self.is_main

    @property
    def _averages_apart(self) -> bool:
        """Whether the EMA differs from the live weights (an EMA without lookahead), so both are validated."""
        return self.ema is not None and not self.config.lookahead

    def _log_epoch(self, row: dict[str, Any]) -> None:
        live = f" (live weights {row['live_val_accuracy']:.4f}, EMA above)" if "live_val_accuracy" in row else ""
        logger.info(
            "epoch %d/%d: train loss %.4f acc %.4f | val loss %.4f acc %.4f%s | lr %.3g | %.1fs, %.0f img/s",
            row["epoch"],
            self.config.epochs,
            row["train_loss"],
            row["train_accuracy"],
            row["val_loss"],
            row["val_accuracy"],
            live,
            row["lr"],
            row["epoch_time_s"],
            row["images_per_s"],
        )

    def _train_epoch(self, epoch: int) -> dict[str, Any]:
        """One pass over the training split in the epoch's seeded order; returns its history row."""
        generator, host_generator = self._seed_epoch(epoch)
        order = torch.randperm(len(self.train_x), generator=generator, device=self.device)
        self._freeze_whitening(epoch >= self.config.whiten_bias_epochs)
        self.model.train()
        sums = _EpochSums(self.device)
        lr = self.optimizer.param_groups[0]["lr"]
        synchronize(self.device)
        start = time.perf_counter()
        # Everything the epoch draws on the host, drawn now and uploaded once: a step copies nothing to the device.
        drawn = draw_epoch_augmentation(
            self.steps_per_epoch,
            self.batch_size,
            host_generator,
            self.device,
            trivial_augment=self.config.trivial_augment,
            mixes=self.config.mixes,
            rows=self.rows,
        )
        self.progress.start_part(f"epoch {epoch + 1}/{self.config.epochs}", self.steps_per_epoch)
        for step in range(self.steps_per_epoch):
            lr = self.optimizer.param_groups[0]["lr"]
            self._train_step(epoch, step, order, generator, drawn, sums, start)
        synchronize(self.device)
        self.progress.end_part()
        row = self._epoch_row(epoch, sums, lr, time.perf_counter() - start)
        self.progress.show_loss(row["train_loss"])  # the next epoch's bar starts from this epoch's mean
        return row

    def _train_step(
        self,
        epoch: int,
        step: int,
        order: torch.Tensor,
        generator: torch.Generator,
        drawn: EpochAugmentation,
        sums: _EpochSums,
        start: float,
    ) -> None:
        """One step: its batch, the optimiser step, the sums; no host-to-device copy (tests/training/test_host_syncs.py)."""
        index = order[step * self.batch_size : (step + 1) * self.batch_size]
        images, labels, targets = self._batch(index, step, epoch, generator, drawn)
        objective, loss, logits = self._step(images, labels, targets)
        sums.add(objective, loss, logits, labels if targets is None else targets.argmax(1))
        self._watch_step(epoch, step, objective, loss, sums, start)
        self.progress.step()

    def _warn_if_long(self, epoch_seconds: float) -> None:
        """After the first epoch: warn once when the whole run is projected past ETA_WARNING_S."""
        projected = epoch_seconds * self.config.epochs
        if projected <= ETA_WARNING_S:
            return
        faster = (
            "the CPU profile (kedro run --env=cpu, the default without CUDA) trains in about 10 minutes"
            if self.device.type == "cpu"
            else "a narrower or shallower model trains faster"
        )
        logger.warning(
            "training %s is projected to take %s on %s (%d epochs at %.0f s each): %s; or lower training.epochs",
            self.model_name,
            format_duration(projected),
            self.device.type,
            self.config.epochs,
            epoch_seconds,
            faster,
        )

    def _seed_epoch(self, epoch: int) -> tuple[torch.Generator, torch.Generator]:
        """Seed epoch ``epoch``'s randomness; return its (device, host) generators.

        Dropout and drop-path draw from the global generator; data order and
        augmentation from the device generator; per-batch choices made on the
        host (TrivialAugment's op counts, MixUp's lambda and box) from a CPU
        generator, so that reading them never waits for the device.
        """
        seed = epoch_seed(self.config.seed, epoch)
        # In a group, every rank draws the same data order and augmentation
        # (of the whole global batch), but its own dropout masks.
        torch.manual_seed(seed + (self.group.rank if self.group else 0))
        return torch.Generator(device=self.device).manual_seed(seed), torch.Generator().manual_seed(seed)

    def _watch_step(
        self, epoch: int, step: int, objective: torch.Tensor, loss: torch.Tensor, sums: _EpochSums, start: float
    ) -> None:
        """Stop on a non-finite loss and log progress every ``log_every`` steps.

        Per-step NaN checks force a device sync; on CUDA they run at log points
        only. The progress bar's loss, the epoch's running mean, is read at
        those points only, when the device has just been waited for anyway.
        """
        logging_now = self.config.log_every and (step + 1) % self.config.log_every == 0
        if self.device.type != "cuda" or logging_now:
            self._check_finite(objective, epoch, step)
            self.progress.show_loss(sums.loss.item() / ((step + 1) * self.shard_size))
        if logging_now and self.is_main:
            elapsed = time.perf_counter() - start
            logger.info(
                "epoch %d/%d step %d/%d: loss %.4f, %.0f img/s",
                epoch + 1,
                self.config.epochs,
                step + 1,
                self.steps_per_epoch,
                loss.item(),
                (step + 1) * self.batch_size / max(elapsed, 1e-9),
            )

    def _epoch_row(self, epoch: int, sums: _EpochSums, lr: float, seconds: float) -> dict[str, Any]:
        """The epoch's history row, training columns only; fails if the mean objective is not finite.

        In a group the sums are all-reduced first: the row is the whole global batch's.
        """
        if self.group is not None:
            for total in (sums.loss, sums.objective, sums.correct):
                self.group.sum(total)
        images_seen = self.steps_per_epoch * self.batch_size
        mean_objective = sums.objective.item() / images_seen
        if not math.isfinite(mean_objective):
            raise self._non_finite_error(mean_objective, epoch, self.steps_per_epoch - 1)
        return {
            "epoch": epoch + 1,
            "train_loss": sums.loss.item() / images_seen,
            "train_objective": mean_objective,
            "train_accuracy": sums.correct.item() / images_seen,
            "lr": float(lr),
            "epoch_time_s": seconds,
            "images_per_s": images_seen / max(seconds, 1e-9),
        }

    def _batch(
        self, index: torch.Tensor, step: int, epoch: int, generator: torch.Generator, drawn: EpochAugmentation
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Augmented, normalised images, their labels and (when mixing) soft targets.

        TrivialAugment works on 0..1 pixels, so it runs before normalisation;
        translate, flip and cutout follow on the normalised batch, then MixUp
        or CutMix. Every random number comes from the epoch's device generator
        or was drawn on the host at the epoch's start (``drawn``).
        In a group, every rank draws the random numbers of the whole global
        batch but makes the pixels of its own rows only (``self.rows``): its
        share comes out as in one process, and the run sees what one process
        would see.
        """
        config = self.config
        rows = self.rows
        if rows is not None:
            index = rows.take(index)
        pixels = self.train_x[index]
        if drawn.trivial_augment is not None:
            images = self.normalize.from_unit(drawn.trivial_augment.apply(step, pixels.float() / 255.0))
        else:
            images = self.normalize(pixels)
        if config.flip == "alternating":
            flips = alternating_flips(self.flip_base[index], epoch)
        elif config.flip == "random":
            flips = random_flips(self.batch_size, generator)  # a coin for every image of the global batch
            flips = flips if rows is None else rows.take(flips)
        else:
            flips = None
        images = augment(
            images, flips=flips, translate=config.translate, cutout=config.cutout, generator=generator, rows=rows
        )
        labels = self.train_y[index]
        targets = None
        if config.mixes:
            images, targets = mix_batch(
                images,
                labels,
                self.num_classes,
                mixup_alpha=config.mixup_alpha,
                cutmix_alpha=config.cutmix_alpha,
                switch_prob=config.mix_switch_prob,
                generator=drawn.mix_rngs[step],
            )
        if rows is not None:  # the share comes first; a mirrored share made for mixing goes
            images, labels = images[: self.shard_size], labels[: self.shard_size]
            targets = None if targets is None else targets[: self.shard_size]
        return images.contiguous(memory_format=self.memory_format), labels, targets

    def _step(
        self, images: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One optimiser step; returns (objective, plain cross-entropy, logits).

        The objective is what is minimised (with label smoothing, against the
        soft targets when mixing). The plain cross-entropy, without smoothing,
        is what the history logs as train_loss: the same measure as val_loss.
        """
        config = self.config
        with autocast(self.device, self.amp_dtype):
            logits = self.train_model(images)
        logits = logits.float()
        smoothing = config.label_smoothing
        if targets is None:
            objective = F.cross_entropy(logits, labels, label_smoothing=smoothing)
            plain = F.cross_entropy(logits.detach(), labels) if smoothing else objective.detach()
        else:
            objective = soft_target_cross_entropy(logits, targets, smoothing)
            plain = soft_target_cross_entropy(logits.detach(), targets) if smoothing else objective.detach()
        self.optimizer.zero_grad(set_to_none=True)
        objective.backward()
        if config.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.global_step += 1
        if self.ema is not None and self.global_step % config.ema_every == 0:
            decay = ema_decay_at(self.global_step, self.total_steps, config)
            self.ema.update(self.model, decay, lookahead=config.lookahead)
        return objective, plain, logits

    def _check_finite(self, loss: torch.Tensor, epoch: int, step: int) -> None:
        """Raise on a non-finite loss; in a group, on every rank when any rank's is (all stop together)."""
        if self.group is not None:
            loss = self.group.sum(loss.detach().float().clone())
        value = loss.item()
        if not math.isfinite(value):
            raise self._non_finite_error(value, epoch, step)

    def _non_finite_error(self, value: float, epoch: int, step: int) -> NonFiniteLossError:
        return NonFiniteLossError(
            f"training loss became {value} at epoch {epoch + 1}, step {step + 1}: the run "
            f"diverged. Lower lr (now {self.config.lr}), set grad_clip, or check the "
            "inputs and normalisation statistics for NaN/inf"
        )

    # --- evaluation and checkpoints --------------------------------------------

    @torch.no_grad()
    def _evaluate(self, tta: str, ema: bool = True) -> tuple[float, float]:
        """(loss, accuracy) on the validation split with the EMA weights if any (and ``ema``), else the live ones.

        Runs the uncompiled module: eval mode, the short last batch and the TTA
        views would each make torch.compile trace and compile again. In a
        group, rank 0 validates and the others return NaN.
        """
        if len(self.val_x) == 0 or not self.is_main:
            return math.nan, math.nan
        live = self._swap_in_ema() if ema else None
        self.model.eval()
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        with autocast(self.device, self.amp_dtype):
            for start in range(0, len(self.val_x), self.config.eval_batch_size):
                stop = start + self.config.eval_batch_size
                images = self.normalize(self.val_x[start:stop])
                logits = tta_logits(self.model, images.contiguous(memory_format=self.memory_format), tta)
                labels = self.val_y[start:stop]
                loss_sum += F.cross_entropy(logits.float(), labels, reduction="sum")
                correct += (logits.argmax(1) == labels).sum()
        if live is not None:
            self.model.load_state_dict(live)
        return loss_sum.item() / len(self.val_x), correct.item() / len(self.val_x)

    def _swap_in_ema(self) -> dict[str, torch.Tensor] | None:
        """Load the EMA into the model; return the live state to put back (or None)."""
        if self.ema is None or self.config.lookahead:
            return None  # with lookahead the live weights were just set from the EMA
        live = {k: v.clone() for k, v in self.model.state_dict().items()}
        self.model.load_state_dict(self.ema.state_dict())
        return live

    def _checkpoint(self, epochs_done: int) -> dict[str, Any]:
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "format": CHECKPOINT_FORMAT,
            "model_name": self.model_name,
            "model_config": dict(self.model_config),
            "training_config": config_to_dict(self.config),
            "model_state": clean_state_dict(self.model.state_dict()),
            "ema_state": clean_state_dict(self.ema.state_dict()) if self.ema else None,
            "optimizer_state": to_cpu(self.optimizer.state_dict()),
            "scheduler_state": self.scheduler.state_dict(),
            "epoch": epochs_done,
            "global_step": self.global_step,
            "rng_state": rng,
            "history": [dict(row) for row in self.history],
            "normalization": {key: list(values) for key, values in self.normalization.items()},
        }

    def _finish(self, setup_time: float, compile_time: float) -> TrainResult:
        if self.ema is not None and self.config.lookahead:
            # Finish on the average: the live weights take the EMA's values.
            self.ema.update(self.model, 1.0, lookahead=True)
        final = {"tta": self.config.tta}
        final["val_loss"], final["val_accuracy"] = self._evaluate(self.config.tta)
        if self.is_main:
            logger.info(
                "finished %s: val accuracy %.4f (tta %s) after %d epochs",
                self.model_name,
                final["val_accuracy"],
                self.config.tta,
                self.config.epochs,
            )
        checkpoint = self._checkpoint(self.config.epochs)
        checkpoint["final_metrics"] = dict(final)
        if self._writes_checkpoints:
            save_checkpoint(checkpoint, self.checkpoint_path)
        if self.ema is not None:
            self.model.load_state_dict(self.ema.state_dict())
        return TrainResult(
            checkpoint=checkpoint,
            history=[dict(row) for row in self.history],
            model=self.model.eval(),
            final_metrics=final,
            setup_time_s=setup_time,
            compile_time_s=compile_time,
            compiled=self.compiled,
        )

"""The model and the module the steps call: built and seeded, in DDP within a group, compiled (or eager after a failure).

Built once for the whole run: the whitening bias is frozen in the optimiser
(:func:`freeze_whitening`), not by a new wrapper, so the parameters that
train, the compiled graph and DDP's reducer stay the same throughout.
"""

from __future__ import annotations

import logging
import time

import torch
import torch.nn.functional as F
from torch import nn

from image_recognition.common.device import autocast, synchronize
from image_recognition.models import build_model
from image_recognition.training.batches import Batches
from image_recognition.training.config import AUTO, TrainingConfig
from image_recognition.training.ddp import ProcessGroup, convert_sync_batchnorm, data_parallel, has_batchnorm
from image_recognition.training.optim import WHITENING_BIAS, StepSchedule
from image_recognition.training.state import TrainingRun

logger = logging.getLogger(__name__)

# Images used to estimate the whitening layer's patch covariance.
WHITENING_SAMPLES = 5000


def cuda_devices(device: torch.device) -> list[int]:
    """The CUDA device indices whose generators a run on ``device`` draws from."""
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]


def seeded_model(
    model_name: str, model_config: dict, config: TrainingConfig, batches: Batches, group: ProcessGroup | None
) -> nn.Module:
    """The model, initialised from the run's seed (its whitening stem from the data), on the device in its layout.

    In a group, BatchNorm takes the global batch's statistics if asked or on auto.
    """
    torch.manual_seed(config.seed)  # model initialisation
    model = build_model(model_name, model_config)
    if hasattr(model, "init_whitening"):
        _init_whitening(model, config.seed, batches)
    wanted = config.distributed.sync_batchnorm
    if group is not None and has_batchnorm(model) and (wanted is True or wanted == AUTO):
        model = convert_sync_batchnorm(model, batches.device)
    model = model.to(batches.device)
    if batches.memory_format == torch.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def _init_whitening(model: nn.Module, seed: int, batches: Batches) -> None:
    generator = torch.Generator().manual_seed(seed)
    count = min(WHITENING_SAMPLES, len(batches.train_x))
    index = torch.randperm(len(batches.train_x), generator=generator)[:count]
    sample = batches.normalize(batches.train_x[index.to(batches.device)])
    model.init_whitening(sample.contiguous())


def wrap(
    model: nn.Module, model_name: str, group: ProcessGroup | None, device: torch.device, compile_: bool
) -> tuple[nn.Module, bool]:
    """(the module the training steps call, whether it is compiled): ``model`` in DDP within a group, compiled if asked.

    Where torch.compile refuses at once, the module stays eager (:func:`fall_back_to_eager`).
    """
    module = model if group is None else data_parallel(model, device)
    if not compile_:
        return module, False
    try:
        return torch.compile(module), True
    except Exception as error:  # noqa: BLE001 (e.g. a Python version Dynamo does not support yet)
        fall_back_to_eager(model_name, error)
        return module, False


def fall_back_to_eager(model_name: str, error: Exception) -> None:
    """After a compile failure: warn; the caller builds no compiled module from now on and unwraps its own.

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
        model_name,
        cause,
        model_name,
        model_name,
    )


def freeze_whitening(scheduler: StepSchedule, frozen: bool) -> None:
    """Freeze or thaw the whitening stem's bias (models with one), from the next step on.

    Its parameter group's lr and weight decay go to 0 (:meth:`StepSchedule.freeze`),
    and stay there whatever the schedule; its ``requires_grad`` stays on.
    """
    scheduler.freeze(WHITENING_BIAS, frozen)


def warm_up_compile(run: TrainingRun) -> float:
    """Compile every graph the run will use before the training clock starts; return the seconds spent.

    A forward and backward pass on a real training batch makes
    torch.compile trace and compile now (one graph: freezing the whitening
    bias later changes no graph), so epoch 1's time is steady-state. The
    model's weights, buffers and the random generators are restored
    afterwards: the run is the same as without the warm-up. A failure falls
    back to the eager module.
    """
    if not run.compiled:
        return 0.0
    synchronize(run.device)
    started = time.perf_counter()
    saved = {key: value.clone() for key, value in run.model.state_dict().items()}
    batches = run.batches
    images = batches.normalize(batches.train_x[: batches.shard_size]).contiguous(memory_format=batches.memory_format)
    labels = batches.train_y[: batches.shard_size]
    with torch.random.fork_rng(devices=cuda_devices(run.device)):
        run.model.train()
        try:
            with autocast(run.device, run.amp_dtype):
                logits = run.train_model(images)
            F.cross_entropy(logits.float(), labels).backward()
        except Exception as error:  # noqa: BLE001 (any compile failure: the eager steps still work)
            fall_back_to_eager(run.model_name, error)
            run.compiled = False
            run.train_model = getattr(run.train_model, "_orig_mod", run.train_model)
    run.optimizer.zero_grad(set_to_none=True)
    run.model.load_state_dict(saved)
    synchronize(run.device)
    seconds = time.perf_counter() - started
    if run.compiled and run.is_main:
        logger.info("compiled %s in %.1f s (not counted as training time)", run.model_name, seconds)
    return seconds

"""Resume and checkpoint state: what a checkpoint holds, and continuing a run from one exactly.

A checkpoint is written at an epoch's end with the model, EMA, optimiser,
scheduler and random generator states, so a resumed run takes the steps the
uninterrupted run would have taken. One of another model or other data is
refused; changed settings that alter the result are named in a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from image_recognition.common.errors import ParameterError
from image_recognition.common.params import config_to_dict
from image_recognition.training.budget import Plan
from image_recognition.training.checkpoint import (
    CHECKPOINT_FORMAT,
    checkpoint_image_size,
    clean_state_dict,
    load_checkpoint,
    to_cpu,
)
from image_recognition.training.state import TrainingRun

logger = logging.getLogger(__name__)

# Training-config keys that may change on resume without changing the result.
# A checkpoint written by any number of processes resumes in any other, with a
# warning: dropout masks and unsynchronised BatchNorm statistics depend on them.
OPERATIONAL_KEYS = {"resume", "device", "log_every", "checkpoint_every", "eval_batch_size", "max_model_parameters"}


def checkpoint_state(run: TrainingRun, epochs_done: int) -> dict[str, Any]:
    """The run's checkpoint after ``epochs_done`` epochs: weights unwrapped, every state on the CPU."""
    rng = {"torch": torch.get_rng_state()}
    if run.device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(run.device)
    return {
        "format": CHECKPOINT_FORMAT,
        "model_name": run.model_name,
        "model_config": dict(run.model_config),
        "image_size": checkpoint_image_size({"model_config": run.model_config}),
        "training_config": config_to_dict(run.config),
        "model_state": clean_state_dict(run.model.state_dict()),
        "ema_state": clean_state_dict(run.ema.state_dict()) if run.ema else None,
        "optimizer_state": to_cpu(run.optimizer.state_dict()),
        "scheduler_state": run.scheduler.state_dict(),
        "epoch": epochs_done,
        "global_step": run.global_step,
        "rng_state": rng,
        "history": [dict(row) for row in run.history],
        "plan": run.plan.to_dict(),
        "stopped_early": run.stopped_early,
        "normalization": {key: list(values) for key, values in run.normalization.items()},
    }


def resume(run: TrainingRun) -> None:
    """Continue from the run's checkpoint, if asked and there is one: load its states, history and step counts.

    In a group, rank 0 reads the checkpoint and every rank loads its copy.
    """
    checkpoint = _checkpoint_to_resume(run) if run.is_main else None
    if run.group is not None:
        checkpoint = run.group.broadcast(checkpoint)
    if checkpoint is None:
        return
    if run.config.budgeted:
        run.adopt(Plan.from_dict(checkpoint["plan"]))  # its measured plan, never a new probe
    run.model.load_state_dict(checkpoint["model_state"])
    run.optimizer.load_state_dict(checkpoint["optimizer_state"])
    run.scheduler.load_state_dict(checkpoint["scheduler_state"])
    if run.ema is not None and checkpoint.get("ema_state"):
        run.ema.load_state_dict(checkpoint["ema_state"])
    rng = checkpoint["rng_state"]
    torch.set_rng_state(rng["torch"].cpu())
    if run.device.type == "cuda" and rng.get("cuda") is not None:
        torch.cuda.set_rng_state(rng["cuda"].cpu(), run.device)
    if run.is_main:
        logger.info("resumed from %s after epoch %d", run.checkpoint_path, checkpoint["epoch"])
    run.history = [dict(row) for row in checkpoint["history"]]
    run.start_epoch, run.global_step = int(checkpoint["epoch"]), int(checkpoint["global_step"])


def _checkpoint_to_resume(run: TrainingRun) -> dict[str, Any] | None:
    """The checkpoint to continue, checked; None when there is none or no resume was asked for."""
    path = run.checkpoint_path
    if not run.config.resume:
        return None
    if path is None or not path.exists():
        logger.info("resume requested but no checkpoint at %s; starting afresh", path)
        return None
    # On the CPU in a group: rank 0 sends it to the others as a pickle.
    checkpoint = load_checkpoint(
        path,
        map_location=run.device if run.group is None else "cpu",
        max_model_parameters=run.config.max_model_parameters,
        limit_name="training.max_model_parameters",
    )
    check_resumable(run, checkpoint, path)
    return checkpoint


def check_resumable(run: TrainingRun, checkpoint: dict[str, Any], path: Path) -> None:
    """Refuse a checkpoint of another model or other data; warn when result-changing settings differ.

    The normalisation statistics are a fingerprint of the training split: a
    re-split or another archive changes them, and resuming would then train
    on images that are now in the validation split.
    """
    problem = _refusal(run, checkpoint)
    if problem:
        raise ParameterError(f"cannot resume from {path}: {problem}")
    saved = {k: v for k, v in checkpoint["training_config"].items() if k not in OPERATIONAL_KEYS}
    current = {k: v for k, v in config_to_dict(run.config).items() if k not in OPERATIONAL_KEYS}
    changed = sorted(k for k in current if saved.get(k) != current[k])
    if changed:
        logger.warning(
            "resuming %s with changed training settings %s: the result will differ from an uninterrupted run",
            path,
            changed,
        )


def _refusal(run: TrainingRun, checkpoint: dict[str, Any]) -> str | None:
    """Why ``checkpoint`` cannot be continued by ``run``, and what to do; None when it can."""
    budgeted = (checkpoint.get("plan") or {}).get("budget_s") is not None
    if run.config.budgeted != budgeted:
        given, recorded = ("budget_s", "epochs") if run.config.budgeted else ("epochs", "budget_s")
        return (
            f"it was trained to training.{recorded} and this run gives training.{given}; a run keeps the length "
            f"it started with: set {recorded} as it was, or resume: false to start afresh"
        )
    if run.config.epochs is not None and checkpoint["epoch"] > run.config.epochs:
        return (
            f"it has trained {checkpoint['epoch']} epochs already, more than training.epochs "
            f"({run.config.epochs}); set epochs to at least {checkpoint['epoch']} to continue it, or resume: false "
            "to start afresh"
        )
    if (checkpoint["model_name"], checkpoint["model_config"]) != (run.model_name, run.model_config):
        return (
            f"it holds {checkpoint['model_name']} with {checkpoint['model_config']}, not {run.model_name} with "
            f"{run.model_config}; delete the checkpoint or set resume: false"
        )
    saved_groups = len(checkpoint["optimizer_state"]["param_groups"])
    if saved_groups != len(run.optimizer.param_groups):
        return (
            f"its optimizer has {saved_groups} parameter groups, this version's {len(run.optimizer.param_groups)} "
            "(it was written by an earlier version of the project); set training.resume: false to start afresh"
        )
    trained_on = checkpoint.get("normalization") or {}
    if not all(_same_values(trained_on.get(key), run.normalization[key]) for key in ("mean", "std")):
        return (
            f"it was trained on other data (normalisation statistics {trained_on.get('mean')} vs "
            f"{run.normalization['mean']} now). Delete it, or set training.resume: false"
        )
    return None


def _same_values(saved: Sequence[float] | None, current: Sequence[float]) -> bool:
    """Whether two lists of statistics are equal to float precision (a checkpoint stores them as JSON floats)."""
    return saved is not None and len(saved) == len(current) and np.allclose(saved, current, rtol=0, atol=1e-9)

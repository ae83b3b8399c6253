"""Resuming: a killed run continues exactly, and a checkpoint it cannot continue is refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from image_recognition.common.errors import ParameterError
from image_recognition.models.tiny import TINY_MODELS
from image_recognition.training import load_checkpoint, train
from tests.training.helpers import LEARNING_RECIPES, assert_same_state, without_timing

_CHILD = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from image_recognition.training import train

    arrays = np.load(sys.argv[1])
    args = json.loads(sys.argv[2])
    train(
        args["name"], args["model"], args["training"],
        {"images": arrays["train_images"], "labels": arrays["train_labels"]},
        {"images": arrays["val_images"], "labels": arrays["val_labels"]},
        args["normalization"], sys.argv[3],
    )
    """
)


def _run_and_kill_after_first_checkpoint(tmp_path: Path, name: str, training: dict, data_args: dict) -> Path:
    """Start training in a child process and SIGKILL it once a checkpoint exists."""
    arrays = tmp_path / "data.npz"
    train_split, validation_split = data_args["train_split"], data_args["validation_split"]
    np.savez(
        arrays,
        train_images=train_split["images"],
        train_labels=train_split["labels"],
        val_images=validation_split["images"],
        val_labels=validation_split["labels"],
    )
    checkpoint = tmp_path / "run.pt"
    args = {
        "name": name,
        "model": TINY_MODELS[name],
        "training": training,
        "normalization": data_args["normalization"],
    }
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(arrays), json.dumps(args), str(checkpoint)],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 300
    try:
        while not checkpoint.exists():
            if child.poll() is not None:
                raise AssertionError(f"child exited early: {child.stderr.read().decode()}")
            if time.monotonic() > deadline:
                raise AssertionError("no checkpoint appeared within 300 s")
            time.sleep(0.005)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait()
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    return checkpoint


@pytest.mark.slow  # a child process, killed mid-training
@pytest.mark.parametrize("name", ["cnn", "vit"])
def test_resume_after_kill_matches_an_uninterrupted_run(tmp_path: Path, name: str, data_args: dict) -> None:
    training = {
        **LEARNING_RECIPES[name],
        "epochs": 6,
        "checkpoint_every": 1,
        "log_every": 0,
        "cutout": 4,
    }
    checkpoint = _run_and_kill_after_first_checkpoint(tmp_path, name, training, data_args)
    interrupted_at = load_checkpoint(checkpoint)["epoch"]
    assert 1 <= interrupted_at < training["epochs"], "the child was not stopped part-way"

    resumed = train(name, TINY_MODELS[name], {**training, "resume": True}, checkpoint_path=checkpoint, **data_args)
    uninterrupted = train(name, TINY_MODELS[name], training, **data_args)

    assert without_timing(resumed.history) == without_timing(uninterrupted.history)
    assert_same_state(resumed.checkpoint["model_state"], uninterrupted.checkpoint["model_state"])
    assert_same_state(resumed.checkpoint["ema_state"], uninterrupted.checkpoint["ema_state"])
    saved = load_checkpoint(checkpoint)
    assert saved["epoch"] == training["epochs"]
    assert_same_state(saved["model_state"], uninterrupted.checkpoint["model_state"])


def test_resume_refuses_a_checkpoint_of_another_model(tmp_path: Path, data_args: dict) -> None:
    path = tmp_path / "run.pt"
    train("simple_cnn", {}, {"epochs": 1, "batch_size": 250}, checkpoint_path=path, **data_args)
    with pytest.raises(ValueError, match="cannot resume .* holds simple_cnn"):
        train("cnn", TINY_MODELS["cnn"], {"epochs": 1, "resume": True}, checkpoint_path=path, **data_args)


def test_resume_with_fewer_epochs_than_the_checkpoint_has_is_refused(tmp_path: Path, data_args: dict) -> None:
    path = tmp_path / "run.pt"
    training = {"epochs": 2, "batch_size": 250, "translate": 0}
    train("simple_cnn", {}, training, checkpoint_path=path, **data_args)
    saved = path.read_bytes()
    # It used to write a checkpoint claiming 1 epoch with 2 history rows.
    with pytest.raises(
        ParameterError, match=r"cannot resume from .*run\.pt: it has trained 2 epochs already, more than"
    ):
        train("simple_cnn", {}, {**training, "epochs": 1, "resume": True}, checkpoint_path=path, **data_args)
    assert path.read_bytes() == saved
    same = train("simple_cnn", {}, {**training, "resume": True}, checkpoint_path=path, **data_args)
    assert same.checkpoint["epoch"] == len(same.checkpoint["history"]) == 2


def test_a_checkpoint_whose_optimizer_has_other_parameter_groups_is_refused(tmp_path: Path, data_args: dict) -> None:
    # The cnn's whitening bias got a parameter group of its own: older scratch checkpoints have one group fewer.
    path = tmp_path / "run.pt"
    training = {"epochs": 2, "batch_size": 250, "translate": 0}
    train("simple_cnn", {}, {**training, "epochs": 1}, checkpoint_path=path, **data_args)
    checkpoint = torch.load(path, weights_only=True)
    groups = checkpoint["optimizer_state"]["param_groups"]
    groups.append({**groups[0], "params": []})
    torch.save(checkpoint, path)
    with pytest.raises(
        ParameterError,
        match=r"cannot resume from .*run\.pt: its optimizer has \d+ parameter groups, this version.s \d+ ",
    ):
        train("simple_cnn", {}, {**training, "resume": True}, checkpoint_path=path, **data_args)


def test_resume_without_a_checkpoint_starts_afresh(tmp_path: Path, data_args: dict) -> None:
    path = tmp_path / "missing.pt"
    result = train(
        "simple_cnn", {}, {"epochs": 1, "batch_size": 250, "resume": True}, checkpoint_path=path, **data_args
    )
    assert len(result.history) == 1
    assert path.exists()

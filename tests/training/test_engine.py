"""The training loop: it learns, is reproducible, resumes exactly and fails loudly."""

from __future__ import annotations

import json
import math
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
from image_recognition.models import build_model
from image_recognition.models.tiny import TINY_MODELS
from image_recognition.training import (
    TIMING_KEYS,
    NonFiniteLossError,
    engine,
    load_checkpoint,
    load_model,
    predict_logits,
    train,
)

# The history columns that do not depend on timing: equal between identical runs.
TIMING_FREE = ("epoch", "train_loss", "train_objective", "train_accuracy", "val_loss", "val_accuracy", "lr")

# Settings under which each tiny model learns the synthetic classes in seconds.
LEARNING_RECIPES = {
    "cnn": {
        "epochs": 5,
        "batch_size": 64,
        "lr": 0.2,
        "weight_decay": 5e-4,
        "label_smoothing": 0.1,
        "ema_decay": 0.7,
        "ema_every": 2,
        "ema_ramp": True,
        "lookahead": True,
        "tta": "flip_translate",
    },
    "vit": {
        "epochs": 8,
        "batch_size": 64,
        "optimizer": "adamw",
        "lr": 3e-3,
        "weight_decay": 0.05,
        "cutout": 8,
        "ema_decay": 0.9,
    },
    "simple_cnn": {"epochs": 10, "batch_size": 16, "lr": 0.02, "translate": 0},
}
CHANCE = 0.1
LEARNED = 0.6


def _without_timing(history: list[dict]) -> list[dict]:
    return [{key: row[key] for key in TIMING_FREE} for row in history]


def _assert_same_state(left: dict, right: dict) -> None:
    assert left.keys() == right.keys()
    for key, value in left.items():
        assert torch.equal(value, right[key]), key


@pytest.mark.slow  # trains for more than a few seconds on 2 CPU cores
@pytest.mark.parametrize("name", ["cnn", "vit", "simple_cnn"])
def test_learns_synthetic_classes_well_above_chance(name: str, data_args: dict) -> None:
    training = {**LEARNING_RECIPES[name], "log_every": 5}
    result = train(name, TINY_MODELS[name], training, **data_args)
    assert len(result.history) == training["epochs"]
    last = result.history[-1]
    columns = set(TIMING_FREE) | set(TIMING_KEYS) | {"compiled"}
    if training.get("ema_decay") and not training.get("lookahead"):
        columns |= {"live_val_loss", "live_val_accuracy"}  # the live weights, validated beside the EMA
    assert set(last) == columns
    assert last["val_accuracy"] > LEARNED > CHANCE
    assert result.final_metrics["val_accuracy"] > LEARNED
    assert result.history[0]["train_loss"] > last["train_loss"]


@pytest.mark.slow  # trains for more than a few seconds on 2 CPU cores
def test_same_seed_gives_identical_history_and_weights(data_args: dict) -> None:
    training = {**LEARNING_RECIPES["cnn"], "epochs": 2, "cutout": 4}
    first = train("cnn", TINY_MODELS["cnn"], training, **data_args)
    second = train("cnn", TINY_MODELS["cnn"], training, **data_args)
    assert _without_timing(first.history) == _without_timing(second.history)
    _assert_same_state(first.checkpoint["model_state"], second.checkpoint["model_state"])
    other = train("cnn", TINY_MODELS["cnn"], {**training, "seed": 1}, **data_args)
    assert _without_timing(other.history) != _without_timing(first.history)


def test_training_leaves_the_global_rng_alone(data_args: dict) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train("simple_cnn", {}, {"epochs": 1, "batch_size": 250}, **data_args)
    torch.testing.assert_close(torch.rand(3), expected)


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

    assert _without_timing(resumed.history) == _without_timing(uninterrupted.history)
    _assert_same_state(resumed.checkpoint["model_state"], uninterrupted.checkpoint["model_state"])
    _assert_same_state(resumed.checkpoint["ema_state"], uninterrupted.checkpoint["ema_state"])
    saved = load_checkpoint(checkpoint)
    assert saved["epoch"] == training["epochs"]
    _assert_same_state(saved["model_state"], uninterrupted.checkpoint["model_state"])


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


def test_diverging_loss_stops_with_a_clear_error(data_args: dict) -> None:
    training = {"epochs": 3, "batch_size": 50, "lr": 1e12, "momentum": 0.0, "translate": 0}
    with pytest.raises(NonFiniteLossError, match=r"training loss became (nan|inf) at epoch 1, step \d+.*Lower lr"):
        train("simple_cnn", {}, training, **data_args)


def test_overflowing_inputs_stop_within_two_steps(data_args: dict) -> None:
    # A near-zero std passes validation but scales the pixels to ~1e30.
    poisoned = {**data_args, "normalization": {**data_args["normalization"], "std": [1e-30, 1e-30, 1e-30]}}
    with pytest.raises(NonFiniteLossError, match=r"became (nan|inf) at epoch 1, step [12]:"):
        train("simple_cnn", {}, {"epochs": 1, "batch_size": 50}, **poisoned)


def test_non_finite_normalisation_statistics_are_refused(data_args: dict) -> None:
    poisoned = {**data_args, "normalization": {**data_args["normalization"], "mean": [math.nan, 0.5, 0.5]}}
    with pytest.raises(ValueError, match="must be finite"):
        train("cnn", TINY_MODELS["cnn"], {"epochs": 1}, **poisoned)


@pytest.mark.parametrize(
    ("model", "training", "message"),
    [
        ("cnn", {"epochs": 1, "learning_rate": 0.1}, r"unknown training key\(s\) \['learning_rate'\]"),
        ("cnn", {"epochs": 0}, "epochs must be a positive integer"),
        ("cnn", {"batch_size": -8}, "batch_size must be a positive integer"),
        ("resnet", {"epochs": 1}, "unknown model 'resnet'"),
        ("vit", {"epochs": 1}, "patch_size 3 does not divide image_size 32"),
        ("cnn", {"translate": 32}, r"training.translate must be below the images' side \(32 pixels\)"),
        ("cnn", {"max_model_parameters": 1000}, r"more than training.max_model_parameters \(1,000\)"),
    ],
)
def test_invalid_configuration_is_refused_before_training(
    model: str, training: dict, message: str, data_args: dict
) -> None:
    model_config = {"patch_size": 3} if model == "vit" else None
    with pytest.raises(ValueError, match=message):
        train(model, model_config, training, **data_args)


def test_mismatched_labels_are_refused(data_args: dict) -> None:
    train_split = {**data_args["train_split"], "labels": data_args["train_split"]["labels"][:10]}
    with pytest.raises(ValueError, match="expected 1000 labels"):
        train("simple_cnn", {}, {"epochs": 1}, **{**data_args, "train_split": train_split})


@pytest.mark.slow  # trains for more than a few seconds on 2 CPU cores
def test_gpu_settings_run_on_cpu(data_args: dict) -> None:
    """bf16 autocast, channels_last and a fused optimizer: the CUDA defaults, forced on CPU."""
    training = {
        "epochs": 1,
        "batch_size": 100,
        "autocast": "bf16",
        "channels_last": True,
        "fused_optimizer": True,
        "grad_clip": 1.0,
        "tta": "flip",
    }
    result = train("cnn", TINY_MODELS["cnn"], training, **data_args)
    assert math.isfinite(result.history[-1]["train_loss"])
    assert math.isfinite(result.final_metrics["val_loss"])
    assert result.checkpoint["optimizer_state"]["param_groups"][0]["fused"] is True


def test_compiled_tiny_model_trains_and_saves_unwrapped_weights(tmp_path: Path, data_args: dict) -> None:
    small = {
        **data_args,
        "train_split": {key: value[:200] for key, value in data_args["train_split"].items()},
        "validation_split": {key: value[:200] for key, value in data_args["validation_split"].items()},
    }
    path = tmp_path / "compiled.pt"
    result = train("simple_cnn", {}, {"epochs": 1, "batch_size": 100, "compile": True}, checkpoint_path=path, **small)
    # A compile failure falls back to eager steps: the run says which it did.
    assert result.compiled is True and result.history[-1]["compiled"] is True
    assert math.isfinite(result.history[-1]["train_loss"])
    state = load_checkpoint(path)["model_state"]
    assert not any(key.startswith("_orig_mod") for key in state)
    assert "conv1.weight" in state
    # Compilation happened before the training clock, and is recorded on its own.
    assert result.compile_time_s > 0
    assert result.history[-1]["compile_time_s"] == result.compile_time_s
    plain = train("simple_cnn", {}, {"epochs": 1, "batch_size": 100}, **small)
    assert plain.compile_time_s == 0.0
    assert plain.history[-1]["compile_time_s"] == 0.0
    assert plain.compiled is False and plain.history[-1]["compiled"] is False


def test_a_compile_failure_warns_once_and_trains_eagerly(monkeypatch, caplog, data_args: dict) -> None:
    """A real Inductor failure (no C++ compiler for the CPU kernels) costs speed, never the run."""
    from torch._inductor import config as inductor_config  # noqa: PLC0415
    from torch._inductor.utils import fresh_cache  # noqa: PLC0415

    small = {
        **data_args,
        "train_split": {key: value[:200] for key, value in data_args["train_split"].items()},
        "validation_split": {key: value[:200] for key, value in data_args["validation_split"].items()},
    }
    training = {"epochs": 1, "batch_size": 100}
    monkeypatch.setattr(inductor_config.cpp, "cxx", (None, "/nonexistent/g++"))
    caplog.set_level("WARNING", logger=engine.__name__)
    # No graph or kernel compiled by an earlier test may stand in for the missing compiler.
    torch._dynamo.reset()
    try:
        with fresh_cache():
            result = train("simple_cnn", {}, {**training, "compile": True}, **small)
    finally:
        torch._dynamo.reset()
    assert result.compiled is False and result.history[-1]["compiled"] is False
    assert result.checkpoint["history"][-1]["compiled"] is False
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert len(warnings) == 1
    assert "No working C++ compiler" in warnings[0] and "simple_cnn.training.compile=false" in warnings[0]
    # The failed warm-up left no trace: the run is the uncompiled one, step for step.
    plain = train("simple_cnn", {}, training, **small)
    assert _without_timing(result.history) == _without_timing(plain.history)


@pytest.mark.slow  # trains for more than a few seconds on 2 CPU cores
def test_checkpoint_is_weights_only_loadable_and_rebuilds_the_model(tmp_path: Path, data_args: dict) -> None:
    path = tmp_path / "cnn.pt"
    # fp32, as predict_logits below: "auto" is bf16 on CPUs with native bf16, whose validation would differ.
    training = {**LEARNING_RECIPES["cnn"], "epochs": 2, "autocast": "off"}
    result = train("cnn", TINY_MODELS["cnn"], training, checkpoint_path=path, **data_args)
    raw = torch.load(path, weights_only=True)
    assert raw["model_name"] == "cnn"
    assert raw["normalization"] == data_args["normalization"]
    assert [row["epoch"] for row in raw["history"]] == [1, 2]
    assert not list(tmp_path.glob("*.tmp"))  # the atomic write left no temporary file

    model = load_model(raw, device="cpu")
    assert not model.training
    validation, stats = data_args["validation_split"], data_args["normalization"]
    logits = predict_logits(
        model, validation["images"], stats["mean"], stats["std"], batch_size=128, tta=True, device="cpu"
    )
    accuracy = (logits.argmax(1).numpy() == validation["labels"]).mean()
    assert accuracy == pytest.approx(result.final_metrics["val_accuracy"], abs=1e-6)
    for tta in (False, "flip"):
        assert predict_logits(model, validation["images"][:5], stats["mean"], stats["std"], tta=tta).shape == (5, 10)


def test_without_validation_data_the_val_columns_are_nan(data_args: dict) -> None:
    result = train("simple_cnn", {}, {"epochs": 1, "batch_size": 250}, **{**data_args, "validation_split": None})
    assert math.isnan(result.history[0]["val_accuracy"])


@pytest.mark.slow  # trains for more than a few seconds on 2 CPU cores
def test_whitening_bias_starts_at_zero_and_is_frozen_after_its_epochs(monkeypatch, data_args: dict) -> None:
    assert torch.count_nonzero(build_model("cnn", TINY_MODELS["cnn"]).whiten.bias) == 0
    after_epoch = []
    train_epoch = engine._Trainer._train_epoch

    def spy(self, epoch):
        row = train_epoch(self, epoch)
        after_epoch.append(self.model.whiten.bias.detach().clone())
        return row

    monkeypatch.setattr(engine._Trainer, "_train_epoch", spy)
    training = {"epochs": 3, "batch_size": 64, "lr": 0.2, "weight_decay": 5e-4, "decay_biases": True}
    train("cnn", TINY_MODELS["cnn"], {**training, "whiten_bias_epochs": 1}, **data_args)
    first, second, third = after_epoch
    assert torch.count_nonzero(first) > 0  # trained in epoch 1
    assert torch.equal(second, first)  # then frozen: no step, not even weight decay
    assert torch.equal(third, first)


@pytest.mark.slow  # trains for more than a few seconds on 2 CPU cores
def test_train_loss_is_plain_cross_entropy_beside_the_smoothed_objective(data_args: dict) -> None:
    training = {**LEARNING_RECIPES["cnn"], "epochs": 2, "label_smoothing": 0.2}
    last = train("cnn", TINY_MODELS["cnn"], training, **data_args).history[-1]
    # Smoothing puts a floor under the objective; plain cross-entropy of a model
    # that has learned sits below it, in the same units as val_loss.
    assert last["train_loss"] < last["train_objective"]
    unsmoothed = train("cnn", TINY_MODELS["cnn"], {**training, "label_smoothing": 0.0}, **data_args).history[-1]
    assert unsmoothed["train_loss"] == pytest.approx(unsmoothed["train_objective"])


@pytest.mark.slow  # trains for more than a few seconds on 2 CPU cores
def test_vit_with_conv_stem_and_strong_augmentation_learns(data_args: dict) -> None:
    model = {"stem": "conv", "stem_channels": [16, 32], "patch_size": 4, "embed_dim": 32, "depth": 1}
    model.update(num_heads=2, global_pool="attn")
    training = {
        "epochs": 8,
        "batch_size": 64,
        "optimizer": "adamw",
        "lr": 3e-3,
        "weight_decay": 0.05,
        "trivial_augment": 0.5,
        "mixup_alpha": 0.8,
        "cutmix_alpha": 1.0,
        "label_smoothing": 0.1,
        "flip": "alternating",
    }
    result = train("vit", model, training, **data_args)
    assert result.final_metrics["val_accuracy"] > 0.5 > CHANCE
    again = train("vit", model, training, **data_args)
    assert _without_timing(again.history) == _without_timing(result.history)  # seeded end to end


def test_cuda_rng_fork_uses_the_current_device_when_no_index_is_given(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 3)
    assert engine._cuda_devices(torch.device("cuda")) == [3]
    assert engine._cuda_devices(torch.device("cuda", 1)) == [1]
    assert engine._cuda_devices(torch.device("cpu")) == []

"""The module the steps call: compiled or eager after a failure, one DDP wrapper, the whitening freeze."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch._dynamo.testing import CompileCounter
from torch.nn.parallel import DistributedDataParallel

from image_recognition.models import build_model
from image_recognition.models.tiny import TINY_MODELS
from image_recognition.training import engine, load_checkpoint, train, wrapping
from tests.training.helpers import EXACT, without_timing


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
    caplog.set_level("WARNING", logger=wrapping.__name__)
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
    assert without_timing(result.history) == without_timing(plain.history)


@pytest.mark.slow  # trains for more than a few seconds on 2 CPU cores
def test_whitening_bias_starts_at_zero_and_is_frozen_after_its_epochs(monkeypatch, data_args: dict) -> None:
    assert torch.count_nonzero(build_model("cnn", TINY_MODELS["cnn"]).whiten.bias) == 0
    after_epoch = []
    epoch_row = engine.epoch_row

    def spy(run, *args):  # at each epoch's end, after its steps
        row = epoch_row(run, *args)
        after_epoch.append(run.model.whiten.bias.detach().clone())
        return row

    monkeypatch.setattr(engine, "epoch_row", spy)
    training = {"epochs": 3, "batch_size": 64, "lr": 0.2, "weight_decay": 5e-4, "decay_biases": True}
    train("cnn", TINY_MODELS["cnn"], {**training, "whiten_bias_epochs": 1}, **data_args)
    first, second, third = after_epoch
    assert torch.count_nonzero(first) > 0  # trained in epoch 1
    assert torch.equal(second, first)  # then frozen: no step, not even weight decay
    assert torch.equal(third, first)


def test_cuda_rng_fork_uses_the_current_device_when_no_index_is_given(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 3)
    assert wrapping.cuda_devices(torch.device("cuda")) == [3]
    assert wrapping.cuda_devices(torch.device("cuda", 1)) == [1]
    assert wrapping.cuda_devices(torch.device("cpu")) == []


@pytest.mark.slow  # starts worker processes or a gloo group
def test_one_ddp_wrapper_and_one_compiled_graph_across_the_whitening_freeze(small, monkeypatch, group_of_one) -> None:
    counter = CompileCounter()  # counts the graphs Dynamo hands to the backend; runs them eagerly
    compile_ = torch.compile
    monkeypatch.setattr(torch, "compile", lambda module: compile_(module, backend=counter))
    seen = []
    epoch_row = engine.epoch_row

    def spy(run, *args):  # at each epoch's end, after its steps
        row = epoch_row(run, *args)
        seen.append((run.train_model, run.model.whiten.bias.requires_grad, counter.frame_count))
        return row

    monkeypatch.setattr(engine, "epoch_row", spy)
    group_of_one(0, 1)
    training = {**EXACT, "epochs": 3, "compile": True, "distributed": {"sync_batchnorm": True}}
    result = train("cnn", TINY_MODELS["cnn"], training, **small)
    wrappers, requires_grad, graphs = zip(*seen, strict=True)
    assert all(wrapper is wrappers[0] for wrapper in wrappers)  # the bias froze after epoch 1: no new wrapper
    assert all(requires_grad)
    assert graphs[0] > 0 and len(set(graphs)) == 1  # nothing traced again after the freeze
    assert result.compiled
    ddp = wrappers[0]._orig_mod
    assert isinstance(ddp, DistributedDataParallel) and ddp.broadcast_buffers is False

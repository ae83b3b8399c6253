"""The evaluation node: TTA from the checkpoint's recipe unless overridden, costs in the recipe's terms."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from image_recognition.common import device
from image_recognition.common.errors import ParameterError
from image_recognition.models import build_model, validate_model_config
from image_recognition.pipelines.evaluation.nodes import _warn_if_trained_on_other_data, evaluate_model

FAST = {"latency_repeats": 1, "throughput_batch_size": 4, "throughput_batches": 2, "batch_size": 16, "top_errors": 3}
CLASSES = [f"class_{i}" for i in range(10)]
REPORT = {"class_names": CLASSES, "source": {"url": "synthetic://cifar10", "md5": "0" * 32}}


def checkpoint(history_extra: dict | None = None, **training_config) -> dict:
    torch.manual_seed(0)
    config = validate_model_config("cnn", {"widths": [8, 8, 8]})
    row = {"epoch": 1, "train_loss": 2.0, "train_accuracy": 0.2, "val_loss": 2.1, "val_accuracy": 0.2}
    return {
        "model_name": "cnn",
        "model_config": config,
        "model_state": build_model("cnn", config).state_dict(),
        "normalization": {"mean": [0.5] * 3, "std": [0.25] * 3},
        "training_config": {"seed": 0, **training_config},
        "epoch": 1,
        "history": [{**row, "train_time_s": 1.5, **(history_extra or {})}],
    }


@pytest.fixture(scope="module")
def test_split():
    rng = np.random.default_rng(0)
    return {"images": rng.integers(0, 256, (12, 3, 32, 32), dtype=np.uint8), "labels": np.arange(12) % 10}


def evaluate(test_split, params=None, **checkpoint_args):
    return evaluate_model(checkpoint(**checkpoint_args), test_split, REPORT, {**FAST, **(params or {})})[0]


def test_tta_follows_the_checkpoint_recipe(test_split):
    plain = evaluate(test_split, tta="none")
    assert plain["quality"]["tta"] == "none" and plain["cost"]["tta_views"] == 1
    assert plain["quality"]["accuracy"] == plain["quality"]["accuracy_no_tta"]
    assert plain["cost"]["flops_per_prediction"] == plain["cost"]["flops_per_image"]
    flipped = evaluate(test_split, tta="flip")
    assert flipped["quality"]["tta"] == "flip" and flipped["cost"]["tta_views"] == 2
    assert flipped["cost"]["flops_per_prediction"] == 2 * flipped["cost"]["flops_per_image"]
    assert evaluate(test_split)["quality"]["tta"] == "none"  # a checkpoint that names none


def test_explicit_tta_overrides_the_checkpoint(test_split):
    metrics = evaluate(test_split, params={"tta": "flip_translate"}, tta="none")
    assert metrics["quality"]["tta"] == "flip_translate" and metrics["cost"]["tta_views"] == 6
    assert metrics["cost"]["flops_per_prediction"] == 6 * metrics["cost"]["flops_per_image"]
    assert metrics["provenance"]["evaluation"]["tta"] == "flip_translate"


def test_costs_in_the_recipes_precision_and_memory_format(test_split, monkeypatch):
    metrics = evaluate(test_split, autocast="bf16", channels_last=True)
    assert (metrics["cost"]["precision"], metrics["cost"]["memory_format"]) == ("bf16", "channels_last")
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: False)
    plain = evaluate(test_split, autocast="auto", channels_last="auto")  # auto on such a CPU: fp32, contiguous
    assert (plain["cost"]["precision"], plain["cost"]["memory_format"]) == ("fp32", "contiguous")
    assert plain["cost"]["throughput_batches"] == FAST["throughput_batches"]


def test_compile_time_is_reported_apart(test_split):
    assert evaluate(test_split, history_extra={"compile_time_s": 12.5})["cost"]["compile_time_s"] == 12.5
    assert evaluate(test_split)["cost"]["compile_time_s"] == 0.0  # an old checkpoint without it


def test_an_unknown_setting_fails_naming_its_file(test_split):
    with pytest.raises(ParameterError, match=r"evaluation\.batchsize.*conf/base/parameters_evaluation\.yml"):
        evaluate(test_split, params={"batchsize": 8})


@pytest.mark.slow
def test_evaluation_imports_nothing_from_training():
    """Evaluation needs a checkpoint, not the training engine: its modules import no image_recognition.training."""
    code = (
        "import sys, image_recognition.pipelines.evaluation; "
        "print(sorted(m for m in sys.modules if m.startswith('image_recognition.training')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_evaluation_record_has_quality_cost_and_provenance(evaluated, evaluation_inputs):
    metrics = evaluated["vit"]["metrics"]
    assert 0 <= metrics["quality"]["accuracy"] <= 1 and metrics["quality"]["tta"] == "flip_translate"
    assert metrics["cost"]["parameters"] > 0 and metrics["cost"]["flops_per_image"] > 0
    assert metrics["cost"]["training_time_s"] == 2.0 and metrics["cost"]["peak_memory_mib"] is None
    assert metrics["cost"]["compile_time_s"] == 3.0  # apart from the steady-state training time
    assert metrics["provenance"]["data_md5"] == "0" * 32 and metrics["provenance"]["seed"] == 0
    assert metrics["provenance"]["trained_on"]["md5"] == "0" * 32
    assert [row["epoch"] for row in metrics["history"]] == [1, 2]  # the checkpoint's own history
    assert set(metrics["provenance"]) >= {"checkpoint_version", "model_config", "git_commit", "evaluation"}
    assert json.loads(json.dumps(metrics)) == metrics  # storable as JSON
    assert len(evaluated["vit"]["errors"]) == 10
    assert evaluated["vit"]["per_class"]["support"].sum() == len(evaluation_inputs[0]["labels"])


def test_a_checkpoint_from_another_image_folder_is_evaluated_with_a_warning(caplog):
    report = {"source": {"md5": None, "fingerprint": "b" * 64}}
    with caplog.at_level("WARNING"):
        _warn_if_trained_on_other_data({"model_name": "cnn", "data": {"md5": None, "fingerprint": "b" * 64}}, report)
        assert not caplog.messages
        _warn_if_trained_on_other_data({"model_name": "cnn", "data": {"md5": None, "fingerprint": "a" * 64}}, report)
    assert "cnn was trained on data fingerprint aaaa" in caplog.text

"""The metrics record: its parts, its provenance, and the commit asked once per run."""

from __future__ import annotations

import math
import subprocess

import numpy as np
import pytest

from image_recognition.evaluation import record
from image_recognition.evaluation.config import EvaluationConfig
from image_recognition.evaluation.record import metrics_record, provenance
from image_recognition.sources.cifar10.split import split_fingerprint

TEST_SPLIT = {"images": np.zeros((2, 3, 32, 32), dtype=np.uint8), "labels": np.array([0, 1]), "_catalog_version": "t1"}
DATA_REPORT = {"source": {"url": "synthetic://cifar10", "md5": "0" * 32}}
CHECKPOINT = {
    "model_name": "cnn",
    "model_config": {"widths": [8, 8, 8]},
    "training_config": {"seed": 7, "tta": "flip"},
    "epoch": 3,
    "history": [{"epoch": 1, "val_loss": math.nan, "train_time_s": 1.5}],
    "data": {"md5": "0" * 32},
    "_catalog_version": "c1",
}


@pytest.fixture
def commit(monkeypatch):
    """git rev-parse answering a fixed commit, counting its calls; the cache is cleared around the test."""
    calls = []

    def fake_run(command, **kwargs):
        calls.append(command)
        return subprocess.CompletedProcess(command, 0, stdout="abc123\n")

    record.git_commit.cache_clear()
    monkeypatch.setattr(record.subprocess, "run", fake_run)
    yield calls
    record.git_commit.cache_clear()


def test_record_holds_quality_cost_plain_history_and_provenance(commit):
    metrics = metrics_record(
        CHECKPOINT, TEST_SPLIT, DATA_REPORT, EvaluationConfig(), {"accuracy": 0.5}, {"tta_views": 2}
    )
    assert list(metrics) == ["model", "quality", "cost", "training", "history", "provenance"]
    assert (metrics["model"], metrics["quality"], metrics["cost"]) == ("cnn", {"accuracy": 0.5}, {"tta_views": 2})
    assert metrics["history"] == [{"epoch": 1, "val_loss": None, "train_time_s": 1.5}]  # NaN is not JSON


def test_provenance_names_versions_data_configs_settings_and_commit(commit):
    origin = provenance(CHECKPOINT, TEST_SPLIT, DATA_REPORT, EvaluationConfig(tta="none", top_errors=3))
    assert (origin["checkpoint_version"], origin["test_split_version"]) == ("c1", "t1")
    assert origin["test_split_md5"] == split_fingerprint(TEST_SPLIT) and origin["data_md5"] == "0" * 32
    assert (origin["seed"], origin["epochs"], origin["trained_on"]) == (7, 3, {"md5": "0" * 32})
    assert origin["evaluation"]["tta"] == "none" and origin["evaluation"]["top_errors"] == 3
    assert origin["git_commit"] == "abc123"


def test_an_old_checkpoint_has_no_versions_seed_or_history(commit):
    old = {"model_name": "cnn", "model_config": {}}
    unversioned = {"images": TEST_SPLIT["images"], "labels": TEST_SPLIT["labels"]}
    metrics = metrics_record(old, unversioned, DATA_REPORT, EvaluationConfig(), {}, {})
    assert metrics["history"] == []
    origin = metrics["provenance"]
    assert (origin["checkpoint_version"], origin["test_split_version"], origin["seed"]) == (None, None, None)
    assert origin["training_config"] is None and origin["trained_on"] == {}


def test_git_is_asked_once_per_process(commit):
    for _ in range(3):
        provenance(CHECKPOINT, TEST_SPLIT, DATA_REPORT, EvaluationConfig())
    assert commit == [["git", "rev-parse", "HEAD"]]


def test_no_commit_outside_a_git_checkout(monkeypatch):
    def no_git(command, **kwargs):
        raise subprocess.CalledProcessError(128, command)

    record.git_commit.cache_clear()
    monkeypatch.setattr(record.subprocess, "run", no_git)
    try:
        assert record.git_commit() is None
    finally:
        record.git_commit.cache_clear()


def test_the_record_states_the_budget_the_plan_and_the_speeds_of_a_budgeted_run():
    probe = {"step_s": 0.5, "images_per_s": 512.0, "steps": 10}
    budgeted = {
        **CHECKPOINT,
        "training_config": {**CHECKPOINT["training_config"], "batch_size": 256},
        "plan": {"budget_s": 300.0, "total_steps": 520, "epochs": 2.97, "probe": probe},
        "final_metrics": {"steps": 500, "epochs": 2.857},
        "stopped_early": True,
        "history": [{"epoch": 3, "train_time_s": 250.0}],
    }
    training = record.training_length(budgeted)
    assert training == {
        "budget_s": 300.0,
        "planned_steps": 520,
        "steps": 500,
        "epochs": 2.857,
        "stopped_early": True,
        "probe_images_per_s": 512.0,
        "train_images_per_s": 500 * 256 / 250.0,
    }
    assert provenance(budgeted, TEST_SPLIT, DATA_REPORT, EvaluationConfig())["training_plan"]["total_steps"] == 520


def test_a_checkpoint_from_before_budgets_reads_as_trained_to_its_epochs():
    training = record.training_length(CHECKPOINT)
    assert training["budget_s"] is None and training["planned_steps"] is None
    assert training["epochs"] == 3 and training["stopped_early"] is False

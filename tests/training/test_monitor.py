"""What the run reports: a diverging loss stops it with a clear error; training time has one definition."""

from __future__ import annotations

import runpy

import pytest

from image_recognition.evaluation.cost import training_times
from image_recognition.training import NonFiniteLossError, train
from tests.helpers import PROJECT_ROOT


def test_diverging_loss_stops_with_a_clear_error(data_args: dict) -> None:
    training = {"epochs": 3, "batch_size": 50, "lr": 1e12, "momentum": 0.0, "translate": 0}
    with pytest.raises(NonFiniteLossError, match=r"training loss became (nan|inf) at epoch 1, step \d+.*Lower lr"):
        train("simple_cnn", {}, training, **data_args)


def test_overflowing_inputs_stop_within_two_steps(data_args: dict) -> None:
    # A near-zero std passes validation but scales the pixels to ~1e30.
    poisoned = {**data_args, "normalization": {**data_args["normalization"], "std": [1e-30, 1e-30, 1e-30]}}
    with pytest.raises(NonFiniteLossError, match=r"became (nan|inf) at epoch 1, step [12]:"):
        train("simple_cnn", {}, {"epochs": 1, "batch_size": 50}, **poisoned)


def test_the_benchmarks_and_the_metrics_count_setup_and_steps_alike(data_args: dict) -> None:
    result = train("simple_cnn", {}, {"epochs": 2, "batch_size": 250, "translate": 0}, **data_args)
    setup_and_steps = result.setup_time_s + sum(row["epoch_time_s"] for row in result.history)
    assert result.setup_time_s > 0
    # The engine's history, what the metrics record, and what every benchmark reports: one figure.
    assert result.history[-1]["train_time_s"] == pytest.approx(setup_and_steps)
    assert training_times(result.history)["training_time_s"] == pytest.approx(setup_and_steps)
    benchmarks = runpy.run_path(str(PROJECT_ROOT / "benchmarks" / "common.py"), run_name="common")
    assert benchmarks["training_seconds"](result) == pytest.approx(setup_and_steps)

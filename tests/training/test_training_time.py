"""Training time has one definition: the engine's ``train_time_s``, read alike by the metrics and the benchmarks."""

from __future__ import annotations

import runpy

import pytest

from image_recognition.evaluation.cost import training_times
from image_recognition.training.engine import train
from tests.helpers import PROJECT_ROOT


def test_the_benchmarks_and_the_metrics_count_setup_and_steps_alike(data_args: dict) -> None:
    result = train("simple_cnn", {}, {"epochs": 2, "batch_size": 250, "translate": 0}, **data_args)
    setup_and_steps = result.setup_time_s + sum(row["epoch_time_s"] for row in result.history)
    assert result.setup_time_s > 0
    # The engine's history, what the metrics record, and what every benchmark reports: one figure.
    assert result.history[-1]["train_time_s"] == pytest.approx(setup_and_steps)
    assert training_times(result.history)["training_time_s"] == pytest.approx(setup_and_steps)
    benchmarks = runpy.run_path(str(PROJECT_ROOT / "benchmarks" / "common.py"), run_name="common")
    assert benchmarks["training_seconds"](result) == pytest.approx(setup_and_steps)

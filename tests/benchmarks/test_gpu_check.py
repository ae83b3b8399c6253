"""The first-contact GPU check: it tells a sync in the step from one at an epoch boundary, and runs on the CPU."""

from __future__ import annotations

import json
import logging
import runpy
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from image_recognition.training import engine
from tests.benchmarks.test_benchmarks import without_kedro_env
from tests.helpers import PROJECT_ROOT


@pytest.fixture(scope="module")
def check() -> dict:
    saved = list(sys.path)
    try:
        return runpy.run_path(str(PROJECT_ROOT / "benchmarks" / "gpu_check.py"), run_name="gpu_check")
    finally:
        sys.path[:] = saved  # the script puts benchmarks/ first, for its `common`
        for name in ("common", "gpu_benchmark", "airbench_reference"):
            sys.modules.pop(name, None)


def fake_epoch(emit) -> None:
    emit()  # before the steps: an epoch boundary
    for _ in range(1):
        emit()  # inside the step loop
    emit()  # after it


def test_a_sync_warning_counts_against_the_step_only_inside_the_step_loop(check) -> None:
    watch = check["TrainingWatch"](fake_epoch)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = watch.on_warning
        fake_epoch(lambda: warnings.warn(check["SYNC_WARNING"], stacklevel=2))
    assert watch.counts["sync_warnings_in_step"] == 1
    assert watch.counts["sync_warnings_elsewhere"] == 2
    assert watch.failures == ["1 sync warnings in step"]


def test_a_recompile_fails_inside_the_timed_epochs_not_before(check) -> None:
    watch = check["TrainingWatch"](fake_epoch)
    recompiles = logging.getLogger("torch._dynamo.guards.__recompiles")
    handler = check["_Forward"](watch)
    recompiles.addHandler(handler)
    level = recompiles.level
    recompiles.setLevel(logging.DEBUG)
    try:
        recompiles.debug("Recompiling function forward: the warm-up")
        fake_epoch(lambda: recompiles.debug("Recompiling function forward"))
    finally:
        recompiles.removeHandler(handler)
        recompiles.setLevel(level)
    assert watch.counts["recompiles_elsewhere"] == 1
    assert watch.counts["recompiles_in_timed_epochs"] == 3
    assert watch.failures == ["3 recompiles in timed epochs"]


@pytest.mark.slow
def test_the_watched_run_catches_a_sync_put_back_into_the_engines_step(check, monkeypatch) -> None:
    """A sync warning from the optimiser step fails the run; those at the epoch boundaries are only counted."""
    sgd_step = torch.optim.SGD.step

    def syncing_step(self, *args, **kwargs):
        warnings.warn(check["SYNC_WARNING"], stacklevel=2)
        return sgd_step(self, *args, **kwargs)

    boundary_sync = engine.synchronize

    def syncing_boundary(device):
        warnings.warn(check["SYNC_WARNING"], stacklevel=2)
        return boundary_sync(device)

    monkeypatch.setattr(engine, "synchronize", syncing_boundary)
    monkeypatch.setattr(torch.optim.SGD, "step", syncing_step)
    data = check["load_data"](type("Args", (), {"smoke": True, "archive": None})())
    settings = check["benchmark_recipe"]("cnn", True, "off")
    caught = check["watched_run"](settings, "cnn", data)
    steps = len(data["train_images"]) // settings["training"]["batch_size"]
    assert caught["sync_warnings_in_step"] == steps
    assert caught["sync_warnings_elsewhere"] > 0
    assert caught["failures"] == [f"{steps} sync warnings in step"]
    assert not caught["passed"]


@pytest.mark.slow
def test_dry_run_passes_on_the_cpu_without_kedro(tmp_path: Path) -> None:
    out = tmp_path / "gpu_check.json"
    script = PROJECT_ROOT / "benchmarks" / "gpu_check.py"
    completed = subprocess.run(
        [sys.executable, str(script), "--dry-run", "--out", str(out)],
        env=without_kedro_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=tmp_path,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["passed"] and report["dry_run"]
    assert list(report["stages"]) == ["smoke", "cnn", "vit"]
    assert report["stages"]["cnn"]["recompiles_in_timed_epochs"] == 0
    assert report["stages"]["vit"]["step_time_s"] > 0

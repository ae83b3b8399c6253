"""`kedro run` with data-parallel training: one checkpoint version, or a clear failure and none."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import psutil
import pytest

pytestmark = pytest.mark.slow  # kedro CLI runs in subprocesses, each starting workers

VERSIONS = "data/demo/06_models/vit/checkpoint.pt"
SCRATCH = "data/demo/06_models/vit/scratch"
TWO = "vit.training.distributed.nproc_per_node=2"
SHORT = "vit.training.epochs=2"  # the demo's 6 epochs would show nothing more


def _a_worker(run: subprocess.Popen) -> psutil.Process:
    """One of the data-parallel workers that the kedro process ``run`` started (spawned Pythons)."""
    for child in psutil.Process(run.pid).children(recursive=True):
        try:
            if any("spawn_main" in part for part in child.cmdline()):
                return child
        except psutil.Error:
            continue
    raise AssertionError(f"no worker under pid {run.pid}")


def test_two_processes_save_one_version_and_a_killed_worker_saves_none(project):
    prepared = project.kedro("run", "--env=demo", "--pipelines=data_processing")
    assert prepared.returncode == 0, prepared.stderr[-3000:]
    versions = project.root / VERSIONS

    trained = project.kedro("run", "--env=demo", "--pipelines=train_vit", "--params", f"{TWO},{SHORT}")
    assert trained.returncode == 0, trained.stderr[-3000:]
    log = trained.stdout + trained.stderr
    assert "training vit in 2 processes" in log
    assert "batch 128 (64 in each of 2 processes)" in log
    assert len(list(versions.iterdir())) == 1  # rank 0's result, saved once

    # A worker killed mid-run: the run fails with one clear error and saves no version.
    command = [sys.executable, "-m", "kedro", "run", "--env=demo", "--pipelines=train_vit"]
    command += ["--params", f"{TWO},vit.training.checkpoint_every=1,vit.training.epochs=3"]
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "PYTHONWARNINGS": "ignore"}
    scratch = project.root / SCRATCH
    finished = set(scratch.glob("*.pt"))
    run = subprocess.Popen(
        command, cwd=project.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 300
        while not set(scratch.glob("*.pt")) - finished:  # the first epoch's checkpoint
            assert run.poll() is None, "the run ended before its first checkpoint"
            assert time.monotonic() < deadline, "the run never checkpointed"
            time.sleep(0.1)
        _a_worker(run).send_signal(signal.SIGKILL)
        out, err = run.communicate(timeout=300)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate(timeout=60)
    log = out + err
    assert run.returncode != 0
    assert re.search(r"data-parallel training failed: worker rank [01] \(pid \d+\) exited", log), log[-3000:]
    assert "Signal 9 (SIGKILL)" in log
    assert len(list(versions.iterdir())) == 1  # nothing saved by the failed run

    # One process continues the two processes' checkpoint.
    resumed = project.kedro(
        "run",
        "--env=demo",
        "--pipelines=train_vit",
        "--params",
        "vit.training.checkpoint_every=1,vit.training.epochs=3,vit.training.resume=true",
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert re.search(r"resumed from \S+\.pt after epoch [12]\b", resumed.stdout + resumed.stderr)
    assert len(list(versions.iterdir())) == 2

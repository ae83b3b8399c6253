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
KILLABLE = "vit.training.checkpoint_every=1,vit.training.epochs=3"  # a checkpoint, then epochs to kill


def _a_worker(run: subprocess.Popen) -> psutil.Process:
    """One of the data-parallel workers that the kedro process ``run`` started (spawned Pythons)."""
    for child in psutil.Process(run.pid).children(recursive=True):
        try:
            if any("spawn_main" in part for part in child.cmdline()):
                return child
        except psutil.Error:
            continue
    raise AssertionError(f"no worker under pid {run.pid}")


def test_a_killed_worker_saves_nothing_one_process_resumes_and_a_restart_recovers(project):
    versions = project.root / VERSIONS  # train_vit runs the data nodes too: no separate data run

    # A worker killed mid-run: the run fails with one clear error and saves no version.
    failed, log = _kill_a_worker_after_the_first_checkpoint(project, f"{TWO},{KILLABLE}")
    assert failed != 0
    assert re.search(r"data-parallel training failed: worker rank [01] \(pid \d+\) exited", log), log[-3000:]
    assert "Signal 9 (SIGKILL)" in log
    assert not versions.exists() or not any(versions.iterdir())  # nothing saved by the failed run

    # One process continues the two processes' checkpoint.
    resumed = project.kedro(
        "run",
        "--env=demo",
        "--pipelines=train_vit",
        "--params",
        f"{KILLABLE},vit.training.resume=true",
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert re.search(r"resumed from \S+\.pt after epoch [12]\b", resumed.stdout + resumed.stderr)
    assert len(list(versions.iterdir())) == 1

    # With max_restarts the launcher restarts every worker, and they resume from the checkpoint.
    restarted, log = _kill_a_worker_after_the_first_checkpoint(
        project, f"{TWO},{KILLABLE},vit.training.distributed.max_restarts=1"
    )
    assert restarted == 0, log[-3000:]
    assert "training vit in 2 processes" in log
    assert "batch 128 (64 in each of 2 processes)" in log
    assert re.search(r"resumed from \S+\.pt after epoch [12]\b", log), log[-3000:]
    assert len(list(versions.iterdir())) == 2  # the two processes' run saved one version: rank 0's result


def _kill_a_worker_after_the_first_checkpoint(project, params: str) -> tuple[int, str]:
    """Start a demo ViT training, SIGKILL one worker once it has checkpointed; (exit code, log)."""
    command = [sys.executable, "-m", "kedro", "run", "--env=demo", "--pipelines=train_vit", "--params", params]
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "PYTHONWARNINGS": "ignore"}
    scratch = project.root / SCRATCH
    before = set(scratch.glob("*.pt"))
    run = subprocess.Popen(
        command, cwd=project.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 300
        while not set(scratch.glob("*.pt")) - before:  # this run's first epoch is written
            assert run.poll() is None, "the run ended before its first checkpoint"
            assert time.monotonic() < deadline, "the run never checkpointed"
            time.sleep(0.1)
        _a_worker(run).send_signal(signal.SIGKILL)
        out, err = run.communicate(timeout=300)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate(timeout=60)
    return run.returncode, out + err

"""Two trainings of one model at once never share a scratch file, and either can be resumed."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slow  # kedro CLI runs in subprocesses

SCRATCH = "data/demo/06_models/simple_cnn/scratch"
BATCH = "simple_cnn.training.batch_size=16"  # short epochs


def start_training(project, *params: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "kedro", "run", "--env=demo", "--pipelines=train_simple_cnn"]
    if params:
        command += ["--params", ",".join(params)]
    # One thread each: two runs of two threads on two cores would oversubscribe them.
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        command, cwd=project.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_two_trainings_at_once_then_resume_the_interrupted_one(project):
    prepared = project.kedro("run", "--env=demo", "--pipelines=data_processing")
    assert prepared.returncode == 0, prepared.stderr[-3000:]
    scratch = project.root / SCRATCH
    # A and B train at once; once both have written a checkpoint, B finishes and A is stopped.
    long_run = start_training(project, "simple_cnn.training.epochs=6", BATCH)
    short_run = start_training(project, "simple_cnn.training.epochs=2", BATCH)
    try:
        deadline = time.monotonic() + 300
        while len(list(scratch.glob("*.pt"))) < 2:  # each run's first epoch written, to its own file
            assert long_run.poll() is None and short_run.poll() is None, "a run ended before both checkpointed"
            assert time.monotonic() < deadline, "the runs never checkpointed"
            time.sleep(0.1)
        _, short_err = short_run.communicate(timeout=600)  # B finishes beside A, which is still training
    finally:
        long_run.send_signal(signal.SIGKILL)  # no clean-up hook runs: the scratch file stays
        long_run.communicate(timeout=60)
        if short_run.poll() is None:
            short_run.kill()
            short_run.communicate(timeout=60)
    assert short_run.returncode == 0, short_err[-3000:]
    runs = sorted(path.stem for path in scratch.glob("*.pt"))
    finished = [name for name in runs if (scratch / f"{name}.done").exists()]
    assert len(runs) == 2 and len(finished) == 1, runs  # each run its own file; B finished, A did not
    (interrupted,) = set(runs) - set(finished)

    resumed = project.kedro(
        "run",
        "--env=demo",
        "--pipelines=train_simple_cnn",
        "--params",
        f"simple_cnn.training.epochs=6,{BATCH},simple_cnn.training.resume=true",
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    log = resumed.stdout + resumed.stderr
    assert f"resuming run {interrupted}" in log
    assert re.search(rf"resumed from \S*{interrupted}\.pt after epoch [1-5]\b", log), log[-3000:]
    # A is finished now; B's file, an older finished run, was pruned.
    assert sorted(path.stem for path in scratch.glob("*.pt")) == [interrupted]
    assert (scratch / f"{interrupted}.done").exists()

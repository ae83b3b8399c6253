"""Time plain ``kedro run`` from a fresh clone, as a new user runs it; write JSON.

Clones this repository's committed HEAD into a temporary folder (no data, no
``conf/local``), points the fetch source at a local CIFAR-10 archive, and runs
the whole default DAG with the project's Python: fetch, preprocess, train and
evaluate the three models, write the report. No ``--env`` is given, so the
recipes are the ones the machine gets (``conf/cpu`` where there is no CUDA).
The output is not a terminal, so training logs plain progress lines.

    python benchmarks/dag_benchmark.py --archive /abs/cifar-10-python.tar.gz \\
        --out benchmarks/results/dag_cpu.json

The JSON holds the wall time, each node's time from the log, each model's
test accuracy, its training plan (budget, measured speed, planned and taken
steps, from its checkpoint) and the machine. ``--as-avx2-cpu`` runs it as
on a CPU without native bf16 or AVX-512: oneDNN and ATen limited to AVX2
(``ONEDNN_MAX_CPU_ISA``, ``ATEN_CPU_CAPABILITY``) and the project told the
CPU has no native bf16 (``IMAGE_RECOGNITION_CPU_BF16=0``); the JSON says so. ``--env demo`` (no archive needed) checks the
script end to end in about a minute; ``--params`` passes more runtime
parameters to ``kedro run`` (the JSON's command shows them).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from image_recognition.evaluation.record import training_length

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import logger, machine_info, setup_logging, write_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# Lines of the run's log (plain_logging.yml: "%(asctime)s - ...") that start or complete a node.
NODE_DONE = re.compile(r"Completed node: ([\w.]+)|Running node: ([\w.]+)")
TIMESTAMP = re.compile(r"(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archive", help="the CIFAR-10 python archive (cifar-10-python.tar.gz)")
    parser.add_argument("--env", help="a Kedro environment; default: none, as a new user runs it")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/dag_cpu.json"))
    parser.add_argument("--keep", help="clone into this folder and keep it (default: a temporary one)")
    parser.add_argument("--params", help="more runtime parameters for kedro run, as its --params takes them (a=1,b=2)")
    parser.add_argument(
        "--as-avx2-cpu", action="store_true", help="compute as on a CPU with AVX2 only: fp32, no AVX-512, no AMX"
    )
    args = parser.parse_args(argv)
    if not args.archive and args.env != "demo":
        parser.error("give --archive (or --env demo, which generates its own data)")
    if args.archive and not Path(args.archive).is_file():
        parser.error(f"--archive {args.archive}: no such file")
    return args


def kedro_command(args: argparse.Namespace) -> list[str]:
    command = [sys.executable, "-m", "kedro", "run"]
    if args.env:
        command.append(f"--env={args.env}")
    params = [args.params] if args.params else []
    if args.archive:
        archive = Path(args.archive).resolve()
        md5 = hashlib.md5(archive.read_bytes()).hexdigest()
        params.insert(0, f"dataset.source.url={archive.as_uri()},dataset.source.md5={md5}")
    if params:
        command += ["--params", ",".join(params)]
    return command


def node_times(log: str) -> dict[str, float]:
    """Seconds from each node's start to its completion, from the run's log lines.

    Kedro's start line names a namespaced node without its namespace, so each
    completion is matched with the latest start (the default runner runs one
    node at a time).
    """
    started: datetime | None = None
    seconds: dict[str, float] = {}
    for line in log.splitlines():
        match, stamp = NODE_DONE.search(line), TIMESTAMP.search(line)
        if not (match and stamp):
            continue
        when = datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S")
        done, running = match.groups()
        if running:
            started = when
        elif started is not None:
            seconds[done] = (when - started).total_seconds()
            started = None
    return seconds


def test_accuracies(project: Path) -> dict[str, float]:
    """Each model's test accuracy, from its newest versioned metrics record."""
    found = {}
    # data/08_reporting/<model>/metrics.json/<version>/metrics.json, or under data/<env>/ (demo)
    for metrics in sorted(project.joinpath("data").glob("**/08_reporting/*/metrics.json/*/metrics.json")):
        found[metrics.parents[2].name] = json.loads(metrics.read_text())["quality"]["accuracy"]
    return found


# The environment of --as-avx2-cpu: the instruction sets an AVX2-only CPU has, and no native bf16.
AVX2_ONLY = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "IMAGE_RECOGNITION_CPU_BF16": "0"}


def training_plans(project: Path) -> dict[str, dict[str, Any]]:
    """Each model's training length, from its newest checkpoint: budget, measured speed, steps planned and taken.

    The fields are the metrics record's ``training`` block, with the planned
    epochs and the training time the budget bounds.
    """
    found = {}
    for path in sorted(project.joinpath("data").glob("**/06_models/*/checkpoint.pt/*/checkpoint.pt")):
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        found[path.parents[2].name] = {
            **training_length(checkpoint),
            "planned_epochs": (checkpoint.get("plan") or {}).get("epochs"),
            "training_wall_time_s": (checkpoint.get("final_metrics") or {}).get("wall_time_s"),
        }
    return found


def run_dag(project: Path, args: argparse.Namespace) -> dict[str, Any]:
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(project)], check=True)
    env = {
        **os.environ,
        # The clone's code, not the installed copy's; plain log lines with times, for node_times.
        "PYTHONPATH": str(project / "src"),
        "KEDRO_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
        # As after the Quick start's `pip install -e .`, which has no mlflow extra: no
        # tracking (if the extra is installed, Kedro's plugin discovery still imports it).
        "IMAGE_RECOGNITION_TRACKING": "off",
        "KEDRO_LOGGING_CONFIG": str(Path(__file__).resolve().parent / "plain_logging.yml"),
    }
    env.pop("KEDRO_ENV", None)
    if args.as_avx2_cpu:
        env.update(AVX2_ONLY)
    command = kedro_command(args)
    logger.info("running %s in %s", " ".join(command[1:]), project)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    log = done.stdout + done.stderr
    (project / "kedro_run.log").write_text(log)
    if done.returncode:
        raise SystemExit(f"kedro run failed (exit {done.returncode}); its log ends:\n{log[-3000:]}")
    chosen = next((line for line in log.splitlines() if "using the cpu recipes" in line), None)
    return {
        "command": " ".join(["kedro", *command[3:]]),
        "commit": subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True, check=True
        ).stdout.strip(),
        "dirty": False,  # what ran is the clone of the committed HEAD, whatever the working tree holds
        "wall_time_s": wall,
        "recipes_line": chosen.split(": ", 1)[-1] if chosen else None,
        "node_times_s": node_times(log),
        "test_accuracy": test_accuracies(project),
        "training": training_plans(project),
        "emulated": {"as": "AVX2-only CPU", "environment": AVX2_ONLY} if args.as_avx2_cpu else None,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    setup_logging()
    report: dict[str, Any] = {"benchmark": "dag", "machine": machine_info()}
    if args.keep:
        report.update(run_dag(Path(args.keep).resolve(), args))
    else:
        with tempfile.TemporaryDirectory(prefix="dag-benchmark-") as folder:
            report.update(run_dag(Path(folder) / "project", args))
    report["load_average_after"] = machine_info()["load_average_1_5_15"]
    logger.info("kedro run: %.0f s wall; test accuracy %s", report["wall_time_s"], report["test_accuracy"])
    write_json(report, args.out)
    return report


if __name__ == "__main__":
    main()

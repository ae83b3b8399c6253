"""First contact with a GPU machine: the engine compiles, keeps one graph and keeps the host out of the step.

Three stages, each in a Python process of its own (fresh torch.compile state;
TORCH_LOGS is read when torch is imported), written to one JSON:

1. ``smoke``: ``gpu_benchmark.py --smoke --compile on`` (tiny models, synthetic data).
2. ``cnn``: one run of the cnn recipe (seed 0, compiled) under
   ``TORCH_LOGS=recompiles,graph_breaks`` and
   ``torch.cuda.set_sync_debug_mode("warn")``. It fails on any recompile
   inside the timed epochs and on any synchronising-operation warning inside
   the step loop; the others (compile warm-up, epoch boundaries, where the
   engine synchronises on purpose) are counted, not failed.
3. ``vit``: two epochs of the vit recipe, compiled: step time, and the full
   recipe's projected time.

The exit status is 1 if a stage fails. Most of its time is compiling; run
it before ``gpu_benchmark.py`` (benchmarks/README.md).
``--dry-run`` runs the same stages on the CPU with the tiny models, synthetic
data and no compile: it checks the script, not the GPU (a test runs it).

    PYTHONPATH=src python benchmarks/gpu_check.py cifar-10-python.tar.gz --out gpu_check.json
    PYTHONPATH=src python benchmarks/gpu_check.py --dry-run --out /tmp/gpu_check.json
"""

from __future__ import annotations

import argparse
import ast
import inspect
import json
import logging
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from common import logger, machine_info, setup_logging, write_json  # noqa: E402
from gpu_benchmark import _run, benchmark_recipe, load_data  # noqa: E402

from image_recognition.training import engine  # noqa: E402

STAGES = ("smoke", "cnn", "vit")
TORCH_LOGS = "recompiles,graph_breaks"
# The text of torch's warning under set_sync_debug_mode("warn") (c10/cuda/CUDAFunctions.cpp).
SYNC_WARNING = "called a synchronizing CUDA operation"
STAGE_TIMEOUT_S = 420
VIT_CHECK_EPOCHS = 2


def step_loop(function: Any = None) -> tuple[Any, range]:
    """The code object of the engine's loop (``function``) and the lines of its step loop (its innermost ``for``)."""
    function = function or engine.fit  # the loop over epochs and steps, which this check watches
    lines, first = inspect.getsourcelines(function)
    loops = [node for node in ast.walk(ast.parse(textwrap.dedent("".join(lines)))) if isinstance(node, ast.For)]
    loop = loops[-1]  # ast.walk goes breadth first: the last loop found is the innermost
    return function.__code__, range(first + loop.lineno - 1, first + (loop.end_lineno or loop.lineno))


class TrainingWatch:
    """Sorts recompiles, graph breaks and sync warnings by where the training run was when they came.

    ``epoch``: a frame of the engine's loop (``engine.fit``) is on the stack
    (the timed epochs); ``step``: that frame is inside its step loop.
    """

    def __init__(self, epoch_function: Any = None) -> None:
        self.epoch_code, self.loop_lines = step_loop(epoch_function)
        self.counts = {
            "recompiles_in_timed_epochs": 0,
            "recompiles_elsewhere": 0,
            "graph_breaks": 0,
            "sync_warnings_in_step": 0,
            "sync_warnings_elsewhere": 0,
        }
        self.examples: list[str] = []
        self.show_other = warnings.showwarning

    def where(self, frame: FrameType | None) -> str:
        while frame is not None:
            if frame.f_code is self.epoch_code:
                return "step" if frame.f_lineno in self.loop_lines else "epoch"
            frame = frame.f_back
        return "elsewhere"

    def on_record(self, record: logging.LogRecord) -> None:
        if record.name.endswith(".__recompiles"):
            timed = self.where(sys._getframe()) != "elsewhere"  # noqa: SLF001 (called where the recompile happens)
            self._count("recompiles_in_timed_epochs" if timed else "recompiles_elsewhere", record.getMessage())
        elif record.name.endswith(".__graph_breaks"):
            self._count("graph_breaks", record.getMessage())

    def on_warning(self, message: Warning | str, *args: Any, **kwargs: Any) -> None:
        """A ``warnings.showwarning``: counts sync warnings by where they came from, shows the rest."""
        if SYNC_WARNING not in str(message):
            self.show_other(message, *args, **kwargs)
            return
        in_step = self.where(sys._getframe()) == "step"  # noqa: SLF001 (called where the warning is raised)
        self._count("sync_warnings_in_step" if in_step else "sync_warnings_elsewhere", str(message))

    def _count(self, key: str, text: str) -> None:
        self.counts[key] += 1
        if len(self.examples) < 10:  # noqa: PLR2004
            self.examples.append(f"{key}: {text[:500]}")

    @property
    def failures(self) -> list[str]:
        return [
            f"{self.counts[key]} {key.replace('_', ' ')}"
            for key in ("recompiles_in_timed_epochs", "sync_warnings_in_step")
            if self.counts[key]
        ]


class _Forward(logging.Handler):
    def __init__(self, watch: TrainingWatch) -> None:
        super().__init__(logging.DEBUG)
        self.watch = watch

    def emit(self, record: logging.LogRecord) -> None:
        self.watch.on_record(record)


def watched_run(settings: dict[str, Any], model: str, data: dict[str, Any]) -> dict[str, Any]:
    """One training run with recompiles, graph breaks and (on CUDA) host syncs watched; its report."""
    torch._logging.set_logs(recompiles=True, graph_breaks=True)  # noqa: SLF001 (what TORCH_LOGS asks for)
    watch = TrainingWatch()
    handler = _Forward(watch)
    torch_logger = logging.getLogger("torch")
    torch_logger.addHandler(handler)
    cuda = torch.cuda.is_available()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = watch.on_warning  # catch_warnings restores it
            if cuda:
                torch.cuda.set_sync_debug_mode("warn")
            try:
                run = _run(settings, model, data)
            finally:
                if cuda:
                    torch.cuda.set_sync_debug_mode("default")
    finally:
        torch_logger.removeHandler(handler)
    return {
        "run": run,
        "sync_debug_mode": "warn" if cuda else None,
        **watch.counts,
        "examples": watch.examples,
        "failures": watch.failures,
        "passed": not watch.failures,
    }


def run_stage(stage: str, args: argparse.Namespace) -> dict[str, Any]:
    """Stage ``cnn`` or ``vit`` in this process (``smoke`` is gpu_benchmark.py's own run)."""
    compile_mode = "off" if args.dry_run else "on"
    data = load_data(argparse.Namespace(smoke=args.dry_run, archive=args.archive))
    if stage == "cnn":
        return watched_run(benchmark_recipe("cnn", args.dry_run, compile_mode), "cnn", data)
    settings = benchmark_recipe("vit", args.dry_run, compile_mode)
    full_epochs = settings["training"]["epochs"]
    settings["training"]["epochs"] = VIT_CHECK_EPOCHS
    run = _run(settings, "vit", data)
    steps = len(data["train_images"]) // settings["training"]["batch_size"]
    step_time = run["epoch_times_s"][-1] / steps  # the last epoch: steady state
    return {
        "run": run,
        "steps_per_epoch": steps,
        "step_time_s": step_time,
        "recipe_epochs": full_epochs,
        "projected_recipe_train_time_s": step_time * steps * full_epochs,
        "passed": True,
    }


def stage_command(stage: str, args: argparse.Namespace, out: Path) -> list[str]:
    if stage == "smoke":
        script = Path(__file__).resolve().parent / "gpu_benchmark.py"
        return [sys.executable, str(script), "--smoke", "--compile", "off" if args.dry_run else "on", "--out", str(out)]
    command = [sys.executable, str(Path(__file__).resolve()), "--stage", stage, "--stage-out", str(out)]
    if args.dry_run:
        command.append("--dry-run")
    else:
        command.append(str(Path(args.archive).resolve()))
    return command


def run_stage_process(stage: str, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """Run one stage in a fresh Python process; its report, or how it failed."""
    out = folder / f"{stage}.json"
    started = time.perf_counter()
    logger.info("stage %s", stage)
    try:
        completed = subprocess.run(
            stage_command(stage, args, out),
            env={**os.environ, "TORCH_LOGS": TORCH_LOGS},
            capture_output=True,
            text=True,
            timeout=STAGE_TIMEOUT_S,
            check=False,
        )
        returncode, stderr = completed.returncode, completed.stderr
    except subprocess.TimeoutExpired as error:
        returncode, stderr = None, f"timed out after {STAGE_TIMEOUT_S} s: {error.stderr or ''}"
    report: dict[str, Any] = json.loads(out.read_text()) if returncode == 0 and out.exists() else {}
    report["returncode"] = returncode
    report["stage_wall_time_s"] = time.perf_counter() - started
    report["passed"] = returncode == 0 and report.get("passed", True)
    if not report["passed"]:
        report["stderr_tail"] = str(stderr)[-4000:]
    logger.info(
        "stage %s: %s in %.0f s", stage, "passed" if report["passed"] else "FAILED", report["stage_wall_time_s"]
    )
    return report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("archive", nargs="?", help="path to cifar-10-python.tar.gz")
    parser.add_argument("--out", default="benchmarks/results/gpu_check.json")
    parser.add_argument("--dry-run", action="store_true", help="the stages on the CPU: tiny models, no compile")
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument("--stage", choices=STAGES[1:], help=argparse.SUPPRESS)  # one stage, in this process
    parser.add_argument("--stage-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not (args.dry_run or args.archive):
        parser.error("give the CIFAR-10 archive path, or --dry-run")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    if args.stage:
        write_json(run_stage(args.stage, args), args.stage_out)
        return 0
    started = time.perf_counter()
    report: dict[str, Any] = {
        "benchmark": "gpu_check",
        "dry_run": args.dry_run,
        "machine": machine_info(),
        "torch_logs": TORCH_LOGS,
        "stages": {},
    }
    with tempfile.TemporaryDirectory() as folder:
        for stage in args.stages:
            report["stages"][stage] = run_stage_process(stage, args, Path(folder))
            write_json(report, args.out)
    report["passed"] = all(stage["passed"] for stage in report["stages"].values())
    report["total_wall_time_s"] = time.perf_counter() - started
    write_json(report, args.out)
    logger.info("gpu check %s in %.0f s", "passed" if report["passed"] else "FAILED", report["total_wall_time_s"])
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())

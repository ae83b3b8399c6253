"""GPU benchmark: the cnn recipe against airbench94 over 10 seeds, and one vit run, on CIFAR-10.

Trains on all 50,000 training images (record mode: no validation split) and
measures accuracy on the 10,000 test images (only here, after training: the
engine never sees them). The cnn recipe runs once to warm up (torch.compile,
cuDNN autotuning; reported apart), then once per seed 0..``--cnn-runs``-1.
With ``--reference``, airbench94's own code (``legacy/airbench94.py`` of
KellerJordan/cifar10-airbench, read from that path at run time, never copied
here) runs beside it in the same process, on the same images (written from the
same archive to the files it loads), with the same seeds: its warm-up, then
seed by seed after the project's run of that seed. Each side reports the mean
and a 95% confidence interval (Student's t) of test accuracy with and without
TTA and of time. The vit recipe runs once.

Times are synchronised device time: ``train_time_s`` is setup plus
steady-state training; the compile warm-up (``compile_time_s``) and the final
test pass (``test_eval_time_s``) are apart. airbench94's own timer counts
whitening, training and its final TTA pass, so ``train_and_tta_time_s`` is the
project's figure to set beside it.

Sized for the GPU machine the project can get (one H100 or H200, torch 2.11,
Python 3.12, no Kedro, no network, about 15 minutes at a stretch with
start-up): about 6 minutes with the reference. It needs only torch, numpy and
PyYAML with this package importable (benchmarks/README.md says how to carry
them):

    PYTHONPATH=src python benchmarks/gpu_benchmark.py cifar-10-python.tar.gz \\
        --reference ignored/airbench94.py --out gpu.json
    PYTHONPATH=src python benchmarks/gpu_benchmark.py --estimate-only --out estimate.json  # no GPU needed
    PYTHONPATH=src python benchmarks/gpu_benchmark.py --smoke --out /tmp/smoke.json
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from airbench_reference import cpu_source, load_reference, run_reference, write_reference_data  # noqa: E402
from common import (  # noqa: E402 (after the path set-up)
    gpu_recipe_estimates,
    logger,
    machine_info,
    setup_logging,
    test_accuracy,
    training_seconds,
    write_json,
)

from image_recognition.models.tiny import TINY_MODELS  # noqa: E402
from image_recognition.sources.cifar10.archive import CIFAR10Arrays, load_cifar10_archive  # noqa: E402
from image_recognition.sources.cifar10.split import channel_statistics  # noqa: E402
from image_recognition.sources.cifar10.synthetic import make_synthetic_cifar10  # noqa: E402
from image_recognition.training import train  # noqa: E402
from image_recognition.training.recipes import recipe  # noqa: E402

TARGET_ACCURACY = 0.94
# Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom
# (scipy.stats.t.ppf(0.975, df)); the GPU machine has no scipy.
T_975 = (
    12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
    2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
    2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
)  # fmt: skip
Z_975 = 1.959964


def t_quantile_975(degrees_of_freedom: int) -> float:
    """The 97.5% quantile of Student's t: the table, past 30 the Cornish-Fisher series (error < 1e-4)."""
    if degrees_of_freedom < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {degrees_of_freedom}")
    if degrees_of_freedom <= len(T_975):
        return T_975[degrees_of_freedom - 1]
    z, df = Z_975, degrees_of_freedom
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def mean_ci95(values: list[float]) -> dict[str, Any]:
    """Mean, sample standard deviation and the half-width of its 95% t-interval (None below 2 values)."""
    n = len(values)
    mean = statistics.fmean(values) if values else math.nan
    stdev = statistics.stdev(values) if n > 1 else None
    half_width = None if stdev is None else t_quantile_975(n - 1) * stdev / math.sqrt(n)
    return {"n": n, "mean": mean, "stdev": stdev, "ci95_half_width": half_width}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("archive", nargs="?", help="path to cifar-10-python.tar.gz")
    parser.add_argument("--out", default="benchmarks/results/gpu.json")
    parser.add_argument("--cnn-runs", type=int, default=10, help="cnn seeds 0..N-1, after a warm-up run")
    parser.add_argument(
        "--reference",
        type=Path,
        help="legacy/airbench94.py of KellerJordan/cifar10-airbench: run it beside the cnn recipe, same seeds",
    )
    parser.add_argument(
        "--compile",
        choices=("on", "off"),
        help="torch.compile the models or not (default: each recipe's own setting; off for --smoke)",
    )
    parser.add_argument("--skip-vit", action="store_true")
    parser.add_argument("--skip-cnn", action="store_true")
    parser.add_argument("--vit-epochs", type=int, help="override the vit recipe's epochs")
    parser.add_argument(
        "--estimate-only",
        action="store_true",
        help="print FLOPs and estimated GPU times of both recipes; train nothing",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny models, one epoch, two seeds, synthetic data: checks the script end to end on a CPU",
    )
    args = parser.parse_args(argv)
    if not (args.smoke or args.estimate_only or args.archive):
        parser.error("give the CIFAR-10 archive path, or --smoke, or --estimate-only")
    if args.cnn_runs < 1:
        parser.error("--cnn-runs must be at least 1")
    if args.reference is not None and not args.reference.is_file():
        parser.error(f"--reference {args.reference}: no such file (legacy/airbench94.py of cifar10-airbench)")
    return args


def _smoke_recipe(name: str) -> dict[str, Any]:
    settings = recipe(name)
    settings["training"].update(epochs=1, batch_size=100, compile=False, checkpoint_every=0)
    settings["model"].update(copy.deepcopy(TINY_MODELS[name]))
    return settings


def benchmark_recipe(name: str, smoke: bool, compile_mode: str | None) -> dict[str, Any]:
    """Recipe ``name`` (its tiny form for a smoke run), with ``--compile`` applied."""
    settings = _smoke_recipe(name) if smoke else recipe(name)
    if compile_mode is not None:
        settings["training"]["compile"] = compile_mode == "on"
    return settings


def _run(settings: dict[str, Any], model: str, data: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    result = train(
        model,
        settings["model"],
        settings["training"],
        {"images": data["train_images"], "labels": data["train_labels"]},
        None,
        {"mean": data["mean"], "std": data["std"]},
    )
    wall = time.perf_counter() - started
    test = (data["test_images"], data["test_labels"], data["mean"], data["std"])
    accuracy, eval_seconds = test_accuracy(result, *test, settings["training"])
    accuracy_no_tta, _ = test_accuracy(result, *test, {**settings["training"], "tta": "none"})
    run = {
        "seed": settings["training"]["seed"],
        "compiled": bool(result.final_metrics.get("compiled", settings["training"]["compile"])),
        "test_accuracy": accuracy,
        "test_accuracy_no_tta": accuracy_no_tta,
        "train_time_s": training_seconds(result),
        "test_eval_time_s": eval_seconds,
        "train_and_tta_time_s": training_seconds(result) + eval_seconds,
        "setup_time_s": result.setup_time_s,
        "compile_time_s": result.compile_time_s,
        "epoch_times_s": [row["epoch_time_s"] for row in result.history],
        "wall_time_s": wall,
    }
    logger.info(
        "%s seed %d: test accuracy %.4f (%.4f without TTA) in %.2f s of training (compile %.1f s apart)",
        model,
        run["seed"],
        accuracy,
        accuracy_no_tta,
        run["train_time_s"],
        result.compile_time_s,
    )
    return run


def _summary(runs: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, Any]:
    return {key: mean_ci95([run[key] for run in runs if run.get(key) is not None]) for key in keys}


@contextlib.contextmanager
def reference_runner(reference: Path, data: dict[str, Any]):  # noqa: ANN201 (a generator context)
    """Yields ``run(seed)`` for airbench94's ``main``, in a folder holding these images as its files.

    On CUDA the reference runs as published; elsewhere with airbench_reference's
    CPU_CHANGES (fp32, no CUDA events).
    """
    source = reference.read_text() if torch.cuda.is_available() else cpu_source(reference)
    with tempfile.TemporaryDirectory() as folder:
        write_reference_data(data["arrays"], Path(folder))
        namespace = load_reference(source, reference)
        with contextlib.chdir(folder):  # the reference loads ./cifar10/{train,test}.pt
            yield lambda seed: run_reference(namespace, seed)


def benchmark_cnn(
    data: dict[str, Any],
    runs: int,
    smoke: bool,
    compile_mode: str | None,
    reference: Path | None,
    progress: Callable[[dict[str, Any]], None] = lambda _: None,
) -> dict[str, Any]:
    """The cnn recipe over seeds 0..runs-1 and, given ``reference``, airbench94 seed by seed beside it.

    ``progress`` gets the report so far after each seed: a run cut short keeps what it measured.
    """
    settings = benchmark_recipe("cnn", smoke, compile_mode)
    project: list[dict[str, Any]] = []
    report: dict[str, Any] = {
        "recipe": settings,
        "seeds": list(range(runs)),
        "runs": project,
        "target_accuracy": TARGET_ACCURACY,
    }
    references: list[dict[str, Any]] = []
    if reference is not None:
        report["reference"] = {
            "what": "airbench94's own code, read at run time; on CUDA unchanged, elsewhere with CPU_CHANGES",
            "path": str(reference),
            "sha256": hashlib.sha256(reference.read_bytes()).hexdigest(),
            "runs": references,
        }
    with contextlib.ExitStack() as stack:
        run_reference_seed = stack.enter_context(reference_runner(reference, data)) if reference else None
        report["warmup_run"] = _run(settings, "cnn", data)  # compiles and autotunes; not counted
        if run_reference_seed:
            report["reference"]["warmup_run"] = run_reference_seed("warmup")
        for seed in report["seeds"]:
            seeded = copy.deepcopy(settings)
            seeded["training"]["seed"] = seed
            project.append(_run(seeded, "cnn", data))
            if run_reference_seed:
                references.append(run_reference_seed(seed))
                logger.info("airbench94 seed %d: %.4f", seed, references[-1]["test_accuracy_tta"])
            _summarise_cnn(report)
            progress(report)
    return report


def _summarise_cnn(report: dict[str, Any]) -> None:
    runs = report["runs"]
    report["summary"] = _summary(
        runs, ("test_accuracy", "test_accuracy_no_tta", "train_time_s", "train_and_tta_time_s")
    )
    report["runs_reaching_target"] = sum(run["test_accuracy"] >= TARGET_ACCURACY for run in runs)
    if "reference" in report:
        report["reference"]["summary"] = _summary(
            report["reference"]["runs"],
            ("test_accuracy_tta", "test_accuracy_no_tta", "reference_time_s", "wall_time_s"),
        )


def benchmark_vit(data: dict[str, Any], smoke: bool, epochs: int | None, compile_mode: str | None) -> dict[str, Any]:
    settings = benchmark_recipe("vit", smoke, compile_mode)
    if epochs:
        settings["training"]["epochs"] = epochs
    # The engine compiles before its clock starts; compile_time_s reports it.
    return {"recipe": settings, "run": _run(settings, "vit", data)}


def load_data(args: argparse.Namespace) -> dict[str, Any]:
    if args.smoke:
        arrays: CIFAR10Arrays = make_synthetic_cifar10(train_per_class=50, test_per_class=20, seed=0)
    else:
        arrays = load_cifar10_archive(args.archive)
    mean, std = channel_statistics(arrays.train_images)
    return {
        "arrays": arrays,
        "train_images": arrays.train_images,
        "train_labels": arrays.train_labels,
        "test_images": arrays.test_images,
        "test_labels": arrays.test_labels,
        "mean": mean,
        "std": std,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    setup_logging()
    started = time.perf_counter()
    if args.estimate_only:
        report = {
            "benchmark": "gpu_estimate",
            "machine": machine_info(),
            "estimates": gpu_recipe_estimates(args.vit_epochs),
        }
        write_json(report, args.out)
        return report
    out = Path(args.out).resolve()  # the reference runs in a folder of its own
    data = load_data(args)
    report: dict[str, Any] = {
        "benchmark": "gpu",
        "smoke": args.smoke,
        "compile": args.compile,
        "machine": machine_info(),
        "archive_md5": None if args.smoke else hashlib.md5(Path(args.archive).read_bytes()).hexdigest(),  # noqa: S324
        "train_images": len(data["train_images"]),
        "test_images": len(data["test_images"]),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "estimates": gpu_recipe_estimates(args.vit_epochs),
    }
    if not args.skip_cnn:
        runs = 2 if args.smoke else args.cnn_runs
        report["cnn"] = benchmark_cnn(
            data, runs, args.smoke, args.compile, args.reference, lambda cnn: write_json({**report, "cnn": cnn}, out)
        )
    if not args.skip_vit:
        report["vit"] = benchmark_vit(data, args.smoke, args.vit_epochs, args.compile)
    report["total_wall_time_s"] = time.perf_counter() - started
    write_json(report, out)
    return report


if __name__ == "__main__":
    main()

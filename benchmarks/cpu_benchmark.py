"""CPU benchmark: recipes side by side on real CIFAR-10, in one run.

Each row trains one recipe from ``conf/`` (read by ``training/recipes.py``) with the engine,
evaluates it once on the 10,000 test images (the engine never sees them) and
records test accuracy, training time, throughput and machine facts in JSON.
The default rows are the comparison of the issue "GPU recipes that reach their
targets":

- ``vit_cpu``: the CPU ViT profile (conv stem), with the pipeline's 5,000
  held-out validation images;
- ``vit_cpu_plain``: the plain-patch CPU ViT it replaces, its epochs fitted to
  the same 10-minute budget by a throughput probe;
- ``cnn``: the GPU ``cnn`` record recipe unchanged (widths 64/256/256, 10
  epochs, batch 1024, all 50,000 training images, channels_last, no compile),
  in bf16 autocast where the CPU has native bf16 and in fp32 elsewhere;
- ``cnn_cpu``: the CPU cnn profile, which must beat ``cnn`` on time (issue
  "The first command works on every machine").

The report also holds both GPU recipes' training FLOPs and estimated GPU time
(``gpu_estimates``), so one run gives every figure of the comparison.

    PYTHONPATH=src python benchmarks/cpu_benchmark.py \\
        --archive /path/to/cifar-10-python.tar.gz --out benchmarks/results/cpu.json

``--rows`` picks a subset or ``simple_cnn``; ``--epochs`` and
``--train-subset`` shorten a run for tuning experiments.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402 (after the path set-up)
    gpu_recipe_estimates,
    logger,
    machine_info,
    setup_logging,
    test_accuracy,
    training_seconds,
    write_json,
)

from image_recognition.common.device import cpu_has_native_bf16  # noqa: E402
from image_recognition.models import build_model, count_parameters  # noqa: E402
from image_recognition.sources.cifar10.archive import load_cifar10_archive  # noqa: E402
from image_recognition.sources.cifar10.split import channel_statistics, stratified_holdout  # noqa: E402
from image_recognition.training import train  # noqa: E402
from image_recognition.training.recipes import RECIPE_MODELS, load_recipe, recipe  # noqa: E402

# The official download, and the rebuilt copy in this project's offline mirror.
KNOWN_MD5S = {"c58f30108f718f92721af3b95e74349a", "74e4f69aa8685b4966a7fe2f74a6d34c"}
# Each row trains the recipe of its name: a recipe in conf/ (RECIPES), or
# the benchmark-only one below. Value: (validation images held out, fit the
# epochs to the budget?).
ROWS: dict[str, tuple[int, bool]] = {
    "vit_cpu": (5000, False),
    "vit_cpu_plain": (5000, True),
    "cnn": (0, False),  # record mode: all 50,000 images, as the speed records train
    "cnn_cpu": (5000, False),
    "simple_cnn": (5000, False),
}
# The plain CPU ViT the conv-stem profile replaced: kept here, not in conf/.
BENCHMARK_ONLY_RECIPES = {"vit_cpu_plain": (Path(__file__).resolve().parent / "recipes" / "vit_cpu_plain.yml", "vit")}
DEFAULT_ROWS = ["vit_cpu", "vit_cpu_plain", "cnn_cpu", "cnn"]
PROBE_STEPS = 8  # timed training steps of the throughput probe, after 2 warm-up steps


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archive", default="/work/cifar/cifar-10-python.tar.gz")
    parser.add_argument("--out", default="benchmarks/results/cpu.json")
    parser.add_argument("--rows", nargs="+", default=DEFAULT_ROWS, choices=list(ROWS))
    parser.add_argument("--budget-s", type=float, default=600.0, help="training budget of budget-fitted rows")
    parser.add_argument(
        "--autocast",
        choices=["auto", "bf16", "off"],
        default="auto",
        help="precision of the GPU recipe on the CPU; auto = bf16 where the CPU has native bf16",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of every row's training and validation holdout")
    parser.add_argument("--epochs", type=int, help="override every row's epochs")
    parser.add_argument("--train-subset", type=int, help="train on only this many images")
    parser.add_argument("--checkpoint-dir", help="write (and resume from) checkpoints here")
    parser.add_argument("--resume", action="store_true", help="continue from --checkpoint-dir")
    return parser.parse_args(argv)


def row_model(row: str) -> str:
    """The model the row's recipe trains."""
    return BENCHMARK_ONLY_RECIPES[row][1] if row in BENCHMARK_ONLY_RECIPES else RECIPE_MODELS[row]


def row_settings(row: str, args: argparse.Namespace) -> dict[str, Any]:
    """The row's recipe, set up for this CPU."""
    settings = load_recipe(*BENCHMARK_ONLY_RECIPES[row]) if row in BENCHMARK_ONLY_RECIPES else recipe(row)
    training = settings["training"]
    training.update(device="cpu", compile=False, resume=args.resume, seed=args.seed)
    if row == "cnn":
        # The GPU recipe unchanged but for what a CPU has: no compile, and
        # ("auto") bf16 only where the CPU computes it natively.
        training.update(autocast=args.autocast, channels_last=True, log_every=10)
    if args.epochs:
        training.update(epochs=args.epochs, budget_s=None)
    return settings


def fit_epochs_to_budget(model_name: str, settings: dict[str, Any], train_images, train_labels, mean, std, budget_s):
    """The most whole epochs that fit in ``budget_s`` at the throughput of a short probe run."""
    training = settings["training"]
    probe_images = train_images[: training["batch_size"] * (PROBE_STEPS + 2)]
    probe = train(
        model_name,
        settings["model"],
        {**training, "epochs": 1, "budget_s": None, "checkpoint_every": 0, "log_every": 0, "resume": False},
        {"images": probe_images, "labels": train_labels[: len(probe_images)]},
        None,
        {"mean": mean, "std": std},
    )
    images_per_s = probe.history[-1]["images_per_s"]
    epochs = max(1, math.floor(budget_s * images_per_s / len(train_images)))
    logger.info("probe: %.0f images/s, so %d epochs fit in %.0f s", images_per_s, epochs, budget_s)
    return epochs, images_per_s


def row_splits(data, val_size: int, args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """The row's training and validation splits: a stratified holdout of the training set, then the subset asked for."""
    keep, holdout = stratified_holdout(data.train_labels, val_size, args.seed)
    if args.train_subset:
        keep = keep[: args.train_subset]
    return (
        {"images": data.train_images[keep], "labels": data.train_labels[keep]},
        {"images": data.train_images[holdout], "labels": data.train_labels[holdout]},
    )


def run_row(row: str, data, args: argparse.Namespace) -> dict[str, Any]:
    model_name, (val_size, fit_to_budget) = row_model(row), ROWS[row]
    settings = row_settings(row, args)
    training = settings["training"]
    train_split, val_split = row_splits(data, val_size, args)
    train_images, train_labels = train_split["images"], train_split["labels"]
    mean, std = channel_statistics(train_images)
    probe = None
    if fit_to_budget and not args.epochs:
        epochs, images_per_s = fit_epochs_to_budget(
            model_name, settings, train_images, train_labels, mean, std, args.budget_s
        )
        training.update(epochs=epochs, budget_s=None)
        probe = {"budget_s": args.budget_s, "probe_images_per_s": images_per_s, "epochs": epochs}
    checkpoint = Path(args.checkpoint_dir) / f"{row}.pt" if args.checkpoint_dir else None
    length = f"{training['epochs']} epochs" if training["epochs"] else f"a budget of {training['budget_s']} s"
    logger.info("row %s: training %s for %s on %d images", row, model_name, length, len(train_images))
    started = time.perf_counter()
    result = train(
        model_name, settings["model"], training, train_split, val_split, {"mean": mean, "std": std}, checkpoint
    )
    wall = time.perf_counter() - started
    accuracy, eval_seconds = test_accuracy(result, data.test_images, data.test_labels, mean, std, training)
    no_tta, _ = test_accuracy(result, data.test_images, data.test_labels, mean, std, {**training, "tta": "none"})
    last = result.history[-1]
    logger.info("row %s: test accuracy %.4f, training %.0f s", row, accuracy, training_seconds(result))
    return {
        "recipe": row,
        "model": model_name,
        "model_config": settings["model"],
        "training": training,
        "train_images": len(train_images),
        "val_images": len(val_split["images"]),
        "budget_fit": probe,
        "parameters": count_parameters(build_model(model_name, settings["model"])),
        "test_accuracy": accuracy,
        "test_accuracy_no_tta": no_tta,
        "tta": training["tta"],
        "val_accuracy": result.final_metrics["val_accuracy"],
        "train_time_s": training_seconds(result),
        "wall_time_s_this_process": wall,
        "wall_time_s_all_sessions": last["wall_time_s"],
        "images_per_s": sum(r["images_per_s"] for r in result.history) / len(result.history),
        "test_eval_time_s": eval_seconds,
        "load_average_after": machine_info()["load_average_1_5_15"],
        "history": result.history,
    }


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    setup_logging()
    md5 = hashlib.md5(Path(args.archive).read_bytes()).hexdigest()
    if md5 not in KNOWN_MD5S:
        logger.warning("archive md5 %s is none of the known %s", md5, sorted(KNOWN_MD5S))
    data = load_cifar10_archive(args.archive)
    report = {
        "benchmark": "cpu",
        "archive_md5": md5,
        "test_images": len(data.test_images),
        "seed": args.seed,
        "machine": {**machine_info(), "native_bf16": cpu_has_native_bf16()},
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "gpu_estimates": gpu_recipe_estimates(),
        "results": {},
    }
    write_json(report, args.out)
    for row in args.rows:
        report["results"][row] = run_row(row, data, args)
        write_json(report, args.out)  # after each row, so a partial run leaves results
    return report


if __name__ == "__main__":
    main()

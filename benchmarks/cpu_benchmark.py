"""CPU benchmark: the cnn CPU profile and the tutorial simple_cnn on real CIFAR-10.

Holds out a stratified 5,000-image validation split (the engine never sees the
test split), trains each recipe, evaluates on the 10,000 test images and
writes test accuracy, training time, throughput and machine facts to JSON.

    PYTHONPATH=src python benchmarks/cpu_benchmark.py \\
        --archive /path/to/cifar-10-python.tar.gz --out benchmarks/results/cpu.json

``--epochs`` and ``--train-subset`` shorten the run for tuning experiments.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402 (after the path set-up)
    logger,
    machine_info,
    setup_logging,
    test_accuracy,
    training_seconds,
    write_json,
)

from image_recognition.data.archive import load_cifar10_archive  # noqa: E402
from image_recognition.data.split import channel_statistics, stratified_holdout  # noqa: E402
from image_recognition.models import build_model, count_parameters  # noqa: E402
from image_recognition.training import train  # noqa: E402
from image_recognition.training.recipes import RECIPE_MODELS, recipe  # noqa: E402

# The official download, and the rebuilt copy in this project's offline mirror.
KNOWN_MD5S = {"c58f30108f718f92721af3b95e74349a", "74e4f69aa8685b4966a7fe2f74a6d34c"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archive", default="/work/cifar-mirror/cifar-10-python.tar.gz")
    parser.add_argument("--out", default="benchmarks/results/cpu.json")
    parser.add_argument("--recipes", nargs="+", default=["cnn_cpu", "simple_cnn"])
    parser.add_argument("--val-size", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, help="override every recipe's epochs")
    parser.add_argument("--train-subset", type=int, help="train on only this many images")
    parser.add_argument("--checkpoint-dir", help="write (and resume from) checkpoints here")
    parser.add_argument("--resume", action="store_true", help="continue from --checkpoint-dir")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    setup_logging()
    md5 = hashlib.md5(Path(args.archive).read_bytes()).hexdigest()
    if md5 not in KNOWN_MD5S:
        logger.warning("archive md5 %s is none of the known %s", md5, sorted(KNOWN_MD5S))
    data = load_cifar10_archive(args.archive)
    keep, holdout = stratified_holdout(data.train_labels, args.val_size, args.seed)
    if args.train_subset:
        keep = keep[: args.train_subset]
    train_images, train_labels = data.train_images[keep], data.train_labels[keep]
    val_images, val_labels = data.train_images[holdout], data.train_labels[holdout]
    mean, std = channel_statistics(train_images)
    report = {
        "benchmark": "cpu",
        "archive_md5": md5,
        "train_images": len(train_images),
        "val_images": len(val_images),
        "test_images": len(data.test_images),
        "seed": args.seed,
        "machine": machine_info(),
        "results": {},
    }
    for name in args.recipes:
        settings = recipe(name)
        training = settings["training"]
        training["device"] = "cpu"
        training["resume"] = args.resume
        if args.epochs:
            training["epochs"] = args.epochs
        model_name = RECIPE_MODELS[name]
        checkpoint = Path(args.checkpoint_dir) / f"{name}.pt" if args.checkpoint_dir else None
        logger.info("recipe %s: training %s for %d epochs", name, model_name, training["epochs"])
        started = time.perf_counter()
        result = train(
            model_name,
            settings["model"],
            training,
            train_images,
            train_labels,
            val_images,
            val_labels,
            mean,
            std,
            checkpoint,
        )
        wall = time.perf_counter() - started
        accuracy, eval_seconds = test_accuracy(result, data.test_images, data.test_labels, mean, std, training)
        last = result.history[-1]
        report["results"][name] = {
            "model": model_name,
            "model_config": settings["model"],
            "training": training,
            "parameters": count_parameters(build_model(model_name, settings["model"])),
            "test_accuracy": accuracy,
            "val_accuracy": result.final_metrics["val_accuracy"],
            "train_time_s": training_seconds(result),
            "wall_time_s_this_process": wall,
            "wall_time_s_all_sessions": last["wall_time_s"],
            "images_per_s": sum(r["images_per_s"] for r in result.history) / len(result.history),
            "test_eval_time_s": eval_seconds,
            "history": result.history,
        }
        logger.info("recipe %s: test accuracy %.4f, training %.0f s", name, accuracy, training_seconds(result))
        write_json(report, args.out)  # after each recipe, so a partial run leaves results
    return report


if __name__ == "__main__":
    main()

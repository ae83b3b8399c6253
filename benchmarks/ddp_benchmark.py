"""Images/s of data-parallel training against one process, same recipe, same cores.

Each row trains a recipe from ``conf/`` (``--recipes``, default the CPU
profiles ``cnn_cpu`` and ``vit_cpu``) for ``--epochs`` epochs on ``--images``
synthetic CIFAR-shaped images (speed does not depend on the pixels) and
records the images/s of its last epoch (steady state: after the first
epoch's warm-up, without the launcher's start-up and validation):

- on the CPU: 1 process x N threads against N processes x 1 thread, N the
  usable cores (``torch.get_num_threads()``), gloo;
- on a machine with several GPUs: 1 GPU against every GPU in DDP (NCCL).

The recipe's global batch, learning rate and augmentation are kept in every
row; only the number of processes changes.

    PYTHONPATH=src python benchmarks/ddp_benchmark.py --out benchmarks/results/ddp_cpu.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from common import logger, machine_info, setup_logging, write_json  # noqa: E402

from image_recognition.sources.cifar10.split import channel_statistics  # noqa: E402
from image_recognition.sources.cifar10.synthetic import make_synthetic_cifar10  # noqa: E402
from image_recognition.training import train  # noqa: E402
from image_recognition.training.recipes import RECIPE_MODELS, recipe  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipes", nargs="+", default=["cnn_cpu", "vit_cpu"], choices=list(RECIPE_MODELS))
    parser.add_argument("--images", type=int, default=10000, help="synthetic training images")
    parser.add_argument("--epochs", type=int, default=2, help="the last one is timed")
    parser.add_argument("--out", default="benchmarks/results/ddp_cpu.json")
    return parser.parse_args(argv)


def layouts(batch_size: int) -> list[dict[str, Any]]:
    """(label, processes, DDP?) of each row on this machine; the processes share ``batch_size`` evenly."""
    if torch.cuda.is_available():
        gpus = processes_for(batch_size, torch.cuda.device_count())
        rows = [{"layout": "1 GPU", "processes": 1, "ddp": False}]
        return rows + ([{"layout": f"{gpus} GPUs in DDP", "processes": gpus, "ddp": True}] if gpus > 1 else [])
    threads = torch.get_num_threads()
    processes = processes_for(batch_size, threads)
    return [
        {"layout": f"1 process x {threads} threads", "processes": 1, "ddp": False},
        {"layout": f"{processes} processes x {threads // processes} thread(s)", "processes": processes, "ddp": True},
    ]


def processes_for(batch_size: int, wanted: int) -> int:
    """The most processes, up to ``wanted``, that share ``batch_size`` evenly."""
    return max(n for n in range(1, wanted + 1) if batch_size % n == 0)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging()
    data = make_synthetic_cifar10(train_per_class=args.images // 10, test_per_class=10, seed=0)
    mean, std = channel_statistics(data.train_images)
    splits = {
        "train_split": {"images": data.train_images, "labels": data.train_labels},
        "validation_split": {"images": data.test_images, "labels": data.test_labels},
        "normalization": {"mean": mean, "std": std},
    }
    report: dict[str, Any] = {
        "benchmark": "ddp",
        "machine": machine_info(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "train_images": len(data.train_images),
        "epochs": args.epochs,
        "results": [],
    }
    for name in args.recipes:
        settings = recipe(name)
        for layout in layouts(settings["training"]["batch_size"]):
            training = {
                **settings["training"],
                "epochs": args.epochs,
                "budget_s": None,
                "checkpoint_every": 0,
                "log_every": 0,
            }
            if layout["ddp"]:
                training["distributed"] = {"nproc_per_node": layout["processes"]}
            logger.info("%s: %s", name, layout["layout"])
            result = train(RECIPE_MODELS[name], settings["model"], training, **splits)
            last = result.history[-1]
            report["results"].append(
                {
                    "recipe": name,
                    **layout,
                    "batch_size": training["batch_size"],
                    "images_per_s": last["images_per_s"],
                    "epoch_time_s": last["epoch_time_s"],
                    "train_loss": last["train_loss"],
                }
            )
            write_json(report, args.out)


if __name__ == "__main__":
    main()

"""Seconds to decode an image folder of PNG files: ``read_image_folder``, the image-folder data source.

Writes ``--count`` 32x32 PNG files of random pixels in ``--classes`` class
folders (``train/<class>/``) to a temporary folder, then times
``read_image_folder`` on it, end to end from the files on disk: listing,
the memory check, decoding in ``--workers`` processes (default: the
source's own choice, the usable cores or this process alone for a small folder), hashing for the fingerprint, and assembling the arrays.
Each of ``--runs`` runs is a row; the files are written once, before the first.

    PYTHONPATH=src python benchmarks/image_folder_benchmark.py --count 12000
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from common import logger, machine_info, setup_logging, write_json  # noqa: E402
from PIL import Image  # noqa: E402

from image_recognition.sources.image_folder import read_image_folder, workers_for  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=12_000, help="PNG files in the folder")
    parser.add_argument("--classes", type=int, default=10, help="class folders the files are spread over")
    parser.add_argument("--image-size", type=int, default=32, help="the size decoded to (the files are 32x32)")
    parser.add_argument("--workers", type=int, default=None, help="decoding processes (default: the usable cores)")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/image_folder.json"))
    return parser.parse_args(argv)


def write_pngs(root: Path, count: int, classes: int) -> int:
    """``count`` 32x32 PNGs of random pixels in ``root/train/class_<k>/``; their total size in bytes."""
    rng = np.random.default_rng(0)
    folders = [root / "train" / f"class_{k:02d}" for k in range(classes)]
    for folder in folders:
        folder.mkdir(parents=True)
    total = 0
    for index in range(count):
        path = folders[index % classes] / f"{index:06d}.png"
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)
        total += path.stat().st_size
    return total


def time_read(root: Path, image_size: int, workers: int | None) -> dict[str, Any]:
    started = time.perf_counter()
    data = read_image_folder(root, image_size, workers=workers)
    seconds = time.perf_counter() - started
    images = len(data.train_labels)
    return {"images": images, "seconds": round(seconds, 3), "images_per_s": round(images / seconds, 1)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    setup_logging()
    with tempfile.TemporaryDirectory(prefix="image-folder-benchmark-") as folder:
        root = Path(folder)
        size_bytes = write_pngs(root, args.count, args.classes)
        logger.info("wrote %d PNG files (%.1f MB); timing read_image_folder", args.count, size_bytes / 1e6)
        workers = args.workers or workers_for(args.count, size_bytes)
        rows = [
            {"run": run, "workers": workers, **time_read(root, args.image_size, args.workers)}
            for run in range(args.runs)
        ]
    report = {
        "benchmark": "image_folder",
        "command": "read_image_folder(folder, image_size, workers=workers)",
        "files": args.count,
        "classes": args.classes,
        "file_size": "32x32 PNG, random pixels",
        "folder_bytes": size_bytes,
        "image_size": args.image_size,
        "workers": workers,
        "workers_default": args.workers is None,  # then the source chose: in-process for a small folder
        "usable_cores": len(os.sched_getaffinity(0)),
        "machine": machine_info(),
        "rows": rows,
    }
    write_json(report, args.out)
    return report


if __name__ == "__main__":
    main()

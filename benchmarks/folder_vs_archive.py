"""Folder route against archive route: the same CIFAR-10 images decoded both ways, compared as sets by content hash.

The folder is built from the archive itself. Per class, the first
``--train-per-class`` training images and the first ``--test-per-class`` test
images in the archive's order are written as ``<folder>/{train,test}/<class
name>/<archive index>.png``: PNG is lossless, so each file holds exactly the
archive's pixels. The folder is then decoded by the image-folder source
(``sources.image_folder.read_image_folder``, at 32 x 32: no resize) and the same
selection decoded from the archive; per split, the two are compared as sets (and
as multisets) of sha256 hashes of each image's uint8 bytes, and as sets of
(hash, class name) pairs, so a label mix-up shows too.

With ``--train``, the CPU ``cnn`` recipe (``cnn_cpu``) trains on the folder's
training images (a stratified validation holdout of ``--validation-fraction``,
as the data stage holds one out; 0 for none) and is evaluated once on the
folder's test images.

    PYTHONPATH=src python benchmarks/folder_vs_archive.py \\
        --archive /path/to/cifar-10-python.tar.gz --out benchmarks/results/folder_vs_archive.json --train

``--epochs`` and ``--tiny`` (the tiny cnn of ``models/tiny.py``) shorten the
training for tests.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import logger, machine_info, setup_logging, test_accuracy, training_seconds, write_json  # noqa: E402

from image_recognition.models.tiny import TINY_MODELS  # noqa: E402
from image_recognition.sources.cifar10.archive import ArchiveError, load_cifar10_archive  # noqa: E402
from image_recognition.sources.cifar10.fetch import md5_of  # noqa: E402
from image_recognition.sources.cifar10.split import channel_statistics, stratified_holdout  # noqa: E402
from image_recognition.sources.decoded import DecodedImages  # noqa: E402
from image_recognition.sources.image_folder import read_image_folder  # noqa: E402
from image_recognition.training import train  # noqa: E402
from image_recognition.training.recipes import recipe  # noqa: E402

RECIPE = "cnn_cpu"
SPLITS = ("train", "test")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archive", default="/work/cifar/cifar-10-python.tar.gz", help="a CIFAR-10 python archive")
    parser.add_argument("--md5", help="the archive's expected md5; checked when given")
    parser.add_argument("--out", default="benchmarks/results/folder_vs_archive.json")
    parser.add_argument("--folder", help="write the image folder here (must not exist); default: a temporary folder")
    parser.add_argument("--train-per-class", type=int, default=1000)
    parser.add_argument("--test-per-class", type=int, default=200)
    parser.add_argument("--workers", type=int, help="decoding processes of the folder route (default: its own)")
    parser.add_argument("--train", action="store_true", help=f"train the {RECIPE} recipe on the folder route")
    parser.add_argument("--validation-fraction", type=float, default=0.1, help="stratified holdout; 0 for none")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, help="override the recipe's epochs")
    parser.add_argument("--tiny", action="store_true", help="the tiny cnn instead of the recipe's widths (tests)")
    return parser.parse_args(argv)


def first_per_class(labels: np.ndarray, per_class: int, num_classes: int, split: str) -> np.ndarray:
    """Sorted indices of the first ``per_class`` images of each class, in archive order."""
    chosen = []
    for label in range(num_classes):
        index = np.flatnonzero(labels == label)[:per_class]
        if len(index) < per_class:
            raise ArchiveError(f"the archive's {split} split has {len(index)} images of class {label}, not {per_class}")
        chosen.append(index)
    return np.sort(np.concatenate(chosen))


def selection(data: DecodedImages, args: argparse.Namespace) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per split: (archive indices, images, labels) of the images the folder will hold."""
    chosen = {}
    for split, per_class in zip(SPLITS, (args.train_per_class, args.test_per_class), strict=True):
        images, labels = getattr(data, f"{split}_images"), getattr(data, f"{split}_labels")
        index = first_per_class(labels, per_class, len(data.class_names), split)
        chosen[split] = (index, images[index], labels[index])
    return chosen


def write_folder(root: Path, chosen: dict, class_names: list[str]) -> int:
    """Write every chosen image as a lossless PNG under ``root/<split>/<class>/``; return the bytes written."""
    written = 0
    for split, (index, images, labels) in chosen.items():
        for name in class_names:
            (root / split / name).mkdir(parents=True, exist_ok=True)
        for number, image, label in zip(index, images, labels, strict=True):
            path = root / split / class_names[label] / f"{number:05d}.png"
            Image.fromarray(np.ascontiguousarray(image.transpose(1, 2, 0)), "RGB").save(path, format="PNG")
            written += path.stat().st_size
    return written


def content_hashes(images: np.ndarray) -> list[str]:
    """sha256 of each image's uint8 bytes (C order, (3, H, W))."""
    return [hashlib.sha256(np.ascontiguousarray(image, dtype=np.uint8).tobytes()).hexdigest() for image in images]


def compare_split(archive_images, archive_labels, folder_images, folder_labels, class_names) -> dict[str, Any]:
    """The two routes' images of one split compared as sets and multisets of content hashes, and with labels."""
    archive_hashes, folder_hashes = content_hashes(archive_images), content_hashes(folder_images)
    archive_set, folder_set = set(archive_hashes), set(folder_hashes)
    archive_pairs = {(h, class_names[int(label)]) for h, label in zip(archive_hashes, archive_labels, strict=True)}
    folder_pairs = {(h, class_names[int(label)]) for h, label in zip(folder_hashes, folder_labels, strict=True)}
    return {
        "archive_images": len(archive_hashes),
        "folder_images": len(folder_hashes),
        "archive_unique": len(archive_set),
        "folder_unique": len(folder_set),
        "only_in_archive": len(archive_set - folder_set),
        "only_in_folder": len(folder_set - archive_set),
        "equal_as_sets": archive_set == folder_set,
        "equal_as_multisets": collections.Counter(archive_hashes) == collections.Counter(folder_hashes),
        "equal_with_labels": archive_pairs == folder_pairs,
    }


def train_on_folder(folder: DecodedImages, args: argparse.Namespace) -> dict[str, Any]:
    """Train the CPU cnn recipe on the folder's training split; evaluate once on its test split."""
    settings = recipe(RECIPE)
    model_config = {**settings["model"], **(TINY_MODELS["cnn"] if args.tiny else {})}
    model_config.update(num_classes=len(folder.class_names), image_size=folder.image_size)
    training = settings["training"]
    training.update(device="cpu", compile=False, resume=False, seed=args.seed)
    if args.epochs:
        training.update(epochs=args.epochs, budget_s=None)
    holdout = round(args.validation_fraction * len(folder.train_labels))
    keep, held = stratified_holdout(folder.train_labels, holdout, args.seed)
    train_split = {"images": folder.train_images[keep], "labels": folder.train_labels[keep]}
    val_split = {"images": folder.train_images[held], "labels": folder.train_labels[held]} if holdout else None
    mean, std = channel_statistics(train_split["images"])
    result = train("cnn", model_config, training, train_split, val_split, {"mean": mean, "std": std})
    accuracy, eval_seconds = test_accuracy(result, folder.test_images, folder.test_labels, mean, std, training)
    logger.info("cnn on the folder: test accuracy %.4f", accuracy)
    return {
        "recipe": RECIPE,
        "model": "cnn",
        "model_config": model_config,
        "training": training,
        "train_images": len(keep),
        "val_images": int(holdout),
        "test_images": len(folder.test_labels),
        "test_accuracy": accuracy,
        "tta": training.get("tta", "none"),
        "val_accuracy": result.final_metrics.get("val_accuracy"),
        "train_time_s": training_seconds(result),
        "test_eval_time_s": eval_seconds,
    }


def build_and_decode(data: DecodedImages, chosen: dict, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Write the folder, decode it with the image-folder source, compare the routes; train if asked."""
    started = time.perf_counter()
    written = write_folder(root, chosen, data.class_names)
    write_s = time.perf_counter() - started
    started = time.perf_counter()
    folder = read_image_folder(root, data.image_size, workers=args.workers)
    decode_s = time.perf_counter() - started
    if folder.class_names != data.class_names:
        raise ArchiveError(f"the folder's classes {folder.class_names} are not the archive's {data.class_names}")
    splits = {
        split: compare_split(
            chosen[split][1],
            chosen[split][2],
            getattr(folder, f"{split}_images"),
            getattr(folder, f"{split}_labels"),
            data.class_names,
        )
        for split in SPLITS
    }
    logger.info("routes equal as sets: %s", {split: result["equal_as_sets"] for split, result in splits.items()})
    return {
        "folder_bytes": written,
        "folder_write_s": write_s,
        "folder_decode": folder_decode_note(decode_s, len(folder.train_labels) + len(folder.test_labels)),
        "folder_skipped": folder.skipped,
        "splits": splits,
        "equal": all(result["equal_as_sets"] and result["equal_with_labels"] for result in splits.values()),
        "training": train_on_folder(folder, args) if args.train else None,
    }


def folder_decode_note(seconds: float, images: int) -> dict[str, Any]:
    """The folder route's decoding time: ``read_image_folder`` alone, on files just written (in the page cache)."""
    return {"seconds": seconds, "images": images, "images_per_s": images / seconds if seconds else None}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    setup_logging()
    md5 = md5_of(args.archive)
    if args.md5 and md5 != args.md5.lower():
        raise ArchiveError(f"{args.archive} has md5 {md5}, not the expected {args.md5}: fetch it again or drop --md5")
    data = load_cifar10_archive(args.archive, fingerprint=md5)
    chosen = selection(data, args)
    report = {
        "benchmark": "folder_vs_archive",
        "archive": args.archive,
        "archive_md5": md5,
        "folder_layout": "<folder>/{train,test}/<class name>/<archive index>.png, written by PIL as PNG "
        "(lossless, RGB, 8 bits per channel): the first N images of each class in archive order",
        "train_per_class": args.train_per_class,
        "test_per_class": args.test_per_class,
        "class_names": data.class_names,
        "comparison": "per split, sha256 of each image's uint8 (3, 32, 32) bytes, compared as sets and multisets; "
        "and sets of (hash, class name)",
        "machine": machine_info(),
    }
    if args.folder and Path(args.folder).exists():
        raise FileExistsError(f"--folder {args.folder} exists already: delete it or name another folder")
    if args.folder:
        report.update(build_and_decode(data, chosen, Path(args.folder), args))
    else:
        with tempfile.TemporaryDirectory(prefix="folder_vs_archive_") as scratch:
            report.update(build_and_decode(data, chosen, Path(scratch) / "cifar10_folder", args))
    write_json(report, args.out)
    return report


if __name__ == "__main__":
    main()

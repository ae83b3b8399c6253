"""A generated image folder: a few learnable classes drawn as shapes, in PNG and JPEG, for tests, the demo and the docs.

Class ``c`` is one filled shape (circle, square, triangle, cross) in one colour
on a noisy background, with its position and size jittered per image, so a
small model learns it well above chance but not from one pixel. The layout is
the one ``sources.image_folder`` reads: ``<root>/train/<class>/<images>`` and,
unless ``test_per_class`` is 0, ``<root>/test/<class>/<images>``; written as a
folder, a ``.zip`` or a ``.tar.gz``. The bytes depend only on the arguments::

    python -m image_recognition.sources.synthetic_folder data/01_raw/shapes \\
        --classes 4 --train-per-class 100 --test-per-class 25 [--zip | --tar-gz]
"""

from __future__ import annotations

import argparse
import gzip
import io
import logging
import tarfile
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from image_recognition.common.errors import InputError
from image_recognition.common.params import (
    integer,
    non_negative_int,
    null_or_one_of,
    one_of,
    parameter_error,
    positive_int,
)

logger = logging.getLogger(__name__)

SHAPES = ("circle", "square", "triangle", "cross")
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (40, 70, 220),
    "yellow": (230, 210, 40),
    "magenta": (200, 50, 200),
    "cyan": (40, 200, 210),
}
# (shape, colour) = (c % 4, c % 6) differs for every c below lcm(4, 6).
MAX_CLASSES = 12
FORMATS = {"PNG": ".png", "JPEG": ".jpg"}
ARCHIVES = {"zip": ".zip", "tar.gz": ".tar.gz"}
_FIXED_MTIME = 1262304000  # fixed archive times keep the bytes reproducible
_ZIP_DATE = (2010, 1, 1, 0, 0, 0)


class SyntheticFolderError(InputError, ValueError):
    """The output path of a generated image folder is already taken."""


def class_names(classes: int) -> list[str]:
    """The folder names of the first ``classes`` classes, sorted in class order (``00_red_circle``, ...)."""
    colours = list(COLOURS)
    return [f"{c:02d}_{colours[c % len(colours)]}_{SHAPES[c % len(SHAPES)]}" for c in range(classes)]


def draw_image(label: int, size: int, rng: np.random.Generator) -> Image.Image:
    """One RGB image of class ``label``: its shape in its colour, jittered, on a noisy background."""
    background = rng.uniform(70, 190, 3)[None, None] + rng.normal(0, 25, (size, size, 3))
    image = Image.fromarray(np.clip(background, 0, 255).astype(np.uint8), "RGB")
    radius = size * rng.uniform(0.22, 0.34)
    cx, cy = size / 2 + rng.uniform(-0.15, 0.15, 2) * size
    colour = np.array(list(COLOURS.values())[label % len(COLOURS)]) + rng.integers(-20, 21, 3)
    fill = tuple(int(v) for v in np.clip(colour, 0, 255))
    draw = ImageDraw.Draw(image)
    shape = SHAPES[label % len(SHAPES)]
    box = (cx - radius, cy - radius, cx + radius, cy + radius)
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx, cy - radius), (cx - radius, cy + radius), (cx + radius, cy + radius)], fill=fill)
    else:  # cross
        bar = radius / 3
        draw.rectangle((cx - radius, cy - bar, cx + radius, cy + bar), fill=fill)
        draw.rectangle((cx - bar, cy - radius, cx + bar, cy + radius), fill=fill)
    return image


def encode(image: Image.Image, fmt: str) -> bytes:
    """``image`` as PNG or JPEG bytes, with no time or other varying metadata."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"quality": 92} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def image_files(
    classes: int, per_class: dict[str, int], image_size: int, formats: Sequence[str], seed: int
) -> dict[str, bytes]:
    """The files of the folder: relative path -> bytes; formats alternate image by image."""
    rng = np.random.default_rng(seed)
    names = class_names(classes)
    files = {}
    for split, count in per_class.items():
        for label, name in enumerate(names):
            for index in range(count):
                fmt = formats[index % len(formats)]
                image = draw_image(label, image_size, rng)
                files[f"{split}/{name}/{index:05d}{FORMATS[fmt]}"] = encode(image, fmt)
    return files


def _check_arguments(
    classes: int,
    train_per_class: int,
    test_per_class: int,
    image_size: int,
    formats: Sequence[str],
    archive: str | None,
) -> None:
    # Named as the command-line options, which map one to one onto the arguments.
    if integer("--classes", classes, minimum=2) > MAX_CLASSES:
        raise parameter_error(
            "--classes", f"must be at most {MAX_CLASSES} (distinct shape and colour pairs), got {classes}"
        )
    positive_int("--train-per-class", train_per_class)
    non_negative_int("--test-per-class", test_per_class)
    integer("--image-size", image_size, minimum=8)
    if not formats:
        raise parameter_error("--formats", f"must name at least one of {', '.join(FORMATS)}")
    for fmt in formats:
        one_of("--formats", fmt, tuple(FORMATS))
    null_or_one_of("archive", archive, tuple(ARCHIVES), "a plain folder")


def output_path(root: str | Path, archive: str | None) -> Path:
    """Where the folder or archive goes: ``root``, with the archive's suffix added if it lacks it."""
    root = Path(root)
    suffix = ARCHIVES.get(archive or "", "")
    return root if not suffix or root.name.endswith(suffix) else root.with_name(root.name + suffix)


def write_image_folder(  # noqa: PLR0913 (what the folder holds, and how it is packed)
    root: str | Path,
    classes: int = 4,
    train_per_class: int = 50,
    test_per_class: int = 10,
    image_size: int = 32,
    formats: Sequence[str] = ("PNG", "JPEG"),
    archive: str | None = None,
    seed: int = 0,
) -> Path:
    """Write a generated image folder at ``root`` (or ``root.zip`` / ``root.tar.gz``); return its path.

    ``test_per_class=0`` writes no ``test/``. The folder is built aside and moved
    into place whole, so an interrupted run leaves nothing at the path; a path
    that exists already is refused.
    """
    _check_arguments(classes, train_per_class, test_per_class, image_size, formats, archive)
    target = output_path(root, archive)
    if target.exists():
        raise SyntheticFolderError(f"{target} exists already: delete it or choose another output path")
    per_class = {"train": train_per_class, **({"test": test_per_class} if test_per_class else {})}
    files = image_files(classes, per_class, image_size, list(formats), seed)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.") as scratch:
        built = Path(scratch) / target.name
        if archive == "zip":
            _write_zip(built, files)
        elif archive == "tar.gz":
            _write_tar_gz(built, files)
        else:
            _write_folder(built, files)
        built.replace(target)
    return target


def _write_folder(folder: Path, files: dict[str, bytes]) -> None:
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


def _write_zip(path: Path, files: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zipped:
        for name, content in sorted(files.items()):
            zipped.writestr(zipfile.ZipInfo(name, date_time=_ZIP_DATE), content)


def _write_tar_gz(path: Path, files: dict[str, bytes]) -> None:
    with (
        open(path, "wb") as raw,
        gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w") as tar,
    ):
        for name, content in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(content), _FIXED_MTIME
            tar.addfile(info, io.BytesIO(content))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="the folder to write (or the archive, with --zip or --tar-gz)")
    parser.add_argument("--classes", type=int, default=4, help=f"2 to {MAX_CLASSES}")
    parser.add_argument("--train-per-class", type=int, default=50)
    parser.add_argument("--test-per-class", type=int, default=10, help="0: no test/ folder")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--formats", nargs="+", default=["PNG", "JPEG"], choices=list(FORMATS))
    parser.add_argument("--seed", type=int, default=0)
    packing = parser.add_mutually_exclusive_group()
    packing.add_argument("--zip", action="store_const", const="zip", dest="archive")
    packing.add_argument("--tar-gz", action="store_const", const="tar.gz", dest="archive")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    path = write_image_folder(
        args.out,
        classes=args.classes,
        train_per_class=args.train_per_class,
        test_per_class=args.test_per_class,
        image_size=args.image_size,
        formats=args.formats,
        archive=args.archive,
        seed=args.seed,
    )
    logger.info("Wrote %s: %d classes, %s", path, args.classes, ", ".join(class_names(args.classes)))
    return path


if __name__ == "__main__":
    main()

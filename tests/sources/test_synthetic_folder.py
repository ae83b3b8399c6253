"""The generated image folder: its layout, formats, reproducibility by seed, archive variants and command line."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from image_recognition.common.errors import ParameterError
from image_recognition.sources.image_folder import read_image_folder
from image_recognition.sources.synthetic_folder import (
    SyntheticFolderError,
    class_names,
    main,
    write_image_folder,
)
from tests.helpers import PROJECT_ROOT


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_classes_counts_and_formats(tmp_path):
    root = write_image_folder(tmp_path / "shapes", classes=4, train_per_class=4, test_per_class=2, image_size=24)
    assert root == tmp_path / "shapes"
    assert sorted(p.name for p in root.iterdir()) == ["test", "train"]
    names = sorted(p.name for p in (root / "train").iterdir())
    assert names == class_names(4) == ["00_red_circle", "01_green_square", "02_blue_triangle", "03_yellow_cross"]
    assert sorted(p.name for p in (root / "test").iterdir()) == names
    for name in names:
        files = sorted((root / "train" / name).iterdir())
        assert [f.suffix for f in files] == [".png", ".jpg", ".png", ".jpg"]
        assert len(list((root / "test" / name).iterdir())) == 2
        for file in files:
            with Image.open(file) as image:
                assert image.format == {".png": "PNG", ".jpg": "JPEG"}[file.suffix]
                assert image.size == (24, 24) and image.mode == "RGB"
    assert not list(tmp_path.glob(".shapes*")), "no scratch folder is left behind"


def test_no_test_folder_and_png_only(tmp_path):
    root = write_image_folder(tmp_path / "f", classes=3, train_per_class=2, test_per_class=0, formats=("PNG",))
    assert sorted(p.name for p in root.iterdir()) == ["train"]
    assert {p.suffix for p in root.rglob("*.*")} == {".png"}


def test_the_seed_decides_the_bytes(tmp_path):
    first = _files(write_image_folder(tmp_path / "a", train_per_class=2, test_per_class=1, seed=3))
    again = _files(write_image_folder(tmp_path / "b", train_per_class=2, test_per_class=1, seed=3))
    other = _files(write_image_folder(tmp_path / "c", train_per_class=2, test_per_class=1, seed=4))
    assert first == again and first.keys() == other.keys() and first != other


@pytest.mark.parametrize(("archive", "suffix"), [("zip", ".zip"), ("tar.gz", ".tar.gz")])
def test_archives_hold_the_folder_layout_byte_for_byte_reproducibly(tmp_path, archive, suffix):
    folder = _files(write_image_folder(tmp_path / "plain", train_per_class=2, test_per_class=1, seed=1))
    path = write_image_folder(tmp_path / "a" / "shapes", train_per_class=2, test_per_class=1, seed=1, archive=archive)
    again = write_image_folder(
        tmp_path / "b" / f"shapes{suffix}", train_per_class=2, test_per_class=1, archive=archive, seed=1
    )
    assert path.name == f"shapes{suffix}" and path.is_file() and path.read_bytes() == again.read_bytes()
    if archive == "zip":
        with zipfile.ZipFile(path) as zipped:
            members = {info.filename: zipped.read(info) for info in zipped.infolist()}
    else:
        with tarfile.open(path, "r:gz") as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    assert members == folder


@pytest.mark.parametrize("archive", [None, "zip", "tar.gz"])
def test_the_image_folder_reader_decodes_every_variant_into_learnable_classes(tmp_path, archive):
    path = write_image_folder(tmp_path / "shapes", classes=4, train_per_class=12, test_per_class=4, archive=archive)
    decoded = read_image_folder(path, 32, workers=1)
    assert decoded.class_names == class_names(4)
    assert (
        np.bincount(decoded.train_labels).tolist() == [12] * 4 and np.bincount(decoded.test_labels).tolist() == [4] * 4
    )

    # The class colours alone tell the classes apart: nearest mean colour of the shape's brightest-saturated pixels.
    def colour(images: np.ndarray) -> np.ndarray:
        pixels = images.astype(np.float64).reshape(len(images), 3, -1)
        saturation = pixels.max(axis=1) - pixels.min(axis=1)  # (N, pixels)
        top = np.argsort(saturation, axis=1)[:, -60:]
        return np.take_along_axis(pixels, top[:, None, :], axis=2).mean(axis=2)

    train, test = colour(decoded.train_images), colour(decoded.test_images)
    centroids = np.stack([train[decoded.train_labels == c].mean(axis=0) for c in range(4)])
    predicted = ((test[:, None] - centroids[None]) ** 2).sum(axis=-1).argmin(axis=1)
    assert (predicted == decoded.test_labels).mean() >= 0.75


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"classes": 1}, "--classes must be an integer >= 2"),
        ({"classes": 13}, "--classes must be at most 12"),
        ({"train_per_class": 0}, "--train-per-class"),
        ({"test_per_class": -1}, "--test-per-class"),
        ({"image_size": 4}, "--image-size"),
        ({"formats": ("GIF",)}, "--formats must be one of PNG, JPEG"),
        ({"formats": ()}, "--formats must name at least one"),
        ({"archive": "rar"}, "archive must be null"),
    ],
)
def test_bad_arguments_are_refused_before_anything_is_written(tmp_path, arguments, message):
    with pytest.raises(ParameterError, match=message):
        write_image_folder(tmp_path / "out", **arguments)
    assert list(tmp_path.iterdir()) == []


def test_an_existing_path_is_refused_and_left_alone(tmp_path):
    (tmp_path / "out.zip").write_bytes(b"mine")
    with pytest.raises(SyntheticFolderError, match=r"out.zip exists already: delete it or choose another"):
        write_image_folder(tmp_path / "out", archive="zip")
    assert (tmp_path / "out.zip").read_bytes() == b"mine"


def test_main_writes_what_its_options_say(tmp_path):
    path = main([str(tmp_path / "cli"), "--classes", "3", "--train-per-class", "2", "--test-per-class", "0", "--zip"])
    with zipfile.ZipFile(path) as zipped:
        names = zipped.namelist()
    assert path == tmp_path / "cli.zip" and len(names) == 6 and all(n.startswith("train/") for n in names)


def test_runs_as_a_module(tmp_path):
    out = tmp_path / "module"
    result = subprocess.run(
        [sys.executable, "-m", "image_recognition.sources.synthetic_folder", str(out), "--train-per-class", "1"],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"Wrote {out}: 4 classes" in result.stderr
    assert len(list((out / "train").rglob("*.png"))) + len(list((out / "train").rglob("*.jpg"))) == 4
    assert Image.open(io.BytesIO(next((out / "test").rglob("*.png")).read_bytes())).size == (32, 32)

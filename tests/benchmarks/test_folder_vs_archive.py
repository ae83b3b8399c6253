"""The folder-against-archive measurement, on a tiny synthetic CIFAR-10 archive: equal sets, then a short training."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import numpy as np
import pytest

from image_recognition.sources.cifar10.archive import ArchiveError
from image_recognition.sources.cifar10.synthetic import make_synthetic_cifar10, write_cifar10_archive
from tests.helpers import PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "benchmarks" / "folder_vs_archive.py"


@pytest.fixture(scope="module")
def script() -> dict:
    return runpy.run_path(str(SCRIPT), run_name="folder_vs_archive")


@pytest.fixture
def archive(tmp_path: Path) -> tuple[str, str]:
    path = tmp_path / "cifar-10-python.tar.gz"
    md5 = write_cifar10_archive(make_synthetic_cifar10(train_per_class=24, test_per_class=6, seed=0), path)
    return str(path), md5


def test_the_folder_holds_the_archives_images_and_training_reports_accuracy(tmp_path, script, archive):
    path, md5 = archive
    out, folder = tmp_path / "result.json", tmp_path / "folder"
    argv = ["--archive", path, "--md5", md5, "--out", str(out), "--folder", str(folder)]
    argv += ["--train-per-class", "20", "--test-per-class", "5", "--workers", "1"]
    report = script["main"]([*argv, "--train", "--tiny", "--epochs", "1", "--validation-fraction", "0.1"])
    assert json.loads(out.read_text())["equal"] is True and report["archive_md5"] == md5
    for split, per_class in (("train", 20), ("test", 5)):
        result = report["splits"][split]
        assert result["equal_as_sets"] and result["equal_as_multisets"] and result["equal_with_labels"]
        assert result["archive_images"] == result["folder_images"] == 10 * per_class
        assert result["only_in_archive"] == result["only_in_folder"] == 0
    assert len(list(folder.rglob("*.png"))) == 250 and report["folder_decode"]["images"] == 250
    training = report["training"]
    assert training["train_images"] == 180 and training["val_images"] == 20 and training["test_images"] == 50
    assert 0.0 <= training["test_accuracy"] <= 1.0 and training["model_config"]["num_classes"] == 10


def test_a_changed_image_shows_as_unequal(script):
    images = np.random.default_rng(0).integers(0, 256, (4, 3, 32, 32), dtype=np.uint8)
    labels = np.arange(4)
    changed = images.copy()
    changed[0, 0, 0, 0] ^= 1
    names = ["a", "b", "c", "d"]
    same = script["compare_split"](images, labels, images[::-1], labels[::-1], names)
    assert same["equal_as_sets"] and same["equal_with_labels"]
    differs = script["compare_split"](images, labels, changed, labels, names)
    assert not differs["equal_as_sets"] and differs["only_in_archive"] == differs["only_in_folder"] == 1
    relabelled = script["compare_split"](images, labels, images, labels[[1, 0, 2, 3]], names)
    assert relabelled["equal_as_sets"] and not relabelled["equal_with_labels"]


def test_wrong_md5_and_too_few_images_are_refused_before_any_output(tmp_path, script, archive):
    path, _ = archive
    out = tmp_path / "result.json"
    with pytest.raises(ArchiveError, match="has md5 .* not the expected 0{32}"):
        script["main"](["--archive", path, "--md5", "0" * 32, "--out", str(out)])
    with pytest.raises(ArchiveError, match="train split has 24 images of class 0, not 1000"):
        script["main"](["--archive", path, "--out", str(out)])
    assert not out.exists()

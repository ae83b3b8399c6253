"""End to end: ``kedro run`` of the data pipeline in a fresh project folder.

Every bad input must end the run with a non-zero exit and one ``Error:`` line
naming the problem, and leave nothing in data/ that a later run would trust.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from image_recognition.sources.synthetic_folder import write_image_folder
from tests.helpers import ARCHIVE_CASES, DATA_OUTPUTS, Archive, bad_archive, source_params

pytestmark = pytest.mark.slow  # every test here runs `kedro run` in a subprocess


def versions(root: Path, output: str) -> list[str]:
    folder = root / "data" / output
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_data_pipeline_runs_then_reuses_the_verified_archive(project, synthetic_archive):
    first = project.kedro("run", "--pipeline=data_processing", "--params", source_params(synthetic_archive))
    assert first.returncode == 0, first.stderr[-3000:]
    cached = project.root / "data/01_raw/cifar-10-python.tar.gz"
    assert cached.read_bytes() == synthetic_archive.path.read_bytes()
    for output in DATA_OUTPUTS:
        assert len(versions(project.root, output)) == 1, output
        (version,) = versions(project.root, output)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d\.\d\d\.\d\d\.\d{3}Z", version)
    mtime = cached.stat().st_mtime_ns

    second = project.kedro("run", "--pipelines=data_processing", "--params", source_params(synthetic_archive))
    assert second.returncode == 0, second.stderr[-3000:]
    assert "nothing to download" in second.stdout + second.stderr
    assert "fetching" not in second.stdout + second.stderr
    assert cached.stat().st_mtime_ns == mtime
    assert all(len(versions(project.root, output)) == 2 for output in DATA_OUTPUTS)


def test_demo_environment_generates_its_own_archive(project):
    result = project.kedro("run", "--env=demo", "--pipeline=data_processing")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (project.root / "data/demo/01_raw/synthetic-cifar-10-python.tar.gz").is_file()
    assert len(versions(project.root, "demo/05_model_input/dataset_train.npz")) == 1
    assert not (project.root / "data/05_model_input").exists()


SMALL = {"dataset.expected_sizes.train": 20, "dataset.expected_sizes.test": 4, "dataset.validation_size": 10}


def assert_clean_failure(result, pattern: str, project, archive_was_good: bool = False) -> None:
    assert result.returncode != 0
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(error_lines) == 1, result.stderr[-3000:]
    assert re.search(pattern, error_lines[0]), error_lines[0]
    assert "Traceback" not in result.stderr
    trusted = [f for f in project.data_files() if not f.endswith(".rejected")]
    # Only a good archive, verified by its md5, may stay: it is reused, not refetched.
    assert trusted == (["data/01_raw/cifar-10-python.tar.gz"] if archive_was_good else []), trusted


# tests/sources/cifar10/test_archive.py decodes all of ARCHIVE_CASES; two of them prove the CLI's one-line error path.
@pytest.mark.parametrize("case", ["evil_pickle", "truncated"])
def test_bad_archive_fails_cleanly(project, tmp_path, case):
    archive = bad_archive(tmp_path, case)
    result = project.kedro("run", "--pipeline=data_processing", "--params", source_params(archive, **SMALL))
    assert_clean_failure(result, f"ArchiveError: {ARCHIVE_CASES[case]}", project)
    assert not (tmp_path / "pwned").exists()


def test_md5_mismatch_fails_cleanly(project, synthetic_archive):
    wrong = Archive(synthetic_archive.path, "f" * 32)
    result = project.kedro("run", "--pipeline=data_processing", "--params", source_params(wrong))
    assert_clean_failure(result, f"ChecksumMismatch: .*expected md5 {'f' * 32}, got {synthetic_archive.md5}", project)


@pytest.mark.parametrize(
    ("override", "pattern"),
    [
        ({"dataset.validaton_size": 10}, r"ParameterError: unknown parameter\(s\) dataset.validaton_size"),
        (
            {"dataset.validation_size": 1000},
            "ParameterError: parameter dataset.validation_size is 1000, which leaves no training images",
        ),
    ],
)
def test_invalid_parameters_fail_cleanly(project, synthetic_archive, override, pattern):
    result = project.kedro(
        "run", "--pipeline=data_processing", "--params", source_params(synthetic_archive, **override)
    )
    assert_clean_failure(result, pattern, project, archive_was_good="leaves no" in pattern)


def _folder_params(folder: Path, **extra: object) -> str:
    values = {"dataset.kind": "image_folder", "dataset.source.url": folder.as_uri(), "dataset.validation_size": 0.2}
    return ",".join(f"{key}={value}" for key, value in {**values, **extra}.items())


def _break_folder(root: Path, rule: str, outside: Path) -> dict[str, object]:
    """Break the generated folder at ``root`` by ``rule``; return the extra parameters the run needs."""
    train = root / "train"
    if rule == "undecodable":
        (train / "00_red_circle" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
        (train / "01_green_square" / "notes.jpg").write_bytes(b"plain text")
    elif rule == "empty_class":
        (train / "empty").mkdir()
        (train / "empty" / "readme.txt").write_text("no images here")
    elif rule == "one_class":
        for folder in sorted(train.iterdir())[1:]:
            for file in folder.iterdir():
                file.unlink()
            folder.rmdir()
    elif rule == "test_class_missing":
        (root / "test" / "zebra").mkdir()
        next((root / "test" / "00_red_circle").iterdir()).rename(root / "test" / "zebra" / "z.png")
    elif rule == "symlink_outside":
        outside.mkdir()
        target = next((train / "00_red_circle").iterdir())
        (outside / target.name).write_bytes(target.read_bytes())
        (train / "00_red_circle" / "linked.png").symlink_to(outside / target.name)
    elif rule == "duplicates":
        image = next((train / "00_red_circle").iterdir())
        (root / "test" / "00_red_circle" / "copy.png").write_bytes(image.read_bytes())
        return {"dataset.duplicates": "error"}
    return {}


# Each rule for an image folder's content, and the one error line it must give.
FOLDER_RULES = {
    "undecodable": r"BadImagesError: 2 image files in the image folder cannot be decoded",
    "empty_class": r"ImageFolderLayoutError: the class folder .*empty.* has no images",
    "one_class": r"ImageFolderLayoutError: train/ in the image folder has 1 class folder",
    "test_class_missing": r"ImageFolderLayoutError: test/ has class folders that train/ lacks: zebra",
    "symlink_outside": r"ImageFolderLayoutError: .*linked.png: a symbolic link to .*, outside the image folder",
    "duplicates": r"DataValidationError: exact duplicate images across the splits \(train-test: 1",
}


@pytest.mark.parametrize("rule", sorted(FOLDER_RULES))
def test_each_bad_image_folder_rule_fails_cleanly(project, tmp_path, rule):
    root = write_image_folder(tmp_path / "images", classes=3, train_per_class=6, test_per_class=2, formats=["PNG"])
    extra = _break_folder(root, rule, tmp_path / "outside")
    result = project.kedro("run", "--pipeline=data_processing", "--params", _folder_params(root, **extra))
    assert_clean_failure(result, FOLDER_RULES[rule], project)
    if rule == "undecodable":
        assert "dataset.skip_bad_files: true" in result.stderr and "broken.png" in result.stderr


def test_skipped_and_ignored_files_are_listed_in_the_data_report(project, tmp_path):
    root = write_image_folder(tmp_path / "images", classes=3, train_per_class=6, test_per_class=0, formats=["JPEG"])
    (root / "train" / "00_red_circle" / "broken.png").write_bytes(b"not an image")
    (root / "train" / "00_red_circle" / ".DS_Store").write_bytes(b"finder")
    params = _folder_params(root, **{"dataset.skip_bad_files": "true", "dataset.test_size": 3})
    result = project.kedro("run", "--pipeline=data_processing", "--params", params)
    assert result.returncode == 0, result.stderr[-3000:]
    (report_file,) = (project.root / "data/08_reporting/data_report.json").glob("*/data_report.json")
    report = json.loads(report_file.read_text())
    assert report["class_names"] == sorted(p.name for p in (root / "train").iterdir())
    assert report["split"]["test_held_out"] is True and report["sizes"]["test"] == 3
    assert "broken.png" in json.dumps(report["skipped"]) and ".DS_Store" in json.dumps(report["skipped"])
    assert report["source"]["fingerprint"] and report["source"]["kind"] == "image_folder"

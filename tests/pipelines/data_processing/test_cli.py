"""End to end: ``kedro run`` of the data pipeline in a fresh project folder.

Every bad input must end the run with a non-zero exit and one ``Error:`` line
naming the problem, and leave nothing in data/ that a later run would trust.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

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
    assert len(versions(project.root, "demo/05_model_input/cifar10_train.npz")) == 1
    assert not (project.root / "data/05_model_input").exists()


SMALL = {"cifar10.expected_sizes.train": 20, "cifar10.expected_sizes.test": 4, "cifar10.validation_size": 10}


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
        ({"cifar10.validaton_size": 10}, r"ParameterError: unknown parameter\(s\) cifar10.validaton_size"),
        ({"cifar10.validation_size": 1000}, "ParameterError: cifar10.validation_size=1000 leaves no training images"),
    ],
)
def test_invalid_parameters_fail_cleanly(project, synthetic_archive, override, pattern):
    result = project.kedro(
        "run", "--pipeline=data_processing", "--params", source_params(synthetic_archive, **override)
    )
    assert_clean_failure(result, pattern, project, archive_was_good="leaves no" in pattern)

"""End to end: ``kedro run`` of the data pipeline in a fresh project folder.

Every bad input must end the run with a non-zero exit and one ``Error:`` line
naming the problem, and leave nothing in data/ that a later run would trust.
"""

from __future__ import annotations

import re
import tarfile
from pathlib import Path

import numpy as np
import pytest

from image_recognition.cifar10.fetch import md5_of
from tests.helpers import Archive, RunsCommand, batch, good_members, source_params, write_archive

VERSIONED_OUTPUTS = [
    "01_raw/cifar10_archive.json",
    "05_model_input/cifar10_train.npz",
    "05_model_input/cifar10_validation.npz",
    "05_model_input/cifar10_test.npz",
    "05_model_input/normalization_stats.json",
    "08_reporting/data_report.json",
    "08_reporting/data_class_counts.csv",
]


def versions(root: Path, output: str) -> list[str]:
    folder = root / "data" / output
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_data_pipeline_runs_then_reuses_the_verified_archive(project, synthetic_archive):
    first = project.kedro("run", "--pipeline=data_processing", "--params", source_params(synthetic_archive))
    assert first.returncode == 0, first.stderr[-3000:]
    cached = project.root / "data/01_raw/cifar-10-python.tar.gz"
    assert cached.read_bytes() == synthetic_archive.path.read_bytes()
    for output in VERSIONED_OUTPUTS:
        assert len(versions(project.root, output)) == 1, output
        (version,) = versions(project.root, output)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d\.\d\d\.\d\d\.\d{3}Z", version)
    mtime = cached.stat().st_mtime_ns

    second = project.kedro("run", "--pipelines=data_processing", "--params", source_params(synthetic_archive))
    assert second.returncode == 0, second.stderr[-3000:]
    assert "nothing to download" in second.stdout + second.stderr
    assert "fetching" not in second.stdout + second.stderr
    assert cached.stat().st_mtime_ns == mtime
    assert all(len(versions(project.root, output)) == 2 for output in VERSIONED_OUTPUTS)


def test_demo_environment_generates_its_own_archive(project):
    result = project.kedro("run", "--env=demo", "--pipeline=data_processing")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (project.root / "data/demo/01_raw/synthetic-cifar-10-python.tar.gz").is_file()
    assert len(versions(project.root, "demo/05_model_input/cifar10_train.npz")) == 1
    assert not (project.root / "data/05_model_input").exists()


def link_or_escaping_member(name: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    if kind == tarfile.REGTYPE:
        info.size = 1
    else:
        info.linkname = "/etc/passwd"
    return info


def bad_archive(tmp_path: Path, case: str) -> Archive:
    """Write the archive of one bad-input case; return it with its (matching) md5."""
    path = tmp_path / "mirror" / "cifar-10-python.tar.gz"
    path.parent.mkdir(exist_ok=True)
    members, extra = good_members(), None
    if case == "truncated":
        write_archive(path, members)
        path.write_bytes(path.read_bytes()[:300])
    elif case == "not_gzip":
        path.write_bytes(b"<html>404 not found</html>")
    else:
        if case == "evil_pickle":
            members = good_members(data_batch_1=batch({b"data": RunsCommand(tmp_path / "pwned")}))
        elif case == "wrong_shape":
            members = good_members(data_batch_1=batch({b"data": np.zeros((4, 1024), dtype=np.uint8)}))
        elif case == "wrong_dtype":
            members = good_members(data_batch_1=batch({b"data": np.zeros((4, 3072), dtype=np.int16)}))
        elif case == "missing_key":
            members = good_members(test_batch=batch({b"labels": None}))
        elif case == "bad_label":
            members = good_members(data_batch_5=batch({b"labels": [0, 1, 2, 10]}))
        elif case == "missing_batch":
            del members["cifar-10-batches-py/data_batch_2"]
        else:
            kinds = {
                "dotdot": ("../x", tarfile.REGTYPE),
                "absolute": ("/tmp/x", tarfile.REGTYPE),
                "symlink": ("cifar-10-batches-py/s", tarfile.SYMTYPE),
                "hardlink": ("cifar-10-batches-py/h", tarfile.LNKTYPE),
            }
            name, kind = kinds[case]
            extra = [link_or_escaping_member(name, kind)]
        write_archive(path, members, extra=extra)
    return Archive(path, md5_of(path))


SMALL = {"cifar10.expected_sizes.train": 20, "cifar10.expected_sizes.test": 4, "cifar10.validation_size": 10}

ARCHIVE_CASES = {
    "truncated": "ArchiveError: .*not a readable CIFAR-10 .tar.gz",
    "not_gzip": "ArchiveError: .*not a readable CIFAR-10 .tar.gz",
    "dotdot": "ArchiveError: refusing member '../x': its path escapes",
    "absolute": "ArchiveError: refusing member '/tmp/x': its path escapes",
    "symlink": "ArchiveError: refusing link member",
    "hardlink": "ArchiveError: refusing link member",
    "evil_pickle": "ArchiveError: data_batch_1: unsafe or corrupt pickle .*forbidden global (posix|os).system",
    "wrong_shape": r"ArchiveError: data_batch_1: 'data' must have shape \(N, 3072\), got \(4, 1024\)",
    "wrong_dtype": "ArchiveError: data_batch_1: 'data' must be uint8, got int16",
    "missing_key": r"ArchiveError: test_batch: missing key\(s\) \['labels'\]",
    "bad_label": r"ArchiveError: data_batch_5: 1 label\(s\) outside 0-9, e.g. 10",
    "missing_batch": "ArchiveError: .*lacks cifar-10-batches-py/data_batch_2",
}


def assert_clean_failure(result, pattern: str, project, archive_was_good: bool = False) -> None:
    assert result.returncode != 0
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(error_lines) == 1, result.stderr[-3000:]
    assert re.search(pattern, error_lines[0]), error_lines[0]
    assert "Traceback" not in result.stderr
    trusted = [f for f in project.data_files() if not f.endswith(".rejected")]
    # Only a good archive, verified by its md5, may stay: it is reused, not refetched.
    assert trusted == (["data/01_raw/cifar-10-python.tar.gz"] if archive_was_good else []), trusted


@pytest.mark.parametrize("case", sorted(ARCHIVE_CASES))
def test_bad_archive_fails_cleanly(project, tmp_path, case):
    archive = bad_archive(tmp_path, case)
    result = project.kedro("run", "--pipeline=data_processing", "--params", source_params(archive, **SMALL))
    assert_clean_failure(result, ARCHIVE_CASES[case], project)
    assert not (tmp_path / "pwned").exists()


def test_md5_mismatch_fails_cleanly(project, synthetic_archive):
    wrong = Archive(synthetic_archive.path, "f" * 32)
    result = project.kedro("run", "--pipeline=data_processing", "--params", source_params(wrong))
    assert_clean_failure(result, f"ChecksumMismatch: .*expected md5 {'f' * 32}, got {synthetic_archive.md5}", project)


@pytest.mark.parametrize(
    ("override", "pattern"),
    [
        ({"cifar10.validaton_size": 10}, r"ParameterError: unknown parameter\(s\) cifar10.validaton_size"),
        ({"cifar10.validation_size": -5}, "ParameterError: parameter cifar10.validation_size must be a non-negative"),
        ({"cifar10.validation_size": 1000}, "ParameterError: cifar10.validation_size=1000 leaves no training images"),
    ],
)
def test_invalid_parameters_fail_cleanly(project, synthetic_archive, override, pattern):
    result = project.kedro(
        "run", "--pipeline=data_processing", "--params", source_params(synthetic_archive, **override)
    )
    assert_clean_failure(result, pattern, project, archive_was_good="leaves no" in pattern)

"""Helpers shared by the tests: paths, archives good and hostile, a project run by the kedro CLI.

Fixtures live in the ``conftest.py`` files and import what they need from here;
test modules import from here too, never from a ``conftest.py``.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DAGS_FOLDER = PROJECT_ROOT / "airflow_dags"


# --- CIFAR-format archives -------------------------------------------------------------------------


@dataclass(frozen=True)
class Archive:
    path: Path
    md5: str

    @property
    def url(self) -> str:
        return self.path.as_uri()


def source_params(archive: Archive, **extra: object) -> str:
    """A --params value pointing the data pipeline at ``archive``."""
    params = {
        "cifar10.source.url": archive.url,
        "cifar10.source.md5": archive.md5,
        "cifar10.expected_sizes.train": 1000,
        "cifar10.expected_sizes.test": 200,
        "cifar10.validation_size": 100,
        **extra,
    }
    return ",".join(f"{key}={value}" for key, value in params.items())


class RunsCommand:
    """Unpickling this calls os.system: what a malicious batch would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def batch(overrides: dict | None = None, n: int = 4) -> dict:
    payload = {
        b"batch_label": b"batch",
        b"labels": [i % 10 for i in range(n)],
        b"data": np.zeros((n, 3072), dtype=np.uint8),
        b"filenames": [b"x.png"] * n,
    }
    payload.update(overrides or {})
    return {k: v for k, v in payload.items() if v is not None}


def meta() -> dict:
    return {b"num_cases_per_batch": 4, b"label_names": [f"c{i}".encode() for i in range(10)], b"num_vis": 3072}


def write_archive(path, members: dict[str, object], extra: list[tarfile.TarInfo] | None = None) -> str:
    """Write a .tar.gz whose members are pickled objects (bytes are written as they are)."""
    with (
        open(path, "wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb") as gz,
        tarfile.open(fileobj=gz, mode="w") as tar,
    ):
        for name, obj in members.items():
            blob = obj if isinstance(obj, bytes) else pickle.dumps(obj, protocol=2)
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
        for info in extra or []:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    return str(path)


def good_members(**replace: object) -> dict[str, object]:
    members = {f"cifar-10-batches-py/data_batch_{i}": batch() for i in range(1, 6)}
    members["cifar-10-batches-py/test_batch"] = batch()
    members["cifar-10-batches-py/batches.meta"] = meta()
    members.update({f"cifar-10-batches-py/{k}": v for k, v in replace.items()})
    return members


# --- a project folder, run with the kedro CLI ------------------------------------------------------


@dataclass
class Project:
    """A copy of the project's configuration in a temporary folder, run with the kedro CLI."""

    root: Path

    def kedro(self, *args: str, timeout: float = 600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "kedro", *args]
        env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "PYTHONWARNINGS": "ignore", **(env or {})}
        return subprocess.run(
            command, check=False, cwd=self.root, env=env, capture_output=True, text=True, timeout=timeout
        )

    def data_files(self) -> list[str]:
        """Every file under data/ except the .gitkeep placeholders, as relative paths."""
        return sorted(
            p.relative_to(self.root).as_posix()
            for p in (self.root / "data").rglob("*")
            if p.is_file() and p.name != ".gitkeep"
        )

"""Shared fixtures. Telemetry is off before Kedro is imported anywhere in the suite."""

from __future__ import annotations

import os

os.environ["KEDRO_DISABLE_TELEMETRY"] = "true"
os.environ["DO_NOT_TRACK"] = "1"

import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from image_recognition.cifar10.synthetic import make_synthetic_cifar10, write_cifar10_archive  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Archive:
    path: Path
    md5: str

    @property
    def url(self) -> str:
        return self.path.as_uri()


@pytest.fixture(scope="session")
def synthetic_data():
    """A small learnable CIFAR-format data set (100 train and 20 test images per class)."""
    return make_synthetic_cifar10(train_per_class=100, test_per_class=20, seed=0)


@pytest.fixture(scope="session")
def synthetic_archive(tmp_path_factory, synthetic_data) -> Archive:
    """The synthetic data written as an official-layout CIFAR-10 archive."""
    path = tmp_path_factory.mktemp("mirror") / "cifar-10-python.tar.gz"
    md5 = write_cifar10_archive(synthetic_data, path)
    return Archive(path, md5)


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


@pytest.fixture
def project(tmp_path) -> Project:
    """A fresh project folder: pyproject.toml, conf/ and empty data layers."""
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(PROJECT_ROOT / "pyproject.toml", root)
    shutil.copytree(PROJECT_ROOT / "conf", root / "conf", ignore=shutil.ignore_patterns("credentials*"))
    (root / "conf" / "local").mkdir(exist_ok=True)
    (root / "src").mkdir()  # the package itself is installed; Kedro only checks the folder
    (root / "data").mkdir()
    return Project(root)


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

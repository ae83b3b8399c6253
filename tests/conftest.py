"""Shared fixtures. Telemetry is off before Kedro is imported anywhere in the suite."""

from __future__ import annotations

import os

os.environ["KEDRO_DISABLE_TELEMETRY"] = "true"
os.environ["DO_NOT_TRACK"] = "1"

import shutil  # noqa: E402

import pytest  # noqa: E402

from image_recognition.cifar10.synthetic import make_synthetic_cifar10, write_cifar10_archive  # noqa: E402
from tests.helpers import PROJECT_ROOT, Archive, Project  # noqa: E402


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

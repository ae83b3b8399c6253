"""Shared fixtures. Telemetry is off before Kedro is imported anywhere in the suite."""

from __future__ import annotations

import os

os.environ["KEDRO_DISABLE_TELEMETRY"] = "true"
os.environ["DO_NOT_TRACK"] = "1"
# Experiment tracking (the mlflow extra, which the test extra installs) is off but in
# the tests that turn it on for their own runs (tests/integrations/test_tracking.py).
os.environ["IMAGE_RECOGNITION_TRACKING"] = "off"

import shutil  # noqa: E402

import pytest  # noqa: E402

from image_recognition.pipelines.evaluation.nodes import evaluate_model  # noqa: E402
from image_recognition.sources.cifar10.synthetic import make_synthetic_cifar10, write_cifar10_archive  # noqa: E402
from tests.helpers import (  # noqa: E402
    EVALUATED_MODELS,
    PROJECT_ROOT,
    Archive,
    Project,
    fake_checkpoint,
    fake_ghostscript,
    fake_history,
    no_aws_files,
)


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
def no_aws_environment(monkeypatch, tmp_path):
    """No AWS settings from the environment or ~/.aws: only what the test sets reaches an object store."""
    for name in [name for name in os.environ if name.startswith("AWS_")]:
        monkeypatch.delenv(name)
    for name, value in no_aws_files(tmp_path).items():
        monkeypatch.setenv(name, value)


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


@pytest.fixture(scope="session")
def evaluation_inputs(synthetic_data):
    test = {"images": synthetic_data.test_images, "labels": synthetic_data.test_labels}
    report = {
        "class_names": synthetic_data.class_names,
        "source": {"url": "synthetic://cifar10", "md5": "0" * 32},
        "sizes": {"test": len(synthetic_data.test_labels)},
    }
    params = {"latency_repeats": 2, "throughput_batch_size": 16, "throughput_batches": 2, "top_errors": 10}
    return test, report, params


@pytest.fixture(scope="session")
def evaluated(evaluation_inputs):
    """model -> the six parts the report reads, for simple_cnn and a tiny vit."""
    test, report, params = evaluation_inputs
    results = {}
    for name in EVALUATED_MODELS:
        metrics, per_class, confusion, reliability, errors = evaluate_model(fake_checkpoint(name), test, report, params)
        results[name] = {
            "metrics": metrics,
            "history": fake_history(),
            "per_class": per_class,
            "confusion": confusion,
            "reliability": reliability,
            "errors": errors,
        }
    return results


@pytest.fixture
def ghostscript_runs(monkeypatch, tmp_path):
    """A stub ``gs`` first on PATH; returns the file it writes when run (it must never exist)."""
    from PIL import EpsImagePlugin  # noqa: PLC0415

    marker = fake_ghostscript(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{marker.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(EpsImagePlugin, "gs_binary", None)  # Pillow looks for gs once per process
    return marker

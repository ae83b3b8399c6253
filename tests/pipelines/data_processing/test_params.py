"""The data_processing parameters: every bad value is refused by name before any data work."""

from __future__ import annotations

import pytest

from image_recognition.common.errors import ParameterError
from image_recognition.pipelines.data_processing.nodes import fetch_dataset
from image_recognition.pipelines.data_processing.params import KINDS, DataParams, resolve_size
from tests.pipelines.data_processing.test_nodes import params


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"validaton_size": 10}, "unknown parameter.*dataset.validaton_size"),
        ({"source": {"url": "x", "md5": "0" * 32, "sha": 1}}, "dataset.source.sha"),
        ({"validation_size": -1}, "validation_size must be a non-negative integer"),
        ({"source": {"url": "file:///x.tar.gz", "md5": "abc"}}, "32-character hex md5"),
        ({"source": {"url": "synthetic://cifar10?colour=1"}}, "colour"),
        ({"download": {"retries": 2, "timeout": 1}}, "dataset.download.timeout"),
        ({"download": {"retries": 0}}, r"dataset.download.retries must be a positive integer, got 0"),
        ({"download": {"timeout_s": float("nan")}}, "dataset.download.timeout_s must be a finite number, got nan"),
        ({"download": {"timeout_s": float("inf")}}, "dataset.download.timeout_s must be a finite number, got inf"),
        ({"download": {"timeout_s": 0}}, "dataset.download.timeout_s must be a finite number > 0, got 0"),
    ],
)
def test_invalid_parameters(tmp_path, override, message):
    with pytest.raises(ParameterError, match=message):
        fetch_dataset(params(tmp_path, **override))
    assert not (tmp_path / "raw").exists()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"kind": "imagenet"}, "dataset.kind must be one of cifar10, cifar100, image_folder, got 'imagenet'"),
        (
            {"kind": "image_folder", "source": {"url": None}},
            "dataset.source.url is required for dataset.kind=image_folder",
        ),
        ({"kind": "cifar100"}, "generates cifar10 data but dataset.kind is cifar100"),
        ({"label": "coarse"}, "dataset.label is coarse, which applies to dataset.kind=cifar100 only"),
        ({"validation_size": 1.5}, r"dataset.validation_size must be in \(0, 1\), got 1.5"),
        ({"test_size": -0.5}, r"dataset.test_size must be in \(0, 1\)"),
        ({"image_size": 48}, "dataset.image_size must be one of 32, 64, 96, 128, got 48"),
        ({"duplicates": "ignore"}, "dataset.duplicates must be one of warn, drop, error"),
        ({"skip_bad_files": "yes"}, "dataset.skip_bad_files must be true or false"),
    ],
)
def test_invalid_dataset_parameters(tmp_path, override, message):
    with pytest.raises(ParameterError, match=message):
        fetch_dataset(params(tmp_path, **override))


def test_defaults_follow_the_kind():
    cifar10 = DataParams.from_dict({"kind": "cifar10"})
    assert cifar10.source.url.endswith("cifar-10-python.tar.gz") and cifar10.source.md5 == KINDS["cifar10"].md5
    assert cifar10.expected_sizes == {"train": 50000, "test": 10000}
    cifar100 = DataParams.from_dict({"kind": "cifar100", "label": "coarse"})
    assert cifar100.source.md5 == "eb9058c3a382ffc7106e4002c42a8d85"
    assert cifar100.source.archive_name == "cifar-100-python.tar.gz"
    synthetic = DataParams.from_dict(
        {"kind": "cifar100", "source": {"url": "synthetic://cifar100?train_per_class=3&test_per_class=1"}}
    )
    assert synthetic.expected_sizes == {"train": 300, "test": 100}
    assert synthetic.source.archive_name == "synthetic-cifar-100-python.tar.gz"
    folder = DataParams.from_dict({"kind": "image_folder", "source": {"url": "/data/pets"}, "validation_size": 0.1})
    assert folder.source.md5 is None and folder.expected_sizes is None
    assert resolve_size("dataset.validation_size", folder.validation_size, 10000) == 1000
    assert resolve_size("dataset.validation_size", 5000, 10000) == 5000


def test_an_image_folder_over_http_must_be_an_archive(tmp_path):
    config = params(tmp_path, kind="image_folder", source={"url": "https://example.com/pets/"})
    with pytest.raises(ParameterError, match=r"pack it as a \.zip or \.tar\.gz"):
        fetch_dataset(config)

"""The data_processing parameters: every bad value is refused by name before any data work."""

from __future__ import annotations

import pytest

from image_recognition.common.errors import ParameterError
from image_recognition.pipelines.data_processing.nodes import fetch_cifar10
from tests.pipelines.data_processing.test_nodes import params


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"validaton_size": 10}, "unknown parameter.*cifar10.validaton_size"),
        ({"source": {"url": "x", "md5": "0" * 32, "sha": 1}}, "cifar10.source.sha"),
        ({"validation_size": -1}, "validation_size must be a non-negative integer"),
        ({"source": {"url": "file:///x.tar.gz", "md5": "abc"}}, "32-character hex md5"),
        ({"source": {"url": "synthetic://cifar10?colour=1"}}, "colour"),
        ({"download": {"retries": 2, "timeout": 1}}, "cifar10.download.timeout"),
        ({"download": {"retries": 0}}, r"cifar10.download.retries must be a positive integer, got 0"),
        ({"download": {"timeout_s": float("nan")}}, "cifar10.download.timeout_s must be a finite number, got nan"),
        ({"download": {"timeout_s": float("inf")}}, "cifar10.download.timeout_s must be a finite number, got inf"),
        ({"download": {"timeout_s": 0}}, "cifar10.download.timeout_s must be a finite number > 0, got 0"),
    ],
)
def test_invalid_parameters(tmp_path, override, message):
    with pytest.raises(ParameterError, match=message):
        fetch_cifar10(params(tmp_path, **override))
    assert not (tmp_path / "raw").exists()

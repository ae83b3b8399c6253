"""A source URL with credentials: the data stage downloads with them, and records and logs it without them."""

from __future__ import annotations

import json

import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from kedro_datasets.json import JSONDataset

from image_recognition.pipelines.data_processing import create_pipeline
from image_recognition.pipelines.data_processing.nodes import fetch_dataset
from image_recognition.sources.cifar10.fetch import FetchError
from tests.helpers import PRESIGNED_QUERY, SOURCE_SECRETS, SOURCE_USERINFO, presigned

OUTPUTS = [
    "dataset_source",
    "dataset_decoded",
    "dataset_validated",
    "dataset_train",
    "dataset_validation",
    "dataset_test",
    "normalization_stats",
    "data_report",
    "data_class_counts",
]


def test_the_data_stage_records_and_logs_the_source_without_its_credentials(tmp_path, synthetic_archive, caplog):
    url, clean = presigned(synthetic_archive)
    params = {
        "source": {"url": url, "md5": synthetic_archive.md5},
        "cache_dir": str(tmp_path / "raw"),
        "expected_sizes": {"train": 1000, "test": 200},
        "validation_size": 100,
        "seed": 0,
    }
    stale = tmp_path / "raw" / "cifar-10-python.tar.gz"  # a cached archive to replace: one more log line
    stale.parent.mkdir()
    stale.write_bytes(b"stale")
    saved = {name: tmp_path / f"{name}.json" for name in ("dataset_source", "data_report")}  # as in the catalog
    catalog = DataCatalog(
        {
            "params:dataset": MemoryDataset(params),
            **{name: MemoryDataset() for name in OUTPUTS},
            **{name: JSONDataset(filepath=str(path)) for name, path in saved.items()},
        }
    )
    with caplog.at_level("INFO"):
        SequentialRunner().run(create_pipeline(), catalog)
    archive, report = (json.loads(path.read_text()) for path in saved.values())
    assert report["source"]["md5"] == archive["md5"] == synthetic_archive.md5  # fetched, with the URL as given
    assert archive["url"] == report["source"]["url"] == clean
    assert "fetching it again from file://localhost/" in caplog.text and f"fetching {clean}" in caplog.text
    for text in (*(path.read_text() for path in saved.values()), caplog.text):
        assert not any(secret in text for secret in SOURCE_SECRETS), text


def test_the_offline_error_names_the_source_without_its_credentials(tmp_path, caplog):
    url = f"http://{SOURCE_USERINFO}127.0.0.1:9/cifar-10-python.tar.gz{PRESIGNED_QUERY}"
    params = {
        "source": {"url": url, "md5": "c58f30108f718f92721af3b95e74349a"},
        "cache_dir": str(tmp_path / "raw"),
        "download": {"retries": 1, "timeout_s": 5},
    }
    with caplog.at_level("INFO"), pytest.raises(FetchError, match=r"Offline\?") as failed:
        fetch_dataset(params)
    assert "could not download http://127.0.0.1:9/cifar-10-python.tar.gz after 1 attempt" in str(failed.value)
    for text in (str(failed.value), caplog.text):
        assert not any(secret in text for secret in SOURCE_SECRETS), text

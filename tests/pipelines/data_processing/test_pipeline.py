"""The data_processing pipeline on an in-memory catalog, and its versioned outputs."""

from __future__ import annotations

import numpy as np
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from image_recognition.datasets import NpzDataset
from image_recognition.pipelines.data_processing import create_pipeline

OUTPUTS = [
    "dataset_train",
    "dataset_validation",
    "dataset_test",
    "normalization_stats",
    "data_report",
    "data_class_counts",
]


@pytest.fixture
def dataset_params(tmp_path, synthetic_archive):
    return {
        "source": {"url": synthetic_archive.url, "md5": synthetic_archive.md5},
        "cache_dir": str(tmp_path / "raw"),
        "expected_sizes": {"train": 1000, "test": 200},
        "validation_size": 100,
        "seed": 0,
    }


def test_pipeline_on_temporary_catalog(dataset_params, tmp_path):
    splits = {f"dataset_{s}": NpzDataset(str(tmp_path / f"{s}.npz")) for s in ("train", "validation", "test")}
    catalog = DataCatalog(
        {
            "params:dataset": MemoryDataset(dataset_params),
            **splits,
            **{n: MemoryDataset() for n in OUTPUTS if n not in splits},
        }
    )
    free_outputs = SequentialRunner().run(create_pipeline(), catalog)
    assert set(free_outputs) == {"normalization_stats", "data_report", "data_class_counts"}
    train, validation = catalog.load("dataset_train"), catalog.load("dataset_validation")
    assert train["images"].shape == (900, 3, 32, 32) and train["images"].dtype == np.uint8
    assert len(validation["labels"]) == 100
    assert catalog.load("data_report")["source"]["md5"] == dataset_params["source"]["md5"]
    assert catalog.load("data_class_counts")["train"].sum() == 900
    stats = catalog.load("normalization_stats")
    assert len(stats["mean"]) == 3 and all(0 < s < 1 for s in stats["std"])


def test_pipeline_structure():
    pipeline = create_pipeline()
    assert {n.name for n in pipeline.nodes} == {
        "fetch_dataset_node",
        "decode_dataset_node",
        "validate_dataset_node",
        "split_dataset_node",
        "build_data_report_node",
        "compute_normalization_node",
    }
    assert pipeline.inputs() == {"params:dataset"}

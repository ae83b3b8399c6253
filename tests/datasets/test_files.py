"""FileDataset: the one-file datasets on any fsspec filesystem, versioned, never half-written."""

from __future__ import annotations

import uuid

import fsspec
import numpy as np
import pytest
import torch
from kedro.io.core import DatasetError, Version

from image_recognition.datasets import NpzDataset, TorchCheckpointDataset

OLD, NEW = "2026-01-01T00.00.00.000Z", "2026-01-02T00.00.00.000Z"


@pytest.fixture
def bucket():
    """A fresh folder on fsspec's in-memory filesystem, as ``memory:///...``; removed afterwards."""
    folder = f"/bucket-{uuid.uuid4().hex}"
    yield f"memory://{folder}"
    memory = fsspec.filesystem("memory")
    if memory.exists(folder):
        memory.rm(folder, recursive=True)


def test_npz_versions_round_trip_on_a_remote_filesystem(bucket):
    path = f"{bucket}/05_model_input/train.npz"
    NpzDataset(path, version=Version(None, OLD)).save({"labels": np.array([1, 2, 3])})
    NpzDataset(path, version=Version(None, NEW)).save({"labels": np.array([4])})
    assert NpzDataset(path, version=Version(None, None)).load()["labels"].tolist() == [4]
    assert NpzDataset(path, version=Version(OLD, None)).load()["labels"].tolist() == [1, 2, 3]
    saved = fsspec.filesystem("memory").ls(f"{bucket.removeprefix('memory://')}/05_model_input/train.npz", detail=False)
    assert sorted(p.rsplit("/", 1)[-1] for p in saved) == [OLD, NEW]


def test_checkpoint_round_trips_on_a_remote_filesystem(bucket):
    dataset = TorchCheckpointDataset(f"{bucket}/06_models/cnn/checkpoint.pt", version=Version(None, None))
    assert not dataset.exists()
    dataset.save({"format": 1, "weights": torch.arange(3.0)})
    assert dataset.exists()
    torch.testing.assert_close(dataset.load()["weights"], torch.arange(3.0))


@pytest.mark.parametrize("where", ["local", "remote"])
def test_a_failed_save_writes_nothing(where, tmp_path, bucket, monkeypatch):
    root = str(tmp_path) if where == "local" else bucket
    dataset = NpzDataset(f"{root}/split.npz", version=Version(None, OLD))

    def savez_then_fail(handle, **arrays):
        handle.write(b"PK\x03\x04 half an archive")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", savez_then_fail)
    with pytest.raises(DatasetError, match="disk full"):
        dataset.save({"labels": np.arange(3)})
    assert not dataset.exists()
    fs, path = fsspec.core.url_to_fs(root)
    assert [p for p in fs.find(path) if "split.npz" in p] == []  # no version, no temporary file


def test_credentials_and_fs_args_reach_the_filesystem():
    dataset = NpzDataset("memory:///x/file.npz", credentials={"key": "k"}, fs_args={"anon": True})
    assert dataset._fs.storage_options == {"key": "k", "anon": True}
    assert dataset._describe()["protocol"] == "memory"

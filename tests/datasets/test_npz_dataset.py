"""NpzDataset: versioned, atomic, pickle-free storage of numpy arrays."""

from __future__ import annotations

import numpy as np
import pytest
from kedro.io.core import Version

from image_recognition.datasets import NpzDataset


def test_npz_dataset_is_versioned_atomic_and_pickle_free(tmp_path):
    path = str(tmp_path / "split.npz")
    data = {"images": np.arange(24, dtype=np.uint8).reshape(2, 3, 2, 2), "labels": np.array([1, 2])}
    first = NpzDataset(path, version=Version(None, "2026-01-01T00.00.00.000Z"))
    first.save(data)
    NpzDataset(path, version=Version(None, "2026-01-02T00.00.00.000Z")).save({"images": data["images"][:1]})
    latest = NpzDataset(path, version=Version(None, None)).load()
    assert latest["images"].shape == (1, 3, 2, 2)
    pinned = NpzDataset(path, version=Version("2026-01-01T00.00.00.000Z", None)).load()
    np.testing.assert_array_equal(pinned["labels"], data["labels"])
    assert pinned["images"].dtype == np.uint8
    with pytest.raises(Exception, match="without pickle"):
        NpzDataset(str(tmp_path / "o.npz")).save({"x": np.array([object()])})
    assert not any(p.name.endswith(".partial") for p in tmp_path.rglob("*"))

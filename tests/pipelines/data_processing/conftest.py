"""Fixtures shared by the data_processing tests."""

import fsspec
import pytest


@pytest.fixture
def memory_store():
    """An empty fsspec in-memory filesystem, standing in for object storage."""
    fs = fsspec.filesystem("memory")
    fs.store.clear()
    fs.pseudo_dirs.clear()
    fs.pseudo_dirs.append("")
    yield fs
    fs.store.clear()

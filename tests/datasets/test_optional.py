"""OptionalJSONDataset: None when nothing was saved, an error when a pinned version is missing."""

from __future__ import annotations

import pytest
from kedro.io.core import Version

from image_recognition.datasets import OptionalJSONDataset


def test_pinned_version_that_does_not_exist_fails_loudly(tmp_path):
    missing = OptionalJSONDataset(filepath=str(tmp_path / "m.json"), version=Version("2099-typo", None))
    with pytest.raises(Exception, match="m.json"):
        missing.load()
    assert OptionalJSONDataset(filepath=str(tmp_path / "m.json"), version=Version(None, None)).load() is None

"""JSON and CSV datasets that load as ``None`` when nothing has been saved yet.

The report must work with whatever models have been trained: one, two or all
three. Its per-model inputs use these types, so a model that was never
evaluated reaches the reporting nodes as ``None`` instead of failing the run.
Saving (atomic: :mod:`image_recognition.datasets.text_files`), versioning and
kedro-viz previews are those of the parent classes.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from image_recognition.datasets.text_files import AtomicCSVDataset, AtomicJSONDataset


class OptionalJSONDataset(AtomicJSONDataset):
    """``json.JSONDataset`` whose ``load`` returns ``None`` when no file (version) exists."""

    def load(self) -> Any:
        return super().load() if _pinned(self) or self.exists() else None


class OptionalCSVDataset(AtomicCSVDataset):
    """``pandas.CSVDataset`` whose ``load`` returns ``None`` when no file (version) exists."""

    def load(self) -> pd.DataFrame | None:
        return super().load() if _pinned(self) or self.exists() else None


def _pinned(dataset: AtomicJSONDataset | AtomicCSVDataset) -> bool:
    """Whether a load version was pinned (then a missing file is an error, not None)."""
    version = getattr(dataset, "_version", None)
    return bool(version and version.load)

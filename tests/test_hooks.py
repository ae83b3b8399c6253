"""Project hooks: a failed run leaves no version behind, complete or half-written."""

from __future__ import annotations

from kedro.io import DataCatalog
from kedro.io.core import Version
from kedro.pipeline import Node, Pipeline
from kedro_datasets.json import JSONDataset

from image_recognition.hooks import DiscardFailedRunHook

OLD, FAILED = "2026-01-01T00.00.00.000Z", "2026-01-02T00.00.00.000Z"


def identity(x):
    return x


def test_failed_run_versions_are_removed_and_older_ones_kept(tmp_path):
    saved = JSONDataset(filepath=str(tmp_path / "a.json"), version=Version(None, FAILED))
    half_written = JSONDataset(filepath=str(tmp_path / "b.json"), version=Version(None, FAILED))
    JSONDataset(filepath=str(tmp_path / "a.json"), version=Version(None, OLD)).save({"run": "old"})
    saved.save({"run": "failed"})
    partial = tmp_path / "b.json" / FAILED / "b.json"
    partial.parent.mkdir(parents=True)
    partial.write_text('{"trunc')  # a save that died halfway: Kedro never reported it as saved
    catalog = DataCatalog({"a": saved, "b": half_written})
    pipeline = Pipeline([Node(identity, "x", "a", name="n1"), Node(identity, "a", "b", name="n2")])

    DiscardFailedRunHook().on_pipeline_error(RuntimeError("boom"), {}, pipeline, catalog)

    assert not (tmp_path / "a.json" / FAILED).exists() and not (tmp_path / "b.json" / FAILED).exists()
    latest = JSONDataset(filepath=str(tmp_path / "a.json"), version=Version(None, None))
    assert latest.load() == {"run": "old"}

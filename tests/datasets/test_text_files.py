"""The JSON, CSV, text and plotly outputs: a save cut short never leaves a version that loads."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import textwrap

import pandas as pd
import plotly.graph_objects as go
import pytest
from kedro.config import OmegaConfigLoader
from kedro.io import AbstractVersionedDataset, DataCatalog
from kedro.io.core import DatasetError, Version, parse_dataset_definition

from image_recognition.common import atomic
from image_recognition.datasets import (
    AtomicCSVDataset,
    AtomicJSONDataset,
    AtomicPlotlyDataset,
    AtomicTextDataset,
    OptionalCSVDataset,
    OptionalJSONDataset,
)
from image_recognition.datasets.files import FileDataset
from tests.helpers import PROJECT_ROOT

OLD, NEW = "2026-01-01T00.00.00.000Z", "2026-01-02T00.00.00.000Z"

# One saved value per dataset type, and how to compare what loads back.
SAMPLES = {
    AtomicJSONDataset: ({"accuracy": 0.9, "classes": ["cat", "dog"]}, lambda loaded: loaded),
    OptionalJSONDataset: ({"accuracy": 0.9}, lambda loaded: loaded),
    AtomicCSVDataset: (pd.DataFrame({"file": ["a.png", "b.png"], "p": [0.5, 0.25]}), lambda loaded: loaded),
    OptionalCSVDataset: (pd.DataFrame({"epoch": [1, 2]}), lambda loaded: loaded),
    AtomicTextDataset: ("<html><body>report</body></html>", lambda loaded: loaded),
    AtomicPlotlyDataset: (go.Figure(go.Bar(x=["a"], y=[1])), lambda loaded: loaded.to_dict()),
}
EXTENSIONS = {AtomicCSVDataset: "csv", OptionalCSVDataset: "csv", AtomicTextDataset: "html"}


def _dataset(cls, folder, version: Version):
    return cls(filepath=str(folder / f"out.{EXTENSIONS.get(cls, 'json')}"), version=version)


def _same(cls, a, b) -> bool:
    a, b = SAMPLES[cls][1](a), SAMPLES[cls][1](b)
    return a.equals(b) if isinstance(a, pd.DataFrame) else a == b


def _partials(folder) -> list[str]:
    return [p.name for p in folder.rglob("*.partial")]


@pytest.mark.parametrize("cls", list(SAMPLES), ids=lambda cls: cls.__name__)
def test_a_save_that_fails_halfway_leaves_the_previous_version_latest(cls, tmp_path, monkeypatch):
    value = SAMPLES[cls][0]
    _dataset(cls, tmp_path, Version(None, OLD)).save(value)

    def disk_full(fd):  # the bytes reached the file, then the disk refused them
        raise OSError("No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", disk_full)
    with pytest.raises(DatasetError, match="No space left"):
        _dataset(cls, tmp_path, Version(None, NEW)).save(value)

    latest = _dataset(cls, tmp_path, Version(None, None))
    assert latest.resolve_load_version() == OLD
    assert _same(cls, latest.load(), value)
    assert _partials(tmp_path) == []


def test_a_value_json_cannot_hold_writes_nothing(tmp_path):
    AtomicJSONDataset(filepath=str(tmp_path / "m.json"), version=Version(None, OLD)).save({"ok": 1})
    with pytest.raises(DatasetError, match="not JSON serializable"):
        AtomicJSONDataset(filepath=str(tmp_path / "m.json"), version=Version(None, NEW)).save({"a": 1, "b": object()})
    assert not (tmp_path / "m.json" / NEW).exists()
    assert AtomicJSONDataset(filepath=str(tmp_path / "m.json"), version=Version(None, None)).load() == {"ok": 1}


@pytest.mark.parametrize("cls", list(SAMPLES), ids=lambda cls: cls.__name__)
def test_a_temporary_file_a_killed_save_left_is_never_a_version(cls, tmp_path):
    value = SAMPLES[cls][0]
    old = _dataset(cls, tmp_path, Version(None, OLD))
    old.save(value)
    name = old._filepath.name
    torn = tmp_path / name / NEW / f".{name}.k1ll3d.partial"  # what atomic_write leaves when killed
    torn.parent.mkdir()
    torn.write_text('{"trunc')

    latest = _dataset(cls, tmp_path, Version(None, None))
    assert latest.list_versions(full_path=False) == [OLD]
    assert _same(cls, latest.load(), value)
    with pytest.raises(DatasetError):
        _dataset(cls, tmp_path, Version(NEW, None)).load()


def test_utf8_by_default_and_the_loaders_of_kedro_datasets_read_it(tmp_path):
    text = "<p>chat, cerf, ‘grenouille’</p>"
    AtomicTextDataset(filepath=str(tmp_path / "r.html")).save(text)
    assert (tmp_path / "r.html").read_bytes() == text.encode("utf-8")
    assert AtomicTextDataset(filepath=str(tmp_path / "r.html")).load() == text


def test_saves_reach_object_storage_in_one_piece():
    dataset = AtomicCSVDataset(filepath="memory:///text-files/table.csv", version=Version(None, OLD))
    frame = pd.DataFrame({"a": [1, 2, 3]})
    try:
        dataset.save(frame)
        assert (
            AtomicCSVDataset(filepath="memory:///text-files/table.csv", version=Version(None, None))
            .load()
            .equals(frame)
        )
    finally:
        dataset._fs.rm("/text-files", recursive=True)


def test_every_versioned_catalog_entry_writes_its_file_whole_or_not_at_all():
    config = OmegaConfigLoader(conf_source=str(PROJECT_ROOT / "conf"), base_env="base", default_run_env="base")
    versioned = {name: entry for name, entry in config["catalog"].items() if entry.get("versioned")}
    assert versioned
    atomic_types = (FileDataset, *SAMPLES)
    for name, entry in versioned.items():
        cls, _ = parse_dataset_definition(dict(entry))
        assert issubclass(cls, atomic_types), f"{name}: {entry['type']} writes in place"


# --- a real kill ---------------------------------------------------------------------------------------

# Saves 3,000 predictions at NEW through the project's catalog and stalls at KILL_POINT, for a SIGKILL.
_KILLED_SAVE = textwrap.dedent(
    """
    import os, sys, time
    import pandas as pd
    from kedro.config import OmegaConfigLoader
    from kedro.io import DataCatalog

    conf_source, version, kill_point = sys.argv[1:]

    def stall():
        print("stalled", flush=True)
        time.sleep(600)

    if kill_point == "serialising":  # 80 rows of 3,000 written into the save's file object, then killed
        real_to_csv = pd.DataFrame.to_csv

        def to_csv(self, path_or_buf=None, **kwargs):
            text = real_to_csv(self, None, **kwargs)
            path_or_buf.write("".join(text.splitlines(keepends=True)[:81]))
            path_or_buf.flush()
            stall()

        pd.DataFrame.to_csv = to_csv
    else:  # every byte written, not yet in place
        os.fsync = lambda fd: stall()

    config = OmegaConfigLoader(conf_source=conf_source, base_env="base", default_run_env="local")
    catalog = DataCatalog.from_config(config["catalog"], save_version=version)
    catalog.save("predictions", pd.DataFrame({"file": [f"{i}.png" for i in range(3000)], "class": "cat"}))
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("kill_point", ["serialising", "writing"])
def test_a_run_killed_mid_save_leaves_the_previous_predictions_latest(project, kill_point, monkeypatch):
    monkeypatch.chdir(project.root)
    config = OmegaConfigLoader(conf_source=str(project.root / "conf"), base_env="base", default_run_env="local")

    def predictions(load: str | None = None, save: str | None = None) -> AbstractVersionedDataset:
        load_versions = {"predictions": load} if load else None
        return DataCatalog.from_config(config["catalog"], load_versions=load_versions, save_version=save).get(
            "predictions"
        )

    previous = pd.DataFrame({"file": [f"{i}.png" for i in range(3000)], "class": "dog"})
    predictions(save=OLD).save(previous)

    run = subprocess.Popen(
        [sys.executable, "-c", _KILLED_SAVE, str(project.root / "conf"), NEW, kill_point],
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    try:
        line = run.stdout.readline()  # "stalled", or "" if the save finished without stalling
    finally:
        run.kill()  # SIGKILL
        _, stderr = run.communicate(timeout=60)
    assert line == "stalled\n", stderr[-3000:]

    if kill_point == "writing":  # the kill left the temporary file: it is not a version
        assert list((project.root / "data/07_model_output/predictions.csv" / NEW).glob(".predictions.csv.*.partial"))
    latest = predictions()
    assert latest.list_versions(full_path=False) == [OLD]
    assert latest.load().equals(previous)
    with pytest.raises(DatasetError):
        predictions(load=NEW).load()


def test_plotly_figures_keep_kedro_vizs_plotly_preview(tmp_path):
    dataset = AtomicPlotlyDataset(filepath=str(tmp_path / "f.json"))
    dataset.save(SAMPLES[AtomicPlotlyDataset][0])
    assert dataset.preview()["data"][0]["type"] == "bar"
    annotation = inspect.signature(dataset.preview).return_annotation  # how kedro-viz picks its renderer
    assert getattr(annotation, "__name__", str(annotation)) == "PlotlyPreview"
    assert json.loads((tmp_path / "f.json").read_text())["data"][0]["type"] == "bar"

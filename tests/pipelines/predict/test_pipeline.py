"""The predict pipeline on a catalog of real files: every image from outside ends as one row of the CSV."""

from __future__ import annotations

import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.io.core import Version
from kedro.runner import SequentialRunner
from kedro_datasets.pandas import CSVDataset
from kedro_datasets.text import TextDataset

from image_recognition.datasets import ImageFolderDataset, TorchCheckpointDataset
from image_recognition.datasets.images import ImageError
from image_recognition.integrations.hooks import SelectedCheckpointHook
from image_recognition.pipeline_registry import register_pipelines
from image_recognition.pipelines.predict import create_pipeline
from image_recognition.serving.prediction import UntrainedModelError
from tests.helpers import (
    EPS_NAMED_PNG,
    NOT_UTF8_NAME,
    NOT_UTF8_SHOWN,
    class_image,
    fake_checkpoint,
    image_file,
    write_files,
)


def run_predict(folder, out, **params) -> tuple[pd.DataFrame, str]:
    """The pipeline on ``folder`` with a simple_cnn checkpoint; the CSV and the gallery it wrote under ``out``."""
    catalog = DataCatalog(
        {
            "predict_images": ImageFolderDataset(path=str(folder)),
            "predict_checkpoint": MemoryDataset(fake_checkpoint("simple_cnn")),
            "params:predict": MemoryDataset({"model": "simple_cnn", **params}),
            "predictions": CSVDataset(filepath=str(out / "predictions.csv"), save_args={"index": False}),
            "prediction_gallery": TextDataset(filepath=str(out / "prediction_gallery.html")),
        }
    )
    SequentialRunner().run(create_pipeline(), catalog)
    page = (out / "prediction_gallery.html").read_bytes().decode("utf-8")
    return pd.read_csv(out / "predictions.csv", encoding="utf-8"), page


def test_names_that_are_not_utf8_are_written_escaped_and_kept_apart(tmp_path):
    """A name with the byte 0xE9 once failed the CSV's save, losing every row; its escape must not collide."""
    names = [NOT_UTF8_NAME, NOT_UTF8_SHOWN, "a.png", "b.png"]  # the second: the first's escape, as characters
    write_files(tmp_path / "in", {name: image_file(class_image(i), "PNG") for i, name in enumerate(names)})
    table, page = run_predict(tmp_path / "in", tmp_path / "out", keep_going=True)
    assert sorted(table["file"]) == sorted([NOT_UTF8_SHOWN, "caf\\\\xe9.png", "a.png", "b.png"])
    assert table["error"].isna().all() and table["class"].notna().all()
    assert NOT_UTF8_SHOWN in page and "caf\\\\xe9.png" in page and "4 images predicted" in page


def test_eps_content_named_png_gets_an_error_row_and_ghostscript_never_runs(tmp_path, ghostscript_runs):
    write_files(tmp_path / "in", {"holiday.png": EPS_NAMED_PNG, "good.png": image_file(class_image(1), "PNG")})
    table, _ = run_predict(tmp_path / "in", tmp_path / "out", keep_going=True)
    rows = table.set_index("file")
    assert rows.loc["holiday.png", "error"].startswith(
        "holiday.png: EPS content, a format never decoded here whatever the file's extension"
    )
    assert pd.isna(rows.loc["holiday.png", "class"]) and pd.isna(rows.loc["good.png", "error"])
    with pytest.raises(ImageError, match="^holiday.png: EPS content"):
        run_predict(tmp_path / "in", tmp_path / "out2")
    assert not ghostscript_runs.exists()


@pytest.mark.parametrize(("pipeline", "parameter"), [("predict", "predict.model"), ("export", "export.model")])
def test_a_model_never_trained_stops_its_run_before_the_first_node(tmp_path, pipeline, parameter):
    filepath = str(tmp_path / "cnn" / "checkpoint.pt")
    catalog = DataCatalog({"cnn.checkpoint": TorchCheckpointDataset(filepath=filepath, version=Version(None, None))})
    catalog[f"params:{parameter}"] = MemoryDataset("cnn")
    hook, pipelines = SelectedCheckpointHook(), register_pipelines()
    hook.after_catalog_created(catalog, {f"params:{parameter}": "cnn"}, {})
    message = r"^no cnn.checkpoint has been saved: train it first with `kedro run --pipelines=train_cnn`$"
    with pytest.raises(UntrainedModelError, match=message):
        hook.before_pipeline_run({}, pipelines[pipeline], catalog)
    hook.before_pipeline_run({}, pipelines["train_cnn"], catalog)  # training is what it asks for: not stopped
    TorchCheckpointDataset(filepath=filepath, version=Version(None, "2026-01-01T00.00.00.000Z")).save(
        fake_checkpoint("cnn")
    )
    hook.before_pipeline_run({}, pipelines[pipeline], catalog)  # trained now

"""The whole DAG on the user's own images (docs/own-images.md), and on CIFAR-100-format data.

A generated image folder (shapes in colours, PNG and JPEG) runs ``kedro run
--env=demo`` once as a folder with ``test/`` and once as a ``.zip`` without it;
both models learn it well above chance, and predict and export work on the
result. A synthetic CIFAR-100 archive runs the same DAG with 100 classes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx
import pandas as pd
import pytest

from image_recognition.sources.synthetic_folder import write_image_folder
from tests.helpers import PROJECT_ROOT, Project

pytestmark = pytest.mark.slow  # every test here runs the kedro CLI in a subprocess

CLASSES = 4  # chance is 0.25
# The demo's ViT needs more passes over a few hundred images than over its 5,000.
TRAINING = "vit.training.epochs=20"


def new_project(tmp_path: Path) -> Project:
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(PROJECT_ROOT / "pyproject.toml", root)
    shutil.copytree(PROJECT_ROOT / "conf", root / "conf")
    (root / "conf" / "local").mkdir(exist_ok=True)
    (root / "src").mkdir()
    return Project(root)


def only_file(folder: Path, name: str) -> Path:
    (path,) = folder.glob(f"*/{name}")
    return path


@pytest.mark.parametrize("packing", ["folder_with_test", "zip_without_test"])
def test_an_image_folder_runs_the_whole_dag_then_predict_and_export(tmp_path, packing):
    zipped = packing == "zip_without_test"
    source = write_image_folder(
        tmp_path / "images",
        classes=CLASSES,
        train_per_class=150 if zipped else 120,
        test_per_class=0 if zipped else 30,
        image_size=48,  # decoded to dataset.image_size 32: resized and centre-cropped
        formats=["PNG", "JPEG"],
        archive="zip" if zipped else None,
    )
    project = new_project(tmp_path)
    params = f"dataset.kind=image_folder,dataset.source.url={source.as_uri()},dataset.validation_size=0.2,{TRAINING}"
    result = project.kedro("run", "--env=demo", "--params", params)
    assert result.returncode == 0, result.stderr[-4000:]

    reporting = project.root / "data/demo/08_reporting"
    report = json.loads(only_file(reporting / "data_report.json", "data_report.json").read_text())
    assert report["num_classes"] == CLASSES and report["image_size"] == 32
    assert report["class_names"] == ["00_red_circle", "01_green_square", "02_blue_triangle", "03_yellow_cross"]
    assert report["split"]["test_held_out"] is zipped
    assert report["sizes"]["test"] == 120  # 0.2 of the zip's 600, or the folder's 4 x 30
    assert report["source"]["kind"] == "image_folder" and report["source"]["fingerprint"]
    for model in ("cnn", "vit"):
        metrics = json.loads(only_file(reporting / model / "metrics.json", "metrics.json").read_text())
        assert metrics["quality"]["accuracy"] > 0.7, (model, metrics["quality"]["accuracy"])
    page = only_file(reporting / "comparison_report.html", "comparison_report.html").read_text()
    assert "03_yellow_cross" in page

    _predict_and_export_work(project, tmp_path, report["class_names"])


def _predict_and_export_work(project: Project, tmp_path: Path, class_names: list[str]) -> None:
    """Predict new images of the same classes with the cnn; export the vit with the data's class names and size."""
    unseen = write_image_folder(tmp_path / "unseen", classes=CLASSES, train_per_class=5, test_per_class=0, seed=9)
    result = project.kedro(
        "run", "--env=demo", "--pipelines=predict", "--params", f"predict.input_dir={unseen / 'train'}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    table = pd.read_csv(only_file(project.root / "data/demo/07_model_output/predictions.csv", "predictions.csv"))
    assert set(table["class"]) <= set(class_names)
    right = sum(Path(file).parts[0] == predicted for file, predicted in zip(table["file"], table["class"], strict=True))
    assert right / len(table) > 0.7, table[["file", "class"]]

    result = project.kedro("run", "--env=demo", "--pipelines=export", "--params", "export.model=vit")
    assert result.returncode == 0, result.stderr[-3000:]
    proto = onnx.load(str(only_file(project.root / "data/demo/06_models/export/model.onnx", "model.onnx")))
    props = {entry.key: entry.value for entry in proto.metadata_props}
    assert json.loads(props["class_names"]) == class_names
    assert props["image_size"] == "32"


def test_cifar100_format_data_runs_the_whole_dag_with_100_classes(tmp_path):
    project = new_project(tmp_path)
    params = (
        "dataset.kind=cifar100,dataset.source.url=synthetic://cifar100?train_per_class=10&test_per_class=2&seed=0,"
        "dataset.validation_size=100,cnn.training.epochs=1,vit.training.epochs=1"
    )
    result = project.kedro("run", "--env=demo", "--params", params)
    assert result.returncode == 0, result.stderr[-4000:]
    reporting = project.root / "data/demo/08_reporting"
    report = json.loads(only_file(reporting / "data_report.json", "data_report.json").read_text())
    assert report["num_classes"] == 100 and len(report["class_names"]) == 100
    assert report["sizes"] == {"train": 900, "validation": 100, "test": 200}
    counts = pd.read_csv(only_file(reporting / "data_class_counts.csv", "data_class_counts.csv"))
    assert len(counts) == 100
    for model in ("simple_cnn", "cnn", "vit"):
        per_class = pd.read_csv(only_file(reporting / model / "per_class_metrics.csv", "per_class_metrics.csv"))
        assert len(per_class) == 100, model

"""The whole DAG on the demo environment, and what users do with its outputs.

One ``kedro run --env=demo`` (about a minute on 2 cores) feeds every test here:
the HTML report, rebuilding a report from older versions, kedro viz's API and
the exploration notebook.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import onnx
import pandas as pd
import pytest

from tests.helpers import (
    BAD_IMAGES,
    ODD_IMAGES,
    PROJECT_ROOT,
    SHORT_TRAINING,
    Project,
    class_image,
    image_file,
    write_class_images,
    write_files,
)

pytestmark = pytest.mark.slow  # every test here runs the kedro CLI in a subprocess

MODELS = ("simple_cnn", "cnn", "vit")
FIGURES = (
    "learning_curves",
    "confusion_matrices",
    "per_class_f1",
    "reliability_diagram",
    "accuracy_vs_cost",
    "error_gallery",
)
PARTS = ("metrics.json", "per_class_metrics.csv", "confusion_matrix.csv", "reliability.csv", "errors.csv")


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Project:
    root = tmp_path_factory.mktemp("demo") / "project"
    root.mkdir()
    shutil.copy(PROJECT_ROOT / "pyproject.toml", root)
    shutil.copytree(PROJECT_ROOT / "conf", root / "conf")
    shutil.copytree(PROJECT_ROOT / "notebooks", root / "notebooks")
    (root / "conf" / "local").mkdir(exist_ok=True)
    (root / "src").mkdir()
    project = Project(root)
    result = project.kedro("run", "--env=demo")
    assert result.returncode == 0, result.stderr[-4000:]
    return project


def only_version(folder: Path) -> str:
    (version,) = [p.name for p in folder.iterdir()]
    return version


def test_demo_runs_the_whole_dag_and_writes_the_report(demo):
    reporting = demo.root / "data/demo/08_reporting"
    report = next((reporting / "comparison_report.html").glob("*/comparison_report.html"))
    page = report.read_text()
    assert all(f'id="{name}"' in page for name in FIGURES)
    assert all(f"<td>{model}</td>" in page for model in MODELS)
    for model in MODELS:
        for part in PARTS:
            assert len(list((reporting / model / part).glob(f"*/{part}"))) == 1, (model, part)
        metrics = json.loads(next((reporting / model / "metrics.json").glob("*/metrics.json")).read_text())
        assert metrics["quality"]["accuracy"] > 0.5, model  # ten classes: chance is 0.1
        checkpoint_version = only_version(demo.root / f"data/demo/06_models/{model}/checkpoint.pt")
        assert metrics["provenance"]["checkpoint_version"] == checkpoint_version
    for figure in FIGURES:
        assert list((reporting / "figures" / f"{figure}.json").glob("*/*.json")), figure


def test_reporting_rebuilds_from_an_older_checkpoint(demo):
    reporting = demo.root / "data/demo/08_reporting"
    first = only_version(reporting / "vit/metrics.json")
    first_checkpoint = only_version(demo.root / "data/demo/06_models/vit/checkpoint.pt")
    retrain = demo.kedro(
        "run",
        "--env=demo",
        "--pipelines=train_vit,evaluate_vit",
        "--params",
        "vit.training.seed=1,vit.training.epochs=1",
    )
    assert retrain.returncode == 0, retrain.stderr[-3000:]
    pins = [
        f"vit.{name}:{first}" for name in ("metrics", "per_class_metrics", "confusion_matrix", "reliability", "errors")
    ]
    pins.append(f"vit.training_history:{first}")
    rebuilt = demo.kedro("run", "--env=demo", "--pipelines=reporting", f"--load-versions={','.join(pins)}")
    assert rebuilt.returncode == 0, rebuilt.stderr[-3000:]
    reports = sorted((reporting / "comparison_report.html").glob("*/comparison_report.html"))
    assert len(reports) == 2
    provenance = json.loads(
        re.search(r"<pre>(.*?)</pre>", reports[-1].read_text(), re.S).group(1).replace("&quot;", '"')
    )
    assert provenance["vit"]["checkpoint_version"] == first_checkpoint
    newest = sorted((demo.root / "data/demo/06_models/vit/checkpoint.pt").iterdir())[-1].name
    assert newest != first_checkpoint


def test_kedro_viz_shows_every_pipeline_with_previews(demo):
    result = demo.kedro("viz", "build", "--include-previews", env={"KEDRO_ENV": "demo"})
    assert result.returncode == 0, result.stderr[-3000:]
    api = demo.root / "build" / "api"
    main = json.loads((api / "main").read_text())
    assert {p["id"] for p in main["pipelines"]} >= {
        "data_processing",
        "train_cnn",
        "train_vit",
        "evaluation",
        "reporting",
        "__default__",
    }
    modular = {n["name"] for n in main["nodes"] if n["type"] == "modularPipeline"}
    assert modular >= set(MODELS)  # training and evaluation collapse per model
    tasks = {n["full_name"] for n in main["nodes"] if n["type"] == "task"}
    assert {"fetch_dataset_node", "cnn.train_model_node", "vit.evaluate_model_node", "render_report_node"} <= tasks
    ids = {n.get("full_name") or n["name"]: n["id"] for n in main["nodes"] if n["type"] == "data"}
    previews = {}
    for name in [
        "data_report",
        "data_class_counts",
        "cnn.training_history",
        "model_comparison",
        "vit.per_class_metrics",
    ]:
        previews[name] = json.loads((api / "nodes" / ids[name]).read_text()).get("preview_type")
    for figure in FIGURES:
        previews[figure] = json.loads((api / "nodes" / ids[f"{figure}_figure"]).read_text()).get("preview_type")
    assert previews["data_report"] == "JSONPreview"
    assert {
        previews[n] for n in ("data_class_counts", "cnn.training_history", "model_comparison", "vit.per_class_metrics")
    } == {"TablePreview"}
    assert {previews[f] for f in FIGURES} == {"PlotlyPreview"}


def test_exploration_notebook_runs_headless(demo):
    nbformat = pytest.importorskip("nbformat", reason="pip install -e '.[notebook]'")
    nbclient = pytest.importorskip("nbclient", reason="pip install -e '.[notebook]'")
    notebook = nbformat.read(demo.root / "notebooks" / "exploration.ipynb", as_version=4)
    os.environ["KEDRO_ENV"] = "demo"
    try:
        nbclient.NotebookClient(
            notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(demo.root / "notebooks")}}
        ).execute()
    finally:
        del os.environ["KEDRO_ENV"]
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    shown = "".join(str(o.get("data", {}).get("text/plain", "")) for o in outputs)
    assert "test_accuracy" in shown and "checkpoint_version" in shown
    assert sum("application/vnd.plotly.v1+json" in o.get("data", {}) for o in outputs) >= 3


def test_record_mode_trains_on_every_training_image_and_still_reports(tmp_path):
    """``dataset.validation_size: 0``: no validation split or curves; evaluation and report unchanged."""
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(PROJECT_ROOT / "pyproject.toml", root)
    shutil.copytree(PROJECT_ROOT / "conf", root / "conf")
    (root / "conf" / "local").mkdir(exist_ok=True)
    (root / "src").mkdir()
    project = Project(root)
    result = project.kedro("run", "--env=demo", "--params", f"dataset.validation_size=0,{SHORT_TRAINING}")
    assert result.returncode == 0, result.stderr[-4000:]
    reporting = root / "data/demo/08_reporting"
    data_report = json.loads(next((reporting / "data_report.json").glob("*/data_report.json")).read_text())
    assert data_report["sizes"]["validation"] == 0
    assert data_report["sizes"]["train"] == 5000  # every training image
    for model in MODELS:
        metrics = json.loads(next((reporting / model / "metrics.json").glob("*/metrics.json")).read_text())
        assert metrics["quality"]["accuracy"] > 0.5, model
        assert all(row["val_accuracy"] is None for row in metrics["history"]), model
        assert metrics["history"][-1]["train_loss"] > 0
    page = next((reporting / "comparison_report.html").glob("*/comparison_report.html")).read_text()
    assert all(f'id="{name}"' in page for name in FIGURES)


def newest_version(folder: Path) -> str:
    return sorted(p.name for p in folder.iterdir())[-1]


def test_predict_pipeline_writes_predictions_and_a_gallery(demo):
    folder = demo.root / "data/demo/09_predict"
    labels = write_class_images(folder, per_class=3)
    write_files(folder / "odd", ODD_IMAGES)
    result = demo.kedro("run", "--env=demo", "--pipelines=predict")
    assert result.returncode == 0, result.stderr[-3000:]
    output = demo.root / "data/demo/07_model_output/predictions.csv"
    table = pd.read_csv(output / only_version(output) / "predictions.csv")
    assert set(table["file"]) == set(labels) | {f"odd/{name}" for name in ODD_IMAGES}
    assert table["error"].isna().all()
    assert (table["model"] == "cnn").all()
    assert (table["checkpoint_version"] == newest_version(demo.root / "data/demo/06_models/cnn/checkpoint.pt")).all()
    predicted = table.set_index("file")["class"]
    right = sum(predicted[name] == f"pattern_{label}" for name, label in labels.items()) / len(labels)
    assert right >= 0.6, right  # ten classes: chance is 0.1
    gallery = demo.root / "data/demo/08_reporting/prediction_gallery.html"
    page = (gallery / only_version(gallery) / "prediction_gallery.html").read_text()
    assert page.count("data:image/png;base64,") == len(table) and "<script" not in page


def test_predict_pipeline_pins_a_model_and_refuses_bad_input(demo, tmp_path):
    vit = demo.root / "data/demo/06_models/vit/checkpoint.pt"
    oldest = sorted(p.name for p in vit.iterdir())[0]
    bad = tmp_path / "bad"
    write_files(bad, {"ok.png": ODD_IMAGES["one_pixel.png"], "truncated.jpg": BAD_IMAGES["truncated.jpg"][0]})
    outputs = demo.root / "data/demo/07_model_output/predictions.csv"
    before = sorted(outputs.iterdir()) if outputs.exists() else []
    # An empty folder fails where the node loads its input, as a bad image does
    # (tests/datasets/test_images.py checks that message through the dataset).
    cases = {
        "truncated.jpg: the image data is truncated": ["--params", f"predict.input_dir={bad}"],
        "predict.model must be one of simple_cnn, cnn, vit, got 'resnet'": ["--params", "predict.model=resnet"],
        "--load-versions names cnn.checkpoint:2020-01-01T00.00.00.000Z, which was never saved": [
            "--load-versions=cnn.checkpoint:2020-01-01T00.00.00.000Z"
        ],
    }
    for message, args in cases.items():
        result = demo.kedro("run", "--env=demo", "--pipelines=predict", *args)
        assert result.returncode == 1, (message, result.stderr[-3000:])
        assert message in result.stderr, (message, result.stderr[-3000:])
        assert (sorted(outputs.iterdir()) if outputs.exists() else []) == before, message  # nothing written
    kept = demo.kedro(
        "run",
        "--env=demo",
        "--pipelines=predict",
        f"--load-versions=vit.checkpoint:{oldest}",
        "--params",
        f"predict.model=vit,predict.keep_going=true,predict.input_dir={bad}",
    )
    assert kept.returncode == 0, kept.stderr[-3000:]
    table = pd.read_csv(outputs / newest_version(outputs) / "predictions.csv").set_index("file")
    assert (table["checkpoint_version"] == oldest).all() and (table["model"] == "vit").all()
    assert "truncated" in table.loc["truncated.jpg", "error"] and isinstance(table.loc["ok.png", "class"], str)


def test_image_recognition_predict_prints_json_after_the_demo_run(demo):
    image = demo.root / "one.jpg"
    image.write_bytes(image_file(class_image(4, (80, 60)), "JPEG"))
    command = [
        str(Path(sys.executable).with_name("image-recognition")),
        "predict",
        "--model",
        "cnn",
        "--json",
        str(image),
    ]
    env = {**os.environ, "KEDRO_ENV": "demo", "NO_COLOR": "1"}
    result = subprocess.run(command, cwd=demo.root, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    (record,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert record["file"] == str(image) and record["model"] == "cnn"
    assert record["checkpoint_version"] == newest_version(demo.root / "data/demo/06_models/cnn/checkpoint.pt")
    assert record["class"].startswith("pattern_") and 0 < record["probability"] <= 1


def test_export_pipeline_writes_onnx_and_safetensors_of_the_chosen_checkpoint(demo):
    result = demo.kedro("run", "--env=demo", "--pipelines=export", "--params", "export.model=vit")
    assert result.returncode == 0, result.stderr[-3000:]
    models = demo.root / "data/demo/06_models"
    graph = models / "export/model.onnx"
    proto = onnx.load(str(graph / only_version(graph) / "model.onnx"))
    props = {entry.key: entry.value for entry in proto.metadata_props}
    assert props["model_name"] == "vit"
    assert props["checkpoint_version"] == newest_version(models / "vit/checkpoint.pt")
    weights = models / "export/model.safetensors"
    assert (weights / only_version(weights) / "model.safetensors").stat().st_size > 0

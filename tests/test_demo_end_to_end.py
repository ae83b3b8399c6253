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
from pathlib import Path

import pytest

from tests.helpers import PROJECT_ROOT, Project

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
    retrain = demo.kedro("run", "--env=demo", "--pipelines=train_vit,evaluate_vit", "--params", "vit.training.seed=1")
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
    assert {"fetch_cifar10_node", "cnn.train_model_node", "vit.evaluate_model_node", "render_report_node"} <= tasks
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
    """``cifar10.validation_size: 0``: no validation split or curves; evaluation and report unchanged."""
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(PROJECT_ROOT / "pyproject.toml", root)
    shutil.copytree(PROJECT_ROOT / "conf", root / "conf")
    (root / "conf" / "local").mkdir(exist_ok=True)
    (root / "src").mkdir()
    project = Project(root)
    result = project.kedro("run", "--env=demo", "--params", "cifar10.validation_size=0")
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

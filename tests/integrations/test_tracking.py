"""Experiment tracking with kedro-mlflow: what a run logs, the MLflow UI, and runs without the extra.

The suite runs with tracking off (tests/conftest.py); these tests turn it on
for their own runs, in project folders of their own.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml
from kedro.framework.hooks.manager import _create_hook_manager
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Node, Pipeline
from kedro.runner import SequentialRunner

from image_recognition.common.errors import ParameterError
from image_recognition.integrations import tracking
from tests.helpers import (
    PROJECT_ROOT,
    SHORT_TRAINING,
    SOURCE_SECRETS,
    TRACKED,
    Project,
    free_port,
    presigned,
)

mlflow = pytest.importorskip("mlflow", reason="needs the mlflow extra: pip install -e '.[test]'")

PIPELINES = "data_processing,train_vit,evaluate_vit,reporting"
DEMO_VIT = yaml.safe_load((PROJECT_ROOT / "conf" / "demo" / "parameters_train.yml").read_text())["vit"]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


# --- the pieces, without a run ----------------------------------------------------------------------


def test_the_local_store_is_absolute_and_one_variable_moves_it(tmp_path):
    assert tracking.mlflow_store(tmp_path, "tracking_uri") == f"sqlite:///{tmp_path}/mlflow.db"
    assert tracking.mlflow_store(tmp_path, "artifact_location") == (tmp_path / "mlartifacts").as_uri()
    server = "http://mlflow.example:5000"  # the user's MLFLOW_TRACKING_URI
    assert tracking.mlflow_store(tmp_path, "tracking_uri", server) == server
    assert tracking.mlflow_store(tmp_path, "artifact_location", server) is None  # the server's own
    with pytest.raises(ValueError, match="tracking_uri or artifact_location"):
        tracking.mlflow_store(tmp_path, "artefacts")


def test_tracking_is_off_without_kedro_mlflow_or_when_turned_off(monkeypatch):
    monkeypatch.setenv("IMAGE_RECOGNITION_TRACKING", "on")
    assert tracking.tracking_enabled()
    monkeypatch.setenv("IMAGE_RECOGNITION_TRACKING", "off")
    assert not tracking.tracking_enabled()
    monkeypatch.setenv("IMAGE_RECOGNITION_TRACKING", "on")
    monkeypatch.setattr(tracking.importlib.util, "find_spec", lambda name: None)
    assert not tracking.tracking_enabled()


def test_test_metrics_and_histories_flatten_to_finite_numbers():
    record = {"accuracy": 0.5, "tta": "flip", "ok": True, "nested": {"ece": 0.1, "bad": math.nan}}
    assert tracking.flat_numbers(record, "vit.test") == {"vit.test.accuracy": 0.5, "vit.test.nested.ece": 0.1}
    history = pd.DataFrame({"epoch": [1, 2], "train_loss": [2.0, 1.5], "val_loss": [math.nan, 1.7]})
    assert sorted(tracking.history_series(history, "vit")) == [
        ("vit.train_loss", 1.5, 2),
        ("vit.train_loss", 2.0, 1),
        ("vit.val_loss", 1.7, 2),
    ]


def test_the_git_version_says_when_the_tree_has_changes(tmp_path):
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "f.txt").write_text("a")
    git("add", "f.txt")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "one")
    clean = tracking.git_version(tmp_path)
    assert len(clean) == 40
    (tmp_path / "f.txt").write_text("b")
    assert tracking.git_version(tmp_path) == f"{clean}+dirty"
    outside = tmp_path.parent / f"{tmp_path.name}-no-git"
    outside.mkdir()
    assert tracking.git_version(outside) is None


def test_an_unknown_tracking_parameter_is_refused_with_its_file():
    hook = tracking.MlflowTrackingHook()
    with pytest.raises(ParameterError, match=r"tracking\.log_checkpoint\b.*parameters_tracking\.yml"):
        hook.after_catalog_created(catalog={}, parameters={"params:tracking": {"log_checkpoint": True}})
    with pytest.raises(ParameterError, match="must be true or false, got 'false'"):
        hook.after_catalog_created(catalog={}, parameters={"params:tracking": {"log_checkpoints": "false"}})


# --- two tracked demo runs --------------------------------------------------------------------------


def make_project(root: Path) -> Project:
    root.mkdir(parents=True)
    shutil.copy(PROJECT_ROOT / "pyproject.toml", root)
    shutil.copytree(PROJECT_ROOT / "conf", root / "conf", ignore=shutil.ignore_patterns("credentials*", "local"))
    for folder in ("conf/local", "src", "data"):
        (root / folder).mkdir()
    return Project(root)


def client_of(project: Project):
    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{project.root / 'mlflow.db'}")


def runs_of(project: Project):
    client = client_of(project)
    experiment = client.get_experiment_by_name("image_recognition")
    return client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """Two demo runs: vit.training.epochs 1, then 2 with checkpoint logging on; the runs right after."""
    project = make_project(tmp_path_factory.mktemp("tracked") / "project")
    for params in ("vit.training.epochs=1", "vit.training.epochs=2,tracking.log_checkpoints=true"):
        result = project.kedro("run", "--env=demo", f"--pipelines={PIPELINES}", "--params", params, env=TRACKED)
        assert result.returncode == 0, result.stderr[-4000:]
    return project, runs_of(project)


def saved_file(project: Project, relative: str, version: str) -> Path:
    path = project.root / "data" / "demo" / relative
    return path / version / path.name


@pytest.mark.slow
def test_each_run_logs_its_parameters_histories_test_metrics_versions_and_report(tracked):
    project, runs = tracked
    assert len(runs) == 2
    client = client_of(project)
    for epochs, run in zip((1, 2), runs):
        params, tags, metrics = run.data.params, run.data.tags, run.data.metrics
        # Parameters: each recipe flattened under its model, and the data.
        assert params["vit.training.epochs"] == str(epochs)
        assert params["vit.model.embed_dim"] == str(DEMO_VIT["model"]["embed_dim"])
        assert params["data.validation_size"] == "500"
        report = json.loads(
            saved_file(project, "08_reporting/data_report.json", tags["version.data_report"]).read_text()
        )
        assert params["data.md5"] == report["source"]["md5"]
        # Per-epoch histories, step = epoch.
        for key in ("vit.train_loss", "vit.train_accuracy", "vit.val_loss", "vit.val_accuracy", "vit.lr"):
            history = client.get_metric_history(run.info.run_id, key)
            assert sorted(m.step for m in history) == list(range(1, epochs + 1)), key
        # Test metrics equal the run's own metrics JSON, found through the version tag.
        version = tags["version.vit.metrics"]
        record = json.loads(saved_file(project, "08_reporting/vit/metrics.json", version).read_text())
        assert metrics["vit.test.accuracy"] == pytest.approx(record["quality"]["accuracy"])
        assert metrics["vit.test.accuracy_no_tta"] == pytest.approx(record["quality"]["accuracy_no_tta"])
        assert metrics["vit.test.ece"] == pytest.approx(record["quality"]["ece"])
        assert any(key.startswith("vit.test.cost.") for key in metrics)
        # Tags: the checkpoint this run saved is the one it evaluated, and exists.
        checkpoint = tags["version.vit.checkpoint"]
        assert tags["evaluated_version.vit.checkpoint"] == checkpoint
        assert saved_file(project, "06_models/vit/checkpoint.pt", checkpoint).is_file()
        assert tags["kedro_env"] == "base+demo"
        assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", tags["git_commit"])  # the package's checkout
        assert tags["mlflow.runName"] == "data_processing+evaluate_vit+reporting+train_vit: vit"
        # Artefacts: the report, the figures, the comparison table; the checkpoint only when asked.
        top = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"comparison_report.html", "model_comparison.csv", "figures"} <= top
        logged = [Path(a.path).name for a in client.list_artifacts(run.info.run_id, "checkpoints/vit")]
        assert logged == ([] if epochs == 1 else ["checkpoint.pt"])
        figures = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "figures")}
        assert "learning_curves.json" in figures
    assert runs[0].data.tags["version.vit.checkpoint"] != runs[1].data.tags["version.vit.checkpoint"]


@pytest.mark.slow
def test_evaluate_alone_logs_against_the_checkpoint_version_it_evaluated(tracked):
    project, runs = tracked
    first = runs[0].data.tags["version.vit.checkpoint"]
    result = project.kedro(
        "run", "--env=demo", "--pipelines=evaluate_vit", f"--load-versions=vit.checkpoint:{first}", env=TRACKED
    )
    assert result.returncode == 0, result.stderr[-4000:]
    newest = runs_of(project)[-1]
    assert newest.info.run_id not in {run.info.run_id for run in runs}
    assert newest.data.tags["evaluated_version.vit.checkpoint"] == first
    assert newest.data.tags["mlflow.runName"] == "evaluate_vit: vit"
    assert "vit.test.accuracy" in newest.data.metrics
    assert "vit.train_loss" not in newest.data.metrics  # no training in this run
    assert "version.vit.checkpoint" not in newest.data.tags


@pytest.mark.slow
def test_sessions_one_after_another_in_one_process_close_their_runs(tmp_path):
    """As Airflow's ``dag.test()`` runs every task in one process: no run leaks into the next session."""
    project = make_project(tmp_path / "project")
    code = (
        "import mlflow\n"
        "from kedro.framework.session import KedroSession\n"
        "from kedro.framework.startup import bootstrap_project\n"
        f"bootstrap_project({str(project.root)!r})\n"
        "for _ in range(2):\n"
        f"    with KedroSession.create(project_path={str(project.root)!r}, env='demo') as session:\n"
        "        session.run(pipeline_names=['data_processing'])\n"
        "print('ACTIVE RUN', mlflow.active_run())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=project.root,
        env={**os.environ, **TRACKED, "PYTHONWARNINGS": "ignore"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "ACTIVE RUN None" in result.stdout
    runs = runs_of(project)
    assert len(runs) == 2 and {run.info.status for run in runs} == {"FINISHED"}
    assert runs[0].data.tags["version.data_report"] != runs[1].data.tags["version.data_report"]


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (apt-get install chromium)")
def test_the_mlflow_ui_lists_both_runs(tracked, tmp_path):
    project, runs = tracked
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{project.root / 'mlflow.db'}",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        # The UI and its REST API only: no job runner and its eight consumer processes.
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"mlflow server did not start: {server.stderr.read()[-3000:]}")
                time.sleep(0.5)
        experiment = runs[0].info.experiment_id
        dom = subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={tmp_path / 'profile'}",
                "--virtual-time-budget=20000",
                "--dump-dom",
                f"http://127.0.0.1:{port}/#/experiments/{experiment}/runs",
            ],
            capture_output=True,
            text=True,
            timeout=180,
            check=True,
        ).stdout
    finally:
        server.terminate()
        server.wait(timeout=30)
    for run in runs:
        assert run.info.run_id in dom, f"run {run.info.run_id} not on the experiment page"


# --- without the extra -------------------------------------------------------------------------------


@pytest.mark.slow
def test_without_the_extra_the_demo_dag_runs_and_nothing_is_tracked(tmp_path):
    project = make_project(tmp_path / "project")
    result = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).with_name("without_mlflow.py")),
            "run",
            "--env=demo",
            "--params",
            SHORT_TRAINING,
        ],
        cwd=project.root,
        env={**os.environ, **TRACKED, "NO_COLOR": "1", "PYTHONWARNINGS": "ignore"},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "comparison_report.html" in "".join(project.data_files())
    leftovers = [p.name for p in project.root.iterdir() if p.name in {"mlflow.db", "mlartifacts", "mlruns"}]
    assert leftovers == []
    assert "mlflow" not in (result.stdout + result.stderr).lower()


# --- a source URL with credentials -------------------------------------------------------------------


def test_kedro_mlflow_logs_the_parameters_and_run_tags_without_credentials(monkeypatch, synthetic_archive):
    """kedro-mlflow's own hook, behind the project's in Kedro's hook manager: what it would send to MLflow."""
    from kedro_mlflow.config.kedro_mlflow_config import KedroMlflowConfig  # noqa: PLC0415 (the mlflow extra)
    from kedro_mlflow.framework.hooks.mlflow_hook import MlflowHook  # noqa: PLC0415

    logged: dict[str, str] = {}
    monkeypatch.setattr(mlflow, "log_param", lambda key, value: logged.__setitem__(f"param {key}", str(value)))
    monkeypatch.setattr(mlflow, "set_tag", lambda key, value: logged.__setitem__(f"tag {key}", str(value)))
    monkeypatch.setattr(mlflow, "set_tags", lambda tags: logged.update({f"tag {k}": str(v) for k, v in tags.items()}))
    monkeypatch.setattr(mlflow, "active_run", lambda: SimpleNamespace(info=SimpleNamespace(run_id="r", run_name="r")))
    monkeypatch.setattr(mlflow, "start_run", lambda **kwargs: None)
    plugin = MlflowHook()
    plugin.mlflow_config = KedroMlflowConfig.model_validate(
        {"tracking": {"params": {"dict_params": {"flatten": True}}}}
    )
    plugin._already_active_mlflow = True  # the run is "open": nothing to configure or start
    hooks = _create_hook_manager()
    for hook in (tracking.RedactUrlsHook(), plugin):  # as Kedro registers them: the project's, then plugins
        hooks.register(hook)

    url, clean = presigned(synthetic_archive)
    params = {"source": {"url": url, "md5": synthetic_archive.md5}, "validation_size": 100}
    run_params = {
        **dict.fromkeys(["tags", "node_names", "from_nodes", "to_nodes", "from_inputs", "load_versions"]),
        "pipeline_names": ["data_processing"],
        "runtime_params": {"dataset": params},  # --params dataset.source.url=...
    }
    received = {}
    pipeline = Pipeline(
        [
            Node(lambda p: received.setdefault("params", p), "params:dataset", "a", name="a"),
            Node(lambda u: received.setdefault("url", u), "params:dataset.source.url", "b", name="b"),
            Node(lambda p: received.setdefault("all", p), "parameters", "c", name="c"),
        ]
    )
    catalog = DataCatalog(
        {
            "params:dataset": MemoryDataset(params),
            "params:dataset.source.url": MemoryDataset(url),
            "parameters": MemoryDataset({"dataset": params}),
        }
    )
    hooks.hook.before_pipeline_run(run_params=run_params, pipeline=pipeline, catalog=catalog)
    SequentialRunner().run(pipeline, catalog, hooks)

    assert received["params"]["source"]["url"] == received["url"] == received["all"]["dataset"]["source"]["url"] == url
    assert logged["param dataset.source.url"] == logged["param parameters.dataset.source.url"] == clean
    assert clean in logged["tag runtime_params"]
    for key, value in logged.items():
        assert not any(secret in value for secret in SOURCE_SECRETS), f"{key} = {value}"


@pytest.mark.slow
def test_a_tracked_run_keeps_the_credentials_of_its_source_out_of_everything(tmp_path, synthetic_archive):
    project = make_project(tmp_path / "project")
    url, clean = presigned(synthetic_archive)
    params = (
        f"dataset.source.url={url},dataset.source.md5={synthetic_archive.md5},"
        "dataset.expected_sizes.train=1000,dataset.expected_sizes.test=200,dataset.validation_size=100"
    )
    result = project.kedro("run", "--env=demo", "--pipelines=data_processing", "--params", params, env=TRACKED)
    assert result.returncode == 0, result.stderr[-4000:]
    assert f"fetching {clean}" in result.stdout + result.stderr  # the fetch log line, without the credentials
    (run,) = runs_of(project)
    assert run.data.params["dataset.source.url"] == clean
    assert clean in run.data.tags["runtime_params"]
    saved = [project.root / name for name in project.data_files()]
    assert any(path.name == "data_report.json" for path in saved)
    texts = {
        "log": result.stdout + result.stderr,
        **{f"param {k}": v for k, v in run.data.params.items()},
        **{f"tag {k}": v for k, v in run.data.tags.items()},
        **{str(path): path.read_bytes().decode("latin-1") for path in saved},
    }
    for where, text in texts.items():
        assert not any(secret in text for secret in SOURCE_SECRETS), f"{where}: {text[-2000:]}"

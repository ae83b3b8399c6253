"""The committed DAGs: they load, are up to date, and mirror the Kedro pipelines task for task."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from tests.helpers import DAGS_FOLDER, PROJECT_ROOT

pytest.importorskip("airflow", reason="needs the airflow extra: pip install -e '.[test,airflow]'")
pytest.importorskip("kedro_airflow", reason="needs the airflow extra: pip install -e '.[test,airflow]'")

from kedro.framework.project import pipelines  # noqa: E402
from kedro.framework.session import KedroSession  # noqa: E402
from kedro.framework.startup import bootstrap_project  # noqa: E402
from kedro.io import MemoryDataset  # noqa: E402

# The documented command (docs/airflow.md), minus the target folder.
CREATE_COMMAND = [
    "airflow",
    "create",
    "--all",
    "--group-by=memory",
    "--jinja-file=airflow_dags/templates/dag.py.j2",
]
AIRFLOW_CONFIG = yaml.safe_load((PROJECT_ROOT / "conf" / "base" / "airflow.yml").read_text())["default"]


@pytest.fixture(scope="module")
def kedro_project():
    """The registered pipelines and the base catalog of this project."""
    bootstrap_project(PROJECT_ROOT)
    with KedroSession.create(project_path=PROJECT_ROOT, env="base") as session:
        catalog = session.load_context().catalog
    return dict(pipelines), catalog


def dag_of(dagbag, pipeline_name):
    return dagbag.get_dag(f"image_recognition.{pipeline_name}")


def test_dagbag_loads_without_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert len(dagbag.dag_ids) == len(list(DAGS_FOLDER.glob("*_dag.py")))


def test_one_dag_per_registered_pipeline_with_unique_ids(dagbag, kedro_project):
    registered, _ = kedro_project
    assert {"__default__", "train_cnn", "train_vit"} <= set(registered)
    assert set(dagbag.dag_ids) == {f"image_recognition.{name}" for name in registered}


@pytest.mark.slow
def test_committed_dags_are_up_to_date(tmp_path):
    """Regenerating with the documented command reproduces airflow_dags/ byte for byte."""
    result = subprocess.run(
        [sys.executable, "-m", "kedro", *CREATE_COMMAND, f"--target-dir={tmp_path}"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    fresh = {path.name: path.read_text() for path in tmp_path.glob("*.py")}
    committed = {path.name: path.read_text() for path in DAGS_FOLDER.glob("*.py")}
    hint = "airflow_dags/ is stale: regenerate it with the command in docs/airflow.md"
    assert sorted(committed) == sorted(fresh), hint
    for name, text in fresh.items():
        assert committed[name] == text, f"{name}: {hint}"


def _tasks_by_node(dag) -> dict[str, str]:
    return {node: task.task_id for task in dag.tasks for node in task.op_args}


def test_tasks_mirror_the_kedro_pipeline(dagbag, kedro_project):
    """Each node runs in exactly one task; task edges are exactly the cross-task dataset edges."""
    registered, catalog = kedro_project
    for name, pipeline in registered.items():
        dag = dag_of(dagbag, name)
        task_of = _tasks_by_node(dag)
        assert sorted(task_of) == sorted(node.name for node in pipeline.nodes), name
        assert sum(len(task.op_args) for task in dag.tasks) == len(pipeline.nodes), f"{name}: a node runs twice"

        expected_upstream: dict[str, set[str]] = {task.task_id: set() for task in dag.tasks}
        producer = {output: node.name for node in pipeline.nodes for output in node.outputs}
        for node in pipeline.nodes:
            for dataset in node.inputs:
                if dataset not in producer or task_of[producer[dataset]] == task_of[node.name]:
                    continue
                # No in-memory dataset crosses a task boundary: tasks may run on different workers.
                assert dataset in catalog and not isinstance(catalog.get(dataset), MemoryDataset), (
                    f"{name}: {dataset} goes from {producer[dataset]} to {node.name} across tasks in memory"
                )
                expected_upstream[task_of[node.name]].add(task_of[producer[dataset]])
        actual_upstream = {task.task_id: set(task.upstream_task_ids) for task in dag.tasks}
        assert actual_upstream == expected_upstream, name


def test_tasks_are_grouped_for_deep_learning(dagbag, kedro_project):
    """Nodes joined by MemoryDatasets share a task; the whole training of a model is one task."""
    registered, _ = kedro_project
    dag = dag_of(dagbag, "__default__")
    task_of = _tasks_by_node(dag)
    assert task_of["decode_dataset_node"] == task_of["validate_dataset_node"] == task_of["split_dataset_node"]
    for model in ("simple_cnn", "cnn", "vit"):
        training = dag.get_task(task_of[f"{model}.train_model_node"])
        assert list(training.op_args) == [f"{model}.check_training_params_node", f"{model}.train_model_node"]
        assert training.task_id == f"{model.replace('_', '-')}-train-model-node"
    assert len(registered["train_vit"].nodes) == 8
    assert len(dag_of(dagbag, "train_vit").tasks) == 4


def test_task_settings_follow_the_configuration(dagbag, kedro_project):
    registered, _ = kedro_project
    training_args = AIRFLOW_CONFIG["task_args_by_tag"]["training"]
    for name, pipeline in registered.items():
        dag = dag_of(dagbag, name)
        assert dag.max_active_runs == AIRFLOW_CONFIG["max_active_runs"]
        assert dag.schedule is None or dag.schedule == AIRFLOW_CONFIG["schedule"]
        assert dag.catchup is AIRFLOW_CONFIG["catchup"]
        assert set(dag.params) == {"kedro_env", "kedro_params"}
        tagged = {node.name for node in pipeline.nodes if "training" in node.tags}
        for task in dag.tasks:
            assert task.retries == AIRFLOW_CONFIG["retries"]
            assert task.retry_delay == timedelta(minutes=AIRFLOW_CONFIG["retry_delay"])
            is_training = bool(tagged & set(task.op_args))
            if is_training:  # the GPU defaults: pool `gpu`, one training task of a DAG at a time
                assert all(getattr(task, key) == value for key, value in training_args.items()), task
            else:
                assert (task.pool, task.max_active_tis_per_dag) == ("default_pool", None), task


@pytest.mark.slow
def test_dag_files_do_not_import_the_project_when_parsed():
    """Parsing must stay cheap and need Airflow alone: no Kedro, no torch at import time."""
    code = (
        "import sys, runpy\n"
        f"runpy.run_path({str(DAGS_FOLDER / 'image_recognition_dag.py')!r})\n"
        "heavy = [m for m in ('torch', 'kedro', 'image_recognition') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 0, result.stderr


def test_template_location_is_the_documented_one():
    assert (PROJECT_ROOT / "airflow_dags" / "templates" / "dag.py.j2").is_file()
    assert Path(PROJECT_ROOT / "docs" / "airflow.md").read_text().count(" ".join(CREATE_COMMAND)) >= 1

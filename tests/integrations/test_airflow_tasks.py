"""DAG runs through Airflow's own local test run (``dag.test()``): success, failure, retries, isolation."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import DAGS_FOLDER, PROJECT_ROOT, worker_project

pytest.importorskip("airflow", reason="needs the airflow extra: pip install -e '.[test,airflow]'")

from image_recognition.integrations.airflow_tasks import project_path_variable, run_kedro_nodes  # noqa: E402

pytestmark = pytest.mark.slow

# Demo data, one epoch: the DAG's path through every task, in well under a minute.
ONE_EPOCH = {"vit": {"training": {"epochs": 1, "checkpoint_every": 1}}}


def fresh_dag(dag_id: str):
    """The DAG parsed anew, so a test may change its tasks without touching other tests' copy."""
    from airflow.dag_processing.dagbag import DagBag  # noqa: PLC0415

    bag = DagBag(dag_folder=str(DAGS_FOLDER / "image_recognition_train_vit_dag.py"))
    assert bag.import_errors == {}
    return bag.get_dag(dag_id)


def versions(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir()) if folder.is_dir() else []


@pytest.fixture(scope="module")
def train_vit_run(tmp_path_factory, airflow_db):
    """One successful run of the train_vit DAG on the demo data, in a project folder of its own."""
    project = worker_project(tmp_path_factory.mktemp("airflow-run") / "project")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(project_path_variable("image_recognition"), str(project))
        dag_run = fresh_dag("image_recognition.train_vit").test(
            run_conf={"kedro_env": "demo", "kedro_params": ONE_EPOCH}
        )
    return project, dag_run


def test_train_vit_dag_runs_on_the_demo_data(train_vit_run):
    project, dag_run = train_vit_run
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert dag_run.state == "success", states
    assert set(states.values()) == {"success"}

    data = project / "data" / "demo"
    checkpoint_versions = versions(data / "06_models" / "vit" / "checkpoint.pt")
    history_versions = versions(data / "07_model_output" / "vit" / "training_history.csv")
    assert len(checkpoint_versions) == 1
    assert history_versions == checkpoint_versions  # one task, one Kedro session, one save version
    version = checkpoint_versions[0]
    assert (data / "06_models" / "vit" / "checkpoint.pt" / version / "checkpoint.pt").stat().st_size > 0
    history = pd.read_csv(data / "07_model_output" / "vit" / "training_history.csv" / version / "training_history.csv")
    assert len(history) == 1  # the one epoch asked for through the DAG param
    assert not list(PROJECT_ROOT.joinpath("data", "demo").rglob("checkpoint.pt/" + version))


def test_a_task_loads_the_versions_of_its_own_dag_run(train_vit_run, monkeypatch):
    """A newer version written meanwhile (another run) is not read: inputs are pinned by XCom.

    Runs the normalisation task directly, as Airflow would, with the XCom of
    the data task of the finished run; a decoy newer ``dataset_train`` that is
    not even a valid file would break the task were it loaded.
    """
    import airflow.sdk  # noqa: PLC0415

    project, _ = train_vit_run
    splits = project / "data" / "demo" / "05_model_input" / "dataset_train.npz"
    (run_version,) = versions(splits)
    decoy = splits / "9999-01-01T00.00.00.000Z" / "dataset_train.npz"
    decoy.parent.mkdir()
    decoy.write_bytes(b"not an npz: written by some other run")

    class TaskInstance:
        def __init__(self, pushed):
            self.task = type("Task", (), {"upstream_task_ids": set(pushed)})()
            self._pushed = pushed

        def xcom_pull(self, task_ids, key):
            assert key == "return_value"
            return [self._pushed[task_id] for task_id in task_ids]

    def context(pushed):
        return {"params": {"kedro_env": "demo"}, "ti": TaskInstance(pushed)}

    monkeypatch.setenv(project_path_variable("image_recognition"), str(project))
    pushed = {"decode-dataset-to-build-data-report": {"dataset_train": run_version, "dataset_test": run_version}}
    monkeypatch.setattr(airflow.sdk, "get_current_context", lambda: context(pushed))
    saved = run_kedro_nodes("image_recognition", "train_vit", ["compute_normalization_node"])
    assert list(saved) == ["normalization_stats"]

    # Control: without the pin the decoy, as the latest version, is what Kedro loads.
    monkeypatch.setattr(airflow.sdk, "get_current_context", lambda: context({}))
    with pytest.raises(Exception, match="dataset_train"):
        run_kedro_nodes("image_recognition", "train_vit", ["compute_normalization_node"])
    shutil.rmtree(decoy.parent)


def test_a_node_that_raises_fails_its_task_and_the_run_after_the_configured_retries(
    airflow_db, tmp_path, monkeypatch, capfd
):
    project = worker_project(tmp_path / "project")
    monkeypatch.setenv(project_path_variable("image_recognition"), str(project))
    dag = fresh_dag("image_recognition.train_vit")
    for task in dag.tasks:  # one retry, at once: the configured delay is minutes
        assert task.retries >= 1
        task.retries, task.retry_delay = 1, timedelta(0)
    missing = tmp_path / "no-such-archive.tar.gz"
    bad_source = {"dataset": {"source": {"url": missing.as_uri(), "md5": "0" * 32}}}

    dag_run = dag.test(run_conf={"kedro_env": "demo", "kedro_params": bad_source})

    tis = {ti.task_id: ti for ti in dag_run.get_task_instances()}
    assert dag_run.state == "failed"
    assert tis["fetch-dataset-node"].state == "failed"
    assert tis["fetch-dataset-node"].try_number == 2  # the first try and one retry
    assert tis["vit-train-model-node"].state == "upstream_failed"
    log = capfd.readouterr()
    output = log.out + log.err
    assert "fetch_dataset_node" in output
    assert str(missing) in output  # the node's own error message, in the task's log
    assert not (project / "data" / "demo" / "05_model_input").exists()

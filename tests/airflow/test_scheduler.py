"""A real Airflow deployment on 127.0.0.1: API server, scheduler and DAG processor, LocalExecutor.

``dag.test()`` (``test_run.py``) runs every task in the test's own process.
Here the scheduler hands each task to the LocalExecutor, whose worker runs it
through the Task SDK in a process of its own, reporting to the API server; the
tasks hand data to each other only through the catalog, on a local S3 server
(moto), and the dataset versions in their XComs. SQLite is the metadata
database: Airflow 3.3 runs the LocalExecutor on it (``airflow standalone`` does).
Experiment tracking is on, so each task process is also an MLflow run of its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
from kedro.io import Version

from tests.helpers import (
    DAGS_FOLDER,
    SCRATCH_FILE,
    TRACKED,
    Project,
    free_port,
    no_aws_files,
    s3_environment,
    s3_filesystem,
    s3_server,
    versioned_objects,
    worker_project,
)

pytest.importorskip("airflow", reason="needs the airflow extra: pip install -e '.[test,airflow]'")
pytest.importorskip("s3fs", reason="the s3 extra (s3fs) is not installed")
pytest.importorskip("moto.moto_server.threaded_moto_server", reason="moto[server] is not installed")

from image_recognition.integrations.airflow_tasks import project_path_variable  # noqa: E402

pytestmark = pytest.mark.slow

DAG_ID = "image_recognition.train_vit"
RUN_ID = "scheduler-test"
BUCKET = "image-recognition-airflow"
DATA_ROOT = f"s3://{BUCKET}/train-vit"
COMPONENTS = ("api-server", "scheduler", "dag-processor")
STARTUP_S = 180  # components up and the DAG parsed
RUN_S = 420  # the DAG run, its four tasks one after another
TERMINAL = {"success", "failed"}


@dataclass
class Deployment:
    home: Path
    project: Path
    env: dict[str, str]
    endpoint: str
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def airflow(self, *args: str) -> subprocess.CompletedProcess:
        """An ``airflow`` CLI command against this deployment."""
        command = [sys.executable, "-m", "airflow", *args]
        result = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=180, check=False)
        assert result.returncode == 0, (command, result.stdout[-3000:], result.stderr[-3000:])
        return result

    def query(self, sql: str, *args: object) -> list[tuple]:
        """Rows of ``sql`` on the metadata database, read as any client would (retried while locked)."""
        for _ in range(49):
            with contextlib.suppress(sqlite3.OperationalError):  # the scheduler holds the write lock
                return self._read(sql, args)
            time.sleep(0.2)
        return self._read(sql, args)

    def _read(self, sql: str, args: tuple) -> list[tuple]:
        with contextlib.closing(sqlite3.connect(self.home / "airflow.db", timeout=10)) as connection:
            return connection.execute(sql, args).fetchall()

    def logs(self) -> str:
        """The tails of the components' and the tasks' logs, for a failure message."""
        tails = []
        for path in sorted(self.home.rglob("*.log")):
            tails.append(f"--- {path.relative_to(self.home)}\n{path.read_text(errors='replace')[-2500:]}")
        return "\n".join(tails)


def wait_until(condition, timeout: float, what: str, deployment: Deployment) -> None:
    """Poll ``condition`` every second; fail with the logs on timeout or when a component has exited."""
    deadline = time.monotonic() + timeout
    while not condition():
        for name, process in deployment.processes.items():
            assert process.poll() is None, f"airflow {name} exited ({process.returncode})\n{deployment.logs()}"
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s\n{deployment.logs()}"
        time.sleep(1)


def api_healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=5) as response:
            return response.status == 200  # noqa: PLR2004
    except OSError:
        return False


@pytest.fixture(scope="module")
def deployment(tmp_path_factory) -> Iterator[Deployment]:
    """Airflow's three components on 127.0.0.1, the train_vit DAG in their DAG folder, the data on S3."""
    home = tmp_path_factory.mktemp("airflow-deployment")
    dags = home / "dags"
    dags.mkdir()
    shutil.copy(DAGS_FOLDER / "image_recognition_train_vit_dag.py", dags)
    project = worker_project(home / "project")
    port = free_port()
    with s3_server(BUCKET) as endpoint:
        env = {
            **{name: value for name, value in os.environ.items() if not name.startswith("AWS_")},
            **no_aws_files(home),
            **s3_environment(endpoint),
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "2",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),  # the same in every component
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            project_path_variable("image_recognition"): str(project),
            **TRACKED,  # each task an MLflow run, in the worker project's store
        }
        deployment = Deployment(home, project, env, endpoint)
        deployment.airflow("db", "migrate")
        deployment.airflow("pools", "set", "gpu", "1", "one slot per GPU")  # as the README says (Deploy, step 5)
        with contextlib.ExitStack() as logs:
            try:
                for component in COMPONENTS:
                    log = logs.enter_context((home / f"{component}.log").open("w"))
                    # The scheduler's log server would listen on 0.0.0.0:8793; task logs are local files here.
                    extra = ["--skip-serve-logs"] if component == "scheduler" else []
                    deployment.processes[component] = subprocess.Popen(
                        [sys.executable, "-m", "airflow", component, *extra],
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,  # its own process group
                    )
                wait_until(lambda: api_healthy(port), STARTUP_S, "the API server answering", deployment)
                wait_until(
                    lambda: deployment.query("SELECT 1 FROM serialized_dag WHERE dag_id = ?", DAG_ID),
                    STARTUP_S,
                    f"{DAG_ID} parsed by the DAG processor",
                    deployment,
                )
                yield deployment
            finally:
                stop(list(deployment.processes.values()))


def stop(processes: list[subprocess.Popen]) -> None:
    """Stop the components and everything they started, task processes included (they get groups of their own)."""
    family = []
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            family += psutil.Process(process.pid).children(recursive=True)
    for process in processes:
        with_group(process, signal.SIGTERM)
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=30)
    for process in processes:
        with_group(process, signal.SIGKILL)
    for child in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    for process in processes:
        process.wait(timeout=30)


def with_group(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="module")
def dag_run(deployment) -> dict[str, tuple[str, int | None, str | None]]:
    """Trigger train_vit on the demo data with the catalog on S3; wait for it; ``{task: (state, pid, host)}``."""
    conf = {
        "kedro_env": "demo",
        "kedro_params": {"data_root": DATA_ROOT, "vit": {"training": {"epochs": 1}}},
    }
    deployment.airflow("dags", "trigger", DAG_ID, "--run-id", RUN_ID, "--conf", json.dumps(conf))

    def finished() -> bool:
        states = deployment.query("SELECT state FROM task_instance WHERE dag_id = ? AND run_id = ?", DAG_ID, RUN_ID)
        # A task waiting for a retry (minutes away) has failed once: no point waiting.
        assert ("up_for_retry",) not in states, f"a task failed\n{deployment.logs()}"
        (run_state,) = deployment.query("SELECT state FROM dag_run WHERE dag_id = ? AND run_id = ?", DAG_ID, RUN_ID)
        return run_state[0] in TERMINAL

    wait_until(finished, RUN_S, f"the DAG run {RUN_ID} finished", deployment)
    (state,) = deployment.query("SELECT state FROM dag_run WHERE dag_id = ? AND run_id = ?", DAG_ID, RUN_ID)
    assert state == ("success",), deployment.logs()
    rows = deployment.query(
        "SELECT task_id, state, pid, hostname FROM task_instance WHERE dag_id = ? AND run_id = ?", DAG_ID, RUN_ID
    )
    return {task_id: (state, pid, host) for task_id, state, pid, host in rows}


def xcom_versions(deployment: Deployment) -> dict[str, dict[str, str]]:
    """``{task: {dataset: version}}``: what each task returned, as stored in the metadata database."""
    rows = deployment.query(
        "SELECT task_id, value FROM xcom WHERE dag_id = ? AND run_id = ? AND key = 'return_value'", DAG_ID, RUN_ID
    )
    pushed = {}
    for task_id, value in rows:
        decoded = json.loads(value)
        pushed[task_id] = json.loads(decoded) if isinstance(decoded, str) else decoded
    return pushed


def demo_catalog(project: Path):
    """The demo environment's catalog with ``data_root`` on the bucket, as the tasks built it."""
    from kedro.framework.session import KedroSession  # noqa: PLC0415
    from kedro.framework.startup import bootstrap_project  # noqa: PLC0415

    bootstrap_project(project)
    with KedroSession.create(project_path=project, env="demo", runtime_params={"data_root": DATA_ROOT}) as session:
        return session.load_context().catalog


def test_the_scheduler_runs_each_task_in_a_process_of_its_own(deployment, dag_run):
    assert set(dag_run) == {
        "fetch-dataset-node",
        "decode-dataset-to-build-data-report",
        "compute-normalization-node",
        "vit-train-model-node",
    }
    assert {state for state, _, _ in dag_run.values()} == {"success"}
    pids = [pid for _, pid, _ in dag_run.values()]
    assert all(pids) and len(set(pids)) == len(pids), dag_run  # one process per task
    components = {process.pid for process in deployment.processes.values()}
    assert not set(pids) & {os.getpid(), *components}  # none of them the test or a component
    assert all(host for _, _, host in dag_run.values())


def test_the_tasks_hand_over_data_through_the_bucket_at_the_versions_in_their_xcoms(
    deployment, dag_run, monkeypatch, no_aws_environment
):
    pushed = xcom_versions(deployment)
    assert set(pushed) == set(dag_run)
    # One Kedro session per task, so one save version each, and a different one per task.
    task_versions = {task: set(saved.values()) for task, saved in pushed.items() if saved}
    assert all(len(versions) == 1 for versions in task_versions.values()), pushed
    assert len({next(iter(v)) for v in task_versions.values()}) == len(task_versions), pushed
    assert {"vit.checkpoint", "vit.training_history", "dataset_train", "normalization_stats"} <= {
        name for saved in pushed.values() for name in saved
    }

    # Every versioned object in the bucket is one a task reported, and every reported one is there.
    store = s3_filesystem(deployment.endpoint)
    prefix = DATA_ROOT.removeprefix("s3://")
    stored = versioned_objects([key.removeprefix(prefix + "/") for key in store.find(prefix)])
    assert all(len(versions) == 1 for versions in stored.values()), stored
    reported = {version for saved in pushed.values() for version in saved.values()}
    assert {versions[0] for versions in stored.values()} == reported
    assert sum(len(saved) for saved in pushed.values()) == len(stored), (pushed, stored)
    # Each dataset at the version its task reported, found where the project's catalog puts it.
    for name, value in s3_environment(deployment.endpoint).items():
        monkeypatch.setenv(name, value)
    catalog = demo_catalog(deployment.project)
    for saved in pushed.values():
        for name, version in saved.items():
            assert catalog.get(name, version=Version(version, None)).exists(), (name, version, stored)

    # Nothing but the training's scratch file was written to the worker's local data/.
    local = Project(deployment.project).data_files()
    assert local and all(SCRATCH_FILE.fullmatch(path) for path in local), local


def test_each_task_is_an_mlflow_run_tagged_with_the_dag_run(deployment, dag_run):
    mlflow = pytest.importorskip("mlflow", reason="needs the mlflow extra: pip install -e '.[test]'")
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{deployment.project / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("image_recognition").experiment_id])
    assert {run.data.tags["airflow.dag_run_id"] for run in runs} == {RUN_ID}
    assert {run.data.tags["airflow.dag_id"] for run in runs} == {DAG_ID}
    # One MLflow run per task, each closed by its own process.
    assert sorted(run.data.tags["airflow.task_id"] for run in runs) == sorted(dag_run)
    assert {run.info.status for run in runs} == {"FINISHED"}
    (trained,) = [run for run in runs if "version.vit.checkpoint" in run.data.tags]
    assert trained.data.tags["airflow.task_id"] == "vit-train-model-node"
    assert len(client.get_metric_history(trained.info.run_id, "vit.train_loss")) == 1  # one epoch

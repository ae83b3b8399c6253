"""Experiment tracking with kedro-mlflow: compare runs over time in MLflow.

With the optional ``mlflow`` extra installed, kedro-mlflow's own hook opens one
MLflow run per Kedro run (a ``kedro run``, or one Airflow task) in the store
``conf/base/mlflow.yml`` names, and logs every parameter the run's nodes take,
flattened (``vit.training.lr``). :class:`MlflowTrackingHook` adds what a run
needs to be compared with others and traced back to the catalog:

- a run name of the pipelines and models (``train_vit: vit``);
- tags: the git commit (``+dirty`` with local changes), the Kedro environment,
  the Airflow DAG, run and task ids when a DAG runs it, the catalog version of
  every versioned output (``version.vit.checkpoint``) and of the checkpoint
  each evaluation loaded (``evaluated_version.vit.checkpoint``);
- parameters: the data's md5 and validation size;
- metrics: each training history as series with step = epoch
  (``vit.val_accuracy``), and each evaluation's test metrics
  (``vit.test.accuracy``, ``vit.test.cost.flops_per_image``);
- artefacts: the HTML report, the figures (plotly JSON) and the comparison
  CSV; checkpoints only with the parameter ``tracking.log_checkpoints``.

kedro-mlflow also logs the run's ``--params`` (the tag ``runtime_params``) and
every parameter a node takes. :class:`RedactUrlsHook` removes the credentials
of every URL in them first (``redact.py``): MLflow parameters cannot be changed
once logged.

Nodes know nothing of MLflow: everything here reads what the catalog saved.
Without the extra nothing of MLflow is imported and nothing is logged. With it,
``IMAGE_RECOGNITION_TRACKING=off`` keeps both hooks out, so nothing is logged
or written, though Kedro's plugin discovery still imports kedro-mlflow
(:func:`tracking_enabled`).
"""

from __future__ import annotations

import importlib.util
import logging
import math
import numbers
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.io import AbstractVersionedDataset
from kedro.io.core import get_filepath_str
from omegaconf import OmegaConf

from image_recognition.common.redact import redact_urls

logger = logging.getLogger(__name__)

TRACKING_VARIABLE = "IMAGE_RECOGNITION_TRACKING"
# Where the default store lives, in the project folder (ignored by git).
LOCAL_STORE = "mlflow.db"
LOCAL_ARTIFACTS = "mlartifacts"
# Tag names of the Airflow context variables, which Airflow sets for a task.
AIRFLOW_TAGS = {
    "AIRFLOW_CTX_DAG_ID": "airflow.dag_id",
    "AIRFLOW_CTX_DAG_RUN_ID": "airflow.dag_run_id",
    "AIRFLOW_CTX_TASK_ID": "airflow.task_id",
}
# Outputs logged as artefacts, by name: (artefact folder, or None for the top).
REPORT_ARTIFACTS = {"comparison_report": None, "model_comparison": None}
FIGURE_SUFFIX = "_figure"
HISTORY_SUFFIX = ".training_history"
METRICS_SUFFIX = ".metrics"
CHECKPOINT_SUFFIX = ".checkpoint"


def tracking_enabled() -> bool:
    """Whether runs are tracked: kedro-mlflow installed, and tracking not turned off.

    Asks the import system whether kedro-mlflow could be imported, without
    importing it (nor MLflow).
    """
    if os.environ.get(TRACKING_VARIABLE, "on").strip().lower() in {"off", "0", "false", "no"}:
        logger.debug("runs are not tracked: %s=off", TRACKING_VARIABLE)
        return False
    if importlib.util.find_spec("kedro_mlflow") is None:
        logger.debug("runs are not tracked: kedro-mlflow is not installed (pip install 'image_recognition[mlflow]')")
        return False
    return True


# The user's MLFLOW_TRACKING_URI, read before MLflow (whose set_tracking_uri
# writes that variable) runs in this process.
USER_TRACKING_URI = os.environ.get("MLFLOW_TRACKING_URI") or None


def mlflow_store(project_path: Path, what: str, remote: str | None = None) -> str | None:
    """``what`` ("tracking_uri" or "artifact_location") of the MLflow store for ``project_path``.

    A ``remote`` store (the user's ``MLFLOW_TRACKING_URI``) moves both: the runs
    go there, and the artefacts wherever it keeps them (None leaves the
    location to it). Otherwise: a SQLite database and an artefact folder in the
    project folder.
    """
    if what == "tracking_uri":
        return remote or f"sqlite:///{(project_path / LOCAL_STORE).as_posix()}"
    if what == "artifact_location":
        return None if remote else (project_path / LOCAL_ARTIFACTS).as_uri()
    raise ValueError(f"mlflow_store: unknown key {what!r}; use tracking_uri or artifact_location")


def git_version(cwd: Path) -> str | None:
    """The commit checked out in ``cwd``, with ``+dirty`` if tracked files changed; None outside git."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True).stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
        dirty = bool(git("status", "--porcelain", "--untracked-files=no").strip())
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}+dirty" if dirty else commit


def flat_numbers(record: Mapping[str, Any], prefix: str) -> dict[str, float]:
    """The finite numbers of a nested record, keyed by their dotted path under ``prefix``."""
    found: dict[str, float] = {}
    for key, value in record.items():
        name = f"{prefix}.{key}"
        if isinstance(value, Mapping):
            found.update(flat_numbers(value, name))
        elif isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value):
            found[name] = float(value)
    return found


def history_series(history: Any, model: str) -> Iterator[tuple[str, float, int]]:
    """(metric, value, epoch) for every finite number of a training history table."""
    for row in history.to_dict("records"):
        epoch = int(row["epoch"])
        for column, value in row.items():
            if column != "epoch" and isinstance(value, numbers.Real) and math.isfinite(value):
                yield f"{model}.{column}", float(value), epoch


class RedactUrlsHook:
    """The credentials of every URL out of what kedro-mlflow logs: the run's parameters and tags.

    kedro-mlflow logs each parameter a node takes (``params:dataset`` as
    ``dataset.source.url``) and sets a tag of every run parameter
    (``runtime_params``: the ``--params`` of the run, or an Airflow DAG run's
    ``kedro_params``). These implementations run first (``tryfirst``; kedro-mlflow's
    do not) and put a redacted copy in place in the dicts every hook shares:
    the ``run_params`` of the hooks, and Kedro's copy of a node's inputs (the
    node itself still gets the URL as given, to download from). An Airflow DAG
    run's own configuration (its params, in Airflow's database and UI) keeps
    whatever its trigger passed: that is Airflow's, out of the project's reach.
    """

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params: dict[str, Any]) -> None:
        if "runtime_params" in run_params:
            run_params["runtime_params"] = redact_urls(run_params["runtime_params"])

    @hook_impl(tryfirst=True)
    def before_node_run(self, inputs: dict[str, Any]) -> None:
        for name in list(inputs):
            if name.startswith("params:") or name == "parameters":
                inputs[name] = redact_urls(inputs[name])


class MlflowTrackingHook:
    """Tags, metrics and artefacts of a Kedro run, in the MLflow run kedro-mlflow opened.

    Registered (``settings.py``) only when :func:`tracking_enabled`. kedro-mlflow's
    hook, a plugin, runs before the project's at each hook point, so the MLflow
    run is open when :meth:`before_pipeline_run` gets here; only
    :meth:`after_context_created` must run first, to give kedro-mlflow's
    configuration the project folder.
    """

    def __init__(self) -> None:
        self._run_id: str | None = None  # None: no MLflow run to log into
        self._client: Any = None
        self._catalog: Any = None
        self._data_logged = False
        self._log_checkpoints = False
        self._environment = "unknown"

    @hook_impl(tryfirst=True)
    def after_context_created(self, context: Any) -> None:
        project_path = Path(context.project_path).resolve()
        loader = context.config_loader  # the layers it merges, e.g. base+cpu+local (config_loader.py)
        layers = [loader.base_env, getattr(loader, "hardware_env", None), loader.env or loader.default_run_env]
        self._environment = "+".join(dict.fromkeys(filter(None, layers)))
        OmegaConf.register_new_resolver(
            "mlflow_store",
            lambda what: mlflow_store(project_path, what, USER_TRACKING_URI),
            replace=True,
            use_cache=False,
        )

    @hook_impl
    def after_catalog_created(self, catalog: Any, parameters: dict[str, Any]) -> None:
        from image_recognition.common.params import boolean, reject_unknown_keys  # noqa: PLC0415

        self._catalog = catalog
        settings = parameters.get("params:tracking") or {}
        reject_unknown_keys("tracking", settings, {"log_checkpoints"})
        self._log_checkpoints = boolean("tracking.log_checkpoints", settings.get("log_checkpoints", False))

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any) -> None:
        import mlflow  # noqa: PLC0415 (the optional extra, imported only when tracking)
        from mlflow.tracking import MlflowClient  # noqa: PLC0415

        from image_recognition.models import MODEL_NAMES  # noqa: PLC0415

        run = mlflow.active_run()
        self._run_id = run.info.run_id if run else None  # None: tracking disabled for this pipeline
        if self._run_id is None:
            return
        self._client, self._data_logged = MlflowClient(), False
        models = sorted({node.namespace for node in pipeline.nodes} & set(MODEL_NAMES))
        pipelines = "+".join(sorted(run_params.get("pipeline_names") or ["__default__"]))  # the CLI's order varies
        tags = {
            "mlflow.runName": f"{pipelines}: {', '.join(models)}" if models else pipelines,
            "kedro_env": self._environment,
            "git_commit": self._code_version(Path(run_params["project_path"])),
            **{tag: os.environ[variable] for variable, tag in AIRFLOW_TAGS.items() if os.environ.get(variable)},
        }
        for key, value in tags.items():
            self._client.set_tag(self._run_id, key, value)

    @hook_impl
    def before_node_run(self, node: Any, inputs: dict[str, Any]) -> None:
        """Log the data's md5 and validation size once, from the data report a node takes."""
        report = inputs.get("data_report")
        if self._run_id is None or self._data_logged or not isinstance(report, Mapping):
            return
        sizes = report.get("sizes") or {}
        self._client.log_param(self._run_id, "data.md5", report["source"]["md5"])
        self._client.log_param(self._run_id, "data.validation_size", sizes.get("validation", 0))
        self._data_logged = True

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any) -> None:
        if self._run_id is None:
            return
        dataset = self._catalog.get(dataset_name) if dataset_name in self._catalog else None
        if not isinstance(dataset, AbstractVersionedDataset):
            return
        self._client.set_tag(self._run_id, f"version.{dataset_name}", dataset.resolve_save_version())
        if dataset_name.endswith(HISTORY_SUFFIX):
            self._log_history(dataset_name.removesuffix(HISTORY_SUFFIX), data)
        elif dataset_name.endswith(METRICS_SUFFIX) and isinstance(data, Mapping):
            self._log_test_metrics(dataset_name.removesuffix(METRICS_SUFFIX), data)
        elif dataset_name in REPORT_ARTIFACTS:
            self._log_artifact(dataset, REPORT_ARTIFACTS[dataset_name])
        elif dataset_name.endswith(FIGURE_SUFFIX):
            self._log_artifact(dataset, "figures")
        elif dataset_name.endswith(CHECKPOINT_SUFFIX) and self._log_checkpoints:
            self._log_artifact(dataset, f"checkpoints/{dataset_name.removesuffix(CHECKPOINT_SUFFIX)}")

    def _log_history(self, model: str, history: Any) -> None:
        from mlflow.entities import Metric  # noqa: PLC0415 (the optional extra)

        now = int(time.time() * 1000)
        metrics = [Metric(key, value, now, step) for key, value, step in history_series(history, model)]
        for start in range(0, len(metrics), 1000):  # MLflow's limit per batch
            self._client.log_batch(self._run_id, metrics=metrics[start : start + 1000])

    def _log_test_metrics(self, model: str, record: Mapping[str, Any]) -> None:
        from mlflow.entities import Metric  # noqa: PLC0415 (the optional extra)

        now = int(time.time() * 1000)
        values = {
            **flat_numbers(record.get("quality") or {}, f"{model}.test"),
            **flat_numbers(record.get("cost") or {}, f"{model}.test.cost"),
        }
        self._client.log_batch(self._run_id, metrics=[Metric(key, value, now, 0) for key, value in values.items()])
        evaluated = (record.get("provenance") or {}).get("checkpoint_version")
        if evaluated:
            self._client.set_tag(self._run_id, f"evaluated_version.{model}.checkpoint", evaluated)

    def _log_artifact(self, dataset: AbstractVersionedDataset, folder: str | None) -> None:
        """Copy the file ``dataset`` just saved into the run's artefacts (via a temporary copy if not local)."""
        saved = dataset._get_versioned_path(dataset.resolve_save_version())
        path = get_filepath_str(saved, getattr(dataset, "_protocol", "file"))
        if getattr(dataset, "_protocol", "file") == "file":
            self._client.log_artifact(self._run_id, path, folder)
            return
        with tempfile.TemporaryDirectory() as scratch:
            local = Path(scratch) / Path(path).name
            dataset._fs.get(path, str(local))
            self._client.log_artifact(self._run_id, str(local), folder)

    @staticmethod
    def _code_version(project_path: Path) -> str:
        """The commit of the project folder, else of the installed package's source (an editable install)."""
        return git_version(project_path) or git_version(Path(__file__).resolve().parent) or "unknown"

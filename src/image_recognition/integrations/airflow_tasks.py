"""Run Kedro nodes as Airflow tasks: the runtime of the DAGs in ``airflow_dags/``.

The generated DAG files hold only the task graph; each task calls
:func:`run_kedro_nodes` with its node names. Imported inside the task, never at
DAG parse time, so parsing a DAG needs Airflow alone (no Kedro, no torch).

Run isolation: a task runs its nodes in one Kedro session, whose save version
stamps every versioned output it writes, and returns ``{dataset: version}`` as
its XCom. A downstream task loads each dataset an upstream task of the *same*
DAG run produced at exactly that version (``load_versions``), never "latest".
So concurrent runs, of one DAG or several, never read each other's outputs,
and a cleared and rerun task is picked up by the tasks after it. Datasets the
DAG does not produce (e.g. a checkpoint from an earlier run) load as latest.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def project_path_variable(package_name: str) -> str:
    """The environment variable that points a worker at the project folder."""
    return f"{package_name.upper()}_PROJECT_PATH"


def find_project_path(package_name: str, dag_file: str | Path | None = None) -> Path:
    """The Kedro project folder: ``<PACKAGE>_PROJECT_PATH``, else the folder above the DAG file.

    The project folder holds ``pyproject.toml``, ``conf/`` and ``data/``; the
    catalog's relative paths resolve from it.
    """
    from kedro.utils import is_kedro_project  # noqa: PLC0415 - see module docstring

    variable = project_path_variable(package_name)
    candidates = [Path(os.environ[variable])] if os.environ.get(variable) else []
    if dag_file is not None:
        candidates.append(Path(dag_file).resolve().parent.parent)
    for candidate in candidates:
        if is_kedro_project(candidate):
            return candidate.resolve()
    raise RuntimeError(
        f"cannot find the Kedro project folder of {package_name}: tried {[str(c) for c in candidates]}; "
        f"set {variable} to the folder holding pyproject.toml, conf/ and data/ on every worker"
    )


@contextlib.contextmanager
def working_directory(path: Path) -> Iterator[None]:
    """Run in ``path`` (the catalog's relative file paths resolve from there), then go back."""
    previous = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def upstream_versions(context: Mapping[str, Any]) -> dict[str, str]:
    """``{dataset: version}`` saved in this DAG run by the direct upstream tasks of the running task.

    A Kedro dataset produced inside the DAG always comes from a direct upstream
    task: the task dependencies are the dataset edges between the groups.
    """
    ti = context["ti"]
    upstream = sorted(ti.task.upstream_task_ids)
    if not upstream:
        return {}
    pulled = ti.xcom_pull(task_ids=upstream, key="return_value")
    versions: dict[str, str] = {}
    for saved in pulled or []:
        versions.update(saved or {})
    return versions


def run_kedro_nodes(
    package_name: str,
    pipeline_name: str,
    node_names: Iterable[str],
    *,
    dag_file: str | Path | None = None,
    conf_source: str | None = None,
) -> dict[str, str]:
    """Run ``node_names`` of ``pipeline_name`` in one Kedro session; return the versions it saved.

    Inputs that an upstream task of this DAG run saved load at that version.
    A node's exception propagates, so Airflow marks the task failed (and
    retries it as configured) with the node's traceback in the task log.
    """
    from airflow.sdk import get_current_context  # noqa: PLC0415 - see module docstring
    from kedro.framework.project import pipelines  # noqa: PLC0415
    from kedro.framework.startup import bootstrap_project  # noqa: PLC0415

    context = get_current_context()
    node_names = list(node_names)
    project_path = find_project_path(package_name, dag_file)
    produced_upstream = upstream_versions(context)
    with working_directory(project_path):
        bootstrap_project(project_path)
        nodes = pipelines[pipeline_name].filter(node_names=node_names)
        load_versions = {name: produced_upstream[name] for name in nodes.inputs() if name in produced_upstream}
        save_version, catalog = _run_in_session(
            project_path, pipeline_name, node_names, load_versions, context.get("params") or {}, conf_source
        )
    return _saved_versions(nodes, catalog, save_version)


def _run_in_session(
    project_path: Path,
    pipeline_name: str,
    node_names: list[str],
    load_versions: dict[str, str],
    dag_params: Mapping[str, Any],
    conf_source: str | None,
) -> tuple[str, Any]:
    """Run the nodes in a new Kedro session; return its save version and its catalog.

    The Kedro environment is the DAG param ``kedro_env``, else ``KEDRO_ENV``,
    else the project's default (``local``); the DAG param ``kedro_params``
    (nested) overrides parameters like ``kedro run --params``.
    """
    from kedro.framework.session import KedroSession  # noqa: PLC0415 - see module docstring

    env = dag_params.get("kedro_env") or None
    runtime_params = dict(dag_params.get("kedro_params") or {})
    with KedroSession.create(
        project_path=project_path, env=env, runtime_params=runtime_params, conf_source=conf_source
    ) as session:
        logger.info(
            "Kedro env %s, project %s, nodes %s, pinned inputs %s",
            session.store.get("env") or "default",
            project_path,
            node_names,
            load_versions or "none",
        )
        session.run(pipeline_names=[pipeline_name], node_names=node_names, load_versions=load_versions)
        return session.store["session_id"], session.load_context().catalog


def _saved_versions(nodes: Any, catalog: Any, save_version: str) -> dict[str, str]:
    """``{dataset: save_version}`` for every versioned dataset among the outputs of ``nodes``."""
    from kedro.io import AbstractVersionedDataset  # noqa: PLC0415 - see module docstring

    return {
        name: save_version
        for name in sorted(nodes.all_outputs())
        if name in catalog and isinstance(catalog.get(name), AbstractVersionedDataset)
    }

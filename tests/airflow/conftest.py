"""Airflow test setup: a throwaway AIRFLOW_HOME with a SQLite database, no server, no examples.

Airflow reads its configuration when first imported, so the environment is set
here, before any test module imports it. Without the ``airflow`` extra the
tests in this folder skip (``pip install -e ".[test,airflow]"`` to run them).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.helpers import DAGS_FOLDER

_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="airflow-home-"))
atexit.register(shutil.rmtree, _AIRFLOW_HOME, ignore_errors=True)
os.environ.update(
    {
        "AIRFLOW_HOME": str(_AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
    }
)


@pytest.fixture(scope="session")
def airflow_db():
    """A fresh Airflow metadata database (SQLite) in the temporary AIRFLOW_HOME."""
    pytest.importorskip("airflow", reason="needs the airflow extra: pip install -e '.[test,airflow]'")
    from airflow.utils import db  # noqa: PLC0415 - after the environment above

    db.initdb()


@pytest.fixture(scope="session")
def dagbag(airflow_db):
    """Every DAG in airflow_dags/, parsed the way the Airflow DAG processor parses it."""
    from airflow.dag_processing.dagbag import DagBag  # noqa: PLC0415

    return DagBag(dag_folder=str(DAGS_FOLDER))

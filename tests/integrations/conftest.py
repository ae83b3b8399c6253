"""The Airflow task runtime's tests need the throwaway Airflow home that tests/airflow/conftest.py sets up before Airflow is imported."""

from tests.airflow.conftest import airflow_db  # noqa: F401 (a fixture, and the environment it needs)

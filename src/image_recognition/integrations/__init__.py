"""Kedro, MLflow and Airflow glue: hooks, the config loader, the session store, tracking and the Airflow task runtime; imported by the settings and pipelines only."""

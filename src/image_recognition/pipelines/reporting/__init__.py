"""Compare the evaluated models: plotly figures, a table and an HTML report."""

from image_recognition.pipelines.reporting.pipeline import create_pipeline

__all__ = ["create_pipeline"]

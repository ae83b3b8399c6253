"""Evaluate a trained model on the test split; reused per model with namespaces."""

from image_recognition.pipelines.evaluation.pipeline import create_evaluation_pipeline, create_pipeline

__all__ = ["create_evaluation_pipeline", "create_pipeline"]

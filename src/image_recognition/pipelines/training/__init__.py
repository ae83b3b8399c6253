"""Train a model, chosen by name in parameters; reused per model with namespaces."""

from image_recognition.pipelines.training.pipeline import create_pipeline, create_training_pipeline

__all__ = ["create_pipeline", "create_training_pipeline"]

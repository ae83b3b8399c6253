"""Predict new images with one model's checkpoint (``predict.model``)."""

from image_recognition.pipelines.predict.pipeline import create_pipeline

__all__ = ["create_pipeline"]

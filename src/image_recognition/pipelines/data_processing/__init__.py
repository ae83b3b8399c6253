"""Fetch, verify, decode, validate and split CIFAR-10."""

from image_recognition.pipelines.data_processing.pipeline import create_pipeline

__all__ = ["create_pipeline"]

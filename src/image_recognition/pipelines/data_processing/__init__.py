"""Fetch, verify, decode, validate and split a data set: CIFAR-10, CIFAR-100 or a folder of labelled images."""

from image_recognition.pipelines.data_processing.pipeline import create_pipeline

__all__ = ["create_pipeline"]

"""Export one model's checkpoint (``export.model``) to ONNX and safetensors."""

from image_recognition.pipelines.export.pipeline import create_pipeline

__all__ = ["create_pipeline"]

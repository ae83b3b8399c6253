"""Nodes of the ``export`` pipeline: check the parameters, write ONNX and safetensors."""

from __future__ import annotations

from typing import Any

from image_recognition.serving.export import ExportConfig, onnx_bytes, safetensors_bytes


def check_export_params(params: dict[str, Any]) -> dict[str, Any]:
    """The ``export`` parameters, checked, with their defaults."""
    return ExportConfig.from_dict(params).to_dict()


def export_model(checkpoint: dict[str, Any], config: dict[str, Any]) -> tuple[bytes, bytes]:
    """The checkpoint as an ONNX graph and as safetensors weights, each naming the checkpoint version."""
    settings = ExportConfig(**config)
    version = checkpoint.get("_catalog_version")
    return onnx_bytes(checkpoint, settings, version), safetensors_bytes(checkpoint, version)

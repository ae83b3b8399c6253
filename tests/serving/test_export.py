"""ONNX and safetensors export: the same logits as PyTorch, traced to the checkpoint that made them."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from safetensors import torch as safetensors_torch

from image_recognition.common.errors import ParameterError
from image_recognition.models import MODEL_NAMES, build_model, validate_model_config
from image_recognition.models.inference import load_model, predict_logits
from image_recognition.serving.export import ExportConfig, onnx_bytes, safetensors_bytes
from image_recognition.training.checkpoint import record_data
from tests.helpers import SMALL_MODELS, fake_checkpoint


def trained_looking_checkpoint(name: str) -> dict:
    """A small checkpoint whose BatchNorm statistics and normalisation are not the defaults."""
    checkpoint = fake_checkpoint(name)
    generator = torch.Generator().manual_seed(1)
    state = {}
    for key, value in checkpoint["model_state"].items():
        if key.endswith("running_mean"):
            state[key] = torch.randn(value.shape, generator=generator) * 0.1
        elif key.endswith("running_var"):
            state[key] = torch.rand(value.shape, generator=generator) + 0.5
        else:
            state[key] = value
    checkpoint["model_state"] = state
    checkpoint["normalization"] = {"mean": [0.49, 0.48, 0.45], "std": [0.25, 0.24, 0.26]}
    return checkpoint


@pytest.fixture(scope="module", params=MODEL_NAMES)
def exported(request):
    checkpoint = trained_looking_checkpoint(request.param)
    return checkpoint, onnx_bytes(checkpoint, ExportConfig(model=request.param), "2026-12-01T00.00.00.000Z")


def test_onnx_runtime_matches_pytorch(exported):
    checkpoint, graph = exported
    images = np.random.default_rng(0).integers(0, 256, (2000, 3, 32, 32), dtype=np.uint8)
    session = onnxruntime.InferenceSession(graph, providers=["CPUExecutionProvider"])
    ours = session.run(None, {"images": images.astype(np.float32) / 255.0})[0]
    model = load_model(checkpoint, "cpu")
    normalization = checkpoint["normalization"]
    reference = predict_logits(model, images, normalization["mean"], normalization["std"], tta="none").numpy()
    assert ours.shape == reference.shape == (2000, 10)
    assert np.abs(ours - reference).max() <= 1e-4
    assert (ours.argmax(1) == reference.argmax(1)).mean() >= 0.999


def test_onnx_graph_has_a_dynamic_batch_opset_and_provenance(exported):
    checkpoint, graph = exported
    proto = onnx.load_from_string(graph)
    assert max(entry.version for entry in proto.opset_import if entry.domain in ("", "ai.onnx")) >= 17
    props = {entry.key: entry.value for entry in proto.metadata_props}
    assert props["checkpoint_version"] == "2026-12-01T00.00.00.000Z"
    assert props["model_name"] == checkpoint["model_name"]
    assert json.loads(props["normalization"]) == checkpoint["normalization"]
    assert props["image_size"] == "32"
    assert [dim.dim_value for dim in proto.graph.input[0].type.tensor_type.shape.dim[1:]] == [3, 32, 32]
    session = onnxruntime.InferenceSession(graph, providers=["CPUExecutionProvider"])
    for batch in (1, 7):
        assert session.run(None, {"images": np.zeros((batch, 3, 32, 32), np.float32)})[0].shape == (batch, 10)


def test_safetensors_hold_the_weights_and_the_version():
    checkpoint = trained_looking_checkpoint("cnn")
    data = safetensors_bytes(checkpoint, "v1")
    weights = safetensors_torch.load(data)
    assert weights.keys() == checkpoint["model_state"].keys()
    assert all(torch.equal(weights[key], value) for key, value in checkpoint["model_state"].items())
    header_size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_size])
    assert header["__metadata__"]["checkpoint_version"] == "v1"
    assert json.loads(header["__metadata__"]["class_names"])[0] == "airplane"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"model": "bert"}, "export.model must be one of"),
        ({"opset": 16}, "export.opset must be an integer >= 17"),
        ({"format": "tflite"}, "unknown parameter.*export.format"),
    ],
)
def test_bad_export_parameters_are_refused(params, message):
    with pytest.raises(ParameterError, match=message):
        ExportConfig.from_dict(params)


@pytest.mark.parametrize("name", ["cnn", "vit"])
def test_a_64_px_100_class_export_takes_64_px_input_and_carries_its_size_and_names(name: str) -> None:
    names = [f"fine_{index:02d}" for index in range(100)]
    config = validate_model_config(name, {**SMALL_MODELS[name], "image_size": 64, "num_classes": 100})
    model = build_model(name, config)
    checkpoint = record_data(
        {**trained_looking_checkpoint(name), "model_config": config, "model_state": model.state_dict()}, names, 64
    )
    proto = onnx.load_from_string(onnx_bytes(checkpoint, ExportConfig(model=name), "v64"))
    props = {entry.key: entry.value for entry in proto.metadata_props}
    assert (props["image_size"], json.loads(props["class_names"])) == ("64", names)
    assert "64x64" in props["input"]
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [dim.dim_value for dim in dims[1:]] == [3, 64, 64]
    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    assert session.run(None, {"images": np.zeros((3, 3, 64, 64), np.float32)})[0].shape == (3, 100)

    data = safetensors_bytes(checkpoint, "v64")
    header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])["__metadata__"]
    assert (header["image_size"], json.loads(header["class_names"])) == ("64", names)


def test_an_older_checkpoint_exports_as_32_px_with_cifar10_names() -> None:
    checkpoint = trained_looking_checkpoint("simple_cnn")
    header_data = safetensors_bytes(checkpoint, "old")
    header = json.loads(header_data[8 : 8 + int.from_bytes(header_data[:8], "little")])["__metadata__"]
    assert header["image_size"] == "32"
    assert json.loads(header["class_names"])[0] == "airplane"

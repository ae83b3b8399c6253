"""The export nodes: the parameters with their defaults, and files that name the checkpoint version they came from."""

from __future__ import annotations

import json

import onnx
import pytest
from safetensors import safe_open

from image_recognition.common.errors import ParameterError
from image_recognition.pipelines.export.nodes import check_export_params, export_model
from tests.helpers import fake_checkpoint

VERSION = "2026-12-01T10.00.00.000Z"


def test_the_parameters_are_checked_and_completed_with_their_defaults():
    assert check_export_params({"model": "vit"}) == {"model": "vit", "opset": 18}
    with pytest.raises(ParameterError, match="export.opset"):
        check_export_params({"model": "vit", "opset": 12})


def test_both_files_name_the_model_and_the_checkpoint_version_the_catalog_loaded(tmp_path):
    checkpoint = {**fake_checkpoint("simple_cnn"), "_catalog_version": VERSION}
    graph, weights = export_model(checkpoint, check_export_params({"model": "simple_cnn"}))
    props = {entry.key: entry.value for entry in onnx.load_from_string(graph).metadata_props}
    assert (props["model_name"], props["checkpoint_version"]) == ("simple_cnn", VERSION)
    (tmp_path / "model.safetensors").write_bytes(weights)
    with safe_open(tmp_path / "model.safetensors", "pt") as file:
        assert file.metadata()["checkpoint_version"] == VERSION
        assert set(file.keys()) == set(checkpoint["model_state"])
    assert json.loads(props["normalization"]) == checkpoint["normalization"]

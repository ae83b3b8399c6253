"""The export pipeline: the parameters checked before the checkpoint is read, then both files from one node."""

from __future__ import annotations

import onnx
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from safetensors import torch as safetensors_torch

from image_recognition.integrations.hooks import RECORDS_INPUT_VERSIONS, VALIDATES_PARAMETERS
from image_recognition.pipelines.export import create_pipeline
from tests.helpers import fake_checkpoint


def test_the_pipeline_validates_first_and_records_the_checkpoint_it_exports():
    pipeline = create_pipeline()
    assert pipeline.inputs() == {"export_checkpoint", "params:export"}
    assert pipeline.outputs() == {"onnx_model", "safetensors_weights"}
    check, export = pipeline.nodes  # in the order they run
    assert (check.name, export.name) == ("check_export_params_node", "export_model_node")
    assert VALIDATES_PARAMETERS in check.tags and RECORDS_INPUT_VERSIONS in export.tags
    assert all("export" in node.tags for node in pipeline.nodes)


def test_a_run_on_a_memory_catalog_writes_both_files():
    checkpoint = fake_checkpoint("simple_cnn")
    catalog = DataCatalog(
        {
            "export_checkpoint": MemoryDataset(checkpoint),
            "params:export": MemoryDataset({"model": "simple_cnn"}),
        }
    )
    outputs = SequentialRunner().run(create_pipeline(), catalog)
    graph = onnx.load_from_string(outputs["onnx_model"].load())
    assert {entry.key: entry.value for entry in graph.metadata_props}["model_name"] == "simple_cnn"
    assert safetensors_torch.load(outputs["safetensors_weights"].load()).keys() == checkpoint["model_state"].keys()

"""The ``export`` pipeline: ``<export.model>.checkpoint`` to ONNX and safetensors.

Its checkpoint input, ``export_checkpoint``, is the model's own checkpoint
dataset under another name (``SelectedCheckpointHook``), so ``--load-versions``
pins it by that name.
"""

from kedro.pipeline import Node, Pipeline

from image_recognition.integrations.hooks import RECORDS_INPUT_VERSIONS, VALIDATES_PARAMETERS
from image_recognition.pipelines.export.nodes import check_export_params, export_model


def create_pipeline() -> Pipeline:
    return Pipeline(
        [
            Node(
                check_export_params,
                "params:export",
                "export_config",
                name="check_export_params_node",
                tags=VALIDATES_PARAMETERS,
            ),
            Node(
                export_model,
                ["export_checkpoint", "export_config"],
                ["onnx_model", "safetensors_weights"],
                name="export_model_node",
                tags=RECORDS_INPUT_VERSIONS,
            ),
        ],
        tags="export",
    )

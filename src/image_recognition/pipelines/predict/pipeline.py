"""The ``predict`` pipeline: a folder of images in, a predictions CSV and an HTML gallery out.

Its checkpoint input, ``predict_checkpoint``, is ``<predict.model>.checkpoint``
under another name (``SelectedCheckpointHook``), so ``--load-versions`` pins it
by the model's own dataset name.
"""

from kedro.pipeline import Node, Pipeline

from image_recognition.integrations.hooks import RECORDS_INPUT_VERSIONS, VALIDATES_PARAMETERS
from image_recognition.pipelines.predict.nodes import check_predict_params, predict_folder


def create_pipeline() -> Pipeline:
    return Pipeline(
        [
            Node(
                check_predict_params,
                "params:predict",
                "predict_config",
                name="check_predict_params_node",
                tags=VALIDATES_PARAMETERS,
            ),
            Node(
                predict_folder,
                ["predict_images", "predict_checkpoint", "predict_config"],
                ["predictions", "prediction_gallery"],
                name="predict_node",
                tags=RECORDS_INPUT_VERSIONS,
            ),
        ],
        tags="predict",
    )

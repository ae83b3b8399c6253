"""One training pipeline; ``train_<model>`` pipelines are namespaced copies of it."""

from kedro.pipeline import Node, Pipeline

from image_recognition.integrations.hooks import RECORDS_INPUT_VERSIONS, VALIDATES_PARAMETERS
from image_recognition.pipelines.training.nodes import check_training_params, train_model

# Shared inputs from data_processing: not namespaced.
DATA_INPUTS = {"dataset_train", "dataset_validation", "normalization_stats", "data_report"}


def create_training_pipeline() -> Pipeline:
    return Pipeline(
        [
            Node(
                check_training_params,
                ["params:model", "params:training", "params:training_budget_s"],
                "training_spec",
                name="check_training_params_node",
                tags=VALIDATES_PARAMETERS,
            ),
            Node(
                train_model,
                [
                    "training_spec",
                    "dataset_train",
                    "dataset_validation",
                    "normalization_stats",
                    "data_report",
                    "params:scratch_dir",
                ],
                ["checkpoint", "training_history"],
                name="train_model_node",
                tags=RECORDS_INPUT_VERSIONS,
            ),
        ]
    )


def create_pipeline(model: str) -> Pipeline:
    """The training pipeline in the namespace of ``model`` (e.g. ``vit``)."""
    return Pipeline(
        create_training_pipeline(),
        namespace=model,
        inputs=DATA_INPUTS,
        parameters={"params:training_budget_s"},  # one budget for every model: not namespaced
        tags=["training", f"train_{model}"],
    )

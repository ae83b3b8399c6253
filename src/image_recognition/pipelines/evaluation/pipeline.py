"""One evaluation pipeline; ``evaluate_<model>`` pipelines are namespaced copies of it."""

from kedro.pipeline import Node, Pipeline

from image_recognition.integrations.hooks import RECORDS_INPUT_VERSIONS
from image_recognition.pipelines.evaluation.nodes import evaluate_model


def create_evaluation_pipeline() -> Pipeline:
    return Pipeline(
        [
            Node(
                evaluate_model,
                ["checkpoint", "dataset_test", "data_report", "params:evaluation"],
                ["metrics", "per_class_metrics", "confusion_matrix", "reliability", "errors"],
                name="evaluate_model_node",
                tags=RECORDS_INPUT_VERSIONS,
            )
        ]
    )


def create_pipeline(model: str) -> Pipeline:
    """The evaluation of ``model``, in that model's namespace (next to its training)."""
    return Pipeline(
        create_evaluation_pipeline(),
        namespace=model,
        inputs={"dataset_test", "data_report"},
        parameters={"params:evaluation"},
        tags=["evaluation", f"evaluate_{model}"],
    )

"""The ``reporting`` pipeline: figures, comparison table and HTML report."""

import warnings
from collections.abc import Iterable

from kedro.pipeline import Node, Pipeline

from image_recognition.pipelines.reporting import nodes
from image_recognition.reporting import figures
from image_recognition.reporting.report import comparison_table

# Per-model catalog entries the report reads, all saved by one evaluation node
# (the metrics record carries the checkpoint's training history).
PART_DATASETS = {
    "metrics": "metrics",
    "per_class": "per_class_metrics",
    "confusion": "confusion_matrix",
    "reliability": "reliability",
    "errors": "errors",
}

# Figure name -> (node function, inputs besides model_results).
FIGURES = {
    "learning_curves": (figures.learning_curves, []),
    "confusion_matrices": (figures.confusion_matrices, []),
    "per_class_f1": (figures.per_class_f1, []),
    "reliability_diagram": (figures.reliability_diagram, []),
    "accuracy_vs_cost": (figures.accuracy_vs_cost, []),
    "error_gallery": (nodes.plot_error_gallery, ["dataset_test"]),
}


def create_pipeline(models: Iterable[str]) -> Pipeline:
    gathered = {f"{model}__{part}": f"{model}.{dataset}" for model in models for part, dataset in PART_DATASETS.items()}
    with warnings.catch_warnings():
        # The report reads each model's namespaced outputs (cnn.metrics, ...) on
        # purpose; Kedro's advice against dotted names does not apply here.
        warnings.filterwarnings("ignore", message="One or more dataset names contain '.'")
        gather = Node(nodes.gather_results, gathered, "model_results", name="gather_results_node")
    return Pipeline(
        [
            gather,
            *(
                Node(func, ["model_results", *extra], f"{name}_figure", name=f"plot_{name}_node")
                for name, (func, extra) in FIGURES.items()
            ),
            Node(comparison_table, "model_results", "model_comparison", name="build_comparison_table_node"),
            Node(
                nodes.render_report,
                {
                    "results": "model_results",
                    "comparison": "model_comparison",
                    "data_report": "data_report",
                    **{name: f"{name}_figure" for name in FIGURES},
                },
                "comparison_report",
                name="render_report_node",
            ),
        ],
        tags="reporting",
    )

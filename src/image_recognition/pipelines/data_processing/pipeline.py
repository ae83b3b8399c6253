"""The ``data_processing`` pipeline: from a source URL to versioned model inputs, whatever the source."""

from kedro.pipeline import Node, Pipeline

from image_recognition.pipelines.data_processing.nodes import (
    build_data_report,
    compute_normalization,
    decode_dataset,
    fetch_dataset,
    split_dataset,
    validate_dataset,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(fetch_dataset, "params:dataset", "dataset_source", name="fetch_dataset_node"),
            Node(decode_dataset, ["dataset_source", "params:dataset"], "dataset_decoded", name="decode_dataset_node"),
            Node(
                validate_dataset,
                ["dataset_decoded", "params:dataset"],
                "dataset_validated",
                name="validate_dataset_node",
            ),
            Node(
                split_dataset,
                ["dataset_validated", "params:dataset"],
                ["dataset_train", "dataset_validation", "dataset_test", "dataset_split_notes"],
                name="split_dataset_node",
            ),
            Node(
                compute_normalization,
                "dataset_train",
                "normalization_stats",
                name="compute_normalization_node",
            ),
            Node(
                build_data_report,
                [
                    "dataset_source",
                    "dataset_validated",
                    "dataset_train",
                    "dataset_validation",
                    "dataset_test",
                    "dataset_split_notes",
                ],
                ["data_report", "data_class_counts"],
                name="build_data_report_node",
            ),
        ],
        tags="data_processing",
    )

"""The ``data_processing`` pipeline: from a source URL to versioned model inputs."""

from kedro.pipeline import Node, Pipeline

from image_recognition.pipelines.data_processing.nodes import (
    build_data_report,
    compute_normalization,
    decode_cifar10,
    fetch_cifar10,
    split_cifar10,
    validate_cifar10,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(fetch_cifar10, "params:cifar10", "cifar10_archive", name="fetch_cifar10_node"),
            Node(decode_cifar10, "cifar10_archive", "cifar10_decoded", name="decode_cifar10_node"),
            Node(
                validate_cifar10,
                ["cifar10_decoded", "params:cifar10"],
                "cifar10_validated",
                name="validate_cifar10_node",
            ),
            Node(
                split_cifar10,
                ["cifar10_validated", "params:cifar10"],
                ["cifar10_train", "cifar10_validation", "cifar10_test"],
                name="split_cifar10_node",
            ),
            Node(
                compute_normalization,
                "cifar10_train",
                "normalization_stats",
                name="compute_normalization_node",
            ),
            Node(
                build_data_report,
                [
                    "cifar10_archive",
                    "cifar10_validated",
                    "cifar10_train",
                    "cifar10_validation",
                    "cifar10_test",
                    "params:cifar10",
                ],
                ["data_report", "data_class_counts"],
                name="build_data_report_node",
            ),
        ],
        tags="data_processing",
    )

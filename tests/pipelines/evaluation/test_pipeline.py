"""The evaluation pipeline: one per model, in the model's namespace, reading the shared test split."""

from __future__ import annotations

from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from image_recognition.pipelines.evaluation import create_pipeline
from tests.helpers import fake_checkpoint

OUTPUTS = ["metrics", "per_class_metrics", "confusion_matrix", "reliability", "errors"]


def test_each_model_is_evaluated_in_its_namespace_on_the_shared_test_split():
    pipeline = create_pipeline("cnn")
    assert pipeline.inputs() == {"cnn.checkpoint", "dataset_test", "data_report", "params:evaluation"}
    assert pipeline.outputs() == {f"cnn.{name}" for name in OUTPUTS}
    assert [node.name for node in pipeline.nodes] == ["cnn.evaluate_model_node"]
    assert {"evaluation", "evaluate_cnn"} <= pipeline.nodes[0].tags


def test_a_run_on_a_memory_catalog_writes_the_models_metrics(evaluation_inputs):
    test, report, params = evaluation_inputs
    catalog = DataCatalog(
        {
            "simple_cnn.checkpoint": MemoryDataset(fake_checkpoint("simple_cnn")),
            "dataset_test": MemoryDataset(test),
            "data_report": MemoryDataset(report),
            "params:evaluation": MemoryDataset(params),
        }
    )
    outputs = SequentialRunner().run(create_pipeline("simple_cnn"), catalog)
    assert set(outputs) == {f"simple_cnn.{name}" for name in OUTPUTS}
    metrics = outputs["simple_cnn.metrics"].load()
    assert metrics["model"] == "simple_cnn" and metrics["quality"]["test_images"] == len(test["labels"])

"""The registered pipelines: one training and one evaluation per model, and what ``__default__`` runs.

That ``train_vit`` holds the data stages and nothing of another model is tested
with the training pipeline (``tests/pipelines/training``).
"""

from __future__ import annotations

from image_recognition.models import MODEL_NAMES
from image_recognition.pipeline_registry import register_pipelines


def _names(pipeline) -> set[str]:
    return {node.name for node in pipeline.nodes}


def test_every_model_has_its_training_and_evaluation_pipelines():
    pipelines = register_pipelines()
    per_model = {f"{stage}_{model}" for model in MODEL_NAMES for stage in ("train", "evaluate")}
    shared = {"data_processing", "evaluation", "reporting", "predict", "export", "__default__"}
    assert set(pipelines) == per_model | shared
    assert _names(pipelines["evaluation"]) == set().union(*(_names(pipelines[f"evaluate_{m}"]) for m in MODEL_NAMES))
    for model in MODEL_NAMES:
        assert _names(pipelines[f"evaluate_{model}"]) == {f"{model}.evaluate_model_node"}


def test_the_default_pipeline_trains_evaluates_and_reports_but_neither_predicts_nor_exports():
    pipelines = register_pipelines()
    default = _names(pipelines["__default__"])
    for name in ["data_processing", "evaluation", "reporting", *(f"train_{m}" for m in MODEL_NAMES)]:
        assert _names(pipelines[name]) <= default, name
    assert not default & (_names(pipelines["predict"]) | _names(pipelines["export"]))
    # Reporting comes after every evaluation: it reads what they write.
    order = [node.name for node in pipelines["__default__"].nodes]
    last_evaluation = max(order.index(f"{m}.evaluate_model_node") for m in MODEL_NAMES)
    assert all(order.index(name) > last_evaluation for name in _names(pipelines["reporting"]))

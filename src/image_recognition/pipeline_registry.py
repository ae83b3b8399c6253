"""Project pipelines.

Each model has a namespace (``simple_cnn``, ``cnn``, ``vit``) holding its
training and evaluation nodes and datasets, so kedro viz collapses them per model.

- ``data_processing``: fetch, verify, decode, validate and split CIFAR-10.
- ``train_<model>``: the data stages plus that model's training, so
  ``kedro run --pipelines=train_vit`` works on a fresh clone with no manual step.
- ``evaluate_<model>`` and ``evaluation`` (all models): test-set metrics and costs.
- ``reporting``: figures, comparison table and HTML report from whatever
  models have been evaluated.
- ``__default__``: all of the above, in that order.
- ``predict``: a folder of new images through ``predict.model``'s checkpoint.
- ``export``: ``export.model``'s checkpoint to ONNX and safetensors (the
  ``export`` extra). Neither is in ``__default__``: both use a trained model.
"""

from kedro.pipeline import Pipeline

from image_recognition.models import MODEL_NAMES
from image_recognition.pipelines import data_processing, evaluation, export, predict, reporting, training


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines."""
    data = data_processing.create_pipeline()
    pipelines: dict[str, Pipeline] = {"data_processing": data}
    for model in MODEL_NAMES:
        pipelines[f"train_{model}"] = data + training.create_pipeline(model)
        pipelines[f"evaluate_{model}"] = evaluation.create_pipeline(model)
    pipelines["evaluation"] = sum((pipelines[f"evaluate_{m}"] for m in MODEL_NAMES), Pipeline([]))
    pipelines["reporting"] = reporting.create_pipeline(MODEL_NAMES)
    pipelines["__default__"] = sum(pipelines.values(), Pipeline([]))
    pipelines["predict"] = predict.create_pipeline()
    pipelines["export"] = export.create_pipeline()
    return pipelines

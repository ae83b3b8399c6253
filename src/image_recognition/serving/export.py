"""Export a checkpoint for serving: an ONNX graph and safetensors weights.

The ONNX graph takes **float32 NCHW images scaled to 0..1** (``uint8 / 255``,
RGB, at the checkpoint's ``image_size``, 32×32 for CIFAR; the batch dimension
is dynamic) and returns logits: the
checkpoint's normalisation is folded into the graph, so a server only decodes,
resizes and divides by 255. Test-time augmentation is not in the graph.

Both formats carry the model name, the checkpoint's catalog version, its
normalisation, image size and class names as metadata (the ONNX graph's
``metadata_props``, the safetensors header's ``__metadata__``), so an exported
file can be traced to the checkpoint that made it and fed without it. The ``export`` extra provides onnx, onnxscript,
onnxruntime and safetensors.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from image_recognition.common.errors import InputError
from image_recognition.common.params import config_from_dict, integer
from image_recognition.models import check_model_name
from image_recognition.models.inference import load_model
from image_recognition.serving.prediction import class_names
from image_recognition.training.checkpoint import checkpoint_class_names, checkpoint_image_size

MIN_OPSET = 17
INPUT_NAME, OUTPUT_NAME = "images", "logits"


@dataclass(frozen=True)
class ExportConfig:
    """What the ``export`` pipeline writes (``export`` in parameters_export.yml)."""

    model: str = "cnn"  # simple_cnn, cnn or vit: whose latest (or pinned) checkpoint is exported
    opset: int = 18  # ONNX opset, at least 17

    @classmethod
    def from_dict(cls, params: dict[str, Any] | None) -> ExportConfig:
        return config_from_dict(cls, params, "export")

    def __post_init__(self) -> None:
        check_model_name(self.model, "export.model")
        integer("export.opset", self.opset, minimum=MIN_OPSET)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class UnitRangeModel(nn.Module):
    """``model`` with its normalisation in front: takes float images in 0..1, returns logits."""

    def __init__(self, model: nn.Module, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model((images - self.mean) / self.std)


def servable_model(checkpoint: dict[str, Any]) -> UnitRangeModel:
    """The checkpoint's model (EMA weights when it has them) in fp32 on the CPU, taking 0..1 images."""
    normalization = checkpoint["normalization"]
    model = load_model(checkpoint, "cpu").float()
    return UnitRangeModel(model, normalization["mean"], normalization["std"]).eval()


def metadata(checkpoint: dict[str, Any], version: str | None, num_classes: int) -> dict[str, str]:
    """String metadata that traces an exported file to its checkpoint and says how to feed it."""
    size = checkpoint_image_size(checkpoint)
    names = checkpoint_class_names(checkpoint) or class_names(checkpoint, num_classes)
    return {
        "model_name": checkpoint["model_name"],
        "model_config": json.dumps(checkpoint.get("model_config") or {}, sort_keys=True),
        "checkpoint_version": version or "",
        "normalization": json.dumps(checkpoint["normalization"]),
        "image_size": str(size),
        "class_names": json.dumps(names),
        "input": f"float32 NCHW RGB {size}x{size}, values 0..1 (uint8 / 255); normalisation is in the graph",
    }


def onnx_bytes(checkpoint: dict[str, Any], config: ExportConfig, version: str | None = None) -> bytes:
    """The checkpoint's model as a serialised ONNX graph (opset ``config.opset``, dynamic batch)."""
    onnx = _require("onnx")
    _require("onnxscript")
    wrapper = servable_model(checkpoint)
    size = checkpoint_image_size(checkpoint)
    sample = torch.rand(2, 3, size, size)  # the graph's input: (batch, 3, size, size), batch dynamic
    with torch.no_grad(), _quiet_loggers("onnx_ir", "onnxscript"):
        program = torch.onnx.export(
            wrapper,
            (sample,),
            dynamo=True,
            opset_version=config.opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: torch.export.Dim.DYNAMIC},),
            verbose=False,
        )
    proto = program.model_proto
    onnx.helper.set_model_props(proto, metadata(checkpoint, version, _num_classes(wrapper, size)))
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def safetensors_bytes(checkpoint: dict[str, Any], version: str | None = None) -> bytes:
    """The model's weights (EMA ones when the checkpoint has them) as safetensors, with the metadata."""
    safetensors_torch = _require("safetensors.torch")
    state = checkpoint.get("ema_state") or checkpoint["model_state"]
    tensors = {name: tensor.detach().cpu().contiguous().clone() for name, tensor in state.items()}
    return safetensors_torch.save(
        tensors,
        metadata=metadata(
            checkpoint, version, _num_classes(servable_model(checkpoint), checkpoint_image_size(checkpoint))
        ),
    )


@contextlib.contextmanager
def _quiet_loggers(*names: str) -> Iterator[None]:
    """The exporter's optimisation passes log a line per initializer at INFO: warnings only, meanwhile."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _num_classes(model: nn.Module, image_size: int) -> int:
    with torch.no_grad():
        return model(torch.zeros(1, 3, image_size, image_size)).shape[1]


def _require(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise InputError(
            f"exporting needs {module.split('.')[0]}, which is not installed: pip install -e '.[export]'"
        ) from None

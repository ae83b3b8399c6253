"""Image classifiers in plain PyTorch, chosen by name: no Kedro imports here.

>>> model = build_model("vit", {"depth": 4})
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from image_recognition.common.errors import ParameterError
from image_recognition.common.params import config_from_dict, config_to_dict, one_of
from image_recognition.models.cnn import CNNConfig, FastCNN, whitening_filters
from image_recognition.models.simple_cnn import SimpleCNN, SimpleCNNConfig
from image_recognition.models.vit import VisionTransformer, ViTConfig

# The most parameters a model may have, unless a caller sets another limit.
# They are counted on the meta device, before any memory is allocated, so a
# mistyped width or a crafted checkpoint's config (widths: [4096, 8192, 65536])
# is refused instead of allocating tens of gigabytes. The project's models have
# 0.06 to 4 million; 300 million (1.2 GB of float32 weights) leaves room for far
# larger ones without refusing them.
MAX_MODEL_PARAMETERS = 300_000_000

# name -> (config dataclass, model class)
_REGISTRY: dict[str, tuple[type, Callable[[Any], nn.Module]]] = {
    "simple_cnn": (SimpleCNNConfig, SimpleCNN),
    "cnn": (CNNConfig, FastCNN),
    "vit": (ViTConfig, VisionTransformer),
}
MODEL_NAMES: tuple[str, ...] = tuple(_REGISTRY)
# Convnets benefit from channels_last memory layout on GPU; transformers do not.
CONVNET_NAMES: frozenset[str] = frozenset({"simple_cnn", "cnn"})


class ModelTooLargeError(ParameterError):
    """A model config builds more parameters than the limit allows."""


def check_model_name(name: Any, key: str = "model.name") -> str:
    """``name`` if it names one of :data:`MODEL_NAMES`; else a ParameterError naming ``key`` and the names."""
    return one_of(key, name, MODEL_NAMES)


def _entry(name: str) -> tuple[type, Callable[[Any], nn.Module]]:
    return _REGISTRY[check_model_name(name)]


def model_config(name: str, config: dict[str, Any] | None = None) -> Any:
    """The validated config dataclass of model ``name`` built from ``config`` (ParameterError if invalid)."""
    config_cls, _ = _entry(name)
    return config_from_dict(config_cls, config, f"{name}.model")


def validate_model_config(
    name: str,
    config: dict[str, Any] | None = None,
    max_parameters: int = MAX_MODEL_PARAMETERS,
    limit_name: str = "max_parameters",
) -> dict[str, Any]:
    """Check ``config`` for model ``name`` (ParameterError if invalid); return it in full.

    A model of more than ``max_parameters`` parameters is invalid too (see
    :data:`MAX_MODEL_PARAMETERS`); the error names ``limit_name``, the setting
    that raises the limit. Nothing is allocated to count them.
    """
    full = config_to_dict(model_config(name, config))
    count = count_parameters(meta_model(name, full))
    if count > max_parameters:
        raise ModelTooLargeError(f"{name} model has {count:,} parameters, more than {limit_name} ({max_parameters:,})")
    return full


def build_model(name: str, config: dict[str, Any] | None = None) -> nn.Module:
    """Build model ``name`` (one of :data:`MODEL_NAMES`) from a dict of config overrides."""
    _, model_cls = _entry(name)
    return model_cls(model_config(name, config))


def meta_model(name: str, config: dict[str, Any] | None = None) -> nn.Module:
    """Model ``name`` built on the meta device: its parameters' shapes without their memory."""
    with torch.device("meta"):
        return build_model(name, config)


def count_parameters(model: nn.Module) -> int:
    """Number of parameter elements, trainable or not."""
    return sum(p.numel() for p in model.parameters())


__all__ = [
    "CNNConfig",
    "CONVNET_NAMES",
    "FastCNN",
    "MAX_MODEL_PARAMETERS",
    "MODEL_NAMES",
    "ModelTooLargeError",
    "SimpleCNN",
    "SimpleCNNConfig",
    "ViTConfig",
    "VisionTransformer",
    "build_model",
    "check_model_name",
    "count_parameters",
    "meta_model",
    "model_config",
    "validate_model_config",
    "whitening_filters",
]

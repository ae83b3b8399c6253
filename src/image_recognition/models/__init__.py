"""Image classifiers in plain PyTorch, chosen by name: no Kedro imports here.

>>> model = build_model("vit", {"depth": 4})
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from image_recognition.models.cnn import CNNConfig, FastCNN, whitening_filters
from image_recognition.models.simple_cnn import SimpleCNN, SimpleCNNConfig
from image_recognition.models.vit import VisionTransformer, ViTConfig
from image_recognition.params import config_from_dict, config_to_dict

# name -> (config dataclass, model class)
_REGISTRY: dict[str, tuple[type, Callable[[Any], nn.Module]]] = {
    "simple_cnn": (SimpleCNNConfig, SimpleCNN),
    "cnn": (CNNConfig, FastCNN),
    "vit": (ViTConfig, VisionTransformer),
}
MODEL_NAMES: tuple[str, ...] = tuple(_REGISTRY)
# Convnets benefit from channels_last memory layout on GPU; transformers do not.
CONVNET_NAMES: frozenset[str] = frozenset({"simple_cnn", "cnn"})


def _entry(name: str) -> tuple[type, Callable[[Any], nn.Module]]:
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; valid names are {list(MODEL_NAMES)}")
    return _REGISTRY[name]


def model_config(name: str, config: dict[str, Any] | None = None) -> Any:
    """The validated config dataclass of model ``name`` built from ``config``."""
    config_cls, _ = _entry(name)
    return config_from_dict(config_cls, config, f"{name} model config")


def validate_model_config(name: str, config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Check ``config`` for model ``name`` (ValueError if invalid); return it in full."""
    return config_to_dict(model_config(name, config))


def build_model(name: str, config: dict[str, Any] | None = None) -> nn.Module:
    """Build model ``name`` (one of :data:`MODEL_NAMES`) from a dict of config overrides."""
    _, model_cls = _entry(name)
    return model_cls(model_config(name, config))


def count_parameters(model: nn.Module) -> int:
    """Number of parameter elements, trainable or not."""
    return sum(p.numel() for p in model.parameters())


__all__ = [
    "CNNConfig",
    "CONVNET_NAMES",
    "FastCNN",
    "MODEL_NAMES",
    "SimpleCNN",
    "SimpleCNNConfig",
    "ViTConfig",
    "VisionTransformer",
    "build_model",
    "count_parameters",
    "model_config",
    "validate_model_config",
    "whitening_filters",
]

"""The model registry (``models/__init__.py``): every model's shapes and parameter counts, and config validation.

Each model's own layers are tested beside it: ``test_cnn.py``, ``test_simple_cnn.py``, ``test_vit.py``.
"""

from __future__ import annotations

import logging

import pytest
import torch

from image_recognition.common.errors import ParameterError
from image_recognition.models import (
    MAX_MODEL_PARAMETERS,
    MODEL_NAMES,
    ModelTooLargeError,
    build_model,
    count_parameters,
    meta_model,
    validate_model_config,
)
from tests.models.test_cnn import TINY_CNN
from tests.models.test_vit import TINY_VIT

logger = logging.getLogger(__name__)

# Expected parameter counts at default widths: (low, high).
PARAMETER_RANGES = {
    "simple_cnn": (62_006, 62_006),  # the tutorial network, exactly
    "cnn": (1_800_000, 2_200_000),  # airbench94-sized
    "vit": (2_000_000, 10_000_000),
}
TINY_CONFIGS = {"simple_cnn": {}, "cnn": TINY_CNN, "vit": TINY_VIT}


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_default_parameter_count_is_plausible(name: str) -> None:
    model = build_model(name, None)
    count = count_parameters(model)
    logger.info("%s has %s parameters", name, f"{count:,}")
    low, high = PARAMETER_RANGES[name]
    assert low <= count <= high


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_output_is_batch_by_classes_and_finite(name: str, mode: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, TINY_CONFIGS[name])
    images = torch.randn(4, 3, 32, 32)
    if hasattr(model, "init_whitening"):
        model.init_whitening(images)
    model.train(mode == "train")
    logits = model(images)
    assert logits.shape == (4, 10)
    assert torch.isfinite(logits).all()


def test_unknown_model_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match=r"model.name must be one of simple_cnn, cnn, vit, got 'resnet'"):
        build_model("resnet", None)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_unknown_config_key_is_named_with_the_allowed_keys(name: str) -> None:
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) .*\.widht; .* accepts only:"):
        validate_model_config(name, {"widht": 3})


@pytest.mark.parametrize(
    ("name", "config", "message"),
    [
        ("vit", {"patch_size": 5}, "patch_size 5 does not divide image_size 32"),
        ("vit", {"embed_dim": 30, "num_heads": 4}, "not divisible by num_heads"),
        ("vit", {"global_pool": "max"}, "global_pool must be one of"),
        ("vit", {"drop_path_rate": 1.0}, r"drop_path_rate must be in \[0, 1\)"),
        ("vit", {"depth": 0}, "depth must be a positive integer"),
        ("cnn", {"widths": [8, 16]}, "widths must list 3"),
        ("cnn", {"widths": [8, 0, 16]}, "widths must be a positive integer"),
        ("simple_cnn", {"num_classes": 0}, "num_classes must be a positive integer"),
    ],
)
def test_invalid_values_are_refused(name: str, config: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_model(name, config)


def test_validate_returns_the_full_config_as_plain_data() -> None:
    config = validate_model_config("cnn", {"widths": (8, 16, 32)})
    assert config["widths"] == [8, 16, 32]
    assert config["whiten_kernel_size"] == 2  # a default filled in


@pytest.mark.parametrize("name", ["simple_cnn", "cnn", "vit", "vit_conv_stem"])
def test_parameters_are_counted_on_the_meta_device_without_allocating(name: str) -> None:
    model_name, config = ("vit", {"stem": "conv", "global_pool": "attn"}) if name == "vit_conv_stem" else (name, {})
    meta = meta_model(model_name, config)
    assert all(p.is_meta for p in meta.parameters())
    assert count_parameters(meta) == count_parameters(build_model(model_name, config))


@pytest.mark.parametrize(
    ("name", "config"),
    [("vit", {"embed_dim": 1_000_000}), ("cnn", {"widths": [4096, 8192, 65536]})],
)
def test_a_model_over_the_parameter_limit_is_refused_before_it_is_built(name: str, config: dict) -> None:
    # Tens of billions of parameters: built for real, this would try to allocate hundreds of GB.
    with pytest.raises(ModelTooLargeError, match=rf"{name} model has [\d,]+ parameters, more than max_parameters"):
        validate_model_config(name, config)
    assert MAX_MODEL_PARAMETERS >= 100_000_000  # larger real models still pass by default


def test_the_parameter_limit_is_configurable() -> None:
    small = {"widths": [8, 8, 8]}
    count = count_parameters(build_model("cnn", small))
    assert validate_model_config("cnn", small, max_parameters=count)["widths"] == [8, 8, 8]
    with pytest.raises(ModelTooLargeError, match=rf"more than training.max_model_parameters \({count - 1:,}\)"):
        validate_model_config("cnn", small, count - 1, "training.max_model_parameters")


@pytest.mark.parametrize(
    ("name", "config", "message"),
    [
        ("vit", {"mlp_ratio": float("inf")}, "vit.model.mlp_ratio must be a finite number, got inf"),
        ("cnn", {"widths": [8, float("inf"), 8]}, "cnn.model.widths must be a finite number, got inf"),
        ("cnn", {"train_bn_weight": "false"}, "cnn.model.train_bn_weight must be true or false, got 'false'"),
    ],
)
def test_infinite_sizes_and_quoted_booleans_are_refused(name: str, config: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_model_config(name, config)


@pytest.mark.parametrize("image_size", [32, 64])
@pytest.mark.parametrize("num_classes", [10, 100])
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_model_builds_for_the_image_size_and_classes_of_the_data(
    name: str, image_size: int, num_classes: int
) -> None:
    config = {**TINY_CONFIGS[name], "image_size": image_size, "num_classes": num_classes}
    torch.manual_seed(0)
    model = build_model(name, config).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 3, image_size, image_size))
    assert logits.shape == (2, num_classes)
    assert torch.isfinite(logits).all()
    assert validate_model_config(name, config)["image_size"] == image_size


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_an_unsupported_image_size_is_refused_naming_the_supported_ones(name: str) -> None:
    with pytest.raises(ParameterError, match=rf"{name}\.model\.image_size must be one of 32, 64, 96, 128, got 48"):
        build_model(name, {"image_size": 48})


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_the_head_follows_num_classes_and_the_weights_do_not_depend_on_the_size_for_convnets(name: str) -> None:
    small = meta_model(name, {**TINY_CONFIGS[name], "num_classes": 100})
    assert small.state_dict()[_head_weight(small)].shape[0] == 100
    if name == "cnn":  # the stem pool has no weights: one state dict fits every size
        shapes = {key: value.shape for key, value in small.state_dict().items()}
        large = meta_model(name, {**TINY_CONFIGS[name], "num_classes": 100, "image_size": 128})
        assert {key: value.shape for key, value in large.state_dict().items()} == shapes


def _head_weight(model: torch.nn.Module) -> str:
    return next(key for key in model.state_dict() if key.endswith(("head.weight", "fc3.weight")))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_a_model_at_64_px_learns_a_trivial_task_well_above_chance(name: str) -> None:
    """Four classes, each a colour under noise: a few Adam steps at 64 px separate them."""
    torch.manual_seed(0)
    classes, size = 4, 64
    colours = torch.tensor([[1.0, -1.0, -1.0], [-1.0, 1.0, -1.0], [-1.0, -1.0, 1.0], [1.0, 1.0, -1.0]])
    labels = torch.arange(classes).repeat(16)
    images = colours[labels][:, :, None, None] + 0.5 * torch.randn(len(labels), 3, size, size)
    model = build_model(name, {**TINY_CONFIGS[name], "image_size": size, "num_classes": classes})
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(25):
        loss = torch.nn.functional.cross_entropy(model.train()(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        accuracy = (model.eval()(images).argmax(1) == labels).float().mean().item()
    assert accuracy >= 0.9  # chance is 0.25

"""Shapes, parameter counts and config validation of the three models."""

from __future__ import annotations

import logging

import pytest
import torch

from image_recognition.models import (
    MODEL_NAMES,
    build_model,
    count_parameters,
    validate_model_config,
    whitening_filters,
)

logger = logging.getLogger(__name__)

# Expected parameter counts at default widths: (low, high).
PARAMETER_RANGES = {
    "simple_cnn": (62_006, 62_006),  # the tutorial network, exactly
    "cnn": (1_800_000, 2_200_000),  # airbench94-sized
    "vit": (2_000_000, 10_000_000),
}
TINY_CONFIGS = {
    "simple_cnn": {},
    "cnn": {"widths": [8, 16, 16]},
    "vit": {"embed_dim": 32, "depth": 2, "num_heads": 2, "global_pool": "token"},
}


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


def test_forward_is_head_of_features() -> None:
    torch.manual_seed(0)
    model = build_model("vit", TINY_CONFIGS["vit"]).eval()
    images = torch.randn(2, 3, 32, 32)
    features = model.forward_features(images)
    assert features.shape == (2, 1 + 64, 32)  # class token + (32 / 4)**2 patches
    torch.testing.assert_close(model.forward_head(features), model(images))


def test_vit_average_pooling_has_no_class_token() -> None:
    model = build_model("vit", {"embed_dim": 32, "depth": 1, "num_heads": 4, "patch_size": 8})
    assert model.cls_token is None
    assert model.forward_features(torch.randn(2, 3, 32, 32)).shape == (2, 16, 32)


def test_whitening_decorrelates_patches() -> None:
    generator = torch.Generator().manual_seed(0)
    # Correlated channels: the whitening must undo the mixing.
    base = torch.randn(64, 3, 16, 16, generator=generator)
    images = torch.einsum("ij,bjhw->bihw", torch.tensor([[1.0, 0.0, 0.0], [0.9, 0.3, 0.0], [0.5, 0.5, 0.2]]), base)
    filters = whitening_filters(images, kernel_size=2, eps=1e-6)
    assert filters.shape == (24, 3, 2, 2)
    responses = torch.nn.functional.conv2d(images, filters[:12]).permute(1, 0, 2, 3).reshape(12, -1)
    covariance = responses @ responses.T / responses.shape[1]
    torch.testing.assert_close(covariance, torch.eye(12), atol=0.05, rtol=0)


def test_unknown_model_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match=r"unknown model 'resnet'.*simple_cnn.*cnn.*vit"):
        build_model("resnet", None)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_unknown_config_key_is_named_with_the_allowed_keys(name: str) -> None:
    with pytest.raises(ValueError, match=r"unknown .* key\(s\) \['widht'\]; allowed keys are"):
        validate_model_config(name, {"widht": 3})


@pytest.mark.parametrize(
    ("name", "config", "message"),
    [
        ("vit", {"patch_size": 5}, "patch_size 5 does not divide image_size 32"),
        ("vit", {"embed_dim": 30, "num_heads": 4}, "not divisible by num_heads"),
        ("vit", {"global_pool": "max"}, "global_pool must be one of"),
        ("vit", {"drop_path_rate": 1.0}, r"drop_path_rate must be in \[0, 1\)"),
        ("vit", {"depth": 0}, "depth must be > 0"),
        ("cnn", {"widths": [8, 16]}, "widths must list 3"),
        ("cnn", {"widths": [8, 0, 16]}, "widths must be > 0"),
        ("simple_cnn", {"num_classes": 0}, "num_classes must be > 0"),
    ],
)
def test_invalid_values_are_refused(name: str, config: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_model(name, config)


def test_validate_returns_the_full_config_as_plain_data() -> None:
    config = validate_model_config("cnn", {"widths": (8, 16, 32)})
    assert config["widths"] == [8, 16, 32]
    assert config["whiten_kernel_size"] == 2  # a default filled in

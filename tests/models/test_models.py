"""Shapes, parameter counts and config validation of the three models."""

from __future__ import annotations

import copy
import logging

import pytest
import torch

from image_recognition.models import (
    MAX_MODEL_PARAMETERS,
    MODEL_NAMES,
    ModelTooLargeError,
    build_model,
    count_parameters,
    meta_model,
    validate_model_config,
    whitening_filters,
)
from image_recognition.models.vit import Attention, DropPath

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


def test_sdpa_attention_equals_explicit_softmax_attention() -> None:
    torch.manual_seed(0)
    attention = Attention(dim=32, num_heads=4, qkv_bias=True, attn_drop=0.0, proj_drop=0.0).eval()
    x = torch.randn(2, 10, 32)
    q, k, v = attention.qkv(x).reshape(2, 10, 3, 4, 8).permute(2, 0, 3, 1, 4)  # each (B, heads, T, head_dim)
    weights = (q @ k.transpose(-2, -1) / 8**0.5).softmax(dim=-1)  # (B, heads, T, T)
    explicit = attention.proj((weights @ v).transpose(1, 2).reshape(2, 10, 32))
    torch.testing.assert_close(attention(x), explicit, atol=1e-5, rtol=1e-5)


def test_drop_path_is_the_identity_in_eval_and_drops_whole_samples_in_training() -> None:
    drop = DropPath(0.5)
    x = torch.randn(64, 5, 8)
    assert torch.equal(drop.eval()(x), x)
    out = drop.train()(x)
    kept = (out != 0).flatten(1).all(dim=1)
    dropped = (out == 0).flatten(1).all(dim=1)
    assert bool((kept | dropped).all())  # a sample's branch is kept or dropped whole
    torch.testing.assert_close(out[kept], x[kept] * 2)  # rescaled by 1 / keep
    assert 10 < int(dropped.sum()) < 54


@pytest.mark.parametrize(("patch_size", "tokens"), [(4, 64), (8, 16)])
def test_conv_stem_makes_one_token_per_patch(patch_size: int, tokens: int) -> None:
    config = {"stem": "conv", "stem_channels": [8, 16, 16, 32], "patch_size": patch_size, "embed_dim": 32}
    model = build_model("vit", {**config, "depth": 1, "num_heads": 2}).eval()
    features = model.forward_features(torch.randn(2, 3, 32, 32))
    assert features.shape == (2, tokens, 32)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.patch_embed.modules())


@pytest.mark.parametrize("stem_depth", [1, 2, 3])
def test_conv_stem_depth_stacks_layers_per_stage_and_halves_once(stem_depth: int) -> None:
    config = {"stem": "conv", "stem_channels": [8, 16, 32], "patch_size": 4, "stem_depth": stem_depth}
    model = build_model("vit", {**config, "embed_dim": 32, "depth": 1, "num_heads": 2}).eval()
    convs = [m for m in model.patch_embed.stages if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [w for w in (8, 16, 32) for _ in range(stem_depth)]
    assert sum(c.stride == (2, 2) for c in convs) == 2  # log2(patch_size) halvings, whatever the depth
    assert model.forward_features(torch.randn(2, 3, 32, 32)).shape == (2, 64, 32)
    with pytest.raises(ValueError, match="stem_depth"):
        build_model("vit", {**config, "stem_depth": 0})


def test_conv_stem_needs_enough_stages_for_its_stride() -> None:
    with pytest.raises(ValueError, match="power of two"):
        build_model("vit", {"stem": "conv", "stem_channels": [8, 16], "patch_size": 8})
    with pytest.raises(ValueError, match="stem must be one of"):
        build_model("vit", {"stem": "resnet"})


def test_attention_pooling_is_a_softmax_weighted_mean_of_the_tokens() -> None:
    torch.manual_seed(0)
    model = build_model("vit", {"embed_dim": 32, "depth": 1, "num_heads": 2, "global_pool": "attn"}).eval()
    tokens = model.forward_features(torch.randn(2, 3, 32, 32))  # (B, T, D), no class token
    weights = model.attn_pool.score(tokens).softmax(dim=1)
    pooled = (weights * tokens).sum(dim=1)
    torch.testing.assert_close(model.forward_head(tokens), model.head(pooled))
    # Equal scores would give the plain mean: pooling really weights the tokens.
    assert not torch.allclose(pooled, tokens.mean(dim=1))


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
        ("vit", {"mlp_ratio": float("inf")}, "vit: mlp_ratio must be finite, got inf"),
        ("cnn", {"widths": [8, float("inf"), 8]}, "cnn.model.widths must be a finite number, got inf"),
        ("cnn", {"train_bn_weight": "false"}, "cnn.model.train_bn_weight must be true or false, got 'false'"),
    ],
)
def test_infinite_sizes_and_quoted_booleans_are_refused(name: str, config: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_model_config(name, config)


def test_the_whitening_conv_runs_in_float32_under_bf16_autocast() -> None:
    torch.manual_seed(0)
    model = build_model("cnn", TINY_CONFIGS["cnn"]).train()
    images = torch.randn(4, 3, 32, 32) * 2
    model.init_whitening(images)
    with torch.no_grad():
        model.whiten.bias.normal_()
    outputs = []
    model.whiten.register_forward_hook(lambda module, args, output: outputs.append(output))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(images)
    whitened = outputs[0]
    assert whitened.dtype == torch.float32
    full_precision = torch.nn.functional.conv2d(images, model.whiten.weight, model.whiten.bias)
    torch.testing.assert_close(whitened, full_precision)  # float32 tolerances: no bf16 rounding
    assert logits.dtype == torch.bfloat16  # the rest of the network still runs in bf16


def test_the_conv_stem_tokens_are_a_contiguous_view_of_its_output() -> None:
    """channels_last: no transposing copy between the stem and the blocks."""
    model = build_model("vit", {"stem": "conv", "stem_channels": [8, 16], "patch_size": 4, "embed_dim": 32})
    outputs = []
    model.patch_embed.proj.register_forward_hook(lambda module, inputs, output: outputs.append(output))
    images = torch.randn(2, 3, 32, 32)
    tokens = model.patch_embed(images)
    assert tokens.shape == (2, 64, 32)
    assert tokens.is_contiguous()
    assert tokens.untyped_storage().data_ptr() == outputs[0].untyped_storage().data_ptr()
    # The same function of the image as the stem in the default layout (NCHW weights and activations).
    nchw = copy.deepcopy(model.patch_embed).to(memory_format=torch.contiguous_format)
    reference = nchw.proj(nchw.stages(images))
    assert reference.is_contiguous()
    torch.testing.assert_close(tokens, reference.flatten(2).transpose(1, 2))

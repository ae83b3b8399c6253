"""The vision transformer: token shapes, attention, drop path, the conv stem and the pooling heads."""

from __future__ import annotations

import copy

import pytest
import torch

from image_recognition.models import build_model
from image_recognition.models.vit import Attention, DropPath

# A vit that builds and runs in milliseconds; tests/models/test_models.py runs it beside the others.
TINY_VIT = {"embed_dim": 32, "depth": 2, "num_heads": 2, "global_pool": "token"}


def test_forward_is_head_of_features() -> None:
    torch.manual_seed(0)
    model = build_model("vit", TINY_VIT).eval()
    images = torch.randn(2, 3, 32, 32)
    features = model.forward_features(images)
    assert features.shape == (2, 1 + 64, 32)  # class token + (32 / 4)**2 patches
    torch.testing.assert_close(model.forward_head(features), model(images))


def test_vit_average_pooling_has_no_class_token() -> None:
    model = build_model("vit", {"embed_dim": 32, "depth": 1, "num_heads": 4, "patch_size": 8})
    assert model.cls_token is None
    assert model.forward_features(torch.randn(2, 3, 32, 32)).shape == (2, 16, 32)


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


@pytest.mark.parametrize("stem", ["patch", "conv"])
@pytest.mark.parametrize(("image_size", "patch_size", "tokens"), [(32, 4, 64), (64, 4, 256), (64, 8, 64), (96, 8, 144)])
def test_the_token_grid_and_position_embeddings_follow_the_image_size(
    stem: str, image_size: int, patch_size: int, tokens: int
) -> None:
    config = {"stem": stem, "stem_channels": [8, 8, 16], "patch_size": patch_size, "image_size": image_size}
    model = build_model("vit", {**config, "embed_dim": 16, "depth": 1, "num_heads": 2}).eval()
    assert model.pos_embed.shape == (1, tokens, 16)
    assert model.forward_features(torch.randn(2, 3, image_size, image_size)).shape == (2, tokens, 16)


def test_images_of_another_size_are_refused_in_words() -> None:
    model = build_model("vit", {**TINY_VIT, "image_size": 64}).eval()
    with pytest.raises(ValueError, match=r"\(32, 32\) images given to a ViT built for 64 x 64; resize them"):
        model(torch.randn(1, 3, 32, 32))

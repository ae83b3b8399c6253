"""A Vision Transformer for small images (Dosovitskiy et al., 2021), timm-style.

Pre-norm blocks, attention through ``F.scaled_dot_product_attention`` (flash
or memory-efficient kernels on GPU), learned position embeddings, stochastic
depth. Tokens come from a plain patch embedding or from a small convolutional
stem (Xiao et al., 2021, "Early convolutions help transformers see better"),
which gives small-data ViTs the locality prior they otherwise spend many
epochs learning. The tokens are pooled by a class token, by their mean, or by
attention (sequence) pooling as in the Compact Convolutional Transformer
(Hassani et al., 2021).

The token grid follows the image size: ``image_size / patch_size`` tokens a
side, whichever stem makes them (the conv stem's total stride is
``patch_size``), and the position embeddings have one row per token. At 64 px
with 4 px patches that is 256 tokens where 32 px gives 64; a ``patch_size``
twice as large keeps the 32 px grid, and its cost, at twice the size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from image_recognition.common.params import (
    boolean,
    each,
    number_in_range,
    number_list,
    one_of,
    parameter_error,
    positive_int,
    positive_number,
)
from image_recognition.models.sizes import DEFAULT_IMAGE_SIZE, check_image_size

GLOBAL_POOLS = ("token", "avg", "attn")
STEMS = ("patch", "conv")


@dataclass
class ViTConfig:
    """Knobs of :class:`VisionTransformer`; defaults suit 32x32 CIFAR images."""

    # Side of the square input, one of models.sizes.IMAGE_SIZES; the token grid
    # is image_size / patch_size a side.
    image_size: int = DEFAULT_IMAGE_SIZE
    # 4x4 patches give 64 tokens on 32x32: fine enough to see CIFAR's small
    # objects, few enough that attention (quadratic in tokens) stays cheap.
    # With the conv stem, the stem's total stride (a power of two).
    patch_size: int = 4
    # "patch": one linear map per non-overlapping patch (the original ViT).
    # "conv": stem_channels 3x3 conv-BN-GELU stages, the last log2(patch_size)
    # of them with stride 2, then a 1x1 conv to embed_dim.
    stem: str = "patch"
    stem_channels: tuple[int, ...] | list[int] = (64, 128, 256)
    # conv-BN-GELU layers per stage of the conv stem; a halving stage's first
    # one has stride 2. Depth at low resolution is cheap and learns fast.
    stem_depth: int = 1
    in_channels: int = 3
    num_classes: int = 10  # CIFAR-10; the data's class count in a run
    embed_dim: int = 256  # token width
    depth: int = 6  # number of transformer blocks
    num_heads: int = 8  # embed_dim must divide evenly; head_dim = embed_dim / num_heads
    mlp_ratio: float = 2.0  # MLP hidden width / embed_dim; 2 (not 4) suits small data
    qkv_bias: bool = True
    drop_rate: float = 0.0  # dropout after the embedding, in the MLP and projections
    attn_drop_rate: float = 0.0  # dropout on attention weights
    # Stochastic depth: the chance of skipping a block's residual branch rises
    # linearly to this in the last block; the main regulariser of small-data ViTs.
    drop_path_rate: float = 0.1
    # "avg" (mean of the patch tokens) trains faster on small data than "token"
    # (a learned class token), and needs no extra position; "attn" weights the
    # tokens by a learned score (sequence pooling), at the cost of one linear map.
    global_pool: str = "avg"

    def __post_init__(self) -> None:
        # number_list before int(): int(inf) raises OverflowError
        self.stem_channels = tuple(int(c) for c in number_list("vit.model.stem_channels", self.stem_channels))
        boolean("vit.model.qkv_bias", self.qkv_bias)
        each(
            positive_int,
            "vit.model",
            patch_size=self.patch_size,
            in_channels=self.in_channels,
            num_classes=self.num_classes,
            embed_dim=self.embed_dim,
            depth=self.depth,
            num_heads=self.num_heads,
            stem_depth=self.stem_depth,
        )
        positive_number("vit.model.mlp_ratio", self.mlp_ratio)
        check_image_size("vit.model.image_size", self.image_size)
        if self.image_size % self.patch_size:
            raise parameter_error(
                "vit.model.patch_size",
                f"{self.patch_size} does not divide image_size {self.image_size}; choose a divisor such as 2, 4 or 8",
            )
        if self.embed_dim % self.num_heads:
            raise parameter_error(
                "vit.model.embed_dim", f"{self.embed_dim} is not divisible by num_heads {self.num_heads}"
            )
        for name in ("drop_rate", "attn_drop_rate", "drop_path_rate"):
            number_in_range(f"vit.model.{name}", getattr(self, name), 0.0, 1.0, include_high=False)
        one_of("vit.model.global_pool", self.global_pool, GLOBAL_POOLS)
        one_of("vit.model.stem", self.stem, STEMS)
        if self.stem == "conv":
            strides = self.patch_size.bit_length() - 1
            if self.patch_size != 2**strides or strides > len(self.stem_channels):
                raise parameter_error(
                    "vit.model.patch_size",
                    f"must be a power of two with at most len(stem_channels) = {len(self.stem_channels)} "
                    f"halvings for a conv stem, got {self.patch_size}",
                )
            positive_int("vit.model.stem_channels", min(self.stem_channels, default=0))

    @property
    def grid_size(self) -> int:
        """Tokens a side: the image size over the patch size (the conv stem's total stride)."""
        return self.image_size // self.patch_size


class PatchEmbed(nn.Module):
    """Cut the image into non-overlapping patches and project each to a token."""

    def __init__(self, image_size: int, patch_size: int, in_channels: int, embed_dim: int) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"patch_size {patch_size} does not divide image_size {image_size}")
        self.num_patches = (image_size // patch_size) ** 2
        # A conv with stride = kernel = patch is exactly a per-patch linear map.
        self.proj = nn.Conv2d(in_channels, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)  # (B, D, H/p, W/p)
        return x.flatten(2).transpose(1, 2)  # (B, N, D)


class ConvStem(nn.Module):
    """Stages of ``depth`` 3x3 conv-BN-GELU layers; the last ``log2(stride)`` stages
    halve H and W in their first layer. Then a 1x1 conv to tokens.

    The stem works channels_last (NHWC in memory, its kernels included): the
    tokens (B, N, D) are then a contiguous view of the last conv's output,
    where a NCHW output would need a transposing copy before the blocks.
    """

    def __init__(  # noqa: PLR0913 (the stem's shape, named)
        self, in_channels: int, channels: tuple[int, ...], stride: int, embed_dim: int, depth: int = 1
    ) -> None:
        super().__init__()
        halvings = stride.bit_length() - 1
        layers: list[nn.Module] = []
        for index, width in enumerate(channels):
            for layer in range(depth):
                step = 2 if layer == 0 and index >= len(channels) - halvings else 1
                layers += [
                    nn.Conv2d(in_channels, width, kernel_size=3, stride=step, padding=1, bias=False),
                    nn.BatchNorm2d(width),
                    nn.GELU(),
                ]
                in_channels = width
        self.stages = nn.Sequential(*layers)
        self.proj = nn.Conv2d(in_channels, embed_dim, kernel_size=1)
        self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(self.stages(x.contiguous(memory_format=torch.channels_last)))  # (B, D, H/stride, W/stride)
        return x.flatten(2).transpose(1, 2)  # (B, N, D): a view, contiguous (NHWC memory is token-major)


class AttentionPool(nn.Module):
    """Sequence pooling: a softmax over one learned score per token weights their mean."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.score = nn.Linear(dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.score(x).softmax(dim=1)  # (B, T, 1)
        return (weights * x).sum(dim=1)  # (B, D)


class Attention(nn.Module):
    """Multi-head self-attention."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool, attn_drop: float, proj_drop: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape  # noqa: N806 (shape names read best in capitals)
        qkv = self.qkv(x).reshape(B, T, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, T, head_dim)
        x = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.attn_drop if self.training else 0.0
        )  # (B, heads, T, head_dim)
        x = x.transpose(1, 2).reshape(B, T, D)  # (B, T, D)
        return self.proj_drop(self.proj(x))


class Mlp(nn.Module):
    """Linear -> GELU -> dropout -> Linear -> dropout."""

    def __init__(self, dim: int, hidden: int, drop: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class DropPath(nn.Module):
    """Stochastic depth: zero a sample's residual branch with probability ``p``."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep  # rescale so the expected output is unchanged


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config: ViTConfig, drop_path: float) -> None:
        super().__init__()
        dim = config.embed_dim
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, config.num_heads, config.qkv_bias, config.attn_drop_rate, config.drop_rate)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * config.mlp_ratio), config.drop_rate)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class VisionTransformer(nn.Module):
    """Patch embedding + position embedding + transformer blocks + pooled head."""

    def __init__(self, config: ViTConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or ViTConfig()
        dim = config.embed_dim
        if config.stem == "conv":
            self.patch_embed = ConvStem(
                config.in_channels, config.stem_channels, config.patch_size, dim, config.stem_depth
            )
        else:
            self.patch_embed = PatchEmbed(config.image_size, config.patch_size, config.in_channels, dim)
        self.num_prefix_tokens = 1 if config.global_pool == "token" else 0
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if self.num_prefix_tokens else None
        num_tokens = config.grid_size**2 + self.num_prefix_tokens
        self.pos_embed = nn.Parameter(torch.zeros(1, num_tokens, dim))
        self.pos_drop = nn.Dropout(config.drop_rate)
        # On the CPU even while a model is built on the meta device (to count its parameters).
        rates = torch.linspace(0, config.drop_path_rate, config.depth, device="cpu").tolist()
        self.blocks = nn.Sequential(*(Block(config, rate) for rate in rates))
        self.norm = nn.LayerNorm(dim)
        self.attn_pool = AttentionPool(dim) if config.global_pool == "attn" else None
        self.head = nn.Linear(dim, config.num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        if self.cls_token is not None:
            nn.init.trunc_normal_(self.cls_token, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def no_weight_decay(self) -> set[str]:
        """Parameter names that weight decay should skip (embeddings, not weights)."""
        return {"pos_embed", "cls_token"}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> normalised tokens (B, prefix + N, D)."""
        size = self.config.image_size
        if tuple(x.shape[-2:]) != (size, size):  # the position embeddings fit one token grid only
            raise ValueError(f"{tuple(x.shape[-2:])} images given to a ViT built for {size} x {size}; resize them")
        x = self.patch_embed(x)  # (B, N, D)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)  # (B, 1 + N, D)
        x = self.pos_drop(x + self.pos_embed)
        x = self.blocks(x)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        """Pool the tokens (B, T, D) -> (B, D) and classify -> logits (B, classes)."""
        if self.cls_token is not None:
            x = x[:, 0]
        elif self.attn_pool is not None:
            x = self.attn_pool(x)
        else:
            x = x.mean(dim=1)
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

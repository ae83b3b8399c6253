"""A fast CIFAR-10 convnet in the style of the speed records (airbench, hlb-CIFAR10).

The ideas, reimplemented here: a first layer of frozen 2x2 patch-whitening
filters computed from the training data (the network starts from decorrelated
inputs, so the early epochs are not spent learning that), three conv groups of
conv -> max-pool -> BatchNorm -> GELU -> conv -> BatchNorm -> GELU, identity
(Dirac) initialisation of the convs so the deep path starts near a shortcut,
BatchNorm with a frozen unit scale, and a scaled-down linear head.

Other image sizes keep the receptive-field design. At 32 px the three groups
take the whitened 31 x 31 map down to 3 x 3, and each unit of that final map
sees 51 px: more than the whole image, so the global max-pool before the head
picks among detectors that each saw everything. The global pool alone would
let the network run at 64 px, but its final map would be 7 x 7 of units that
see 51 of 64 px, and the groups would cost 4x the compute. Instead, at
``image_size`` = 32 f an f x f max-pool follows the whitening stem (its
filters still whiten 2 x 2 patches at full resolution): the groups see the
same 31 x 31 grid as at 32 px, the final map stays 3 x 3, each of its units
sees about 51 f px (the whole image again), and the groups' compute stays
that of 32 px.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from image_recognition.common.params import (
    boolean,
    each,
    number_in_range,
    number_list,
    parameter_error,
    positive_int,
    positive_number,
)
from image_recognition.models.sizes import DEFAULT_IMAGE_SIZE, IMAGE_SIZES, check_image_size

# The image size the conv groups are designed for; a larger image is max-pooled
# to this grid after the whitening stem (see the module docstring).
_GROUP_INPUT_SIZE = min(IMAGE_SIZES)


@dataclass
class CNNConfig:
    """Knobs of :class:`FastCNN`; the defaults are airbench94's network (~2M parameters)."""

    # Channels of the three conv groups. (64, 256, 256) is the record setter's
    # choice; narrower widths cut compute roughly quadratically (CPU profile).
    widths: tuple[int, int, int] | list[int] = (64, 256, 256)
    # Side of the whitening patches; the layer has 2 * 3 * k * k output channels
    # (every eigen-filter and its negation, so the GELU after it loses nothing).
    whiten_kernel_size: int = 2
    # Added to the patch-covariance eigenvalues before the inverse square root,
    # so near-zero-variance directions are not blown up into noise.
    whiten_eps: float = 5e-4
    # PyTorch convention (weight of the new batch). High: statistics must keep
    # up with weights that move fast in a 10-epoch run.
    batchnorm_momentum: float = 0.4
    # Train BatchNorm's scale? Frozen at 1 as in the records: the conv after it
    # can absorb any scale, and one fewer degree of freedom trains faster.
    train_bn_weight: bool = False
    # Multiplies the logits; a small value acts as a temperature that keeps the
    # early softmax soft, which suits the large learning rates of the recipe.
    logit_scale: float = 1 / 9
    num_classes: int = 10  # CIFAR-10; the data's class count in a run
    # Side of the square input, one of models.sizes.IMAGE_SIZES; above 32 an
    # (image_size / 32)-wide max-pool after the stem keeps the groups' grid.
    image_size: int = DEFAULT_IMAGE_SIZE

    def __post_init__(self) -> None:
        # number_list before int(): int(inf) raises OverflowError
        self.widths = tuple(int(w) for w in number_list("cnn.model.widths", self.widths))
        boolean("cnn.model.train_bn_weight", self.train_bn_weight)
        if len(self.widths) != 3:  # noqa: PLR2004 (three conv groups)
            raise parameter_error("cnn.model.widths", f"must list 3 channel counts, got {list(self.widths)}")
        each(
            positive_int,
            "cnn.model",
            widths=min(self.widths),
            whiten_kernel_size=self.whiten_kernel_size,
            num_classes=self.num_classes,
        )
        each(positive_number, "cnn.model", whiten_eps=self.whiten_eps, logit_scale=self.logit_scale)
        number_in_range("cnn.model.batchnorm_momentum", self.batchnorm_momentum, 0.0, 1.0, include_low=False)
        check_image_size("cnn.model.image_size", self.image_size)

    @property
    def stem_pool(self) -> int:
        """Width of the max-pool after the whitening stem: 1 (none) at 32 px, 2 at 64, 4 at 128."""
        return self.image_size // _GROUP_INPUT_SIZE


class DiracConv(nn.Conv2d):
    """3x3 'same' conv without bias whose first filters start as the identity."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, kernel_size=3, padding="same", bias=False)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        # Identity on the first in_channels filters: the group starts close to a
        # pass-through, which keeps signal and gradients healthy from step one.
        count = min(self.in_channels, self.out_channels)
        nn.init.dirac_(self.weight.data[:count])


class ConvGroup(nn.Module):
    """conv -> max-pool 2 -> BN -> GELU -> conv -> BN -> GELU (halves H and W)."""

    def __init__(self, in_channels: int, out_channels: int, config: CNNConfig) -> None:
        super().__init__()
        self.conv1 = DiracConv(in_channels, out_channels)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = _batch_norm(out_channels, config)
        self.conv2 = DiracConv(out_channels, out_channels)
        self.norm2 = _batch_norm(out_channels, config)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Pool before the norm: the norm then sees 4x fewer values, same result quality.
        x = self.act(self.norm1(self.pool(self.conv1(x))))
        return self.act(self.norm2(self.conv2(x)))


def _batch_norm(channels: int, config: CNNConfig) -> nn.BatchNorm2d:
    norm = nn.BatchNorm2d(channels, momentum=config.batchnorm_momentum, eps=1e-12)
    norm.weight.requires_grad_(config.train_bn_weight)
    return norm


class FastCNN(nn.Module):
    """Patch-whitening stem + three conv groups + max-pooled linear head."""

    def __init__(self, config: CNNConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or CNNConfig()
        k = config.whiten_kernel_size
        whiten_channels = 2 * 3 * k * k
        self.whiten = nn.Conv2d(3, whiten_channels, kernel_size=k, padding=0, bias=True)
        # Frozen: its filters come from the data (init_whitening), not from SGD.
        # Its bias starts at zero and trains for the first few epochs only
        # (whitening_bias_parameters), as in airbench.
        self.whiten.weight.requires_grad_(False)
        nn.init.zeros_(self.whiten.bias)
        self.act = nn.GELU()
        # No parameters either way, so a checkpoint's weights do not depend on the image size.
        self.stem_pool = nn.MaxPool2d(config.stem_pool) if config.stem_pool > 1 else nn.Identity()
        widths = (whiten_channels, *config.widths)
        self.groups = nn.Sequential(*(ConvGroup(widths[i], widths[i + 1], config) for i in range(3)))
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.head = nn.Linear(config.widths[-1], config.num_classes, bias=False)

    @torch.no_grad()
    def init_whitening(self, images: torch.Tensor) -> None:
        """Set the stem's filters to whiten k x k patches of ``images``.

        ``images`` is a float batch (B, 3, H, W), normalised as the training
        inputs will be; a few thousand images give a stable 12x12 covariance.
        """
        weight = whitening_filters(images, self.config.whiten_kernel_size, self.config.whiten_eps)
        self.whiten.weight.copy_(weight.to(self.whiten.weight))

    def whitening_bias_parameters(self) -> list[nn.Parameter]:
        """The parameters that train for the first ``whiten_bias_epochs`` only: the stem's bias.

        The training engine stops them by zeroing the learning rate and weight
        decay of their parameter group; their ``requires_grad`` never changes.
        """
        return [self.whiten.bias]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> pooled features (B, widths[-1])."""
        x = self.act(self._whiten(x))  # (B, 24, S - 1, S - 1)
        x = self.stem_pool(x)  # (B, 24, 31, 31) at every size
        x = self.groups(x)  # (B, widths[-1], 3, 3)
        return self.pool(x).flatten(1)  # (B, widths[-1])

    def _whiten(self, x: torch.Tensor) -> torch.Tensor:
        """The whitening conv, in float32 even under autocast.

        Its filters' gains reach ~40 on real images, where bf16 rounding puts
        11-15% rms error into the highest-gain directions; the layer is under
        0.2% of the FLOPs. Without autocast it is the plain conv (as exported).
        """
        if not torch.is_autocast_enabled(x.device.type):
            return self.whiten(x)
        with torch.autocast(x.device.type, enabled=False):
            return self.whiten(x.float())

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        """(B, widths[-1]) -> logits (B, classes)."""
        return self.head(x) * self.config.logit_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def whitening_filters(images: torch.Tensor, kernel_size: int, eps: float) -> torch.Tensor:
    """Conv filters (2*C*k*k, C, k, k) that whiten the k x k patches of ``images``.

    Each eigenvector of the (uncentred; inputs are already normalised) patch
    covariance becomes a filter scaled by 1/sqrt(eigenvalue + eps), so the
    filter responses are decorrelated with unit variance; the negated copies
    let the following GELU keep both signs.
    """
    if images.ndim != 4:  # noqa: PLR2004 (B, C, H, W)
        raise ValueError(f"expected images (B, C, H, W), got shape {tuple(images.shape)}")
    channels = images.shape[1]
    patches = images.double().unfold(2, kernel_size, 1).unfold(3, kernel_size, 1)
    # (B, C, H', W', k, k) -> (B * H' * W', C * k * k), channel-major like conv weights
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, channels * kernel_size**2)
    covariance = (patches.T @ patches / len(patches)).cpu()
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)  # ascending
    filters = eigenvectors.T / torch.sqrt(eigenvalues.clamp_min(0) + eps)[:, None]
    filters = filters.flip(0).reshape(-1, channels, kernel_size, kernel_size)
    return torch.cat([filters, -filters]).float()

"""The network of the PyTorch "Training a classifier" CIFAR-10 tutorial, unchanged.

It is the baseline: small, fast to train on a laptop, and about 55-60% accurate.
At another image size the layers stay the tutorial's; only the flatten size
before ``fc1`` follows the feature map (16 x 5 x 5 at 32 px, 16 x 13 x 13 at 64).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from image_recognition.common.params import positive_int
from image_recognition.models.sizes import DEFAULT_IMAGE_SIZE, check_image_size


@dataclass
class SimpleCNNConfig:
    """The tutorial network has no knobs but its number of classes and the size of its images."""

    num_classes: int = 10  # CIFAR-10; the data's class count in a run
    image_size: int = DEFAULT_IMAGE_SIZE  # side of the square input, one of models.sizes.IMAGE_SIZES

    def __post_init__(self) -> None:
        positive_int("simple_cnn.model.num_classes", self.num_classes)
        check_image_size("simple_cnn.model.image_size", self.image_size)


def feature_map_side(image_size: int) -> int:
    """Side of the map after the two 5x5 convs (no padding) and 2x2 pools: 5 at 32 px, 13 at 64."""
    side = image_size
    for _ in range(2):
        side = (side - 4) // 2
    return side


class SimpleCNN(nn.Module):
    """conv 3->6 5x5, pool, conv 6->16 5x5, pool, fc 16*s*s->120->84->classes, ReLU (s = 5 at 32 px)."""

    def __init__(self, config: SimpleCNNConfig | None = None) -> None:
        super().__init__()
        self.config = config or SimpleCNNConfig()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        side = feature_map_side(self.config.image_size)
        self.fc1 = nn.Linear(16 * side * side, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, self.config.num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> (B, 84); the shapes below are at S = 32."""
        x = self.pool(F.relu(self.conv1(x)))  # (B, 6, 14, 14)
        x = self.pool(F.relu(self.conv2(x)))  # (B, 16, 5, 5)
        x = torch.flatten(x, 1)  # (B, 400)
        x = F.relu(self.fc1(x))
        return F.relu(self.fc2(x))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 84) -> logits (B, classes)."""
        return self.fc3(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

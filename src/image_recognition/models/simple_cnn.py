"""The network of the PyTorch "Training a classifier" CIFAR-10 tutorial, unchanged.

It is the baseline: small, fast to train on a laptop, and about 55-60% accurate.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from image_recognition.common.params import positive_int


@dataclass
class SimpleCNNConfig:
    """The tutorial network has no knobs but its number of classes."""

    num_classes: int = 10  # CIFAR-10

    def __post_init__(self) -> None:
        positive_int("simple_cnn.model.num_classes", self.num_classes)


class SimpleCNN(nn.Module):
    """conv 3->6 5x5, pool, conv 6->16 5x5, pool, fc 400->120->84->classes, ReLU."""

    def __init__(self, config: SimpleCNNConfig | None = None) -> None:
        super().__init__()
        self.config = config or SimpleCNNConfig()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, self.config.num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 32, 32) -> (B, 84)."""
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

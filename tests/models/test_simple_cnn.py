"""The tutorial network: its 84 features, and a head with one output per class."""

from __future__ import annotations

import torch

from image_recognition.models.simple_cnn import SimpleCNN, SimpleCNNConfig


def test_the_head_maps_the_84_features_to_one_logit_per_class() -> None:
    torch.manual_seed(0)
    model = SimpleCNN(SimpleCNNConfig(num_classes=3)).eval()
    images = torch.randn(2, 3, 32, 32)
    features = model.forward_features(images)
    assert features.shape == (2, 84)
    assert model(images).shape == (2, 3)
    torch.testing.assert_close(model.forward_head(features), model(images))

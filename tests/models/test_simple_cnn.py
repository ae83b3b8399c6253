"""The tutorial network: its 84 features, and a head with one output per class."""

from __future__ import annotations

import torch

from image_recognition.models.simple_cnn import SimpleCNN, SimpleCNNConfig, feature_map_side


def test_the_head_maps_the_84_features_to_one_logit_per_class() -> None:
    torch.manual_seed(0)
    model = SimpleCNN(SimpleCNNConfig(num_classes=3)).eval()
    images = torch.randn(2, 3, 32, 32)
    features = model.forward_features(images)
    assert features.shape == (2, 84)
    assert model(images).shape == (2, 3)
    torch.testing.assert_close(model.forward_head(features), model(images))


def test_at_64_px_only_the_flatten_size_changes() -> None:
    small, large = SimpleCNN(SimpleCNNConfig()), SimpleCNN(SimpleCNNConfig(image_size=64))
    assert feature_map_side(32) == 5 and feature_map_side(64) == 13
    assert large.fc1.in_features == 16 * 13 * 13
    shapes = {key: value.shape for key, value in small.state_dict().items() if not key.startswith("fc1.weight")}
    assert shapes == {key: value.shape for key, value in large.state_dict().items() if not key.startswith("fc1.weight")}
    assert large(torch.randn(2, 3, 64, 64)).shape == (2, 10)

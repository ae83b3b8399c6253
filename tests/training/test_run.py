"""The entry point: settings are checked before anything trains."""

from __future__ import annotations

import pytest

from image_recognition.training import train


@pytest.mark.parametrize(
    ("model", "training", "message"),
    [
        ("cnn", {"epochs": 1, "learning_rate": 0.1}, r"unknown parameter\(s\) training.learning_rate"),
        ("cnn", {"epochs": 0}, "epochs must be a positive integer"),
        ("cnn", {"batch_size": -8}, "batch_size must be a positive integer"),
        ("resnet", {"epochs": 1}, "model.name must be one of simple_cnn, cnn, vit, got 'resnet'"),
        ("vit", {"epochs": 1}, "patch_size 3 does not divide image_size 32"),
        ("cnn", {"translate": 32}, r"training.translate must be below the images' side \(32 pixels\)"),
        ("cnn", {"max_model_parameters": 1000}, r"more than training.max_model_parameters \(1,000\)"),
    ],
)
def test_invalid_configuration_is_refused_before_training(
    model: str, training: dict, message: str, data_args: dict
) -> None:
    model_config = {"patch_size": 3} if model == "vit" else None
    with pytest.raises(ValueError, match=message):
        train(model, model_config, training, **data_args)

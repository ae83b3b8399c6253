"""The supported image sizes: listed once, and anything else refused with them named."""

from __future__ import annotations

import pytest
from torch import nn

from image_recognition.common.errors import ParameterError
from image_recognition.models import build_model
from image_recognition.models.sizes import (
    DEFAULT_IMAGE_SIZE,
    IMAGE_SIZES,
    check_image_size,
    check_images_fit,
    model_image_size,
)


def test_the_listed_sizes_include_cifars_and_64() -> None:
    assert DEFAULT_IMAGE_SIZE == 32
    assert {32, 64} <= set(IMAGE_SIZES)
    assert all(check_image_size("cnn.model.image_size", size) == size for size in IMAGE_SIZES)


@pytest.mark.parametrize("size", [48, 0, 256, 64.0, True, "64"])
def test_another_size_is_refused_naming_the_supported_ones(size: object) -> None:
    with pytest.raises(ParameterError, match=r"cnn\.model\.image_size must be one of 32, 64, 96, 128"):
        check_image_size("cnn.model.image_size", size)


def test_a_models_image_size_is_read_from_its_config() -> None:
    assert model_image_size(build_model("simple_cnn", {"image_size": 64})) == 64
    assert model_image_size(nn.Linear(2, 2)) == DEFAULT_IMAGE_SIZE  # a model without a config


def test_images_of_another_size_than_the_models_are_refused_naming_the_setting() -> None:
    check_images_fit("cnn", 64, (10, 3, 64, 64))
    with pytest.raises(
        ParameterError, match=r"cnn\.model\.image_size is 64 but the images are 32x32.*dataset\.image_size"
    ):
        check_images_fit("cnn", 64, (10, 3, 32, 32))

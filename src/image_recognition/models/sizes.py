"""The image sizes every model builds for, and the one check of a model's ``image_size``.

Multiples of 32 up to 128: the size CIFAR comes in, and the sizes at which
each network keeps its design (see each model's docstring). A larger size
would need a streaming data stage (the decoded arrays live in memory) and a
different model recipe; a size between would leave the CNN's extra pooling
stage, or the ViT's patch grid, uneven. No Kedro imports here.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from image_recognition.common.params import one_of, parameter_error

# Side of the square RGB images a model takes, in pixels.
IMAGE_SIZES: tuple[int, ...] = (32, 64, 96, 128)
DEFAULT_IMAGE_SIZE = 32  # CIFAR's, and that of a checkpoint saved before sizes were recorded


def check_image_size(key: str, value: Any) -> int:
    """``value`` if it is one of :data:`IMAGE_SIZES`; else a ParameterError naming ``key`` and the sizes."""
    return one_of(key, value, IMAGE_SIZES)


def model_image_size(model: nn.Module) -> int:
    """The image size ``model`` was built for: its config's ``image_size``, else 32 (a model without one)."""
    return int(getattr(getattr(model, "config", None), "image_size", DEFAULT_IMAGE_SIZE))


def check_images_fit(model_name: str, image_size: int, image_shape: tuple[int, ...]) -> None:
    """Refuse images (..., H, W) that are not ``image_size`` square, naming the setting to fix.

    A convnet's global pool would run on them and silently give a design the
    model was not built for; the ViT's position embeddings would not fit.
    """
    height, width = image_shape[-2:]
    if (height, width) != (image_size, image_size):
        raise parameter_error(
            f"{model_name}.model.image_size",
            f"is {image_size} but the images are {height}x{width}; a run takes it from the data "
            "(dataset.image_size), so set neither apart",
        )

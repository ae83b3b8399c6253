"""Images and labels as tensors, checked; the normalisation of uint8 and of 0..1 images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from image_recognition.sources.tensors import Normalizer, as_label_tensor, as_uint8_tensor

CPU = torch.device("cpu")
MEAN, STD = [0.49, 0.48, 0.45], [0.25, 0.24, 0.26]


def _images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (4, 3, 8, 8), dtype=np.uint8)


def test_images_must_be_uint8_with_four_dimensions():
    images = _images()
    assert torch.equal(as_uint8_tensor(images, CPU), torch.from_numpy(images))
    for bad in (images.astype(np.float32), images[0]):
        with pytest.raises(ValueError, match=r"expected uint8 images of shape \(N, C, H, W\), got"):
            as_uint8_tensor(bad, CPU)


def test_labels_become_int64_and_must_match_the_image_count():
    labels = as_label_tensor(np.array([3, 1, 4], dtype=np.int32), 3, CPU)
    assert labels.dtype == torch.int64 and labels.tolist() == [3, 1, 4]
    with pytest.raises(ValueError, match=r"expected 4 labels, got shape \(3,\)"):
        as_label_tensor(labels, 4, CPU)


def test_normalising_is_per_channel_and_the_same_from_either_scale():
    pixels = torch.from_numpy(_images())
    normalize = Normalizer(MEAN, STD, CPU)
    expected = (pixels / 255 - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    torch.testing.assert_close(normalize(pixels), expected)
    torch.testing.assert_close(normalize.from_unit(pixels / 255), expected)
    # And back: the statistics undo it, to the pixel.
    restored = (expected * torch.tensor(STD).view(1, 3, 1, 1) + torch.tensor(MEAN).view(1, 3, 1, 1)) * 255
    assert torch.equal(restored.round().to(torch.uint8), pixels)


@pytest.mark.parametrize(
    ("mean", "std"), [(MEAN, [0.25, 0.0, 0.25]), (MEAN, [0.25, 0.24]), ([float("nan"), 0.5, 0.5], STD)]
)
def test_statistics_that_cannot_normalise_are_refused(mean, std):
    with pytest.raises(ValueError, match="recompute them from the training images"):
        Normalizer(mean, std, CPU)

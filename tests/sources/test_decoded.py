"""DecodedImages: the shape every source hands to the data stage."""

import numpy as np

from image_recognition.sources.decoded import DecodedImages


def test_a_source_without_a_test_set_and_the_defaults():
    images = np.zeros((4, 3, 32, 32), np.uint8)
    decoded = DecodedImages(images, np.arange(4) % 2, None, None, ["a", "b"])
    assert decoded.test_images is None and decoded.image_size == 32
    assert decoded.skipped == {} and decoded.fingerprint is None
    assert DecodedImages(images, np.zeros(4), None, None, ["a"]).skipped is not decoded.skipped

"""sources.images: one image file to the model's uint8 input, the same way for the data source and predict."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

import image_recognition.datasets.images as dataset_images
from image_recognition.serving import prediction
from image_recognition.sources import images
from image_recognition.sources.images import ImageError, check_inside, decode_image, to_model_input
from tests.helpers import BAD_IMAGES, EPS_NAMED_PNG, ODD_IMAGES, class_image, image_file


def test_the_names_predict_and_the_dataset_use_are_these():
    for name in ("IMAGE_FORMATS", "ImageError", "RefusedFormatError", "display_name", "open_image", "signature_format"):
        assert getattr(dataset_images, name) is getattr(images, name), name
    assert prediction.to_rgb is images.to_rgb and prediction.RESIZE_MODES == images.RESIZE_MODES


@pytest.mark.parametrize("size", [32, 64, 17])
def test_decodes_to_the_requested_size(size):
    pixels = decode_image(image_file(class_image(3, (80, 60)), "PNG"), size, "cat.png")
    assert pixels.shape == (3, size, size) and pixels.dtype == np.uint8


def test_the_crop_keeps_the_centre_of_the_shorter_side():
    wide = Image.new("RGB", (300, 100), (0, 0, 255))
    wide.paste((255, 0, 0), (100, 0, 200, 100))  # the centre square is red
    cropped = to_model_input(wide, 48)
    assert (cropped[0, :, 1:-1] == 255).all() and (cropped[2, :, 1:-1] == 0).all()  # the filter blends the edges
    padded = to_model_input(wide, 48, "pad")
    assert padded.shape == (3, 48, 48) and (padded[:, 0] == 0).all()  # black above the image


def test_predict_and_the_source_give_the_same_pixels():
    image = class_image(4, (90, 70))
    assert np.array_equal(prediction.model_input(image, "crop", 40).numpy(), to_model_input(image, 40))
    assert np.array_equal(decode_image(image_file(image, "PNG"), 40, "x.png"), to_model_input(image, 40))


@pytest.mark.parametrize("name", sorted(ODD_IMAGES))
def test_odd_images_decode(name):
    assert decode_image(ODD_IMAGES[name], 32, name).shape == (3, 32, 32)


@pytest.mark.parametrize("name", sorted(BAD_IMAGES))
def test_bad_files_are_one_error_naming_the_file(name):
    content, reason = BAD_IMAGES[name]
    with pytest.raises(ImageError, match=f"^train/{name}: {reason}"):
        decode_image(content, 32, f"train/{name}")


def test_formats_outside_the_allow_list_are_refused_by_content():
    with pytest.raises(ImageError, match="holiday.png: EPS content, a format never decoded here"):
        decode_image(EPS_NAMED_PNG, 32, "holiday.png")


def test_check_inside_refuses_links_that_leave_the_folder(tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "outside.png").write_bytes(b"x")
    os.symlink(tmp_path / "outside.png", tmp_path / "root" / "link.png")
    with pytest.raises(ImageError, match="link.png: a symbolic link to .*outside.png, outside the image folder"):
        check_inside(tmp_path / "root" / "link.png", tmp_path / "root", "link.png")
    (tmp_path / "root" / "inside.png").write_bytes(b"x")
    check_inside(tmp_path / "root" / "inside.png", tmp_path / "root", "inside.png")

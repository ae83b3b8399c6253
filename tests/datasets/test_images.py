"""ImageFolderDataset: every image file under a folder, each refused on its own when it is bad."""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest
from PIL import Image

from image_recognition.common.errors import InputError
from image_recognition.datasets.images import (
    ImageError,
    ImageFolderDataset,
    display_name,
    image_loaders,
)
from tests.helpers import (
    BAD_IMAGES,
    EPS_NAMED_PNG,
    NOT_UTF8_NAME,
    NOT_UTF8_SHOWN,
    ODD_IMAGES,
    class_image,
    image_file,
    write_class_images,
    write_files,
)


def test_loads_every_format_and_skips_other_files(tmp_path):
    labels = write_class_images(tmp_path / "in", per_class=1)
    (tmp_path / "in" / "README.txt").write_text("not an image")
    (tmp_path / "in" / "sub").mkdir()
    (tmp_path / "in" / "sub" / "UPPER.PNG").write_bytes(image_file(class_image(0), "PNG"))
    images = ImageFolderDataset(path=str(tmp_path / "in")).load()
    assert sorted(images) == sorted([*labels, "sub/UPPER.PNG"])
    assert all(isinstance(load(), Image.Image) for load in images.values())


def test_gif_gives_its_first_frame(tmp_path):
    frames = [Image.new("RGB", (8, 8), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    buffer_path = tmp_path / "in" / "anim.gif"
    buffer_path.parent.mkdir()
    frames[0].save(buffer_path, save_all=True, append_images=frames[1:])
    image = ImageFolderDataset(path=str(tmp_path / "in")).load()["anim.gif"]().convert("RGB")
    assert image.getpixel((4, 4))[0] > 200  # red, the first frame


@pytest.mark.parametrize("name", sorted(BAD_IMAGES))
def test_each_bad_file_fails_alone_with_its_name_and_the_problem(tmp_path, name):
    data, message = BAD_IMAGES[name]
    write_files(tmp_path / "in", {name: data, "good.png": image_file(class_image(1), "PNG")})
    images = ImageFolderDataset(path=str(tmp_path / "in")).load()
    assert images["good.png"]().size == (32, 32)
    with pytest.raises(ImageError, match=rf"^{name}: {message}"):
        images[name]()


def test_pillows_bomb_warning_is_an_error_at_the_folders_limit(tmp_path):
    # 12 x 12 = 144 pixels: over a limit of 100 but under twice it, where Pillow only warns.
    write_files(tmp_path / "in", {"big.png": image_file(Image.new("RGB", (12, 12)), "PNG")})
    images = ImageFolderDataset(path=str(tmp_path / "in"), max_image_pixels=100).load()
    with pytest.raises(ImageError, match="big.png: declares more than 100 pixels"):
        images["big.png"]()
    assert Image.MAX_IMAGE_PIXELS != 100  # the limit is set for the load only


@pytest.mark.parametrize("name", sorted(ODD_IMAGES))
def test_unusual_but_valid_images_load(tmp_path, name):
    write_files(tmp_path / "in", {name: ODD_IMAGES[name]})
    image = ImageFolderDataset(path=str(tmp_path / "in")).load()[name]()
    assert np.asarray(image).size > 0


def test_a_link_out_of_the_folder_is_refused_and_one_inside_is_read(tmp_path):
    outside = tmp_path / "secret.png"
    outside.write_bytes(image_file(class_image(1), "PNG"))
    folder = tmp_path / "in"
    write_files(folder, {"real.png": image_file(class_image(2), "PNG")})
    os.symlink(outside, folder / "escape.png")
    os.symlink(folder / "real.png", folder / "alias.png")
    images = ImageFolderDataset(path=str(folder)).load()
    assert images["alias.png"]().size == (32, 32)
    with pytest.raises(ImageError, match=r"escape.png: a symbolic link to .*secret.png, outside the image folder"):
        images["escape.png"]()


def test_a_folder_without_images_is_an_error_that_says_what_to_do(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "notes.txt").write_text("no images here")
    with pytest.raises(InputError, match=r"no images in .*in: put PNG, JPEG, WebP, BMP or GIF files there"):
        ImageFolderDataset(path=str(tmp_path / "in")).load()
    with pytest.raises(InputError, match="does not exist"):
        ImageFolderDataset(path=str(tmp_path / "missing")).load()


def test_loaders_for_named_files_and_folders(tmp_path):
    write_class_images(tmp_path / "folder", per_class=1)
    single = tmp_path / "one.webp"
    single.write_bytes(image_file(class_image(4), "WEBP"))
    loaders = image_loaders([single, tmp_path / "folder"])
    assert len(loaders) == 11 and str(single) in loaders
    with pytest.raises(ImageError, match="nowhere.png: no such file or folder"):
        image_loaders([tmp_path / "nowhere.png"])


def test_the_stub_ghostscript_is_what_pillow_would_run(ghostscript_runs, tmp_path):
    """Without the allow-list, EPS content named holiday.png reaches Pillow's EPS plugin, which runs gs."""
    (tmp_path / "holiday.png").write_bytes(EPS_NAMED_PNG)
    with pytest.raises(subprocess.CalledProcessError), Image.open(tmp_path / "holiday.png") as image:
        image.load()  # the stub exits 1
    assert ghostscript_runs.exists()


@pytest.mark.parametrize(
    ("name", "data", "found"),
    [
        pytest.param("holiday.png", EPS_NAMED_PNG, "EPS", id="eps"),
        pytest.param("scan.jpg", image_file(class_image(1), "TIFF"), "TIFF", id="tiff"),
        pytest.param("photo.png", image_file(class_image(2), "PPM"), "PPM", id="ppm"),
    ],
)
def test_content_outside_the_allowed_formats_is_refused_whatever_its_extension(
    ghostscript_runs, tmp_path, name, data, found
):
    paths = write_files(tmp_path / "in", {name: data})
    message = f"{found} content, a format never decoded here whatever the file's extension; convert it"
    with pytest.raises(ImageError, match=f"^{name}: {message}"):
        ImageFolderDataset(path=str(tmp_path / "in")).load()[name]()  # the folder, as the predict pipeline reads it
    with pytest.raises(ImageError, match=f"^{paths[0]}: {message}"):
        image_loaders(paths)[str(paths[0])]()  # a file named on the command line
    assert not ghostscript_runs.exists()


def read_back(shown: str) -> str:
    """The name whose display_name is ``shown``: what makes the escaping injective."""
    parts, index = [], 0
    while index < len(shown):
        if shown[index] != "\\":
            parts.append(shown[index])
            index += 1
        elif shown[index + 1] == "\\":
            parts.append("\\")
            index += 2
        elif shown[index + 1] == "x":
            parts.append(chr(0xDC00 + int(shown[index + 2 : index + 4], 16)))
            index += 4
        else:
            assert shown[index + 1] == "u", shown
            parts.append(chr(int(shown[index + 2 : index + 6], 16)))
            index += 6
    return "".join(parts)


NAMES = [
    NOT_UTF8_NAME,
    "caf\\xe9.png",  # the four characters \xe9: backslashreplace would show both names alike
    "caf\\\\xe9.png",
    "café.png",
    "a\nb\x1b[31m.png",  # a newline and a terminal escape
    "\x85\ud800.png",  # a C1 control and a lone surrogate that is no byte
    "plain/sub dir/[red]x.png",
]


def test_display_names_are_printable_utf8_and_tell_every_name_apart():
    shown = [display_name(name) for name in NAMES]
    assert display_name(NOT_UTF8_NAME) == NOT_UTF8_SHOWN
    assert len(set(shown)) == len(NAMES)
    assert [read_back(text) for text in shown] == NAMES
    assert all(text.isprintable() and text.encode("utf-8") for text in shown)
    assert display_name("café/plain name.png") == "café/plain name.png"


def test_a_name_that_is_not_utf8_loads_and_its_error_names_it_escaped(tmp_path):
    folder = tmp_path / "in"
    write_files(folder, {NOT_UTF8_NAME: b"not an image", NOT_UTF8_SHOWN: image_file(class_image(1), "PNG")})
    images = ImageFolderDataset(path=str(folder)).load()
    assert images[NOT_UTF8_SHOWN]().size == (32, 32)
    with pytest.raises(ImageError) as refused:
        images[NOT_UTF8_NAME]()
    assert str(refused.value).startswith(f"{NOT_UTF8_SHOWN}: not an image")  # printable, UTF-8, no surrogate

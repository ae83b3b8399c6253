"""Decode one image from outside the project into the model's uint8 input; no Kedro imports.

Every place the project reads an image it did not make (the image-folder data
source, ``predict``, the ``ImageFolderDataset``) decodes it here, the same way:

- only content of ``IMAGE_FORMATS``, recognised by its signature whatever the
  file's extension (``open_image``): some of Pillow's decoders run other
  programs (EPS runs Ghostscript) or are rarely exercised;
- a decompression-bomb limit set explicitly, Pillow's bomb warning an error and
  truncated images refused (``image_limits``);
- EXIF orientation applied, then RGB the standard way for the mode:
  transparency composited on white, 16- and 32-bit grey scaled to 8 bits
  (``to_rgb``);
- resized with Pillow's antialiased bilinear filter so that the shorter side is
  ``size`` pixels and centre-cropped (``crop``), or the longer side is ``size``
  pixels and padded with black (``pad``) (``to_model_input``).

Memory stays bounded whatever the image's shape: the crop is resampled from
the part of the image it keeps, so the scaled image is never built (a
1,000,000 x 1 image scaled to a 32-pixel shorter side would be 32,000,000 x 32
pixels), and 16-bit images are scaled to 8 bits a slice at a time.

Messages name files through :func:`display_name`, which escapes what a name
may hold that is not printable UTF-8.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import warnings
from collections.abc import Iterator
from typing import IO

import numpy as np
from PIL import ExifTags, Image, ImageFile, ImageOps

from image_recognition.common.errors import InputError

# Extensions read as images (any case); other files in a folder are skipped.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")
# 40 megapixels: a large photograph decodes (about 120 MB as RGB), a bomb does not.
DEFAULT_MAX_IMAGE_PIXELS = 40_000_000
# The formats decoded, by Pillow's name, with their names in messages. Every place the project
# opens an image from outside opens it with this allow-list (``open_image``).
IMAGE_FORMATS = {"PNG": "PNG", "JPEG": "JPEG", "WEBP": "WebP", "BMP": "BMP", "GIF": "GIF"}
FORMATS_HINT = f"{', '.join(list(IMAGE_FORMATS.values())[:-1])} or {list(IMAGE_FORMATS.values())[-1]}"
# How an image's aspect ratio is kept: crop the centre of the shorter side, or pad the longer side.
RESIZE_MODES = ("crop", "pad")
# What display_name escapes: a backslash, C0 and C1 control characters, and lone surrogates.
_UNPRINTABLE = re.compile(r"[\\\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# Pixels of a 16- or 32-bit grey image scaled to 8 bits at a time, as float64: 2 MB.
_GREY_SLICE = 1 << 18


class ImageError(InputError, ValueError):
    """One image file cannot be used; the message starts with its name."""


class RefusedFormatError(Exception):
    """The file's content is an image format outside ``IMAGE_FORMATS``; nothing of it was decoded."""

    def __init__(self, found: str) -> None:
        super().__init__(f"{found} content")
        self.found = found


def display_name(name: str) -> str:
    r"""``name`` as printable UTF-8 text from which the name can be read back.

    A file name may hold bytes that are not UTF-8 (Python keeps each as a lone
    surrogate, U+DC80 to U+DCFF) and control characters, which a CSV file, a
    page or a terminal cannot show as they are. Each such byte becomes
    ``\xNN`` (NN from 80 to ff), each control character or other lone surrogate
    ``\uNNNN``, and a backslash ``\\``; every other character stays. Every
    backslash in the result starts one of these escapes, so no two names share
    a display name: ``backslashreplace`` would show the byte 0xE9 and the four
    characters ``\xe9`` alike. The file whose name is the bytes ``caf\xe9.png``
    is shown as ``caf\xe9.png``; a file named ``caf\xe9.png`` in characters as
    ``caf\\xe9.png``.
    """
    return _UNPRINTABLE.sub(_escape, name)


def _escape(match: re.Match[str]) -> str:
    character = match.group()
    if character == "\\":
        return "\\\\"
    code = ord(character)
    if 0xDC80 <= code <= 0xDCFF:  # noqa: PLR2004 (the surrogates that stand for undecodable bytes)
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}"


def open_image(file: IO[bytes]) -> Image.Image:
    """The image in ``file``, decoded only if its content is one of ``IMAGE_FORMATS``.

    Pillow chooses a decoder by the content, not the name: without the
    allow-list, EPS content saved as ``holiday.png`` would run Ghostscript.
    Raises :class:`RefusedFormatError` when the content is another format that
    Pillow knows by its signature, else Pillow's own error.
    """
    try:
        return Image.open(file, formats=list(IMAGE_FORMATS)).copy()
    except Image.UnidentifiedImageError:
        file.seek(0)
        found = signature_format(file.read(16))
        if found is None or found in IMAGE_FORMATS:
            raise
        raise RefusedFormatError(found) from None


def signature_format(head: bytes) -> str | None:
    """The format Pillow would take a file starting with ``head`` for, by its signature alone; nothing is decoded."""
    Image.init()
    for name in Image.ID:
        accept = Image.OPEN[name][1]
        with contextlib.suppress(Exception):  # a check that cannot read ``head`` does not match it
            if accept is not None and accept(head):
                return name
    return None


@contextlib.contextmanager
def image_limits(max_image_pixels: int) -> Iterator[None]:
    """Pillow's pixel limit set to ``max_image_pixels``, its bomb warning an error, no truncated images."""
    saved = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
    Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = max_image_pixels, False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = saved


def failure_reason(error: BaseException, max_image_pixels: int) -> str:
    """What went wrong decoding an image file, and what to do about it."""
    if isinstance(error, Image.DecompressionBombError | Image.DecompressionBombWarning):
        return (
            f"declares more than {max_image_pixels:,} pixels, a possible decompression bomb; "
            "resize it, or raise the folder's max_image_pixels if you trust it"
        )
    if isinstance(error, RefusedFormatError):
        return (
            f"{error.found} content, a format never decoded here whatever the file's extension; "
            f"convert it to {FORMATS_HINT}, or remove it"
        )
    if isinstance(error, Image.UnidentifiedImageError):
        return f"not an image Pillow can read; replace it with a {FORMATS_HINT} file, or remove it"
    if isinstance(error, OSError) and "truncated" in str(error):
        return "the image data is truncated (an interrupted download or copy?); copy the file again"
    return f"cannot be decoded ({type(error).__name__}: {error}); replace it with a {FORMATS_HINT} file"


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` upright (its EXIF orientation) and in RGB, the standard way for its mode.

    No more than two images of its size are held at once besides ``image`` itself:
    a 40-megapixel image stays within a few hundred MB.
    """
    if image.getexif().get(ExifTags.Base.Orientation, 1) != 1:
        image = ImageOps.exif_transpose(image)  # otherwise it would only copy the image
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        image = _grey_to_8_bits(image)
    if image.mode == "P" and "transparency" in image.info or image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = image if image.mode == "RGBA" else image.convert("RGBA")
        composited = Image.new("RGB", rgba.size, (255, 255, 255))
        composited.paste(rgba, mask=rgba)  # alpha-composited on white
        return composited
    return image.convert("RGB")


def _grey_to_8_bits(image: Image.Image) -> Image.Image:
    """16- and 32-bit grey scaled to 8 bits, instead of clipping everything above 255 to white.

    A slice at a time: the image as one float64 array would take 8 bytes a pixel
    (about 1 GB, with its temporaries, for 40 megapixels).
    """
    values = np.asarray(image).reshape(-1)  # uint16, int32 or float32, as the image holds them
    peak = values.max(initial=0)
    if image.mode == "F":
        multiplier, divisor = (255.0 if peak <= 1.0 else 1.0), 1.0
    else:
        multiplier, divisor = 1.0, (257.0 if image.mode != "I" or peak > 255 else 1.0)  # noqa: PLR2004 (8 bits)
    grey = np.empty(values.shape, dtype=np.uint8)
    for start in range(0, len(values), _GREY_SLICE):
        part = values[start : start + _GREY_SLICE].astype(np.float64)
        part *= multiplier
        part /= divisor
        np.clip(np.rint(part, out=part), 0, 255, out=part)
        grey[start : start + _GREY_SLICE] = part
    return Image.fromarray(grey.reshape(image.height, image.width))


def to_model_input(image: Image.Image, size: int, resize: str = "crop") -> np.ndarray:
    """An RGB image as the model's uint8 input (3, size, size), aspect ratio kept by a crop or padding.

    ``crop`` gives the centre ``size`` x ``size`` of the image scaled to a
    ``size``-pixel shorter side, resampled straight from the part of the image
    that crop keeps (Pillow's ``box``): the same pixels, without building the
    scaled image. ``pad`` scales the longer side to ``size`` and centres the
    image on black.
    """
    width, height = image.size
    if resize == "crop":
        scale = size / min(width, height)
        scaled = (max(1, round(width * scale)), max(1, round(height * scale)))
        left, top = (round((side - size) / 2) for side in scaled)
        step_x, step_y = width / scaled[0], height / scaled[1]  # image pixels per scaled pixel
        box = (
            left * step_x,
            top * step_y,
            min(width, (left + size) * step_x),
            min(height, (top + size) * step_y),
        )
        framed = image.resize((size, size), Image.Resampling.BILINEAR, box=box)
    else:
        scale = size / max(width, height)
        fitted = (max(1, round(width * scale)), max(1, round(height * scale)))
        framed = Image.new("RGB", (size, size))  # black where the image does not reach
        framed.paste(
            image.resize(fitted, Image.Resampling.BILINEAR), ((size - fitted[0]) // 2, (size - fitted[1]) // 2)
        )
    return np.asarray(framed).transpose(2, 0, 1).copy()  # (3, size, size) uint8


def check_inside(path: str | os.PathLike[str], root: str | os.PathLike[str], name: str) -> None:
    """Raise an :class:`ImageError` naming ``name`` if ``path``, links followed, leads outside the folder ``root``."""
    real, inside = os.path.realpath(path), os.path.realpath(root)
    if os.path.commonpath([real, inside]) != inside:
        raise ImageError(
            f"{display_name(name)}: a symbolic link to {display_name(real)}, outside the image folder; "
            "copy the image into the folder instead of linking to it"
        )


def decode_image(data: bytes, size: int, name: str, max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray:
    """An image file's bytes as the model's uint8 input (3, size, size), or an :class:`ImageError`.

    ``name`` is how the message names the file (through :func:`display_name`).
    """
    shown = display_name(name)
    if not data:
        raise ImageError(f"{shown}: the file is empty (0 bytes); replace it with a {FORMATS_HINT} image")
    try:
        with image_limits(max_image_pixels):
            image = open_image(io.BytesIO(data))
            return to_model_input(to_rgb(image), size)
    except Exception as exc:  # noqa: BLE001 (every decoding failure becomes one message about this file)
        raise ImageError(f"{shown}: {failure_reason(exc, max_image_pixels)}") from exc

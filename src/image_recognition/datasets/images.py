"""A folder of images from outside the project, each checked before it is decoded.

``ImageFolderDataset`` is a ``PartitionedDataset`` of
``AllowedFormatImageDataset`` (kedro-datasets' ``pillow.ImageDataset``,
decoding only ``IMAGE_FORMATS``): loading gives one callable per image file,
named by its path under the folder, so one bad file fails on its own and the
node decides whether that stops the run. Every image arrives from outside, so each
load refuses, with an :class:`ImageError` that names the file, the problem and
the fix:

- a file whose content is not one of ``IMAGE_FORMATS``, whatever its
  extension: Pillow picks a decoder by content, and some of its decoders run
  other programs (EPS runs Ghostscript) or are rarely exercised;
- a file that is not an image, is truncated or is empty;
- a decompression bomb: more than ``max_image_pixels`` pixels (set
  explicitly, not left to Pillow's global default; Pillow's warning for
  images above it is an error here);
- on the local filesystem, a symbolic link that leads outside the folder.

Messages and prediction tables show file names through :func:`display_name`,
which escapes what a name may hold that is not printable UTF-8.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import warnings
from collections.abc import Callable, Iterator
from copy import deepcopy
from pathlib import Path, PurePosixPath
from typing import IO, Any

from kedro.io.core import DatasetError, get_filepath_str
from kedro_datasets.partitions import PartitionedDataset
from kedro_datasets.pillow import ImageDataset
from PIL import Image, ImageFile

from image_recognition.common.errors import InputError

logger = logging.getLogger(__name__)

# Extensions read as images (any case); other files in the folder are skipped.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")
# 40 megapixels: a large photograph decodes (about 120 MB as RGB), a bomb does not.
DEFAULT_MAX_IMAGE_PIXELS = 40_000_000
# The formats decoded, by Pillow's name, with their names in messages. Every place the project
# opens an image from outside opens it with this allow-list (``open_image``).
IMAGE_FORMATS = {"PNG": "PNG", "JPEG": "JPEG", "WEBP": "WebP", "BMP": "BMP", "GIF": "GIF"}
_FORMATS_HINT = f"{', '.join(list(IMAGE_FORMATS.values())[:-1])} or {list(IMAGE_FORMATS.values())[-1]}"
# What display_name escapes: a backslash, C0 and C1 control characters, and lone surrogates.
_UNPRINTABLE = re.compile(r"[\\\x00-\x1f\x7f-\x9f\ud800-\udfff]")


class ImageError(InputError, ValueError):
    """One image file cannot be used; the message starts with its name."""


class ImageFolderError(InputError, DatasetError):
    """The image folder is missing or has no images.

    A ``DatasetError`` too, so that Kedro passes it on from ``load()`` unwrapped
    and ``kedro run`` prints its one-line message.
    """


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


class AllowedFormatImageDataset(ImageDataset):
    """kedro-datasets' ``pillow.ImageDataset`` that decodes only ``IMAGE_FORMATS`` (``open_image``)."""

    def load(self) -> Image.Image:
        load_path = get_filepath_str(self._get_load_path(), self._protocol)
        with self._fs.open(load_path, **self._fs_open_args_load) as file:
            return open_image(file)


class ImageFolderDataset(PartitionedDataset):
    """The image files under ``path`` (recursively), as ``{relative path: load}``.

    Each ``load()`` returns a decoded ``PIL.Image`` or raises :class:`ImageError`.
    Partition ids keep their extension (``cats/1.jpg``), since files of many
    formats share the folder. Read-only: predictions are written elsewhere.

    Example catalog entry::

        predict_images:
          type: image_recognition.datasets.ImageFolderDataset
          path: data/09_predict
          max_image_pixels: 40000000
    """

    def __init__(  # noqa: PLR0913 (PartitionedDataset's arguments, and the image limits)
        self,
        *,
        path: str,
        extensions: tuple[str, ...] | list[str] = IMAGE_EXTENSIONS,
        max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
        credentials: dict[str, Any] | None = None,
        load_args: dict[str, Any] | None = None,
        fs_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(max_image_pixels, int) or max_image_pixels < 1:
            raise DatasetError(f"max_image_pixels must be a positive integer, got {max_image_pixels!r}")
        super().__init__(
            path=path,
            dataset={"type": AllowedFormatImageDataset},
            credentials=credentials,
            load_args=load_args,
            fs_args=fs_args,
            metadata=metadata,
        )
        self._extensions = tuple(extension.lower() for extension in extensions)
        self._max_image_pixels = max_image_pixels

    def load(self) -> dict[str, Callable[[], Image.Image]]:
        self._invalidate_caches()
        filesystem = self._filesystem
        if not filesystem.isdir(self._normalized_path):
            raise ImageFolderError(
                f"the image folder {display_name(self._path)} does not exist: create it and put images in it, "
                "or point predict.input_dir at a folder of images"
            )
        root = self._filesystem._strip_protocol(self._normalized_path)
        partitions: dict[str, Callable[[], Image.Image]] = {}
        skipped = 0
        for path in self._list_partitions():
            if PurePosixPath(path).suffix.lower() not in self._extensions:
                skipped += 1
                continue
            dataset = self._dataset_type(**{**deepcopy(self._dataset_config), "filepath": self._join_protocol(path)})
            partition_id = self._path_to_partition(path)
            inside = root if self._protocol == "file" else None
            partitions[partition_id] = functools.partial(
                read_image, partition_id, dataset.load, path, inside, self._max_image_pixels, filesystem.size
            )
        if skipped:
            logger.info(
                "skipped %d files in %s that are not %s images by extension",
                skipped,
                display_name(self._path),
                _FORMATS_HINT,
            )
        if not partitions:
            raise ImageFolderError(
                f"no images in {display_name(self._path)}: put {_FORMATS_HINT} files there "
                f"({', '.join(self._extensions)}), or point predict.input_dir at a folder that has them"
            )
        return dict(sorted(partitions.items()))

    def save(self, data: dict[str, Any]) -> None:
        raise DatasetError(f"{type(self).__name__} is read-only: it holds the images to predict")


def image_loaders(
    paths: list[Path] | tuple[Path, ...], max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
) -> dict[str, Callable[[], Image.Image]]:
    """A checked loader per image: each file in ``paths``, and each image file under each folder in it.

    Files named directly are read whatever their extension; in a folder, only
    image extensions count, and links may not lead out of it (``ImageFolderDataset``).
    """
    loaders: dict[str, Callable[[], Image.Image]] = {}
    for path in paths:
        if path.is_dir():
            folder = ImageFolderDataset(path=str(path), max_image_pixels=max_image_pixels).load()
            loaders.update({str(path / name): load for name, load in folder.items()})
        elif path.is_file():
            dataset = AllowedFormatImageDataset(filepath=str(path))
            loaders[str(path)] = functools.partial(
                read_image, str(path), dataset.load, str(path), None, max_image_pixels, os.path.getsize
            )
        else:
            raise ImageError(f"{display_name(str(path))}: no such file or folder; check the path")
    return loaders


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


def read_image(  # noqa: PLR0913 (the file, how to read it and its limits)
    name: str,
    load: Callable[[], Image.Image],
    path: str,
    inside: str | None,
    max_image_pixels: int,
    size: Callable[[str], int],
) -> Image.Image:
    """The decoded image ``name`` at ``path``, or an :class:`ImageError` naming what is wrong with it.

    The message starts with the name as :func:`display_name` shows it.

    ``inside``: a local folder that the real path must stay in (symbolic links
    may not lead out of it); ``size``: the file's size in bytes.
    """
    shown = display_name(name)
    if inside is not None:
        real, root = os.path.realpath(path), os.path.realpath(inside)
        if os.path.commonpath([real, root]) != root:
            raise ImageError(
                f"{shown}: a symbolic link to {display_name(real)}, outside the image folder; "
                "copy the image into the folder instead of linking to it"
            )
    try:
        if size(path) == 0:
            raise ImageError(f"{shown}: the file is empty (0 bytes); replace it with a {_FORMATS_HINT} image")
        with image_limits(max_image_pixels):
            return load()
    except ImageError:
        raise
    except Exception as exc:  # noqa: BLE001 (every decoding failure becomes one message about this file)
        cause = exc.__cause__ if isinstance(exc, DatasetError) and exc.__cause__ else exc
        raise ImageError(f"{shown}: {_reason(cause, max_image_pixels)}") from cause


def _reason(error: BaseException, max_image_pixels: int) -> str:
    """What went wrong with an image file, and what to do about it."""
    if isinstance(error, Image.DecompressionBombError | Image.DecompressionBombWarning):
        return (
            f"declares more than {max_image_pixels:,} pixels, a possible decompression bomb; "
            "resize it, or raise the folder's max_image_pixels if you trust it"
        )
    if isinstance(error, RefusedFormatError):
        return (
            f"{error.found} content, a format never decoded here whatever the file's extension; "
            f"convert it to {_FORMATS_HINT}, or remove it"
        )
    if isinstance(error, Image.UnidentifiedImageError):
        return f"not an image Pillow can read; replace it with a {_FORMATS_HINT} file, or remove it"
    if isinstance(error, OSError) and "truncated" in str(error):
        return "the image data is truncated (an interrupted download or copy?); copy the file again"
    return f"cannot be decoded ({type(error).__name__}: {error}); replace it with a {_FORMATS_HINT} file"

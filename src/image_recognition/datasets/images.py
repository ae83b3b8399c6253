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
which escapes what a name may hold that is not printable UTF-8. The decoding
itself (the allow-list, the limits, the reasons) lives in
``sources.images``; the names it defines are importable from here too.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from copy import deepcopy
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io.core import DatasetError, get_filepath_str
from kedro_datasets.partitions import PartitionedDataset
from kedro_datasets.pillow import ImageDataset
from PIL import Image

from image_recognition.common.errors import InputError
from image_recognition.sources.images import (
    DEFAULT_MAX_IMAGE_PIXELS,
    FORMATS_HINT,
    IMAGE_EXTENSIONS,
    IMAGE_FORMATS,
    ImageError,
    RefusedFormatError,
    check_inside,
    display_name,
    failure_reason,
    image_limits,
    open_image,
    signature_format,
)

__all__ = [
    "DEFAULT_MAX_IMAGE_PIXELS",
    "IMAGE_EXTENSIONS",
    "IMAGE_FORMATS",
    "AllowedFormatImageDataset",
    "ImageError",
    "ImageFolderDataset",
    "ImageFolderError",
    "RefusedFormatError",
    "display_name",
    "image_limits",
    "image_loaders",
    "open_image",
    "read_image",
    "signature_format",
]

logger = logging.getLogger(__name__)


class ImageFolderError(InputError, DatasetError):
    """The image folder is missing or has no images.

    A ``DatasetError`` too, so that Kedro passes it on from ``load()`` unwrapped
    and ``kedro run`` prints its one-line message.
    """


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
                FORMATS_HINT,
            )
        if not partitions:
            raise ImageFolderError(
                f"no images in {display_name(self._path)}: put {FORMATS_HINT} files there "
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
        check_inside(path, inside, name)
    try:
        if size(path) == 0:
            raise ImageError(f"{shown}: the file is empty (0 bytes); replace it with a {FORMATS_HINT} image")
        with image_limits(max_image_pixels):
            return load()
    except ImageError:
        raise
    except Exception as exc:  # noqa: BLE001 (every decoding failure becomes one message about this file)
        cause = exc.__cause__ if isinstance(exc, DatasetError) and exc.__cause__ else exc
        raise ImageError(f"{shown}: {failure_reason(cause, max_image_pixels)}") from cause

"""A folder of images from outside the project, each checked before it is decoded.

``ImageFolderDataset`` is a ``PartitionedDataset`` of kedro-datasets'
``pillow.ImageDataset``: loading gives one callable per image file, named by
its path under the folder, so one bad file fails on its own and the node
decides whether that stops the run. Every image arrives from outside, so each
load refuses, with an :class:`ImageError` that names the file, the problem and
the fix:

- a file that is not an image, is truncated or is empty;
- a decompression bomb: more than ``max_image_pixels`` pixels (set
  explicitly, not left to Pillow's global default; Pillow's warning for
  images above it is an error here);
- on the local filesystem, a symbolic link that leads outside the folder.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import warnings
from collections.abc import Callable, Iterator
from copy import deepcopy
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io.core import DatasetError
from kedro_datasets.partitions import PartitionedDataset
from kedro_datasets.pillow import ImageDataset
from PIL import Image, ImageFile

from image_recognition.errors import InputError

logger = logging.getLogger(__name__)

# Extensions read as images (any case); other files in the folder are skipped.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")
# 40 megapixels: a large photograph decodes (about 120 MB as RGB), a bomb does not.
DEFAULT_MAX_IMAGE_PIXELS = 40_000_000
_FORMATS_HINT = "PNG, JPEG, WebP, BMP or GIF"


class ImageError(InputError, ValueError):
    """One image file cannot be used; the message starts with its name."""


class ImageFolderError(InputError, DatasetError):
    """The image folder is missing or has no images.

    A ``DatasetError`` too, so that Kedro passes it on from ``load()`` unwrapped
    and ``kedro run`` prints its one-line message.
    """


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
            dataset={"type": "pillow.ImageDataset"},
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
                f"the image folder {self._path} does not exist: create it and put images in it, "
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
                "skipped %d files in %s that are not %s images by extension", skipped, self._path, _FORMATS_HINT
            )
        if not partitions:
            raise ImageFolderError(
                f"no images in {self._path}: put {_FORMATS_HINT} files there "
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
            dataset = ImageDataset(filepath=str(path))
            loaders[str(path)] = functools.partial(
                read_image, str(path), dataset.load, str(path), None, max_image_pixels, os.path.getsize
            )
        else:
            raise ImageError(f"{path}: no such file or folder; check the path")
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

    ``inside``: a local folder that the real path must stay in (symbolic links
    may not lead out of it); ``size``: the file's size in bytes.
    """
    if inside is not None:
        real, root = os.path.realpath(path), os.path.realpath(inside)
        if os.path.commonpath([real, root]) != root:
            raise ImageError(
                f"{name}: a symbolic link to {real}, outside the image folder; "
                "copy the image into the folder instead of linking to it"
            )
    try:
        if size(path) == 0:
            raise ImageError(f"{name}: the file is empty (0 bytes); replace it with a {_FORMATS_HINT} image")
        with image_limits(max_image_pixels):
            return load()
    except ImageError:
        raise
    except Exception as exc:  # noqa: BLE001 (every decoding failure becomes one message about this file)
        cause = exc.__cause__ if isinstance(exc, DatasetError) and exc.__cause__ else exc
        raise ImageError(f"{name}: {_reason(cause, max_image_pixels)}") from cause


def _reason(error: BaseException, max_image_pixels: int) -> str:
    """What went wrong with an image file, and what to do about it."""
    if isinstance(error, Image.DecompressionBombError | Image.DecompressionBombWarning):
        return (
            f"declares more than {max_image_pixels:,} pixels, a possible decompression bomb; "
            "resize it, or raise the folder's max_image_pixels if you trust it"
        )
    if isinstance(error, Image.UnidentifiedImageError):
        return f"not an image Pillow can read; replace it with a {_FORMATS_HINT} file, or remove it"
    if isinstance(error, OSError) and "truncated" in str(error):
        return "the image data is truncated (an interrupted download or copy?); copy the file again"
    return f"cannot be decoded ({type(error).__name__}: {error}); replace it with a {_FORMATS_HINT} file"

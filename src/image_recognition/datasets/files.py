"""Base of the project's versioned one-file datasets, on any fsspec filesystem.

``filepath`` is a local path or an fsspec URL (``s3://bucket/key``,
``gs://``, ``abfs://``, ``memory://``), with ``credentials`` and ``fs_args``
passed to the filesystem as kedro-datasets' own datasets do; versioning works
the same everywhere.

Writes never leave half a file where a reader would take it for a whole one:
on the local filesystem through a temporary file renamed into place; elsewhere
the bytes are built in memory and written in one call once complete (one PUT
on an object store, so readers see the old object or the new one). On a
remote filesystem that is not an object store (SFTP, say) that last write is
not atomic.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from copy import deepcopy
from pathlib import PurePosixPath
from typing import IO, Any, TypeVar

import fsspec
from kedro.io.core import AbstractVersionedDataset, DatasetError, Version, get_filepath_str, get_protocol_and_path

from image_recognition.common.atomic import atomic_write

_In = TypeVar("_In")
_Out = TypeVar("_Out")


@contextlib.contextmanager
def whole_file_writer(fs: fsspec.AbstractFileSystem, protocol: str, path: str) -> Iterator[IO[bytes]]:
    """A binary file to write ``path`` through: ``path`` appears only once the block succeeds, whole.

    Locally a temporary file beside ``path`` (``.<name>.*.partial``, never
    globbed as a version) renamed into place; elsewhere one write of the
    complete bytes. ``path`` is a path of ``fs`` (see ``get_filepath_str``).
    """
    if protocol == "file":
        with atomic_write(path) as handle:
            yield handle
    else:
        buffer = io.BytesIO()
        yield buffer
        fs.pipe_file(path, buffer.getvalue())


class FileDataset(AbstractVersionedDataset[_In, _Out]):
    """Constructor, filesystem, reads, atomic writes and existence shared by the one-file datasets."""

    def __init__(  # noqa: PLR0913 (kedro-datasets' constructor arguments)
        self,
        filepath: str,
        version: Version | None = None,
        credentials: dict[str, Any] | None = None,
        fs_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        protocol, path = get_protocol_and_path(filepath, version)
        fs_args = deepcopy(fs_args) or {}
        if protocol == "file":
            fs_args.setdefault("auto_mkdir", True)
        self._protocol = protocol
        self._fs = fsspec.filesystem(protocol, **deepcopy(credentials or {}), **fs_args)
        super().__init__(
            filepath=PurePosixPath(path),
            version=version,
            exists_function=self._fs.exists,
            glob_function=self._fs.glob,
        )
        self.metadata = metadata

    @contextlib.contextmanager
    def _reader(self) -> Iterator[IO[bytes]]:
        """The file to load, opened for reading (the pinned or latest version)."""
        with self._fs.open(get_filepath_str(self._get_load_path(), self._protocol), "rb") as handle:
            yield handle

    @contextlib.contextmanager
    def _writer(self) -> Iterator[IO[bytes]]:
        """A binary file to save into; it becomes the saved version only if the block succeeds."""
        with whole_file_writer(
            self._fs, self._protocol, get_filepath_str(self._get_save_path(), self._protocol)
        ) as handle:
            yield handle
        self._invalidate_cache()

    def _exists(self) -> bool:
        try:
            path = get_filepath_str(self._get_load_path(), self._protocol)
        except DatasetError:  # no version saved yet
            return False
        return self._fs.exists(path)

    def _release(self) -> None:
        super()._release()
        self._invalidate_cache()

    def _invalidate_cache(self) -> None:
        """Forget the filesystem's listing, so the next load sees what was just saved."""
        self._fs.invalidate_cache(get_filepath_str(self._filepath, self._protocol))

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "protocol": self._protocol, "version": self._version}


def saved_versions(dataset: AbstractVersionedDataset) -> list[str]:
    """The versions of a versioned one-file dataset that hold their file, oldest first."""
    fs, protocol = dataset._fs, getattr(dataset, "_protocol", "file")
    folder = get_filepath_str(dataset._filepath, protocol)
    if not fs.isdir(folder):
        return []
    name = PurePosixPath(folder).name
    return sorted(PurePosixPath(entry).name for entry in fs.ls(folder, detail=False) if fs.exists(f"{entry}/{name}"))


class BytesDataset(FileDataset[bytes, bytes]):
    """A file's bytes as they are (an ONNX graph, safetensors weights), versioned and written atomically.

    Example catalog entry::

        onnx_model:
          type: image_recognition.datasets.BytesDataset
          filepath: data/06_models/export/model.onnx
          versioned: true
    """

    def load(self) -> bytes:
        with self._reader() as handle:
            return handle.read()

    def save(self, data: bytes) -> None:
        if not isinstance(data, bytes | bytearray):
            raise DatasetError(f"{type(self).__name__} saves bytes, got {type(data).__name__}")
        with self._writer() as handle:
            handle.write(data)

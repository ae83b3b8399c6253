"""Base of the project's versioned datasets that store one local file."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from kedro.io.core import AbstractVersionedDataset, Version

_In = TypeVar("_In")
_Out = TypeVar("_Out")


class LocalFileDataset(AbstractVersionedDataset[_In, _Out]):
    """Constructor, existence check and description shared by the local-file datasets."""

    def __init__(self, filepath: str, version: Version | None = None, metadata: dict[str, Any] | None = None) -> None:
        super().__init__(filepath=PurePosixPath(filepath), version=version)
        self.metadata = metadata

    def _exists(self) -> bool:
        return Path(str(self._get_load_path())).is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "version": self._version}

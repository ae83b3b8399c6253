"""``TorchCheckpointDataset``: a training checkpoint, saved atomically, loaded without pickle."""

from __future__ import annotations

from typing import Any

import torch
from kedro.io.core import DatasetError, Version

from image_recognition.common.params import positive_int
from image_recognition.datasets.files import FileDataset
from image_recognition.models import MAX_MODEL_PARAMETERS
from image_recognition.training.checkpoint import CheckpointError, load_checkpoint


class CheckpointFileError(CheckpointError, DatasetError):
    """A checkpoint file is refused (:class:`CheckpointError`).

    A ``DatasetError`` too, so that Kedro passes it on from ``load()`` unwrapped
    and ``kedro run`` and ``image-recognition predict`` print its one-line message.
    """


class TorchCheckpointDataset(FileDataset[dict[str, Any], dict[str, Any]]):
    """A checkpoint dict (model state, config, optimizer, history, ...) as a ``.pt`` file.

    Loading uses ``torch.load(weights_only=True)``, so a tampered file cannot run
    code, and refuses a model config that is invalid, does not match the
    weights, or builds a model of more than ``max_model_parameters`` parameters
    (counted before anything is allocated). A save is atomic
    (:class:`FileDataset`), so a crash never leaves a torn checkpoint where a
    later run would load it. The file can live on any fsspec filesystem.

    Example catalog entry::

        "{namespace}.checkpoint":
          type: image_recognition.datasets.TorchCheckpointDataset
          filepath: data/06_models/{namespace}/checkpoint.pt
          versioned: true
          max_model_parameters: 300000000
    """

    def __init__(  # noqa: PLR0913 (kedro-datasets' constructor arguments, and the size limit)
        self,
        filepath: str,
        version: Version | None = None,
        credentials: dict[str, Any] | None = None,
        fs_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        max_model_parameters: int = MAX_MODEL_PARAMETERS,
    ) -> None:
        super().__init__(filepath, version=version, credentials=credentials, fs_args=fs_args, metadata=metadata)
        self._max_model_parameters = positive_int("max_model_parameters", max_model_parameters)

    def load(self) -> dict[str, Any]:
        limit = "max_model_parameters of its catalog entry"
        with self._reader() as handle:
            try:
                return load_checkpoint(handle, max_model_parameters=self._max_model_parameters, limit_name=limit)
            except CheckpointError as exc:
                raise CheckpointFileError(str(exc)) from None

    def save(self, data: dict[str, Any]) -> None:
        if not isinstance(data, dict):
            raise DatasetError(f"{type(self).__name__} saves a checkpoint dict, got {type(data).__name__}")
        with self._writer() as handle:
            torch.save(data, handle)

"""``TorchCheckpointDataset``: a training checkpoint, saved atomically, loaded without pickle."""

from __future__ import annotations

from typing import Any

import torch
from kedro.io.core import DatasetError

from image_recognition.datasets.files import FileDataset
from image_recognition.training.checkpoint import load_checkpoint


class TorchCheckpointDataset(FileDataset[dict[str, Any], dict[str, Any]]):
    """A checkpoint dict (model state, config, optimizer, history, ...) as a ``.pt`` file.

    Loading uses ``torch.load(weights_only=True)``, so a tampered file cannot run
    code; a save is atomic (:class:`FileDataset`), so a crash never leaves a
    torn checkpoint where a later run would load it. The file can live on any
    fsspec filesystem.

    Example catalog entry::

        "{namespace}.checkpoint":
          type: image_recognition.datasets.TorchCheckpointDataset
          filepath: data/06_models/{namespace}/checkpoint.pt
          versioned: true
    """

    def load(self) -> dict[str, Any]:
        with self._reader() as handle:
            return load_checkpoint(handle)

    def save(self, data: dict[str, Any]) -> None:
        if not isinstance(data, dict):
            raise DatasetError(f"{type(self).__name__} saves a checkpoint dict, got {type(data).__name__}")
        with self._writer() as handle:
            torch.save(data, handle)

"""``TorchCheckpointDataset``: a training checkpoint, saved atomically, loaded without pickle."""

from __future__ import annotations

from typing import Any

from kedro.io.core import DatasetError

from image_recognition.datasets.local import LocalFileDataset
from image_recognition.training.checkpoint import load_checkpoint, save_checkpoint


class TorchCheckpointDataset(LocalFileDataset[dict[str, Any], dict[str, Any]]):
    """A checkpoint dict (model state, config, optimizer, history, ...) as a ``.pt`` file.

    Loading uses ``torch.load(weights_only=True)``, so a tampered file cannot run
    code; saving writes a temporary file and renames it, so a crash never
    leaves a torn checkpoint where a later run would load it.

    Example catalog entry::

        "{namespace}.checkpoint":
          type: image_recognition.datasets.TorchCheckpointDataset
          filepath: data/06_models/{namespace}/checkpoint.pt
          versioned: true
    """

    def load(self) -> dict[str, Any]:
        return load_checkpoint(str(self._get_load_path()))

    def save(self, data: dict[str, Any]) -> None:
        if not isinstance(data, dict):
            raise DatasetError(f"{type(self).__name__} saves a checkpoint dict, got {type(data).__name__}")
        save_checkpoint(data, str(self._get_save_path()))

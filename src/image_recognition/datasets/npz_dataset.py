"""``NpzDataset``: a dict of numpy arrays in one uncompressed ``.npz`` file.

Arrays keep their dtype (uint8 images stay uint8, a quarter of float32's size),
loading never unpickles (``allow_pickle=False``), and a save is atomic. The
file can live on any fsspec filesystem (:class:`FileDataset`).
"""

from __future__ import annotations

import numpy as np
from kedro.io.core import DatasetError

from image_recognition.datasets.files import FileDataset


class NpzDataset(FileDataset[dict[str, np.ndarray], dict[str, np.ndarray]]):
    """Save and load ``{name: ndarray}`` as an ``.npz`` file, optionally versioned.

    Example catalog entry::

        cifar10_train:
          type: image_recognition.datasets.NpzDataset
          filepath: data/05_model_input/cifar10_train.npz
          versioned: true
    """

    def load(self) -> dict[str, np.ndarray]:
        with self._reader() as handle, np.load(handle, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}

    def save(self, data: dict[str, np.ndarray]) -> None:
        if not isinstance(data, dict) or not all(isinstance(v, np.ndarray) for v in data.values()):
            raise DatasetError(f"{type(self).__name__} saves a dict of numpy arrays, got {type(data).__name__}")
        object_arrays = [name for name, array in data.items() if array.dtype.hasobject]
        if object_arrays:
            raise DatasetError(f"object arrays cannot be stored without pickle: {object_arrays}")
        with self._writer() as handle:
            np.savez(handle, **data)

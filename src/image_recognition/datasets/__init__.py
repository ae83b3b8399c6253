"""Custom Kedro datasets: compact, pickle-free storage for arrays and checkpoints; folders of images.

They import Kedro and the plain-PyTorch packages below them, never the glue or the pipelines.

Every dataset here that saves writes the whole file or nothing (a killed run
leaves no torn version); the catalog uses them for every versioned output.
"""

from image_recognition.datasets.checkpoint_dataset import TorchCheckpointDataset
from image_recognition.datasets.files import BytesDataset
from image_recognition.datasets.images import ImageFolderDataset
from image_recognition.datasets.npz_dataset import NpzDataset
from image_recognition.datasets.optional import OptionalCSVDataset, OptionalJSONDataset
from image_recognition.datasets.text_files import (
    AtomicCSVDataset,
    AtomicJSONDataset,
    AtomicPlotlyDataset,
    AtomicTextDataset,
)

__all__ = [
    "AtomicCSVDataset",
    "AtomicJSONDataset",
    "AtomicPlotlyDataset",
    "AtomicTextDataset",
    "BytesDataset",
    "ImageFolderDataset",
    "NpzDataset",
    "OptionalCSVDataset",
    "OptionalJSONDataset",
    "TorchCheckpointDataset",
]

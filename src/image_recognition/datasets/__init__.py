"""Custom Kedro datasets: compact, pickle-free storage for arrays and checkpoints; folders of images."""

from image_recognition.datasets.checkpoint_dataset import TorchCheckpointDataset
from image_recognition.datasets.files import BytesDataset
from image_recognition.datasets.images import ImageFolderDataset
from image_recognition.datasets.npz_dataset import NpzDataset
from image_recognition.datasets.optional import OptionalCSVDataset, OptionalJSONDataset

__all__ = [
    "BytesDataset",
    "ImageFolderDataset",
    "NpzDataset",
    "OptionalCSVDataset",
    "OptionalJSONDataset",
    "TorchCheckpointDataset",
]

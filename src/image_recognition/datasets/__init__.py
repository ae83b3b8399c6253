"""Custom Kedro datasets: compact, pickle-free storage for arrays and checkpoints."""

from image_recognition.datasets.checkpoint_dataset import TorchCheckpointDataset
from image_recognition.datasets.npz_dataset import NpzDataset
from image_recognition.datasets.optional import OptionalCSVDataset, OptionalJSONDataset

__all__ = ["NpzDataset", "OptionalCSVDataset", "OptionalJSONDataset", "TorchCheckpointDataset"]

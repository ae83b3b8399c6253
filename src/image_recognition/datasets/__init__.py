"""Custom Kedro datasets: compact, pickle-free storage for arrays and checkpoints."""

from image_recognition.datasets.npz_dataset import NpzDataset

__all__ = ["NpzDataset"]

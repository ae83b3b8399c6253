"""TorchCheckpointDataset: a checkpoint round-trips as weights only, never as pickled code."""

from __future__ import annotations

import pytest
import torch

from image_recognition.datasets import TorchCheckpointDataset
from image_recognition.models import build_model


def test_checkpoint_dataset_roundtrip_is_weights_only(tmp_path):
    model = build_model("simple_cnn")
    checkpoint = {"format": 1, "model_state": model.state_dict(), "model_name": "simple_cnn", "epoch": 2}
    dataset = TorchCheckpointDataset(str(tmp_path / "checkpoint.pt"))
    dataset.save(checkpoint)
    loaded = dataset.load()
    assert loaded["epoch"] == 2
    torch.testing.assert_close(loaded["model_state"]["conv1.weight"], model.state_dict()["conv1.weight"])


def test_checkpoint_dataset_refuses_pickled_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "checkpoint.pt"
    torch.save({"format": 1, "x": Evil()}, path)
    with pytest.raises(Exception, match="Weights only load failed|Unsupported global"):
        TorchCheckpointDataset(str(path)).load()

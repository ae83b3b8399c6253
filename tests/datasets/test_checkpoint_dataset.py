"""TorchCheckpointDataset: a checkpoint round-trips as weights only; a crafted one is refused in one line."""

from __future__ import annotations

import os

import pytest
import torch
from kedro.io.core import DatasetError

from image_recognition.common.errors import InputError
from image_recognition.datasets import TorchCheckpointDataset
from image_recognition.models import build_model, count_parameters
from tests.helpers import fake_checkpoint


class RunsCode:
    def __reduce__(self):
        return (os.system, ("true",))


def test_checkpoint_dataset_roundtrip_is_weights_only(tmp_path):
    model = build_model("simple_cnn")
    checkpoint = {"format": 1, "model_state": model.state_dict(), "model_name": "simple_cnn", "epoch": 2}
    dataset = TorchCheckpointDataset(str(tmp_path / "checkpoint.pt"))
    dataset.save(checkpoint)
    loaded = dataset.load()
    assert loaded["epoch"] == 2
    torch.testing.assert_close(loaded["model_state"]["conv1.weight"], model.state_dict()["conv1.weight"])


def _crafted(case: str) -> object:
    checkpoint = fake_checkpoint("cnn")
    if case == "pickled_code":
        return {**checkpoint, "model_config": RunsCode()}
    if case == "huge_model":  # a few hundred KB of weights, a config of 44 billion parameters
        return {**checkpoint, "model_config": {**checkpoint["model_config"], "widths": [4096, 8192, 65536]}}
    if case == "weights_of_another_shape":
        return {**checkpoint, "model_config": {**checkpoint["model_config"], "widths": [16, 32, 64]}}
    if case == "invalid_config":
        return {**checkpoint, "model_config": {"widht": 3}}
    raise AssertionError(case)


# Each crafted checkpoint and the one-line message it must be refused with.
CRAFTED = {
    "pickled_code": r"refused: it pickles a call to (posix|os|nt)\.system, which a weights-only load does not run",
    "huge_model": r"refused: cnn model has 44,545,360,184 parameters, more than max_model_parameters of its catalog "
    r"entry \(300,000,000\); raise max_model_parameters of its catalog entry if you trust this checkpoint",
    "weights_of_another_shape": r"refused: its model_state does not fit its cnn model config \(groups\.2\.conv1\.weight",
    "invalid_config": r"refused: its model config is invalid \(unknown parameter\(s\) cnn.model.widht",
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_a_crafted_checkpoint_is_refused_in_one_line_naming_the_file(tmp_path, case):
    path = tmp_path / "checkpoint.pt"
    torch.save(_crafted(case), path)
    with pytest.raises(InputError, match=CRAFTED[case]) as refused:
        TorchCheckpointDataset(str(path)).load()
    message = str(refused.value)
    assert isinstance(refused.value, DatasetError)  # so Kedro passes it on unwrapped, and the CLIs print one line
    assert message.startswith(f"checkpoint {path} ") and "\n" not in message


def test_a_truncated_checkpoint_is_refused_in_one_line(tmp_path):
    path = tmp_path / "checkpoint.pt"
    torch.save(fake_checkpoint("cnn"), path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(
        InputError, match="cannot be read .*: it is truncated or not a PyTorch file; delete it"
    ) as refused:
        TorchCheckpointDataset(str(path)).load()
    assert "\n" not in str(refused.value)


def test_the_model_size_limit_is_set_on_the_catalog_entry(tmp_path):
    path = tmp_path / "checkpoint.pt"
    checkpoint = fake_checkpoint("cnn")
    torch.save(checkpoint, path)
    size = count_parameters(build_model("cnn", checkpoint["model_config"]))
    assert TorchCheckpointDataset(str(path), max_model_parameters=size).load()["model_name"] == "cnn"
    with pytest.raises(InputError, match=rf"more than max_model_parameters of its catalog entry \({size - 1:,}\)"):
        TorchCheckpointDataset(str(path), max_model_parameters=size - 1).load()

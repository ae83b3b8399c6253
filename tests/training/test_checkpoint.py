"""Checkpoints: written atomically, read weights-only, and they rebuild the model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from image_recognition.models.tiny import TINY_MODELS
from image_recognition.training import load_model, predict_logits, train
from image_recognition.training.checkpoint import CheckpointError, clean_state_dict, load_checkpoint, save_checkpoint
from tests.training.helpers import LEARNING_RECIPES


@pytest.mark.slow  # trains for more than a few seconds on 2 CPU cores
def test_checkpoint_is_weights_only_loadable_and_rebuilds_the_model(tmp_path: Path, data_args: dict) -> None:
    path = tmp_path / "cnn.pt"
    # fp32, as predict_logits below: "auto" is bf16 on CPUs with native bf16, whose validation would differ.
    training = {**LEARNING_RECIPES["cnn"], "epochs": 2, "autocast": "off"}
    result = train("cnn", TINY_MODELS["cnn"], training, checkpoint_path=path, **data_args)
    raw = torch.load(path, weights_only=True)
    assert raw["model_name"] == "cnn"
    assert raw["normalization"] == data_args["normalization"]
    assert [row["epoch"] for row in raw["history"]] == [1, 2]
    assert not list(tmp_path.glob("*.tmp"))  # the atomic write left no temporary file

    model = load_model(raw, device="cpu")
    assert not model.training
    validation, stats = data_args["validation_split"], data_args["normalization"]
    logits = predict_logits(
        model, validation["images"], stats["mean"], stats["std"], batch_size=128, tta=True, device="cpu"
    )
    accuracy = (logits.argmax(1).numpy() == validation["labels"]).mean()
    assert accuracy == pytest.approx(result.final_metrics["val_accuracy"], abs=1e-6)
    for tta in (False, "flip"):
        assert predict_logits(model, validation["images"][:5], stats["mean"], stats["std"], tta=tta).shape == (5, 10)


def test_clean_state_dict_strips_the_wrappers_prefixes_and_detaches() -> None:
    state = {"_orig_mod.module.conv.weight": torch.ones(2, requires_grad=True), "fc.bias": torch.zeros(1)}
    cleaned = clean_state_dict(state)
    assert list(cleaned) == ["conv.weight", "fc.bias"]
    assert not cleaned["conv.weight"].requires_grad


def test_a_file_that_is_not_a_checkpoint_of_this_project_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    save_checkpoint({"format": 0}, path)
    assert [file.name for file in tmp_path.iterdir()] == ["other.pt"]  # the atomic write left nothing beside it
    with pytest.raises(CheckpointError, match="is not an image_recognition checkpoint"):
        load_checkpoint(path)

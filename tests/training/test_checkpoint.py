"""Checkpoints: written atomically, read weights-only, and they rebuild the model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from image_recognition.models import build_model
from image_recognition.models.tiny import TINY_MODELS
from image_recognition.training import load_model, predict_logits, train
from image_recognition.training.checkpoint import (
    CheckpointError,
    checkpoint_class_names,
    checkpoint_image_size,
    clean_state_dict,
    load_checkpoint,
    record_data,
    save_checkpoint,
)
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


def _checkpoint(model_config: dict, **fields: object) -> dict:
    """A minimal checkpoint of a simple_cnn with ``model_config``, plus ``fields``."""
    model = build_model("simple_cnn", model_config)
    return {
        "format": 1,
        "model_name": "simple_cnn",
        "model_config": model_config,
        "model_state": model.state_dict(),
    } | fields


def test_a_checkpoint_records_its_image_size_and_class_names(tmp_path: Path) -> None:
    names = [f"fine_{index}" for index in range(100)]
    checkpoint = record_data(_checkpoint({"num_classes": 100, "image_size": 64}), names, 64)
    save_checkpoint(checkpoint, tmp_path / "model.pt")
    loaded = load_checkpoint(tmp_path / "model.pt")
    assert loaded["image_size"] == 64
    assert loaded["class_names"] == names
    assert torch.load(tmp_path / "model.pt", weights_only=True)["class_names"] == names


def test_an_older_checkpoint_without_them_loads_at_32_px_with_its_data_blocks_names(tmp_path: Path) -> None:
    names = ["a", "b", "c"]
    save_checkpoint(_checkpoint({"num_classes": 3}, data={"class_names": names}), tmp_path / "old.pt")
    loaded = load_checkpoint(tmp_path / "old.pt")
    assert (loaded["image_size"], loaded["class_names"]) == (32, names)
    save_checkpoint(_checkpoint({}), tmp_path / "older.pt")
    loaded = load_checkpoint(tmp_path / "older.pt")
    assert loaded["image_size"] == 32
    assert "class_names" not in loaded
    assert (checkpoint_image_size(loaded), checkpoint_class_names(loaded)) == (32, None)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"image_size": 64}, "records image_size 64, but its model takes 32 px images"),
        ({"image_size": "32"}, "records image_size '32'"),
        ({"class_names": ["a", "b"]}, "records 2 class names for a model of 10 classes"),
        ({"class_names": ["a"] * 10}, "class_names repeat a name"),
        ({"class_names": [str(i) for i in range(9)] + [""]}, "not all non-empty strings"),
        ({"data": {"class_names": ["x", "y"]}}, "records 2 class names for a model of 10 classes"),
    ],
)
def test_recorded_data_that_does_not_fit_the_model_is_refused(tmp_path: Path, fields: dict, message: str) -> None:
    save_checkpoint(_checkpoint({}, **fields), tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=rf"checkpoint .*bad\.pt refused: .*{message}.*delete it"):
        load_checkpoint(tmp_path / "bad.pt")


def test_recording_class_names_that_do_not_fit_is_refused_before_anything_is_written() -> None:
    with pytest.raises(CheckpointError, match="records 3 class names for a model of 100 classes"):
        record_data(_checkpoint({"num_classes": 100}), ["a", "b", "c"], 32)
    with pytest.raises(CheckpointError, match="records image_size 64, but its model takes 32 px"):
        record_data(_checkpoint({}), [str(i) for i in range(10)], 64)

"""The recipes in conf/ (and the benchmark-only ones) are valid configs."""

from __future__ import annotations

from pathlib import Path

import pytest

from image_recognition.models import validate_model_config
from image_recognition.training import TrainingConfig
from image_recognition.training.recipes import RECIPE_FILES, RECIPE_MODELS, load_recipe, recipe
from tests.helpers import PROJECT_ROOT


@pytest.mark.parametrize("name", sorted(RECIPE_FILES))
def test_recipe_is_a_valid_configuration(name: str) -> None:
    settings = recipe(name)
    assert set(settings) == {"model", "training"}
    validate_model_config(RECIPE_MODELS[name], settings["model"])
    TrainingConfig.from_dict(settings["training"])


def test_recipe_returns_a_copy() -> None:
    recipe("cnn")["training"]["epochs"] = 1
    assert recipe("cnn")["training"]["epochs"] != 1
    with pytest.raises(ValueError, match="unknown recipe"):
        recipe("resnet")


def test_benchmark_only_recipe_is_valid_and_a_missing_block_is_named(tmp_path: Path) -> None:
    settings = load_recipe(PROJECT_ROOT / "benchmarks" / "recipes" / "vit_cpu_plain.yml", "vit")
    validate_model_config("vit", settings["model"])
    TrainingConfig.from_dict(settings["training"])
    (tmp_path / "p.yml").write_text("cnn:\n  model: {name: cnn}\n")
    with pytest.raises(ValueError, match=r"p.yml has no recipe for 'cnn': expected cnn.model and cnn.training"):
        load_recipe(tmp_path / "p.yml", "cnn")
    with pytest.raises(FileNotFoundError, match="missing.yml"):
        load_recipe(tmp_path / "missing.yml", "cnn")


def test_tutorial_recipe_matches_the_pytorch_tutorial() -> None:
    training = recipe("simple_cnn")["training"]
    assert (training["lr"], training["momentum"], training["batch_size"], training["epochs"]) == (0.001, 0.9, 4, 2)
    assert training["label_smoothing"] == 0.0
    assert training["translate"] == 0
    assert not training["flip"]

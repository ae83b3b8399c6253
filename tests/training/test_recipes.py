"""The recipes in conf/ (and the benchmark-only ones) are valid configs, resolved as Kedro resolves them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from image_recognition.common.params import config_to_dict
from image_recognition.models import validate_model_config
from image_recognition.training import TrainingConfig
from image_recognition.training.recipes import RECIPE_MODELS, RECIPES, deep_merge, load_recipe, recipe
from tests.helpers import PROJECT_ROOT

# What Kedro resolved for each environment (tests/integrations/test_config_loader.py).
RESOLVED = json.loads((PROJECT_ROOT / "tests" / "integrations" / "resolved_recipes.json").read_text())


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_is_a_valid_configuration(name: str) -> None:
    settings = recipe(name)
    assert set(settings) == {"model", "training"}
    validate_model_config(RECIPE_MODELS[name], settings["model"])
    TrainingConfig.from_dict(settings["training"])


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_a_recipe_resolves_as_kedro_resolves_it_without_kedro(name: str) -> None:
    """The benchmarks' recipes merge conf/base and an environment as the runs do."""
    env, model = RECIPES[name]
    settings = recipe(name)
    expected = RESOLVED[env or "base"]["parameters"][model]
    assert {"name": model, **validate_model_config(model, settings["model"])} == expected["model"]
    training = config_to_dict(TrainingConfig.from_dict(settings["training"]))
    assert json.loads(json.dumps(training)) == expected["training"]


def test_deep_merge_merges_as_omegaconf_does() -> None:
    base = {"a": {"b": 1, "c": [1, 2], "d": {"e": 1}}, "f": 1, "g": {"h": 1}, "i": None}
    overlay = {"a": {"c": [3], "d": {"x": 2}}, "f": {"new": 1}, "g": None, "i": {"j": 1}, "k": 0}
    expected = OmegaConf.to_container(OmegaConf.unsafe_merge(base, overlay))
    assert deep_merge(base, overlay) == expected
    assert base["a"]["c"] == [1, 2]  # the inputs are left as they were


def test_recipe_returns_a_copy() -> None:
    recipe("cnn")["training"]["epochs"] = 1
    assert recipe("cnn")["training"]["epochs"] != 1
    recipe("cnn_cpu")["training"]["distributed"]["sync_batchnorm"] = True
    assert recipe("cnn")["training"]["distributed"]["sync_batchnorm"] is False
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
    with pytest.raises(FileNotFoundError, match="nowhere"):
        recipe("cnn_cpu", tmp_path / "nowhere")


def test_tutorial_recipe_matches_the_pytorch_tutorial() -> None:
    training = recipe("simple_cnn")["training"]
    assert (training["lr"], training["momentum"], training["batch_size"], training["epochs"]) == (0.001, 0.9, 4, 2)
    assert training["label_smoothing"] == 0.0
    assert training["translate"] == 0
    assert not training["flip"]

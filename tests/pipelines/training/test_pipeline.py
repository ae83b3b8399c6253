"""The namespaced training pipelines: catalog wiring, the recipes Kedro resolves, end-to-end runs."""

from __future__ import annotations

import re

import pytest
from kedro.config import OmegaConfigLoader
from kedro.io.core import Version

from image_recognition.datasets import TorchCheckpointDataset
from image_recognition.pipeline_registry import register_pipelines
from image_recognition.pipelines.training.nodes import check_training_params
from image_recognition.settings import CONFIG_LOADER_ARGS
from image_recognition.training.recipes import RECIPES, recipe
from tests.helpers import PROJECT_ROOT


def test_registry_has_a_training_pipeline_per_model():
    pipelines = register_pipelines()
    assert {"data_processing", "train_simple_cnn", "train_cnn", "train_vit", "__default__"} <= set(pipelines)
    train_vit = pipelines["train_vit"]
    assert "vit.train_model_node" in {n.name for n in train_vit.nodes}
    assert "fetch_dataset_node" in {n.name for n in train_vit.nodes}  # no manual data step first
    assert {"vit.checkpoint", "vit.training_history"} <= train_vit.all_outputs()
    assert not any(name.startswith("cnn.") for name in train_vit.all_outputs())


@pytest.mark.slow
def test_demo_train_vit_end_to_end(project):
    result = project.kedro("run", "--env=demo", "--pipeline=train_vit", "--params", "vit.training.epochs=1")
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    accuracy = re.search(r"Trained vit for \d+ steps \([\d.]+ epochs\) in [\d.]+ s: validation accuracy ([\d.]+)", log)
    assert accuracy, log[-3000:]
    assert float(accuracy.group(1)) > 0.5  # ten classes: chance is 0.1
    checkpoints = list((project.root / "data/demo/06_models/vit/checkpoint.pt").glob("*/checkpoint.pt"))
    histories = list((project.root / "data/demo/07_model_output/vit/training_history.csv").glob("*/*.csv"))
    assert len(checkpoints) == 1 and len(histories) == 1
    state = TorchCheckpointDataset(str(checkpoints[0].parent.parent), version=Version(None, None)).load()
    assert state["model_name"] == "vit"


@pytest.mark.slow
def test_invalid_training_parameters_fail_before_any_data_work(project):
    result = project.kedro("run", "--env=demo", "--pipeline=train_cnn", "--params", "cnn.training.epochs=0")
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "epochs must be a positive integer, got 0" in errors[0], result.stderr[-2000:]
    assert "Running node: fetch_dataset_node" not in result.stdout + result.stderr
    assert project.data_files() == []


@pytest.mark.parametrize("recipe_name", sorted(RECIPES))
def test_benchmark_recipes_are_what_kedro_runs(recipe_name):
    """recipe() reads the parameters Kedro resolves for the recipe's environment: one source."""
    env, model = RECIPES[recipe_name]
    env = env or "base"
    loader = OmegaConfigLoader(str(PROJECT_ROOT / "conf"), **{**CONFIG_LOADER_ARGS, "default_run_env": env})
    configured = loader["parameters"][model]
    assert {k: v for k, v in configured["model"].items() if k != "name"} == recipe(recipe_name)["model"]
    assert configured["training"] == recipe(recipe_name)["training"]
    check_training_params(configured["model"], configured["training"])


def test_every_environment_has_valid_training_parameters():
    for env in ("base", "cpu", "demo"):
        loader = OmegaConfigLoader(str(PROJECT_ROOT / "conf"), **{**CONFIG_LOADER_ARGS, "default_run_env": env})
        for model in ("simple_cnn", "cnn", "vit"):
            block = loader["parameters"][model]
            check_training_params(block["model"], block["training"])

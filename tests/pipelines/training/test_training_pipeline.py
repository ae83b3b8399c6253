"""The namespaced training pipelines: parameters, catalog wiring, end-to-end runs."""

from __future__ import annotations

import math
import re

import pytest
import yaml
from kedro.config import OmegaConfigLoader
from kedro.io.core import Version

from image_recognition.common.errors import ParameterError
from image_recognition.datasets import TorchCheckpointDataset
from image_recognition.pipeline_registry import register_pipelines
from image_recognition.pipelines.training.nodes import check_training_params, train_model
from image_recognition.settings import CONFIG_LOADER_ARGS
from image_recognition.training.recipes import RECIPE_FILES, recipe
from tests.helpers import PROJECT_ROOT


def test_registry_has_a_training_pipeline_per_model():
    pipelines = register_pipelines()
    assert {"data_processing", "train_simple_cnn", "train_cnn", "train_vit", "__default__"} <= set(pipelines)
    train_vit = pipelines["train_vit"]
    assert "vit.train_model_node" in {n.name for n in train_vit.nodes}
    assert "fetch_cifar10_node" in {n.name for n in train_vit.nodes}  # no manual data step first
    assert {"vit.checkpoint", "vit.training_history"} <= train_vit.all_outputs()
    assert not any(name.startswith("cnn.") for name in train_vit.all_outputs())


@pytest.mark.parametrize(
    ("model", "training", "message"),
    [
        ({"name": "resnet"}, {}, "unknown model 'resnet'"),
        ({"name": "vit", "patch_size": 5}, {}, "patch_size 5 does not divide image_size 32"),
        ({"name": "cnn"}, {"epochs": 0}, "epochs must be a positive integer"),
        ({"name": "cnn"}, {"batch_size": -8}, "batch_size must be a positive integer"),
        ({"name": "cnn"}, {"epoch": 3}, r"unknown training key\(s\) \['epoch'\]"),
        ({"name": "vit", "dept": 3}, {}, "dept"),
        ({}, {}, "model.name is required"),
        # The audit's cases: each used to pass this check and fail (or mislead) later.
        ({"name": "cnn"}, {"grad_clip": math.nan}, "training.grad_clip must be a finite number, got nan"),
        ({"name": "cnn"}, {"lr": math.inf}, "training.lr must be a finite number, got inf"),
        ({"name": "cnn"}, {"nesterov": "false"}, "training.nesterov must be true or false, got 'false'"),
        ({"name": "cnn"}, {"translate": 32}, r"training.translate must be below the images' side \(32 pixels\)"),
        (
            {"name": "vit", "embed_dim": 1_000_000},
            {},
            r"vit model has [\d,]+ parameters, more than vit.training.max_model_parameters \(300,000,000\)",
        ),
        ({"name": "vit", "qkv_bias": "false"}, {}, "vit.model.qkv_bias must be true or false"),
        ({"name": "cnn", "widths": [8, math.inf, 8]}, {}, "cnn.model.widths must be a finite number, got inf"),
    ],
)
def test_invalid_training_parameters(model, training, message):
    with pytest.raises(ParameterError, match=message):
        check_training_params(model, training)


@pytest.mark.slow
def test_demo_train_vit_end_to_end(project):
    result = project.kedro("run", "--env=demo", "--pipeline=train_vit", "--params", "vit.training.epochs=1")
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    accuracy = re.search(r"Trained vit for \d+ epochs in [\d.]+ s: validation accuracy ([\d.]+)", log)
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
    assert "Running node: fetch_cifar10_node" not in result.stdout + result.stderr
    assert project.data_files() == []


def test_the_model_size_limit_is_a_training_parameter():
    small = {"name": "cnn", "widths": [8, 8, 8]}
    spec = check_training_params(small, {"max_model_parameters": 10_000})
    assert spec["training"]["max_model_parameters"] == 10_000
    with pytest.raises(ParameterError, match=r"more than cnn.training.max_model_parameters \(1,000\)"):
        check_training_params(small, {"max_model_parameters": 1_000})


@pytest.mark.parametrize("recipe_name", sorted(RECIPE_FILES))
def test_benchmark_recipes_are_what_kedro_runs(recipe_name):
    """recipe() reads the parameters Kedro resolves for the recipe's environment: one source."""
    file, model = RECIPE_FILES[recipe_name]
    env = file.split("/")[0]
    loader = OmegaConfigLoader(str(PROJECT_ROOT / "conf"), **{**CONFIG_LOADER_ARGS, "default_run_env": env})
    configured = loader["parameters"][model]
    assert {k: v for k, v in configured["model"].items() if k != "name"} == recipe(recipe_name)["model"]
    assert configured["training"] == recipe(recipe_name)["training"]
    check_training_params(configured["model"], configured["training"])


def test_every_environment_has_valid_training_parameters():
    for path in sorted((PROJECT_ROOT / "conf").glob("*/parameters_train*.yml")):
        for block in yaml.safe_load(path.read_text()).values():
            check_training_params(block["model"], block["training"])


def test_resume_refuses_a_checkpoint_trained_on_other_data(tmp_path, synthetic_data):
    spec = check_training_params({"name": "simple_cnn"}, {"epochs": 1, "batch_size": 64, "device": "cpu"})
    split = {"images": synthetic_data.train_images[:200], "labels": synthetic_data.train_labels[:200]}
    report = {"source": {"md5": "0" * 32, "url": "synthetic://cifar10"}, "class_names": synthetic_data.class_names}
    path = str(tmp_path / "scratch")
    stats = {"mean": [0.5] * 3, "std": [0.25] * 3}
    checkpoint, _ = train_model(spec, split, split, stats, report, path)
    assert checkpoint["data"]["md5"] == "0" * 32
    resumed = dict(spec, training={**spec["training"], "resume": True})
    train_model(resumed, split, split, stats, report, path)  # same data: resumes
    other = {"mean": [0.4] * 3, "std": [0.25] * 3}
    with pytest.raises(ParameterError, match=r"cannot resume from .*scratch/[^/]+\.pt: it was trained on other data"):
        train_model(resumed, split, split, other, report, path)

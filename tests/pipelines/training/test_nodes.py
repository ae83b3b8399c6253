"""The training node: parameter checks that name their key and file, the size limit, resuming on the same data."""

from __future__ import annotations

import math

import pytest

from image_recognition.common.errors import ParameterError
from image_recognition.pipelines.training.nodes import check_training_params, model_config_for_data, train_model


@pytest.mark.parametrize(
    ("model", "training", "message"),
    [
        ({"name": "resnet"}, {}, "model.name must be one of simple_cnn, cnn, vit, got 'resnet'"),
        ({"name": "vit", "patch_size": 5}, {}, "patch_size 5 does not divide image_size 32"),
        ({"name": "cnn"}, {"epochs": 0}, "epochs must be a positive integer"),
        ({"name": "cnn"}, {"batch_size": -8}, "batch_size must be a positive integer"),
        ({"name": "cnn"}, {"epoch": 3}, r"unknown parameter\(s\) cnn.training.epoch"),
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
        # Once a TypeError from deep inside the model, now each refused where it is checked.
        ({"name": "cnn", "widths": 8}, {}, "cnn.model.widths must be a list of numbers, got 8"),
        ({"name": "vit", "depth": 2.5}, {}, "vit.model.depth must be a positive integer, got 2.5"),
        ({"name": "cnn"}, [], "parameter cnn.training must be a mapping, got list"),
    ],
)
def test_invalid_training_parameters(model, training, message):
    with pytest.raises(ParameterError, match=message):
        check_training_params(model, training)


@pytest.mark.parametrize(
    ("model", "training", "where"),
    [
        ({"name": "cnn"}, {"epochs": 0}, r"cnn\.training\.epochs .*; fix it in conf/base/parameters_train_cnn\.yml"),
        (
            {"name": "vit", "dept": 3},
            {},
            r"vit\.model\.dept; .*Fix the spelling in conf/base/parameters_train_vit\.yml",
        ),
        ({"name": "resnet"}, {}, r"model\.name .*; fix it in conf/base/parameters_train_\*\.yml"),
        (
            {"name": "cnn"},
            {"distributed": {"nnodes": 0}},
            r"cnn\.training\.distributed\.nnodes .*; fix it in conf/base/parameters_train_cnn\.yml",
        ),
    ],
)
def test_a_bad_parameter_names_its_key_and_file_without_rewrapping(model, training, where):
    with pytest.raises(ParameterError, match=where) as refused:
        check_training_params(model, training)
    assert refused.value.__cause__ is None and refused.value.__context__ is None  # raised where it was checked


def test_the_model_size_limit_is_a_training_parameter():
    small = {"name": "cnn", "widths": [8, 8, 8]}
    spec = check_training_params(small, {"max_model_parameters": 10_000})
    assert spec["training"]["max_model_parameters"] == 10_000
    with pytest.raises(ParameterError, match=r"more than cnn.training.max_model_parameters \(1,000\)"):
        check_training_params(small, {"max_model_parameters": 1_000})


def test_resume_refuses_a_checkpoint_trained_on_other_data(tmp_path, synthetic_data):
    spec = check_training_params({"name": "simple_cnn"}, {"epochs": 1, "batch_size": 64, "device": "cpu"})
    split = {"images": synthetic_data.train_images[:200], "labels": synthetic_data.train_labels[:200]}
    report = {"source": {"md5": "0" * 32, "url": "synthetic://cifar10"}, "class_names": synthetic_data.class_names}
    path = str(tmp_path / "scratch")
    stats = {"mean": [0.5] * 3, "std": [0.25] * 3}
    checkpoint, _ = train_model(spec, split, split, stats, report, path)
    assert checkpoint["data"]["md5"] == "0" * 32
    assert checkpoint["image_size"] == checkpoint["data"]["image_size"] == 32
    assert checkpoint["class_names"] == synthetic_data.class_names
    assert checkpoint["model_config"]["num_classes"] == 10
    resumed = dict(spec, training={**spec["training"], "resume": True})
    train_model(resumed, split, split, stats, report, path)  # same data: resumes
    other = {"mean": [0.4] * 3, "std": [0.25] * 3}
    with pytest.raises(ParameterError, match=r"cannot resume from .*scratch/[^/]+\.pt: it was trained on other data"):
        train_model(resumed, split, split, other, report, path)


def test_the_model_takes_its_classes_and_image_size_from_the_data():
    report = {"class_names": ["cat", "dog", "fox"], "image_size": 64}
    assert model_config_for_data({"image_size": 32, "num_classes": 10, "depth": 2}, report) == {
        "image_size": 64,
        "num_classes": 3,
        "depth": 2,
    }
    # A model config without an image size (or a data report from before sizes were recorded) gets the classes only.
    assert model_config_for_data({"num_classes": 10}, report) == {"num_classes": 3}
    assert model_config_for_data({"image_size": 32}, {"class_names": ["a", "b"]}) == {
        "image_size": 32,
        "num_classes": 2,
    }


def test_one_training_budget_replaces_every_models_own_length():
    """`kedro run --params training_budget_s=300`: epochs or a budget of the model's own give way to it."""
    by_epochs = check_training_params({"name": "cnn"}, {"epochs": 12}, 300)
    by_budget = check_training_params({"name": "vit"}, {"epochs": None, "budget_s": 660}, 300)
    for spec in (by_epochs, by_budget):
        assert spec["training"]["budget_s"] == 300 and spec["training"]["epochs"] is None
    assert check_training_params({"name": "cnn"}, {"epochs": 12}, None)["training"]["epochs"] == 12
    with pytest.raises(
        ParameterError, match=r"training_budget_s must be a finite number > 0, got -5.*parameters_training\.yml"
    ):
        check_training_params({"name": "cnn"}, {"epochs": 12}, -5)

"""The recipes follow the hardware unless the user chose an environment."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from kedro.config import OmegaConfigLoader
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from image_recognition.common.params import config_to_dict
from image_recognition.evaluation.config import EvaluationConfig
from image_recognition.integrations import config_loader
from image_recognition.integrations.config_loader import HardwareAwareConfigLoader
from image_recognition.models import validate_model_config
from image_recognition.settings import CONFIG_LOADER_ARGS
from image_recognition.training import TrainingConfig
from image_recognition.training.recipes import environment_parameters
from tests.helpers import PROJECT_ROOT

# Every recipe as each environment resolves it: the validated configs, with the code's
# defaults filled in. Written when conf/cpu and conf/demo came to list only what they
# change (nothing resolved differently), updated when the CPU recipes took time budgets.
RESOLVED_RECIPES = Path(__file__).with_name("resolved_recipes.json")
# name in RESOLVED_RECIPES -> (--env, whether torch finds CUDA); without --env the hardware picks.
ENVIRONMENTS = {
    "base": ("base", False),
    "cpu": ("cpu", False),
    "demo": ("demo", False),
    "no CUDA": (None, False),
    "CUDA": (None, True),
}

GPU_CNN_WIDTHS = [64, 256, 256]  # conf/base
CPU_CNN_WIDTHS = [64, 128, 256]  # conf/cpu


@pytest.fixture
def fake_cuda(monkeypatch):
    """Set whether torch reports a CUDA device, and forget what was announced."""
    monkeypatch.setattr(config_loader, "_announced", set())

    def set_cuda(available: bool) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: available)

    return set_cuda


def cnn_widths(loader: OmegaConfigLoader) -> list[int]:
    return loader["parameters"]["cnn"]["model"]["widths"]


def test_without_cuda_the_cpu_recipes_are_used_and_the_choice_is_logged(fake_cuda, caplog):
    fake_cuda(False)
    with caplog.at_level(logging.INFO, logger="image_recognition.integrations.config_loader"):
        loader = HardwareAwareConfigLoader(f"{PROJECT_ROOT}/conf", **CONFIG_LOADER_ARGS)
        HardwareAwareConfigLoader(f"{PROJECT_ROOT}/conf", **CONFIG_LOADER_ARGS)  # a second loader: no second line
    assert cnn_widths(loader) == CPU_CNN_WIDTHS
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        "no CUDA device found: using the cpu recipes (conf/cpu), training cnn 660 s, simple_cnn 60 s, vit 660 s; "
        "--env=base forces the GPU recipes"
    ]
    # Exactly what Kedro itself resolves for --env=cpu, for every kind of configuration.
    explicit = OmegaConfigLoader(f"{PROJECT_ROOT}/conf", env="cpu", **CONFIG_LOADER_ARGS)
    for key in ("parameters", "catalog", "globals"):
        assert loader[key] == explicit[key]


def test_with_cuda_the_gpu_recipes_are_used(fake_cuda, caplog):
    fake_cuda(True)
    with caplog.at_level(logging.INFO, logger="image_recognition.integrations.config_loader"):
        loader = HardwareAwareConfigLoader(f"{PROJECT_ROOT}/conf", **CONFIG_LOADER_ARGS)
    assert cnn_widths(loader) == GPU_CNN_WIDTHS
    assert "CUDA device found: using the GPU recipes (conf/base)" in caplog.text


@pytest.mark.parametrize(("env", "widths"), [("base", GPU_CNN_WIDTHS), ("cpu", CPU_CNN_WIDTHS), ("demo", [16, 32, 32])])
def test_an_explicit_environment_wins_over_the_hardware(fake_cuda, env, widths):
    fake_cuda(False)
    assert cnn_widths(HardwareAwareConfigLoader(f"{PROJECT_ROOT}/conf", env=env, **CONFIG_LOADER_ARGS)) == widths
    fake_cuda(True)
    assert cnn_widths(HardwareAwareConfigLoader(f"{PROJECT_ROOT}/conf", env=env, **CONFIG_LOADER_ARGS)) == widths


def test_local_settings_still_win_over_the_cpu_recipes(fake_cuda, tmp_path):
    conf = tmp_path / "conf"
    shutil.copytree(f"{PROJECT_ROOT}/conf", conf)
    (conf / "local").mkdir(exist_ok=True)
    (conf / "local" / "parameters.yml").write_text("cnn:\n  model: {name: cnn, widths: [8, 8, 8]}\n  training: {}\n")
    fake_cuda(False)
    loader = HardwareAwareConfigLoader(
        str(conf), runtime_params={"vit": {"training": {"epochs": 2}}}, **CONFIG_LOADER_ARGS
    )
    parameters = loader["parameters"]
    assert parameters["cnn"]["model"]["widths"] == [8, 8, 8]  # local over cpu
    assert parameters["vit"]["training"]["epochs"] == 2  # --params over everything
    assert parameters["vit"]["model"]["stem_depth"] == 2  # the cpu profile where local is silent


@pytest.mark.parametrize(("kedro_env", "widths"), [(None, CPU_CNN_WIDTHS), ("base", GPU_CNN_WIDTHS)])
def test_sessions_resolve_through_the_project_settings(fake_cuda, monkeypatch, kedro_env, widths):
    """What kedro run, kedro viz, the notebook and Airflow tasks get: a session's context."""
    fake_cuda(False)
    if kedro_env:
        monkeypatch.setenv("KEDRO_ENV", kedro_env)
    else:
        monkeypatch.delenv("KEDRO_ENV", raising=False)
    bootstrap_project(PROJECT_ROOT)
    with KedroSession.create(project_path=PROJECT_ROOT) as session:
        assert session.load_context().params["cnn"]["model"]["widths"] == widths


@pytest.mark.parametrize("env", [None, "cpu", "base"])
def test_params_for_a_block_the_environment_lacks_keep_the_rest_of_it(fake_cuda, env):
    """``--params dataset.validation_size=0`` changes one key; conf/cpu has no dataset block to replace base's."""
    fake_cuda(False)
    runtime = {"dataset": {"validation_size": 0}}
    loader = HardwareAwareConfigLoader(f"{PROJECT_ROOT}/conf", env=env, runtime_params=runtime, **CONFIG_LOADER_ARGS)
    dataset = loader["parameters"]["dataset"]
    assert dataset["validation_size"] == 0
    assert dataset["kind"] == "cifar10" and dataset["seed"] == 42 and dataset["duplicates"] == "warn"


@pytest.mark.parametrize("env", [None, "demo"])
def test_data_root_at_run_time_moves_every_layer_but_the_scratch_files(fake_cuda, env):
    fake_cuda(False)
    loader = HardwareAwareConfigLoader(
        f"{PROJECT_ROOT}/conf", env=env, runtime_params={"data_root": "s3://bucket/prefix"}, **CONFIG_LOADER_ARGS
    )
    filepaths = [entry.get("filepath") or entry.get("path") for entry in loader["catalog"].values()]
    filepaths = [path for path in filepaths if path]
    assert filepaths and all(path.startswith("s3://bucket/prefix/") for path in filepaths), filepaths
    parameters = loader["parameters"]
    assert parameters["dataset"]["cache_dir"] == "s3://bucket/prefix/01_raw"
    scratch = "data/demo" if env == "demo" else "data"
    assert parameters["vit"]["scratch_dir"] == f"{scratch}/06_models/vit/scratch"
    default = HardwareAwareConfigLoader(f"{PROJECT_ROOT}/conf", env=env, **CONFIG_LOADER_ARGS)
    assert default["parameters"]["dataset"]["cache_dir"] == f"{scratch}/01_raw"


def validated(parameters: dict[str, Any]) -> dict[str, Any]:
    """Each model's block and ``evaluation`` as the runs check them, with the code's defaults; the rest as is."""
    result: dict[str, Any] = {}
    for key, block in parameters.items():
        if isinstance(block, dict) and {"model", "training"} <= set(block):
            name = block["model"]["name"]
            overrides = {k: v for k, v in block["model"].items() if k != "name"}
            rest = {k: v for k, v in block.items() if k not in ("model", "training")}
            model = {"name": name, **validate_model_config(name, overrides)}
            result[key] = {
                "model": model,
                "training": config_to_dict(TrainingConfig.from_dict(block["training"])),
                **rest,
            }
        elif key == "evaluation":
            result[key] = config_to_dict(EvaluationConfig.from_dict(block))
        else:
            result[key] = block
    return json.loads(json.dumps(result))  # tuples as lists, as in the JSON


@pytest.mark.parametrize("name", sorted(ENVIRONMENTS))
def test_every_resolved_recipe_is_unchanged(fake_cuda, tmp_path, name):
    """conf/cpu and conf/demo list only what they change, and every recipe still resolves as it did."""
    conf = tmp_path / "conf"
    shutil.copytree(PROJECT_ROOT / "conf", conf, ignore=shutil.ignore_patterns("local"))  # no one's own settings
    (conf / "local").mkdir()
    env, cuda = ENVIRONMENTS[name]
    fake_cuda(cuda)
    loader = HardwareAwareConfigLoader(str(conf), env=env, **CONFIG_LOADER_ARGS)
    expected = json.loads(RESOLVED_RECIPES.read_text())[name]
    assert validated(loader["parameters"]) == expected["parameters"]
    assert loader["globals"] == expected["globals"]


def _leaves(tree: dict[str, Any], path: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """Every value of a nested dict that is not itself a dict, by its path of keys."""
    leaves: dict[tuple[str, ...], Any] = {}
    for key, value in tree.items():
        leaves.update(_leaves(value, (*path, key)) if isinstance(value, dict) else {(*path, key): value})
    return leaves


@pytest.mark.parametrize("env", ["cpu", "demo"])
def test_an_environment_lists_only_what_it_changes_from_base(env):
    base = _leaves(environment_parameters("base"))
    repeated = [
        ".".join(path)
        for path, value in _leaves(environment_parameters(env)).items()
        if path in base and base[path] == value
    ]
    assert not repeated, f"conf/{env} repeats conf/base's values of {repeated}"


def test_the_cpu_recipes_line_names_one_budget_for_every_model_and_shows_a_bad_one_as_given():
    assert config_loader.training_lengths({"training_budget_s": 300, "cnn": {}}) == (
        "a training budget of 300 s for every model (training_budget_s)"
    )
    blocks = {"cnn": {"model": {}, "training": {"budget_s": "ten"}}, "vit": {"model": {}, "training": {"epochs": 9}}}
    # The line must not fail on a value the parameter checks then refuse in one line.
    assert config_loader.training_lengths(blocks) == "training cnn 'ten' s, vit 9 epochs"

"""The recipes, resolved from the project's parameter files without Kedro.

A recipe is ``{"model": <model config>, "training": <TrainingConfig dict>}``,
the ``<model>.model`` and ``<model>.training`` blocks of
``conf/base/parameters_train_<model>.yml``, with an environment's blocks
(``conf/cpu``) merged over them key by key: an environment lists only what it
changes. ``conf/`` is the recipes' only home: the pipeline reads it through
Kedro (``merge_strategy`` "soft" for parameters, ``settings.py``), the
benchmarks through :func:`recipe`, which needs only PyYAML and merges the
same way (:func:`deep_merge`).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

# The project folder of a source checkout: src/image_recognition/training/recipes.py.
PROJECT_ROOT = Path(__file__).resolve().parents[3]
# The environment every other one is merged over.
BASE_ENV = "base"
# name -> (the environment merged over conf/base, or None for base alone; the model it trains)
RECIPES: dict[str, tuple[str | None, str]] = {
    "cnn": (None, "cnn"),
    "cnn_cpu": ("cpu", "cnn"),
    "vit": (None, "vit"),
    "vit_cpu": ("cpu", "vit"),
    "simple_cnn": (None, "simple_cnn"),
}
# Which model each recipe trains.
RECIPE_MODELS: dict[str, str] = {name: model for name, (_, model) in RECIPES.items()}


def deep_merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``base`` with ``overlay`` merged in: mappings key by key, any other value replaces.

    The merge Kedro's ``merge_strategy`` "soft" (``OmegaConf.merge``) does:
    a list or a null in ``overlay`` replaces base's value whole.
    """
    merged = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def environment_parameters(env: str, conf_dir: str | Path | None = None) -> dict[str, Any]:
    """The ``parameters*.yml`` files of ``conf/<env>`` (and its sub-folders) as one dict, uninterpolated."""
    folder = Path(conf_dir or PROJECT_ROOT / "conf") / env
    if not folder.is_dir():
        raise FileNotFoundError(
            f"environment folder {folder} not found; recipes are read from a source checkout's conf/"
        )
    parameters: dict[str, Any] = {}
    for path in sorted(folder.rglob("parameters*.y*ml")):
        parameters.update(yaml.safe_load(path.read_text()) or {})  # Kedro refuses a key repeated in one environment
    return parameters


def resolved_parameters(env: str | None = None, conf_dir: str | Path | None = None) -> dict[str, Any]:
    """The parameters of ``conf/base`` with those of ``conf/<env>`` merged over them (:func:`deep_merge`)."""
    base = environment_parameters(BASE_ENV, conf_dir)
    if env is None or env == BASE_ENV:
        return base
    return deep_merge(base, environment_parameters(env, conf_dir))


def _recipe_of(block: Any, where: str, model: str) -> dict[str, Any]:
    """``{"model": ..., "training": ...}`` of a ``model`` parameter block, without ``model.name``."""
    if not isinstance(block, dict) or not isinstance(block.get("model"), dict) or "training" not in block:
        raise ValueError(f"{where} has no recipe for {model!r}: expected {model}.model and {model}.training")
    model_config = {key: value for key, value in block["model"].items() if key != "name"}
    return {"model": model_config, "training": dict(block["training"])}


def load_recipe(path: str | Path, model: str) -> dict[str, Any]:
    """The ``model`` block of one parameters file holding a whole recipe (the benchmark-only ones).

    ``model.name`` (the key again) and keys outside a recipe, such as
    ``scratch_dir``, are left out.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"recipe file {path} not found; recipes are read from a source checkout's conf/")
    return _recipe_of((yaml.safe_load(path.read_text()) or {}).get(model), str(path), model)


def recipe(name: str, conf_dir: str | Path | None = None) -> dict[str, Any]:
    """A fresh copy of recipe ``name`` (one of :data:`RECIPES`), resolved from ``conf_dir``."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; valid names are {list(RECIPES)}")
    env, model = RECIPES[name]
    parameters = resolved_parameters(env, conf_dir)
    return _recipe_of(parameters.get(model), f"conf/{env or BASE_ENV}", model)

"""The recipes, read from the project's parameter files without Kedro.

A recipe is ``{"model": <model config>, "training": <TrainingConfig dict>}``,
the ``<model>.model`` and ``<model>.training`` blocks of a
``conf/<env>/parameters_train*.yml`` file, which is its only home: the
pipeline reads it through Kedro, the benchmarks through :func:`recipe`, which
needs only PyYAML. Each environment's file holds whole recipes (Kedro's
destructive merge replaces a top-level key of ``base`` as a whole), so one
file and key name one recipe.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

# The project folder of a source checkout: src/image_recognition/training/recipes.py.
PROJECT_ROOT = Path(__file__).resolve().parents[3]
# name -> (parameter file under conf/, its top-level key: the model it trains)
RECIPE_FILES: dict[str, tuple[str, str]] = {
    "cnn": ("base/parameters_train_cnn.yml", "cnn"),
    "cnn_cpu": ("cpu/parameters_train.yml", "cnn"),
    "vit": ("base/parameters_train_vit.yml", "vit"),
    "vit_cpu": ("cpu/parameters_train.yml", "vit"),
    "simple_cnn": ("base/parameters_train_simple_cnn.yml", "simple_cnn"),
}
# Which model each recipe trains.
RECIPE_MODELS: dict[str, str] = {name: model for name, (_, model) in RECIPE_FILES.items()}


def load_recipe(path: str | Path, model: str) -> dict[str, Any]:
    """The ``model`` block of a parameters file as ``{"model": ..., "training": ...}``.

    ``model.name`` (the key again) and keys outside a recipe, such as
    ``scratch_dir``, are left out.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"recipe file {path} not found; recipes are read from a source checkout's conf/")
    block = (yaml.safe_load(path.read_text()) or {}).get(model)
    if not isinstance(block, dict) or not isinstance(block.get("model"), dict) or "training" not in block:
        raise ValueError(f"{path} has no recipe for {model!r}: expected {model}.model and {model}.training")
    model_config = {key: value for key, value in block["model"].items() if key != "name"}
    return {"model": model_config, "training": dict(block["training"])}


def recipe(name: str, conf_dir: str | Path | None = None) -> dict[str, Any]:
    """A fresh copy of recipe ``name`` (one of :data:`RECIPE_FILES`), read from ``conf_dir``."""
    if name not in RECIPE_FILES:
        raise ValueError(f"unknown recipe {name!r}; valid names are {list(RECIPE_FILES)}")
    file, model = RECIPE_FILES[name]
    return load_recipe(Path(conf_dir or PROJECT_ROOT / "conf") / file, model)

"""The recipes in conf/ are valid configs, and the GPU benchmark runs end to end (smoke)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from image_recognition.models import validate_model_config
from image_recognition.training import TrainingConfig
from image_recognition.training.recipes import RECIPE_FILES, RECIPE_MODELS, load_recipe, recipe

ROOT = Path(__file__).resolve().parents[2]


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
    settings = load_recipe(ROOT / "benchmarks" / "recipes" / "vit_cpu_plain.yml", "vit")
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


def test_gpu_benchmark_smoke_runs_on_cpu(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    script = ROOT / "benchmarks" / "gpu_benchmark.py"
    # Poison the kedro import: the benchmark must run where only torch is installed.
    runner = (
        "import runpy, sys; sys.modules['kedro'] = None; "
        f"sys.argv = [{str(script)!r}, '--smoke', '--out', {str(out)!r}]; "
        f"runpy.run_path({str(script)!r}, run_name='__main__')"
    )
    completed = subprocess.run(
        [sys.executable, "-c", runner],
        env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["smoke"] is True
    assert len(report["cnn"]["runs"]) == 1
    assert 0.0 <= report["cnn"]["mean_test_accuracy"] <= 1.0
    assert report["vit"]["run"]["train_time_s"] > 0
    assert report["cnn"]["runs"][0]["compile_time_s"] == 0.0  # the smoke recipes do not compile
    for name in ("cnn", "vit"):  # the full GPU recipes' compute, sized for the reference GPU
        estimate = report["estimates"][name]
        assert estimate["total_pflops"] == pytest.approx(
            estimate["training_gflops_per_image"] * estimate["images_seen"] / 1e6
        )
        assert 0 < estimate["estimated_time_s"] <= 180  # the 3-minute bound


def test_models_and_engine_import_without_kedro() -> None:
    code = (
        "import sys; sys.modules['kedro'] = None; "
        "import image_recognition.models, image_recognition.training, image_recognition.training.recipes"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]

"""The benchmark scripts: the GPU benchmark runs end to end (smoke), with no Kedro installed."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from image_recognition.models.tiny import TINY_MODELS
from image_recognition.training.recipes import recipe
from tests.helpers import PROJECT_ROOT


@pytest.mark.slow
def test_gpu_benchmark_smoke_runs_on_cpu(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    script = PROJECT_ROOT / "benchmarks" / "gpu_benchmark.py"
    # Poison the kedro import: the benchmark must run where only torch is installed.
    runner = (
        "import runpy, sys; sys.modules['kedro'] = None; "
        f"sys.argv = [{str(script)!r}, '--smoke', '--out', {str(out)!r}]; "
        f"runpy.run_path({str(script)!r}, run_name='__main__')"
    )
    completed = subprocess.run(
        [sys.executable, "-c", runner],
        env={"PYTHONPATH": str(PROJECT_ROOT / "src"), "PATH": "/usr/bin:/bin"},
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


@pytest.mark.slow
def test_models_and_engine_import_without_kedro() -> None:
    code = (
        "import sys; sys.modules['kedro'] = None; "
        "import image_recognition.models, image_recognition.training, image_recognition.training.recipes"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]


def test_smoke_run_shrinks_the_gpu_recipes_with_the_tiny_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """The smoke run's models are the GPU recipes' with image_recognition.models.tiny laid over: one source."""
    monkeypatch.setattr(sys, "path", list(sys.path))  # the script puts benchmarks/ first, for its `common`
    try:
        script = runpy.run_path(str(PROJECT_ROOT / "benchmarks" / "gpu_benchmark.py"))
    finally:
        sys.modules.pop("common", None)
    for name in ("cnn", "vit"):
        assert script["_smoke_recipe"](name)["model"] == {**recipe(name)["model"], **TINY_MODELS[name]}

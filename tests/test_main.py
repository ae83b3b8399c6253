"""``python -m image_recognition`` and ``image-recognition``: ``predict``, ``params``, and anything else runs.

Predicting a real checkpoint through the installed command is tested after the
demo run, in ``test_demo_end_to_end.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from image_recognition.__main__ import main
from tests.helpers import PROJECT_ROOT


def _help_of(capsys, *args: str) -> str:
    with pytest.raises(SystemExit) as exited:
        main([*args, "--help"])
    assert exited.value.code == 0
    return capsys.readouterr().out


def test_predict_goes_to_the_predict_command_and_everything_else_to_the_run_command(capsys):
    predict = _help_of(capsys, "predict")
    assert predict.startswith("Usage: image-recognition predict [OPTIONS]")
    assert "--checkpoint-version" in predict
    run = _help_of(capsys)
    assert "--pipelines" in run and "--checkpoint-version" not in run


def test_params_goes_to_the_params_command_and_prints_only_yaml(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["params", "cnn", "--env", "cpu"])
    assert exited.value.code == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["cnn"]["model"]["widths"] == [64, 128, 256] and shown["cnn"]["training"]["momentum"] == 0.85


@pytest.mark.slow  # a packaged run, in a subprocess
def test_a_packaged_run_outside_a_project_folder_is_quiet_about_it(tmp_path):
    """kedro-viz's hooks write into a project folder; a packaged run has none, so they are off and say nothing."""
    command = [sys.executable, "-m", "image_recognition", f"--conf-source={PROJECT_ROOT / 'conf'}", "--env=demo"]
    result = subprocess.run(
        [*command, "--pipelines=data_processing"],
        cwd=tmp_path,
        env={**os.environ, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "Pipeline execution completed successfully" in output
    assert "No Kedro project found" not in output and "Could not find a Kedro project" not in output
    assert (tmp_path / "data/demo/05_model_input").is_dir() and not (tmp_path / ".viz").exists()

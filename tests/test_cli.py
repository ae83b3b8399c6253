"""``image-recognition predict`` / ``kedro predict``: a table or JSON lines, exit 1 with one line per bad file.

Run in-process on a project folder holding one saved checkpoint: every input
here comes from outside, and each bad one must get its own clear message, a
non-zero exit and nothing on stdout that a script would take for an answer.
``kedro params`` shows a resolved recipe the same way: YAML on stdout, errors in one line.
"""

from __future__ import annotations

import json
import os

import pytest
import torch
import yaml
from click.testing import CliRunner
from kedro.framework.startup import bootstrap_project
from kedro.io.core import Version

from image_recognition.cli import cli
from image_recognition.datasets import TorchCheckpointDataset
from tests.helpers import (
    BAD_IMAGES,
    EPS_NAMED_PNG,
    NOT_UTF8_NAME,
    NOT_UTF8_SHOWN,
    ODD_IMAGES,
    PROJECT_ROOT,
    RunsCommand,
    class_image,
    fake_checkpoint,
    image_file,
    write_files,
)

VERSION = "2026-12-01T10.00.00.000Z"


@pytest.fixture
def predicting(project, monkeypatch):
    """A project with a simple_cnn checkpoint saved in the demo environment's catalog, as the cwd."""
    dataset = TorchCheckpointDataset(
        filepath=str(project.root / "data/demo/06_models/simple_cnn/checkpoint.pt"), version=Version(None, VERSION)
    )
    dataset.save(fake_checkpoint("simple_cnn"))
    monkeypatch.chdir(project.root)
    bootstrap_project(project.root)
    return project


def predict(*args: str):
    return CliRunner().invoke(cli, ["predict", "--env", "demo", "--model", "simple_cnn", *args])


def test_json_lines_name_each_file_its_classes_and_the_checkpoint(predicting, tmp_path):
    paths = write_files(tmp_path / "in", {f"{i}.png": image_file(class_image(i), "PNG") for i in range(3)})
    result = predict("--json", *map(str, paths))
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["file"] for r in records] == sorted(map(str, paths))
    assert all(r["checkpoint_version"] == VERSION and r["model"] == "simple_cnn" for r in records)
    assert all(
        {"class", "probability", "class_2", "probability_2", "class_3", "probability_3"} <= set(r) for r in records
    )


def test_a_table_by_default_and_folders_are_expanded(predicting, tmp_path):
    write_files(tmp_path / "in", {"cat.jpg": image_file(class_image(3), "JPEG"), **ODD_IMAGES})
    result = predict(str(tmp_path / "in"))
    assert result.exit_code == 0, result.output
    assert "cat.jpg" in result.stdout and "very_wide.png" in result.stdout and VERSION in result.stdout


@pytest.mark.parametrize("name", sorted(BAD_IMAGES))
def test_a_bad_file_exits_1_with_one_error_line_and_no_answer(predicting, tmp_path, name):
    data, message = BAD_IMAGES[name]
    paths = write_files(tmp_path / "in", {"a_good.png": image_file(class_image(1), "PNG"), name: data})
    before = predicting.data_files()
    result = predict("--json", *map(str, paths))
    assert result.exit_code == 1 and result.stdout == ""  # nothing half-answered
    assert (
        name in result.stderr and len([line for line in result.stderr.splitlines() if line.startswith("Error:")]) == 1
    )
    assert predicting.data_files() == before


def test_keep_going_predicts_every_good_file_and_reports_each_bad_one(predicting, tmp_path):
    bad = {name: data for name, (data, _) in BAD_IMAGES.items()}
    paths = write_files(
        tmp_path / "in",
        {"good1.png": image_file(class_image(1), "PNG"), **bad, "good2.png": image_file(class_image(2), "PNG")},
    )
    result = predict("--json", "--keep-going", *map(str, paths))
    assert result.exit_code == 1
    records = {os.path.basename(r["file"]): r for r in map(json.loads, result.stdout.splitlines())}
    assert set(records) == {"good1.png", "good2.png", *bad}
    assert "class" in records["good1.png"] and "class" in records["good2.png"]
    for name, (_, message) in BAD_IMAGES.items():
        assert "class" not in records[name]
        assert name in records[name]["error"], records[name]


def test_table_mode_keep_going_prints_an_error_line_per_bad_file(predicting, tmp_path):
    bad = {name: data for name, (data, _) in BAD_IMAGES.items()}
    write_files(tmp_path / "in", {"good.png": image_file(class_image(1), "PNG"), **bad})
    result = predict("--keep-going", str(tmp_path / "in"))
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == len(bad) and "good.png" in result.stdout


def test_a_link_out_of_a_folder_is_refused(predicting, tmp_path):
    (tmp_path / "secret.png").write_bytes(image_file(class_image(1), "PNG"))
    write_files(tmp_path / "in", {"ok.png": image_file(class_image(2), "PNG")})
    os.symlink(tmp_path / "secret.png", tmp_path / "in" / "link.png")
    result = predict(str(tmp_path / "in"))
    assert result.exit_code == 1
    assert "link.png: a symbolic link to" in result.stderr and "outside the image folder" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "resnet"], "--model must be one of simple_cnn, cnn, vit, got 'resnet'"),
        (
            ["--checkpoint-version", "2020-01-01T00.00.00.000Z"],
            "simple_cnn.checkpoint has no version '2020-01-01T00.00.00.000Z'; the saved ones are " + VERSION,
        ),
        (["--model", "vit"], "no vit.checkpoint has been saved: train it first with `kedro run --pipelines=train_vit`"),
    ],
)
def test_bad_model_or_version_is_one_clear_error(predicting, tmp_path, args, message):
    paths = write_files(tmp_path / "in", {"a.png": image_file(class_image(1), "PNG")})
    result = predict(*args, str(paths[0]))
    assert result.exit_code == 1 and result.stdout == ""
    assert f"Error: {message}" in result.stderr


def test_an_empty_folder_is_one_clear_error(predicting, tmp_path):
    (tmp_path / "empty").mkdir()
    result = predict(str(tmp_path / "empty"))
    assert result.exit_code == 1
    assert "no images in" in result.stderr and "put PNG, JPEG, WebP, BMP or GIF files there" in result.stderr


# --- a crafted checkpoint in the catalog: refused in one line, by both commands ----------------------


def _save_crafted_checkpoint(project, case: str, model: str = "simple_cnn") -> str:
    """A checkpoint of ``model`` in the demo catalog that must be refused; returns its file's path."""
    checkpoint = fake_checkpoint(model)
    if case == "pickled_code":
        checkpoint["model_config"] = RunsCommand(project.root / "pwned")
    else:  # a few KB of weights, a config of 84 billion parameters: predict used to try to allocate them
        checkpoint["model_config"] = {"num_classes": 1_000_000_000}
    path = project.root / f"data/demo/06_models/{model}/checkpoint.pt/{VERSION}/checkpoint.pt"
    path.parent.mkdir(parents=True)
    torch.save(checkpoint, path)
    return str(path)


REFUSALS = {
    "pickled_code": "refused: it pickles a call to",
    "huge_model": "refused: simple_cnn model has 85,000,061,156 parameters, more than max_model_parameters",
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_a_refused_checkpoint_is_one_error_line_naming_it(project, monkeypatch, tmp_path, case):
    checkpoint = _save_crafted_checkpoint(project, case)
    monkeypatch.chdir(project.root)
    bootstrap_project(project.root)
    paths = write_files(tmp_path / "in", {"a.png": image_file(class_image(1), "PNG")})
    result = predict(str(paths[0]))
    assert result.exit_code == 1 and result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and errors[0].startswith(f"Error: checkpoint {checkpoint} {REFUSALS[case]}"), result.output
    assert "Traceback" not in result.output and not (project.root / "pwned").exists()


@pytest.mark.slow  # the kedro CLI, in a subprocess
@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_kedro_run_predict_and_evaluate_refuse_a_checkpoint_in_one_line(project, tmp_path, case):
    checkpoint = _save_crafted_checkpoint(project, case)
    write_files(tmp_path / "in", {"a.png": image_file(class_image(1), "PNG")})
    for pipeline, params in [
        ("predict", f"predict.model=simple_cnn,predict.input_dir={tmp_path / 'in'}"),
        ("evaluate_simple_cnn", "evaluation.device=cpu"),
    ]:
        result = project.kedro("run", "--env=demo", f"--pipelines={pipeline}", "--params", params)
        assert result.returncode == 1, result.stderr[-3000:]
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and REFUSALS[case] in errors[0] and checkpoint in errors[0], result.stderr[-3000:]
        assert "Traceback" not in result.stderr


# --- files whose content or name is unusual ----------------------------------------------------------


def test_eps_content_named_png_is_refused_and_ghostscript_never_runs(predicting, tmp_path, ghostscript_runs):
    paths = write_files(tmp_path / "in", {"holiday.png": EPS_NAMED_PNG, "good.png": image_file(class_image(1), "PNG")})
    result = predict("--json", "--keep-going", *map(str, paths))
    assert result.exit_code == 1
    records = {os.path.basename(r["file"]): r for r in map(json.loads, result.stdout.splitlines())}
    assert "class" in records["good.png"] and "class" not in records["holiday.png"]
    assert "holiday.png: EPS content, a format never decoded here" in records["holiday.png"]["error"]
    assert not ghostscript_runs.exists()
    result = predict(str(paths[0]))
    assert result.exit_code == 1 and "holiday.png: EPS content" in result.stderr
    assert not ghostscript_runs.exists()


def test_a_name_that_is_not_utf8_is_escaped_in_json_and_in_the_table(predicting, tmp_path):
    names = [NOT_UTF8_NAME, NOT_UTF8_SHOWN, "[red]tag.png"]  # the second: the first's escape, as characters
    folder = tmp_path / "in"
    write_files(folder, {name: image_file(class_image(i), "PNG") for i, name in enumerate(names)})
    result = predict("--json", str(folder))
    assert result.exit_code == 0, result.output
    shown = sorted(os.path.basename(json.loads(line)["file"]) for line in result.stdout.splitlines())
    assert shown == sorted([NOT_UTF8_SHOWN, "caf\\\\xe9.png", "[red]tag.png"])
    result = predict(str(folder))
    assert result.exit_code == 0, result.output
    assert f"{NOT_UTF8_SHOWN} " in result.stdout and "caf\\\\xe9.png" in result.stdout
    assert "[red]tag.png" in result.stdout and "\ufffd" not in result.stdout


@pytest.mark.slow  # the kedro CLI, in a subprocess
def test_kedro_run_predict_or_export_before_any_training_is_one_error_line(project):
    """Both once printed a 249-line VersionNotFoundError; now the CLI's own message, before any node runs."""
    write_files(project.root / "data/09_predict", {"a.png": image_file(class_image(1), "PNG")})
    for pipeline in ("predict", "export"):
        result = project.kedro("run", f"--pipelines={pipeline}")
        assert result.returncode == 1, result.stderr[-3000:]
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
        assert errors == [
            "Error: UntrainedModelError: no cnn.checkpoint has been saved: "
            "train it first with `kedro run --pipelines=train_cnn`"
        ], result.stderr[-3000:]
        assert "Traceback" not in result.stderr and project.data_files() == ["data/09_predict/a.png"]


@pytest.fixture
def in_project(project, monkeypatch):
    """The project folder as the cwd, bootstrapped as the kedro CLI does."""
    monkeypatch.chdir(project.root)
    bootstrap_project(project.root)
    return project


@pytest.mark.parametrize(
    ("name", "env"), [("cnn", "cpu"), ("vit", "demo"), ("simple_cnn", "base"), ("evaluation", "demo")]
)
def test_params_shows_a_resolved_recipe_with_the_code_defaults(in_project, name, env):
    result = CliRunner().invoke(cli, ["params", name, "--env", env])
    assert result.exit_code == 0, result.output
    header, _ = result.stdout.split("\n", 1)
    assert header == f"# {name}: conf/base" + ("" if env == "base" else f" + conf/{env}")
    resolved = json.loads((PROJECT_ROOT / "tests/integrations/resolved_recipes.json").read_text())[env]["parameters"]
    assert yaml.safe_load(result.stdout) == {name: resolved[name]}


def test_params_without_an_environment_follows_the_hardware(in_project, monkeypatch):
    monkeypatch.delenv("KEDRO_ENV", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = CliRunner().invoke(cli, ["params", "cnn"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("# cnn: conf/base + conf/cpu + conf/local\n")
    assert yaml.safe_load(result.stdout)["cnn"]["model"]["widths"] == [64, 128, 256]


def test_params_of_an_unknown_name_or_a_bad_recipe_is_one_error_line(in_project):
    result = CliRunner().invoke(cli, ["params", "resnet", "--env", "cpu"])
    assert result.exit_code == 1 and result.stdout == ""
    assert "no parameters named 'resnet'; the names are cnn, dataset, evaluation" in result.stderr
    (in_project.root / "conf/local/parameters.yml").write_text("cnn:\n  training:\n    epochs: 0\n")
    result = CliRunner().invoke(cli, ["params", "cnn", "--env", "local"])
    assert result.exit_code == 1 and result.stdout == ""
    assert "epochs" in result.stderr and "Traceback" not in result.output

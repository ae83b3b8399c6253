"""benchmarks/render_results.py: the committed tables are what the result files render, and a change shows."""

from __future__ import annotations

import json
import runpy
import shutil
from pathlib import Path

import pytest

from tests.helpers import PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "benchmarks" / "render_results.py"


@pytest.fixture(scope="module")
def render_results() -> dict:
    return runpy.run_path(str(SCRIPT), run_name="render_results")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of what the script reads and writes: the README, the results page and the result files."""
    (tmp_path / "docs").mkdir()
    shutil.copy(PROJECT_ROOT / "README.md", tmp_path / "README.md")
    shutil.copy(PROJECT_ROOT / "docs" / "results.md", tmp_path / "docs" / "results.md")
    shutil.copytree(PROJECT_ROOT / "benchmarks" / "results", tmp_path / "benchmarks" / "results")
    return tmp_path


def _edit(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=2) + "\n")


def test_the_committed_tables_are_what_the_results_render(render_results):
    assert render_results["main"](["--check"]) == 0, "stale tables: run python benchmarks/render_results.py"


def test_a_changed_result_makes_the_check_fail_until_rendered(render_results, project, capsys):
    main = render_results["main"]
    assert main(["--check", "--root", str(project)]) == 0
    _edit(project / "benchmarks/results/dag_cpu_amx.json", lambda data: data["test_accuracy"].update(cnn=0.1234))
    assert main(["--check", "--root", str(project)]) == 1
    assert "stale results tables" in capsys.readouterr().err
    assert main(["--root", str(project)]) == 0
    assert main(["--check", "--root", str(project)]) == 0
    assert "12.34%" in (project / "docs" / "results.md").read_text()


def test_every_row_names_its_machine_commit_date_and_command(render_results):
    grouped = render_results["load_results"]()
    assert grouped, "no result files"
    for benchmark, rows in grouped.items():
        for row in rows:
            machine, commit, date, command = row.conditions
            assert machine and "unknown" not in (commit, date), (benchmark, row.key)
            assert command.startswith("`") and "benchmarks/" in command, (benchmark, row.key)


def test_superseded_rows_and_files_are_left_out(render_results, project):
    page = project / "docs" / "results.md"
    result = project / "benchmarks/results/cpu_amx_run_9df17b4.json"
    _edit(result, lambda data: data["results"]["vit_cpu_plain"].update(test_accuracy=0.4321))
    render_results["main"](["--root", str(project)])
    assert "43.21%" in page.read_text()
    _edit(result, lambda data: data.setdefault("superseded_rows", {}).update(vit_cpu_plain="replaced"))
    render_results["main"](["--root", str(project)])
    assert "43.21%" not in page.read_text()
    assert "CPU `cnn` profile" in page.read_text()
    _edit(result, lambda data: data.update(superseded="a later run replaced it"))
    render_results["main"](["--root", str(project)])
    assert "cpu_amx_run_9df17b4.json" not in page.read_text()


def test_a_result_without_its_command_is_refused(render_results, project):
    _edit(project / "benchmarks/results/ddp_cpu.json", lambda data: data.pop("benchmark_command"))
    with pytest.raises(SystemExit, match="ddp_cpu.json.*benchmark_command"):
        render_results["main"](["--check", "--root", str(project)])


def test_a_readme_without_the_markers_is_refused(render_results, project):
    (project / "README.md").write_text("# a README without a results table\n")
    with pytest.raises(SystemExit, match="markers"):
        render_results["main"](["--check", "--root", str(project)])


def test_a_dag_run_given_one_budget_for_every_model_is_an_equal_budget_row_per_model(render_results, project):
    """Rendered from a made-up result in a copy of the project: the rows, best first, and their own table."""
    source = project / "benchmarks/results/dag_cpu_amx.json"
    data = json.loads(source.read_text())
    data["command"] += ",training_budget_s=200"
    data["test_accuracy"] = {"cnn": 0.81, "vit": 0.7, "simple_cnn": 0.4}
    plan = {"budget_s": 200.0, "steps": 900, "planned_steps": 910, "epochs": 5.12, "train_images_per_s": 1500.0}
    data["training"] = {model: {**plan, "training_wall_time_s": 199.0} for model in data["test_accuracy"]}
    (project / "benchmarks/results/dag_budget_200.json").write_text(json.dumps(data))
    render_results["main"](["--root", str(project)])
    page = (project / "docs" / "results.md").read_text()
    section = page.split("## The models at equal training budgets", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| 200 s")]
    assert [row.split(" | ")[1] for row in rows] == ["`cnn`", "`vit`", "`simple_cnn`"]
    assert "| 81.00% | 900 of 910 | 5.12 | 1,500 | 199 s |" in rows[0]

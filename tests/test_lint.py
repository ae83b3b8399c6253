"""Lint is part of the suite, so CI fails on a lint error like on a test failure.

Ruff checks style; import-linter checks the layering declared in pyproject.toml
(``[tool.importlinter]``); a short AST walk keeps every function readable in
one screen.
"""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import PROJECT_ROOT

MAX_FUNCTION_LINES = 50


def _tool(name: str) -> str:
    path = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[test]'")
    return path


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]])
def test_ruff_is_clean(command):
    result = subprocess.run(
        [_tool("ruff"), *command, "src", "tests", "benchmarks", "airflow_dags"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_import_layering_contracts_hold():
    result = subprocess.run(
        [_tool("lint-imports"), "--no-cache"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout, result.stdout


def long_functions(*roots: Path) -> list[str]:
    """Functions longer than MAX_FUNCTION_LINES, from ``def`` to their last line, docstring included."""
    found = []
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    length = node.end_lineno - node.lineno + 1
                    if length > MAX_FUNCTION_LINES:
                        found.append(f"{path.relative_to(PROJECT_ROOT)}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_no_function_in_the_package_or_the_benchmarks_is_longer_than_a_screen():
    assert long_functions(PROJECT_ROOT / "src", PROJECT_ROOT / "benchmarks") == []


def test_the_length_check_finds_a_long_function(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "PROJECT_ROOT", tmp_path)
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    (tmp_path / "long.py").write_text(f"def long():\n{body}\n\n\ndef short():\n    return 1\n")
    assert long_functions(tmp_path) == [f"long.py:1 long ({MAX_FUNCTION_LINES + 1} lines)"]

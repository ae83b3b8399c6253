"""benchmarks/common.py: every result file carries the command, commit and date that the results tables show."""

from __future__ import annotations

import json
import runpy
import sys

from tests.helpers import PROJECT_ROOT

COMMON = runpy.run_path(str(PROJECT_ROOT / "benchmarks" / "common.py"), run_name="benchmarks_common")


def test_a_result_records_its_command_commit_and_date(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", [str(PROJECT_ROOT / "benchmarks" / "cpu_benchmark.py"), "--rows", "cnn"])
    COMMON["write_json"]({"benchmark": "cpu", "rows": [1]}, tmp_path / "out.json")
    written = json.loads((tmp_path / "out.json").read_text())
    assert written["benchmark_command"] == "python benchmarks/cpu_benchmark.py --rows cnn"
    assert len(written["commit"]) == 40 and written["date"].endswith("Z")
    assert written["rows"] == [1]
    assert [path.name for path in tmp_path.iterdir()] == ["out.json"]  # no temporary file left


def test_what_a_benchmark_records_itself_wins(tmp_path):
    COMMON["write_json"]({"commit": "abc", "benchmark_command": "python x.py"}, tmp_path / "out.json")
    written = json.loads((tmp_path / "out.json").read_text())
    assert (written["commit"], written["benchmark_command"]) == ("abc", "python x.py")

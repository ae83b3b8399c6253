"""benchmarks/image_folder_benchmark.py: a folder of generated PNGs decoded and timed, on a few files."""

from __future__ import annotations

import json
import runpy

from tests.helpers import PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "benchmarks" / "image_folder_benchmark.py"


def test_reports_the_seconds_to_read_a_generated_folder(tmp_path):
    out = tmp_path / "image_folder.json"
    runpy.run_path(str(SCRIPT))["main"](["--count", "200", "--classes", "4", "--workers", "2", "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["benchmark"] == "image_folder" and report["files"] == 200 and report["workers"] == 2
    assert report["machine"]["cpu_count"] and "benchmark_command" in report and "date" in report
    (row,) = report["rows"]
    assert (
        row["images"] == 200
        and row["seconds"] > 0
        and abs(row["images_per_s"] - 200 / row["seconds"]) < 0.01 * row["images_per_s"]
    )

"""The reference runner changes only what ties airbench94 to CUDA, and stops on a file it does not know."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

from tests.helpers import PROJECT_ROOT

runner = runpy.run_path(str(PROJECT_ROOT / "benchmarks" / "airbench_reference.py"), run_name="airbench_reference")


def fake_reference(tmp_path: Path, repeat: int = 1) -> Path:
    """A file with each CUDA-bound text of the reference as often as airbench94.py has it."""
    lines = [old for old, _, count in runner["CPU_CHANGES"] for _ in range(count * repeat)]
    path = tmp_path / "airbench94.py"
    path.write_text("\n".join(lines) + "\nkept = 1\n")
    return path


def test_each_cuda_text_is_replaced_and_the_rest_kept(tmp_path):
    source = runner["cpu_source"](fake_reference(tmp_path))
    assert not [old for old, _, _ in runner["CPU_CHANGES"] if old in source]
    assert "map_location='cpu'" in source and "net = net.float()" in source and "\nkept = 1\n" in source
    namespace: dict = {}
    exec(runner["WALL_CLOCK_EVENT"], namespace)  # noqa: S102 (the runner's own stand-in for CUDA events)
    start, end = namespace["_WallClockEvent"](), namespace["_WallClockEvent"]()
    start.record()
    end.record()
    assert end.elapsed_time(start) <= 0 <= start.elapsed_time(end)


def test_another_file_is_refused_naming_what_did_not_match(tmp_path):
    with pytest.raises(SystemExit, match=r"has 2 occurrences of 'map_location=torch.device\(gpu\)', expected 1"):
        runner["cpu_source"](fake_reference(tmp_path, repeat=2))

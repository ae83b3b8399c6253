"""Atomic writes: readers see the old file or the whole new one, never a part, and no temporary file stays."""

from __future__ import annotations

import os

import pytest

from image_recognition.common.atomic import atomic_write


def test_a_finished_write_replaces_the_file_with_the_usual_mode(tmp_path):
    target = tmp_path / "new" / "folder" / "file.bin"
    with atomic_write(target) as file:
        file.write(b"first")
        assert not target.exists()  # nothing in place until the write is done
    assert target.read_bytes() == b"first"
    mask = os.umask(0o022)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask  # not mkstemp's 0600
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.bin"]


@pytest.mark.parametrize("failure", [RuntimeError("serialising failed"), KeyboardInterrupt()])
def test_a_write_cut_short_leaves_the_old_file_and_no_temporary_one(tmp_path, failure):
    target = tmp_path / "file.bin"
    target.write_bytes(b"old")
    with pytest.raises(type(failure)), atomic_write(target) as file:
        file.write(b"half of the new")
        raise failure
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.bin"]

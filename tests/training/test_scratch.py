"""Each training run's own scratch checkpoint: choosing, locking, resuming and pruning."""

from __future__ import annotations

import multiprocessing
import os
import time

import pytest

from image_recognition.common.errors import ParameterError
from image_recognition.training.config import TrainingConfig
from image_recognition.training.scratch import RUN_NAME, new_run_name, scratch_run


def interrupted(folder, name: str) -> None:
    """A run that wrote its checkpoint and stopped without finishing."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.pt").write_bytes(b"checkpoint")
    (folder / f"{name}.lock").write_text("")


def finished(folder, name: str) -> None:
    interrupted(folder, name)
    (folder / f"{name}.done").touch()


def hold_lock(folder, name: str, ready, release) -> None:
    """In another process: train run ``name`` (hold its lock) until told to stop."""
    with scratch_run(folder, name):
        ready.set()
        release.wait(30)


def test_run_names_are_unique_and_valid():
    names = {new_run_name() for _ in range(50)}
    assert len(names) == 50 and all(RUN_NAME.fullmatch(name) for name in names)


def test_a_new_run_gets_its_own_file_and_is_marked_finished(tmp_path):
    with scratch_run(tmp_path / "scratch", False) as first:
        assert not first.resuming and first.path.parent == tmp_path / "scratch"
        first.path.write_bytes(b"1")
    with scratch_run(tmp_path / "scratch", False) as second:
        assert second.path != first.path
        second.path.write_bytes(b"2")
    # Finishing the second pruned the first, finished, run.
    assert sorted(p.name for p in (tmp_path / "scratch").glob("*.pt")) == [second.path.name]
    assert (tmp_path / "scratch" / f"{second.name}.done").exists()


def test_an_error_leaves_the_run_interrupted(tmp_path):
    with pytest.raises(RuntimeError), scratch_run(tmp_path, False) as run:
        run.path.write_bytes(b"half")
        raise RuntimeError("killed")
    assert run.path.exists() and not (tmp_path / f"{run.name}.done").exists()
    with scratch_run(tmp_path, True) as resumed:
        assert resumed.resuming and resumed.name == run.name


def test_resume_prefers_the_latest_interrupted_run_then_the_latest_finished(tmp_path):
    interrupted(tmp_path, "20261201T100000-1-aaaa")
    time.sleep(0.01)
    interrupted(tmp_path, "20261201T110000-2-bbbb")
    time.sleep(0.01)
    finished(tmp_path, "20261201T120000-3-cccc")
    with scratch_run(tmp_path, True) as run:
        assert run.name == "20261201T110000-2-bbbb" and run.resuming
        run.path.write_bytes(b"final")  # as the engine saves the final checkpoint
    # Now finished; the older finished run was pruned, the interrupted one kept.
    assert sorted(p.stem for p in tmp_path.glob("*.pt")) == ["20261201T100000-1-aaaa", "20261201T110000-2-bbbb"]
    with scratch_run(tmp_path, True) as run:
        assert run.name == "20261201T100000-1-aaaa"
        run.path.write_bytes(b"final")
    with scratch_run(tmp_path, True) as run:  # nothing interrupted: the latest finished (its result again)
        assert run.name == "20261201T100000-1-aaaa" and run.resuming


def test_resume_with_nothing_to_continue_starts_a_new_run(tmp_path):
    with scratch_run(tmp_path, True) as run:
        assert not run.resuming and not run.path.exists()


def test_resume_by_name(tmp_path):
    interrupted(tmp_path, "20261201T100000-1-aaaa")
    interrupted(tmp_path, "20261201T110000-2-bbbb")
    with scratch_run(tmp_path, "20261201T100000-1-aaaa") as run:
        assert run.resuming and run.path == tmp_path / "20261201T100000-1-aaaa.pt"
    with pytest.raises(ParameterError, match=r"run '20261201T090000-9-ffff', which has no scratch checkpoint in .*"):
        with scratch_run(tmp_path, "20261201T090000-9-ffff"):
            pass


@pytest.mark.slow  # a second Python process
def test_a_run_training_in_another_process_is_never_resumed(tmp_path):
    context = multiprocessing.get_context("spawn")
    ready, release = context.Event(), context.Event()
    interrupted(tmp_path, "20261201T100000-1-aaaa")
    time.sleep(0.01)
    interrupted(tmp_path, "20261201T110000-2-bbbb")
    other = context.Process(target=hold_lock, args=(tmp_path, "20261201T110000-2-bbbb", ready, release))
    other.start()
    try:
        assert ready.wait(60)
        with scratch_run(tmp_path, True) as run:  # the newer run is training: the older one is continued
            assert run.name == "20261201T100000-1-aaaa"
        with pytest.raises(ParameterError, match="which is training now"):
            with scratch_run(tmp_path, "20261201T110000-2-bbbb"):
                pass
    finally:
        release.set()
        other.join(30)
    assert other.exitcode == 0
    with scratch_run(tmp_path, "20261201T110000-2-bbbb") as run:  # its process ended: it can resume
        assert run.resuming


def test_finishing_keeps_newer_finished_runs_and_prunes_old_leftovers(tmp_path):
    finished(tmp_path, "20261201T100000-1-aaaa")
    leftover = tmp_path / "20261201T090000-5-eeee.lock"  # a run killed before its first checkpoint, long ago
    leftover.write_text("5\n")
    os.utime(leftover, (time.time() - 3600, time.time() - 3600))
    fresh = tmp_path / "20261201T093000-6-ffff.lock"  # one starting now: not touched
    fresh.write_text("6\n")
    (tmp_path / ".20261201T090000-5-eeee.pt.x1.partial").write_bytes(b"half")
    with scratch_run(tmp_path, "20261201T100000-1-aaaa") as old:  # an old run, resumed by name
        time.sleep(0.01)
        finished(tmp_path, "20261201T110000-2-bbbb")  # finishes meanwhile, after it
        old.path.write_bytes(b"old")
        os.utime(old.path, (time.time() - 60, time.time() - 60))  # its last checkpoint is older than bbbb's
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"20261201T{n}.{s}" for n in ("100000-1-aaaa", "110000-2-bbbb") for s in ("pt", "done", "lock")]
        + ["20261201T093000-6-ffff.lock"]
    )


def test_scratch_dir_is_a_local_folder(tmp_path):
    with scratch_run(f"file://{tmp_path}/scratch", False) as run:
        assert run.path.parent == tmp_path / "scratch"
    with pytest.raises(ParameterError, match="scratch_dir s3://bucket/scratch is not on the local disk"):
        with scratch_run("s3://bucket/scratch", False):
            pass


def test_the_lock_records_the_training_process(tmp_path):
    with scratch_run(tmp_path, False) as run:
        assert (tmp_path / f"{run.name}.lock").read_text() == f"{os.getpid()}\n"


@pytest.mark.parametrize("resume", ["latest", "../x", "", 1])
def test_resume_must_be_a_flag_or_a_run_name(resume):
    with pytest.raises(ValueError, match="resume must be true, false or a run name"):
        TrainingConfig.from_dict({"resume": resume})

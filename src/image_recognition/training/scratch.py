"""Each training run's own scratch checkpoint, so that concurrent runs never share one.

A model's scratch folder (``<model>.scratch_dir``, on the local disk) holds
one ``<run>.pt`` per training run, written every ``checkpoint_every`` epochs.
While a run trains it holds an exclusive lock on ``<run>.lock``; the
operating system drops the lock when the process ends, however it ends
(SIGKILL and out-of-memory included), so a file whose lock is free belongs to
a run that is not training now. A run that finishes writes ``<run>.done``.

``training.resume``:

- ``false``: a new run;
- ``true``: the most recent interrupted run (no ``.done``, not locked);
  failing that, the most recent finished run, whose result a later failing
  node may have discarded (the engine then returns it without training);
  failing that, a new run;
- a run name (``20261201T101500-4242``): that run, which must exist and must
  not be training now.

When a run finishes, the scratch files of finished runs older than it are
deleted, and so are the leftovers (lock, half-written temporary file) of runs
killed before their first checkpoint: the folder keeps the latest finished run
and every interrupted one. ``scratch_dir`` must be on the local disk.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from image_recognition.common.errors import ParameterError
from image_recognition.common.storage import is_local, local_path

logger = logging.getLogger(__name__)

RUN_NAME = re.compile(r"[0-9]{8}T[0-9]{6}-[0-9a-z-]+")
# A lock file without a checkpoint this old belongs to a run killed before its first checkpoint.
LEFTOVER_AGE_NS = 60 * 10**9


@dataclass(frozen=True)
class ScratchRun:
    """Where one training run writes its scratch checkpoint, and whether it continues an earlier run."""

    name: str
    path: Path
    resuming: bool


def new_run_name() -> str:
    """A run name: time, process id and 32 random bits, so that names do not collide across machines."""
    return f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{secrets.token_hex(4)}"


def _try_lock(path: Path) -> IO[str] | None:
    """The lock file ``path``, opened and locked, or None when another process holds it."""
    handle = path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def _is_training(folder: Path, name: str) -> bool:
    lock = folder / f"{name}.lock"
    if not lock.exists():
        return False
    handle = _try_lock(lock)
    if handle is None:
        return True
    handle.close()
    return False


def _mtime(path: Path) -> int | None:
    """``path``'s last write, or None if it is gone (another run may prune it at any moment)."""
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None


def _runs(folder: Path) -> list[str]:
    """Names of the runs in ``folder`` with a scratch checkpoint, oldest first (by its last write)."""
    written = [(_mtime(path), path.stem) for path in folder.glob("*.pt") if RUN_NAME.fullmatch(path.stem)]
    return [name for mtime, name in sorted((m, n) for m, n in written if m is not None)]


def _choose(folder: Path, resume: bool | str) -> tuple[str, bool]:
    """(run name, whether it continues an earlier run) for ``resume``."""
    if resume is False:
        return new_run_name(), False
    runs = [name for name in _runs(folder) if not _is_training(folder, name)]
    if isinstance(resume, str):
        if not (folder / f"{resume}.pt").is_file():
            raise ParameterError(
                f"training.resume names run {resume!r}, which has no scratch checkpoint in {folder}; "
                f"runs there that can resume: {runs or 'none'}"
            )
        if resume not in runs:
            raise ParameterError(
                f"training.resume names run {resume!r}, which is training now (its lock in {folder} is held); "
                "wait for it, or resume another run"
            )
        return resume, True
    interrupted = [name for name in runs if not (folder / f"{name}.done").exists()]
    if interrupted:
        return interrupted[-1], True
    if runs:
        return runs[-1], True
    logger.info("resume requested, but %s holds no run to continue; starting a new run", folder)
    return new_run_name(), False


@contextlib.contextmanager
def scratch_run(folder: str | os.PathLike[str], resume: bool | str) -> Iterator[ScratchRun]:
    """The run's scratch checkpoint in ``folder``, locked while the block runs.

    On success the run is marked finished and older finished runs' files are
    deleted; on an error the file stays, for ``resume``.
    """
    if not is_local(str(folder)):
        raise ParameterError(
            f"scratch_dir {folder} is not on the local disk: each training's scratch checkpoint is written "
            "every epoch by one machine; keep scratch_root a local folder (data_root may be remote)"
        )
    folder = local_path(str(folder))
    folder.mkdir(parents=True, exist_ok=True)
    name, resuming = _choose(folder, resume)
    lock = _lock_run(folder, name)
    if resuming and not (folder / f"{name}.pt").is_file():  # pruned between the choice and the lock
        lock.close()
        raise ParameterError(f"run {name!r} in {folder} was deleted as it was chosen to resume; run again")
    try:
        lock.truncate(0)
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        run = ScratchRun(name, folder / f"{name}.pt", resuming)
        logger.info("%s run %s (scratch checkpoint %s)", "resuming" if resuming else "starting", name, run.path)
        yield run
        (folder / f"{name}.done").touch()
        _prune_finished(folder, keep=name)
    finally:
        lock.close()  # releases the lock; the file stays for the pruning, which deletes it under the lock


def _lock_run(folder: Path, name: str) -> IO[str]:
    """Lock run ``name``'s lock file, checking that it is still the file on disk.

    The pruning deletes a lock file while holding its lock; a process that
    opened the file before that would otherwise hold a lock on a deleted file.
    """
    path = folder / f"{name}.lock"
    lock = _try_lock(path)
    if lock is None:  # another process took the same run between the choice and now
        raise ParameterError(f"run {name!r} in {folder} is training now; wait for it, or resume another run")
    try:
        same = os.fstat(lock.fileno()).st_ino == path.stat().st_ino
    except FileNotFoundError:
        same = False
    if not same:
        lock.close()
        raise ParameterError(f"run {name!r} in {folder} was deleted as it was chosen; run again")
    return lock


def _prune_finished(folder: Path, keep: str) -> None:
    """Delete finished runs older than ``keep`` and the leftovers of runs killed before their first checkpoint.

    Each run's files are deleted while holding its lock, so nobody resumes it
    meanwhile. The run has finished: a failure here only logs a warning.
    """
    try:
        runs = _runs(folder)  # oldest first
        older = runs[: runs.index(keep)] if keep in runs else []
        stale = [name for name in older if (folder / f"{name}.done").exists()]
        # A lock with no checkpoint: a run killed before its first one, if the lock is old
        # (a run that is starting has a fresh one, and the inode check in _lock_run).
        now = time.time_ns()
        stale += [
            path.stem
            for path in folder.glob("*.lock")
            if RUN_NAME.fullmatch(path.stem)
            and not (folder / f"{path.stem}.pt").exists()
            and now - (_mtime(path) or now) > LEFTOVER_AGE_NS
        ]
        for name in stale:
            lock = _try_lock(folder / f"{name}.lock")
            if lock is None:  # training now
                continue
            try:
                for path in [folder / f"{name}{suffix}" for suffix in (".pt", ".done", ".lock")]:
                    path.unlink(missing_ok=True)
                for partial in folder.glob(f".{name}.pt.*.partial"):  # a write cut short (atomic_write)
                    partial.unlink(missing_ok=True)
            finally:
                lock.close()
    except OSError as exc:
        logger.warning("could not prune old scratch checkpoints in %s: %s", folder, exc)

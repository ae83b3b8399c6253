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

When a run finishes, the scratch files of older finished runs are deleted:
the folder keeps the latest finished run and every interrupted one.
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

from image_recognition.errors import ParameterError

logger = logging.getLogger(__name__)

RUN_NAME = re.compile(r"[0-9]{8}T[0-9]{6}-[0-9a-z-]+")


@dataclass(frozen=True)
class ScratchRun:
    """Where one training run writes its scratch checkpoint, and whether it continues an earlier run."""

    name: str
    path: Path
    resuming: bool


def new_run_name() -> str:
    """A run name unique across processes and machines: time, process id and a random suffix."""
    return f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{secrets.token_hex(2)}"


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


def _runs(folder: Path) -> list[str]:
    """Names of the runs in ``folder`` with a scratch checkpoint, oldest first (by its last write)."""
    files = [path for path in folder.glob("*.pt") if RUN_NAME.fullmatch(path.stem)]
    return [path.stem for path in sorted(files, key=lambda path: (path.stat().st_mtime_ns, path.name))]


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
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    name, resuming = _choose(folder, resume)
    lock = _try_lock(folder / f"{name}.lock")
    if lock is None:  # another process took the same run between the choice and now
        raise ParameterError(f"run {name!r} in {folder} is training now; wait for it, or resume another run")
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
        lock.close()  # releases the lock; the file stays (unlinking it would race with a waiting locker)


def _prune_finished(folder: Path, keep: str) -> None:
    """Delete the scratch files of finished runs other than ``keep`` that nobody is training."""
    for name in _runs(folder):
        if name == keep or not (folder / f"{name}.done").exists() or _is_training(folder, name):
            continue
        for suffix in (".pt", ".done", ".lock"):
            with contextlib.suppress(FileNotFoundError):
                (folder / f"{name}{suffix}").unlink()

"""A session store that makes each Kedro session's save version its own.

Kedro 1.7 uses the session id as the save version of everything a run saves:
a timestamp to the millisecond (``2026-01-02T03.04.05.678Z``). Two sessions
that start in the same millisecond (two Airflow tasks, two ``kedro run``s, two
sessions in one notebook) would write into the same version folders, and the
second run's first save would fail.

:class:`UniqueVersionStore`, the project's ``SESSION_STORE_CLASS``, reserves
the id: it creates the folder ``<store path>/<id>`` (a ``mkdir`` either makes
the folder or fails, so one session at most gets each id) and, while that id
is taken, moves on by one millisecond. Ids keep Kedro's format, so versions
still sort by time and ``--load-versions`` takes them. Every way the project
makes a session goes through the store: ``kedro run`` and the other kedro
commands, the Airflow tasks (``airflow_support``) and the notebook
(``%load_ext kedro.ipython``).

The store path is Kedro's default, ``<project>/sessions`` (``SESSION_STORE_ARGS``
moves it): sessions coordinate when they share it, on one machine or a shared
disk. Object storage has no exclusive create, so machines that share only a
bucket do not coordinate through it. A clash there needs two sessions on two
machines in one millisecond saving the same dataset; Kedro then refuses the
second save (the version exists) and the failure hook deletes only what that
run saved (``DiscardFailedRunHook``). Where the store path cannot be written
(a read-only project folder), ids are unique within the process only, with a
warning. Reservations older than a day are removed as new ones are made.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from kedro.framework.session.store import BaseSessionStore
from kedro.io.core import VERSION_FORMAT

logger = logging.getLogger(__name__)

_ONE_MILLISECOND = timedelta(milliseconds=1)
# Far longer than two clocks that share a store path disagree: an id older than this is never tried again.
RESERVATION_LIFETIME = timedelta(days=1)
_VERSION = re.compile(r"\d{4}-\d\d-\d\dT\d\d\.\d\d\.\d\d\.\d{3}Z")
_MAX_TRIES = 100_000  # 100 s of ids taken in a row: something else fills the folder


class UniqueVersionStore(BaseSessionStore):
    """Kedro's ephemeral session store, whose ``session_id`` (the save version) is reserved on disk.

    ``KedroSession.create`` generates a timestamp, makes the store with it and
    then writes it again as ``session_id``: the store keeps its reserved id
    instead, and the run saves with that one.
    """

    def __init__(self, path: str, session_id: str) -> None:
        super().__init__(path, reserve_version(Path(path), session_id))

    def read(self) -> dict[str, Any]:
        return {"session_id": self._session_id}

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, self._session_id if key == "session_id" else value)


class _Issued:
    """The last id this process handed out: ids stay unique within it even without a disk."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.last: datetime | None = None


_issued = _Issued()


def reserve_version(folder: Path, version: str) -> str:
    """``version`` (Kedro's format), or the first later millisecond that no other session holds.

    The reservation is the folder ``folder/<id>``; see the module docstring. An id
    in another format (not Kedro's timestamp) is kept as it is.
    """
    if not _VERSION.fullmatch(version):
        return version
    moment = datetime.strptime(version, VERSION_FORMAT).replace(tzinfo=timezone.utc)
    with _issued.lock:
        if _issued.last is not None and moment <= _issued.last:
            moment = _issued.last + _ONE_MILLISECOND
        try:
            moment = _reserve_on_disk(folder, moment)
        except OSError as error:
            logger.warning(
                "cannot reserve the save version in %s (%s): it is unique in this process only; "
                "make the folder writable or set SESSION_STORE_ARGS['path'] in settings.py to a writable one",
                folder,
                error,
            )
        _issued.last = moment
    return _format(moment)


def _reserve_on_disk(folder: Path, moment: datetime) -> datetime:
    folder.mkdir(parents=True, exist_ok=True)
    _forget_old_reservations(folder, moment - RESERVATION_LIFETIME)
    for _ in range(_MAX_TRIES):
        try:
            (folder / _format(moment)).mkdir()
            return moment
        except FileExistsError:
            moment += _ONE_MILLISECOND
    raise OSError(f"{_MAX_TRIES} save versions after {_format(moment - _MAX_TRIES * _ONE_MILLISECOND)} are taken")


def _forget_old_reservations(folder: Path, before: datetime) -> None:
    cutoff = _format(before)  # the format sorts as the time does
    for entry in folder.iterdir():
        if _VERSION.fullmatch(entry.name) and entry.name < cutoff:
            with contextlib.suppress(OSError):  # not empty (not a reservation), or gone already
                entry.rmdir()


def _format(moment: datetime) -> str:
    """Kedro's version format, to the millisecond (as ``kedro.io.core.generate_timestamp``)."""
    return moment.strftime(VERSION_FORMAT)[:-4] + "Z"

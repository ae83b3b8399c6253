"""Each Kedro session saves under a version of its own, even two started in one millisecond."""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta, timezone

import pytest
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from kedro.io.core import VERSION_FORMAT, DatasetError, Version

from image_recognition.datasets import AtomicJSONDataset
from image_recognition.integrations import session_store
from image_recognition.integrations.session_store import UniqueVersionStore, reserve_version

KEDRO_VERSION = re.compile(r"\d{4}-\d\d-\d\dT\d\d\.\d\d\.\d\d\.\d{3}Z")  # generate_timestamp's format


@pytest.fixture(autouse=True)
def fresh_process_memory(monkeypatch):
    """This process has issued no id yet: the tests do not push later tests' ids ahead."""
    monkeypatch.setattr(session_store, "_issued", session_store._Issued())


def _now_as_kedro_does() -> str:
    return datetime.now(tz=timezone.utc).strftime(VERSION_FORMAT)[:-4] + "Z"


@pytest.fixture
def one_millisecond(monkeypatch) -> str:
    """Every session Kedro creates gets this one timestamp, as sessions started in one millisecond do."""
    moment = _now_as_kedro_does()
    monkeypatch.setattr("kedro.framework.session.session.generate_timestamp", lambda: moment)
    return moment


def test_sessions_in_one_millisecond_get_distinct_sortable_versions(tmp_path, one_millisecond):
    ids = [UniqueVersionStore(str(tmp_path / "sessions"), one_millisecond)["session_id"] for _ in range(3)]
    assert len(set(ids)) == 3
    assert ids == sorted(ids) and ids[0] >= one_millisecond
    assert all(KEDRO_VERSION.fullmatch(version) for version in ids)


def test_other_processes_reservations_are_respected(tmp_path):
    """Another process (not this one's memory) holds the next ids: the reservation moves past them."""
    moment = datetime.now(tz=timezone.utc)
    taken = [(moment + timedelta(milliseconds=ms)).strftime(VERSION_FORMAT)[:-4] + "Z" for ms in range(2)]
    for version in taken:
        (tmp_path / version).mkdir()
    version = reserve_version(tmp_path, taken[0])
    assert version > taken[-1] and (tmp_path / version).is_dir()


def test_old_reservations_are_removed_and_other_files_kept(tmp_path):
    old = (datetime.now(tz=timezone.utc) - timedelta(days=2)).strftime(VERSION_FORMAT)[:-4] + "Z"
    (tmp_path / old).mkdir()
    (tmp_path / "notes").mkdir()
    reserve_version(tmp_path, _now_as_kedro_does())
    assert not (tmp_path / old).exists() and (tmp_path / "notes").exists()


def test_a_read_only_store_folder_still_gives_distinct_versions_with_a_warning(tmp_path, caplog):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    moment = _now_as_kedro_does()
    with caplog.at_level(logging.WARNING, logger="image_recognition.integrations.session_store"):
        first, second = reserve_version(blocked / "sessions", moment), reserve_version(blocked / "sessions", moment)
    assert first < second
    assert "unique in this process only" in caplog.text


# --- whole sessions: the project's settings, the data pipeline's first node ----------------------------


def _fetch_in_a_session(project, archive) -> str:
    """Run the fetch node (it saves ``dataset_source``) in a new session; return the session's id."""
    params = {"dataset": {"source": {"url": archive.url, "md5": archive.md5}}}
    with KedroSession.create(project_path=project.root, runtime_params=params) as session:
        session.run(pipeline_names=["data_processing"], node_names=["fetch_dataset_node"])
        return session.store["session_id"]


@pytest.fixture
def in_project(project, monkeypatch):
    monkeypatch.chdir(project.root)  # the catalog's data/ paths are relative
    bootstrap_project(project.root)
    return project


def test_two_runs_started_in_one_millisecond_both_save(in_project, synthetic_archive, one_millisecond):
    first = _fetch_in_a_session(in_project, synthetic_archive)
    second = _fetch_in_a_session(in_project, synthetic_archive)

    assert first != second
    folder = in_project.root / "data/01_raw/dataset_source.json"
    assert sorted(p.name for p in folder.iterdir()) == sorted([first, second])  # each run's id is its save version


def test_a_run_that_clashes_anyway_fails_and_leaves_the_first_runs_outputs(
    in_project, synthetic_archive, one_millisecond, monkeypatch
):
    """Sessions on two machines that share only a bucket can still clash: the loser must not delete."""
    monkeypatch.setattr(session_store, "reserve_version", lambda folder, version: version)
    first = _fetch_in_a_session(in_project, synthetic_archive)
    with pytest.raises(DatasetError, match="must not exist"):
        _fetch_in_a_session(in_project, synthetic_archive)

    saved = AtomicJSONDataset(
        filepath=str(in_project.root / "data/01_raw/dataset_source.json"), version=Version(None, None)
    )
    assert saved.list_versions(full_path=False) == [first] == [one_millisecond]
    assert saved.load()["md5"] == synthetic_archive.md5

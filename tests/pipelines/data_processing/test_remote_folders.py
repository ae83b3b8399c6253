"""Image folders read from remote sources: an fsspec ``memory://`` store and a loopback http server."""

from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest

from image_recognition.common.errors import ParameterError
from image_recognition.pipelines.data_processing.nodes import decode_dataset, fetch_dataset
from image_recognition.sources.cifar10.fetch import FetchError, md5_of
from image_recognition.sources.synthetic_folder import write_image_folder


def params(tmp_path, url, md5=None):
    return {
        "kind": "image_folder",
        "source": {"url": url, "md5": md5},
        "cache_dir": str(tmp_path / "raw"),
        "download": {"retries": 1, "timeout_s": 5},
        "image_size": 32,
    }


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """A generated image folder and its .zip, with what the local folder decodes to."""
    root = tmp_path_factory.mktemp("folders")
    folder = write_image_folder(root / "pets", classes=3, train_per_class=4, test_per_class=2, image_size=20)
    archive = write_image_folder(
        root / "packed", classes=3, train_per_class=4, test_per_class=2, image_size=20, archive="zip"
    )
    local = decode_dataset(*_fetched(root, folder.as_uri()))
    return folder, archive, local


def _fetched(tmp_path, url, md5=None):
    config = params(tmp_path, url, md5)
    return fetch_dataset(config), config


def assert_same_images(data, local):
    assert data.class_names == local.class_names
    assert data.fingerprint == local.fingerprint
    np.testing.assert_array_equal(data.train_images, local.train_images)
    np.testing.assert_array_equal(data.train_labels, local.train_labels)
    np.testing.assert_array_equal(data.test_images, local.test_images)


def test_a_folder_on_object_storage_decodes_like_the_local_folder(tmp_path, sources, memory_store):
    folder, _, local = sources
    memory_store.put(str(folder), "/bucket/pets", recursive=True)
    record, config = _fetched(tmp_path, "memory://bucket/pets")
    assert record == {
        "kind": "image_folder",
        "url": "memory://bucket/pets",
        "md5": None,
        "path": "memory://bucket/pets",
        "size_bytes": None,
    }
    assert_same_images(decode_dataset(record, config), local)
    assert not (tmp_path / "raw").exists()


def test_an_archive_on_object_storage_decodes_like_the_local_folder(tmp_path, sources, memory_store):
    _, archive, local = sources
    memory_store.put_file(str(archive), "/bucket/packed.zip")
    record, config = _fetched(tmp_path, "memory://bucket/packed.zip", md5_of(archive))
    assert record["md5"] == md5_of(archive) and record["size_bytes"] == archive.stat().st_size
    assert_same_images(decode_dataset(record, config), local)


def test_a_missing_remote_folder_is_refused(tmp_path, memory_store):
    with pytest.raises(FetchError, match=r"memory://bucket/missing does not exist; fix dataset.source.url"):
        fetch_dataset(params(tmp_path, "memory://bucket/missing"))


def test_a_remote_archive_with_the_wrong_md5_is_refused(tmp_path, sources, memory_store):
    _, archive, _ = sources
    memory_store.put_file(str(archive), "/bucket/packed.zip")
    config = params(tmp_path, "memory://bucket/packed.zip", "0" * 32)
    with pytest.raises(FetchError, match="checksum mismatch"):
        fetch_dataset(config)
    record = {"kind": "image_folder", "path": "memory://bucket/packed.zip", "md5": "0" * 32}
    with pytest.raises(FetchError, match="checksum mismatch"):
        decode_dataset(record, config)


def test_an_image_folder_over_http_is_refused_with_the_fix(tmp_path):
    with pytest.raises(ParameterError, match=r"pack it as a \.zip or \.tar\.gz"):
        fetch_dataset(params(tmp_path, "https://user:secret@example.com/pets/"))
    with pytest.raises(ParameterError) as caught:
        fetch_dataset(params(tmp_path, "https://user:secret@example.com/pets/"))
    assert "secret" not in str(caught.value)


@pytest.fixture
def http_folder(sources):
    """A loopback http server serving the folder that holds the .zip."""
    _, archive, _ = sources
    handler = functools.partial(_QuietHandler, directory=str(archive.parent))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_an_archive_over_http_decodes_like_the_local_folder(tmp_path, sources, http_folder):
    _, archive, local = sources
    record, config = _fetched(tmp_path, f"{http_folder}/packed.zip", md5_of(archive))
    assert record["md5"] == md5_of(archive) and record["path"] == f"{http_folder}/packed.zip"
    assert_same_images(decode_dataset(record, config), local)
    record, config = _fetched(tmp_path, f"{http_folder}/packed.zip")  # no md5: a plain download
    assert record["md5"] is None
    assert_same_images(decode_dataset(record, config), local)


def test_a_missing_or_corrupt_archive_over_http_is_refused(tmp_path, http_folder):
    with pytest.raises(FetchError, match=r"could not download .*/gone\.zip.*fix dataset.source.url"):
        fetch_dataset(params(tmp_path, f"{http_folder}/gone.zip"))
    with pytest.raises(FetchError, match="checksum mismatch"):
        fetch_dataset(params(tmp_path, f"{http_folder}/packed.zip", "0" * 32))
    assert not Path(tmp_path / "raw").exists()

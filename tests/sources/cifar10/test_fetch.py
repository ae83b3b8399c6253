"""Fetching over http (a loopback server), file:// and plain paths, with md5 checks."""

from __future__ import annotations

import hashlib
import http.server
import threading
from pathlib import Path

import pytest

from image_recognition.sources.cifar10.fetch import ChecksumMismatch, FetchError, fetch_verified, md5_of
from tests.helpers import PRESIGNED_QUERY, SOURCE_SECRETS, SOURCE_USERINFO

PAYLOAD = bytes(range(256)) * 8192  # 2 MiB
PAYLOAD_MD5 = hashlib.md5(PAYLOAD).hexdigest()


class FlakyHandler(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD after failing the first ``failures`` requests with 503."""

    failures = 0
    requests = 0
    body = PAYLOAD
    paths: list[str] = []  # noqa: RUF012 (each test's handler class gets its own list)

    def do_GET(self):
        type(self).requests += 1
        type(self).paths.append(self.path)
        if type(self).requests <= type(self).failures:
            self.send_error(503, "try again")
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAYLOAD)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    handler = type("Handler", (FlakyHandler,), {"failures": 0, "requests": 0, "paths": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield handler, f"http://127.0.0.1:{httpd.server_port}/cifar-10-python.tar.gz"
    httpd.shutdown()
    httpd.server_close()


def no_sleep(_seconds: float) -> None:
    pass


def test_http_download_is_verified_and_moved_into_place(server, tmp_path, caplog):
    _, url = server
    target = tmp_path / "raw" / "archive.tar.gz"
    with caplog.at_level("INFO"):
        fetch_verified(url, PAYLOAD_MD5, target, sleep=no_sleep)
    assert md5_of(target) == PAYLOAD_MD5
    assert list(target.parent.iterdir()) == [target]
    assert any("MB" in message for message in caplog.messages)


def test_transient_errors_are_retried(server, tmp_path):
    handler, url = server
    handler.failures = 2
    fetch_verified(url, PAYLOAD_MD5, tmp_path / "a", retries=3, sleep=no_sleep)
    assert handler.requests == 3


def test_gives_up_after_retries(server, tmp_path):
    handler, url = server
    handler.failures = 10
    with pytest.raises(FetchError, match="after 2 attempt"):
        fetch_verified(url, PAYLOAD_MD5, tmp_path / "a", retries=2, sleep=no_sleep)
    assert list(tmp_path.iterdir()) == []


def test_md5_mismatch_leaves_nothing(server, tmp_path):
    _, url = server
    with pytest.raises(ChecksumMismatch, match=f"expected md5 {'0' * 32}, got {PAYLOAD_MD5}"):
        fetch_verified(url, "0" * 32, tmp_path / "a", sleep=no_sleep)
    assert list(tmp_path.iterdir()) == []


def test_short_read_is_not_kept(server, tmp_path):
    handler, url = server
    handler.body = PAYLOAD[:1000]  # Content-Length promises more than is sent
    with pytest.raises(FetchError):
        fetch_verified(url, PAYLOAD_MD5, tmp_path / "a", retries=1, timeout_s=2, sleep=no_sleep)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("as_uri", [True, False])
def test_file_url_and_plain_path(tmp_path, as_uri):
    source = tmp_path / "mirror" / "x.tar.gz"
    source.parent.mkdir()
    source.write_bytes(PAYLOAD)
    target = tmp_path / "raw" / "x.tar.gz"
    fetch_verified(source.as_uri() if as_uri else str(source), PAYLOAD_MD5, target)
    assert target.read_bytes() == PAYLOAD


def test_missing_local_source(tmp_path):
    with pytest.raises(FetchError, match="does not exist"):
        fetch_verified(str(tmp_path / "nope.tar.gz"), PAYLOAD_MD5, tmp_path / "a")


def test_existing_target_survives_a_failed_fetch(tmp_path):
    target = tmp_path / "a"
    target.write_bytes(b"previous")
    source = tmp_path / "src"
    source.write_bytes(PAYLOAD)
    with pytest.raises(ChecksumMismatch):
        fetch_verified(str(source), "f" * 32, target)
    assert Path(target).read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "src"]


def test_a_presigned_url_is_fetched_whole_but_logged_without_its_query(server, tmp_path, caplog):
    handler, url = server
    handler.failures = 1  # a retry, and its warning
    with caplog.at_level("INFO"):
        fetch_verified(url + PRESIGNED_QUERY, PAYLOAD_MD5, tmp_path / "a", sleep=no_sleep)
        handler.failures = 10
        with pytest.raises(FetchError) as gave_up:
            fetch_verified(url + PRESIGNED_QUERY, PAYLOAD_MD5, tmp_path / "b", retries=2, sleep=no_sleep)
        handler.failures = 0
        with pytest.raises(ChecksumMismatch) as mismatch:
            fetch_verified(url + PRESIGNED_QUERY, "0" * 32, tmp_path / "c", sleep=no_sleep)
    assert handler.paths[0] == "/cifar-10-python.tar.gz" + PRESIGNED_QUERY  # the server got the signature
    assert any("retrying" in message for message in caplog.messages)
    assert f"fetching {url}: " in caplog.text
    for text in (caplog.text, str(gave_up.value), str(mismatch.value)):
        assert not any(secret in text for secret in SOURCE_SECRETS), text


def test_a_password_in_the_url_stays_out_of_the_error(server, tmp_path):
    _, url = server
    with_password = url.replace("http://", f"http://{SOURCE_USERINFO}") + PRESIGNED_QUERY
    with pytest.raises(FetchError) as failed:
        fetch_verified(with_password, PAYLOAD_MD5, tmp_path / "a", retries=1, sleep=no_sleep)
    message = str(failed.value)
    assert message.startswith(f"could not download {url} after 1 attempt(s)")
    assert not any(secret in message for secret in SOURCE_SECRETS), message

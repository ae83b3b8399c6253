"""Fetch a file from a URL, a ``file://`` URL or a local path, verified by md5.

The file is written to a temporary name beside its target and moved into place
only once its checksum matches, so an interrupted or corrupt download never
sits where a later run would trust it. Transient network errors are retried
with exponential backoff, and progress is logged while bytes arrive. Log lines
and errors name the URL without its credentials (:mod:`image_recognition.common.redact`);
the download itself uses the URL as given.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from image_recognition.common.atomic import atomic_write
from image_recognition.common.errors import InputError
from image_recognition.common.redact import redact_url, scrub

logger = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
PROGRESS_EVERY_S = 2.0


class FetchError(InputError, RuntimeError):
    """The file could not be fetched or failed verification."""


class ChecksumMismatch(FetchError):
    """The fetched bytes do not have the expected md5."""


def md5_of(path: str | os.PathLike[str]) -> str:
    """Hex md5 of the file at ``path``, read in chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def is_remote(url: str) -> bool:
    return urllib.parse.urlsplit(url).scheme in ("http", "https")


def local_path(url: str) -> Path:
    """The local path named by a ``file://`` URL or a plain path."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "file":
        return Path(urllib.request.url2pathname(parts.path))
    return Path(url)


def _copy_with_progress(source: BinaryIO, target: BinaryIO, total: int | None, label: str) -> str:
    """Copy ``source`` to ``target``, logging progress; return the md5 of the bytes."""
    digest = hashlib.md5()
    done, last_report, started = 0, 0.0, time.monotonic()
    for chunk in iter(lambda: source.read(CHUNK_BYTES), b""):
        target.write(chunk)
        digest.update(chunk)
        done += len(chunk)
        now = time.monotonic()
        if now - last_report >= PROGRESS_EVERY_S:
            last_report = now
            rate = done / max(now - started, 1e-9) / 1e6
            share = f"{100 * done / total:5.1f}% of {total / 1e6:.1f} MB" if total else f"{done / 1e6:.1f} MB"
            logger.info("%s: %s (%.1f MB/s)", label, share, rate)
    if total is not None and done != total:
        raise FetchError(f"{label}: got {done} bytes, expected {total}; the transfer was cut short")
    logger.info("%s: %.1f MB in %.1f s", label, done / 1e6, time.monotonic() - started)
    return digest.hexdigest()


def _open_remote(url: str, timeout_s: float) -> tuple[BinaryIO, int | None]:
    response = urllib.request.urlopen(url, timeout=timeout_s)  # noqa: S310 (http(s) only, checked by caller)
    length = response.headers.get("Content-Length")
    return response, int(length) if length and length.isdigit() else None


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code in (408, 429) or exc.code >= 500
    return isinstance(exc, urllib.error.URLError | TimeoutError | ConnectionError | FetchError)


def fetch_verified(
    url: str,
    md5: str | None,
    target: Path,
    *,
    retries: int = 3,
    timeout_s: float = 60.0,
    backoff_s: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Fetch ``url`` to ``target``; ``target`` appears only if its md5 matches (any bytes when ``md5`` is None).

    Raises:
        FetchError: the source is unreachable after ``retries`` attempts, is
            missing, or its bytes do not match ``md5``.
    """
    label = f"fetching {redact_url(url)}"
    if not is_remote(url):
        source = local_path(url)
        if not source.is_file():
            raise FetchError(f"source file {source} does not exist")
        _fetch_once(lambda: (open(source, "rb"), source.stat().st_size), md5, target, label)  # _fetch_once closes it
        return
    for attempt in range(1, retries + 1):
        try:
            _fetch_once(lambda: _open_remote(url, timeout_s), md5, target, label)
            return
        except ChecksumMismatch:
            raise
        except Exception as exc:
            # urllib's messages may quote the URL, or a part of it such as the password of user:password@host.
            reason = scrub(str(exc), url)
            if not _is_transient(exc) or attempt == retries:
                raise FetchError(
                    f"could not download {redact_url(url)} after {attempt} attempt(s): {reason}"
                ) from None  # the cause's message is this one's, scrubbed
            wait = backoff_s * 2 ** (attempt - 1)
            logger.warning("%s failed (%s); retrying in %.0f s (%d/%d)", label, reason, wait, attempt, retries)
            sleep(wait)


def _fetch_once(
    open_source: Callable[[], tuple[BinaryIO, int | None]], md5: str | None, target: Path, label: str
) -> None:
    source, total = open_source()
    try:
        with atomic_write(target) as tmp:
            actual = _copy_with_progress(source, tmp, total, label)
            if md5 is not None and actual != md5.lower():
                raise ChecksumMismatch(
                    f"checksum mismatch for {label.removeprefix('fetching ')}: expected md5 {md5}, got {actual}; "
                    "the file is corrupt or not the one the md5 belongs to. Check dataset.source.url and "
                    "dataset.source.md5 (a mirror's archive has its own md5)"
                )
    finally:
        source.close()

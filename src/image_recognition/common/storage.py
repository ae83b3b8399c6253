"""Where the data layers live: a local folder or object storage, through fsspec.

``data_root`` (``conf/<env>/globals.yml``, or ``--params data_root=URL`` at run
time) roots every catalog entry and the archive cache. A local path keeps
today's layout under ``data/``; ``s3://bucket/prefix`` (or ``gs://``,
``abfs://``) moves every layer there. What stays on the local disk is what
only one machine uses: each training's scratch checkpoint (``scratch_root``).

Credentials for the data root's filesystem come, in this order, from a
catalog entry's own ``credentials``, from the ``data_store`` entry of
``conf/local/credentials.yml`` (fsspec storage options, given to every
filesystem of the data root's protocol by :func:`configure_data_store`), or
from the filesystem's standard sources (for S3: ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``, ``~/.aws``).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import fsspec
from fsspec.utils import get_protocol

logger = logging.getLogger(__name__)

# The credentials entry whose storage options go to the data root's filesystem.
DATA_STORE_CREDENTIALS = "data_store"
LOCAL_PROTOCOLS = frozenset({"file", "local"})


def is_local(url: str) -> bool:
    """Whether ``url`` is a local path (plain or ``file://``)."""
    return get_protocol(str(url)) in LOCAL_PROTOCOLS


def local_path(url: str) -> Path:
    """The local path of a plain path or a ``file://`` URL."""
    return Path(fsspec.core.strip_protocol(url)) if "://" in str(url) else Path(url)


def join(root: str, *parts: str) -> str:
    """``root`` and ``parts`` joined with ``/``, for local paths and URLs alike."""
    return "/".join([str(root).rstrip("/"), *(part.strip("/") for part in parts)])


def filesystem(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem of ``url`` and the path on it."""
    return fsspec.core.url_to_fs(str(url))


def configure_data_store(data_root: str, credentials: Mapping[str, Any] | None) -> None:
    """Give ``credentials`` (fsspec storage options) to every filesystem of ``data_root``'s protocol.

    A catalog entry's own ``credentials`` still win: fsspec merges these under
    the arguments a dataset passes.
    """
    if not credentials or is_local(data_root):
        return
    if not isinstance(credentials, Mapping):
        raise TypeError(
            f"credentials entry {DATA_STORE_CREDENTIALS!r} must be a mapping of fsspec storage options "
            f"(key, secret, client_kwargs: {{endpoint_url: ...}}), got {type(credentials).__name__}"
        )
    protocol = get_protocol(data_root)
    fsspec.config.conf[protocol] = {**fsspec.config.conf.get(protocol, {}), **credentials}
    logger.info("data root %s: storage options from credentials %r", data_root, DATA_STORE_CREDENTIALS)


@contextlib.contextmanager
def local_copy(url: str) -> Iterator[Path]:
    """A local path holding the file at ``url``: the file itself if local, else a temporary download."""
    if is_local(url):
        yield local_path(url)
        return
    fs, path = filesystem(url)
    with tempfile.TemporaryDirectory(prefix="image_recognition.") as folder:
        local = Path(folder) / Path(path).name
        fs.get_file(path, str(local))
        yield local

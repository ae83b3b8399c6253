"""Build CIFAR-format archives, good and hostile, for the tests."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import tarfile

import numpy as np


class RunsCommand:
    """Unpickling this calls os.system: what a malicious batch would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def batch(overrides: dict | None = None, n: int = 4) -> dict:
    payload = {
        b"batch_label": b"batch",
        b"labels": [i % 10 for i in range(n)],
        b"data": np.zeros((n, 3072), dtype=np.uint8),
        b"filenames": [b"x.png"] * n,
    }
    payload.update(overrides or {})
    return {k: v for k, v in payload.items() if v is not None}


def meta() -> dict:
    return {b"num_cases_per_batch": 4, b"label_names": [f"c{i}".encode() for i in range(10)], b"num_vis": 3072}


def write_archive(path, members: dict[str, object], extra: list[tarfile.TarInfo] | None = None) -> str:
    """Write a .tar.gz whose members are pickled objects (bytes are written as they are)."""
    with (
        open(path, "wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb") as gz,
        tarfile.open(fileobj=gz, mode="w") as tar,
    ):
        for name, obj in members.items():
            blob = obj if isinstance(obj, bytes) else pickle.dumps(obj, protocol=2)
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
        for info in extra or []:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    return str(path)


def good_members(**replace: object) -> dict[str, object]:
    members = {f"cifar-10-batches-py/data_batch_{i}": batch() for i in range(1, 6)}
    members["cifar-10-batches-py/test_batch"] = batch()
    members["cifar-10-batches-py/batches.meta"] = meta()
    members.update({f"cifar-10-batches-py/{k}": v for k, v in replace.items()})
    return members

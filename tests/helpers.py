"""Helpers shared by the tests: paths, archives good and hostile, a kedro CLI project, fake checkpoints.

Fixtures live in the ``conftest.py`` files and import what they need from here;
test modules import from here too, never from a ``conftest.py``.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import pickle
import re
import shutil
import socket
import struct
import subprocess
import sys
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from image_recognition.models import build_model, validate_model_config
from image_recognition.sources.cifar10.fetch import md5_of
from image_recognition.sources.cifar10.synthetic import make_images

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DAGS_FOLDER = PROJECT_ROOT / "airflow_dags"


# --- CIFAR-format archives -------------------------------------------------------------------------


@dataclass(frozen=True)
class Archive:
    path: Path
    md5: str

    @property
    def url(self) -> str:
        return self.path.as_uri()


def source_params(archive: Archive, **extra: object) -> str:
    """A --params value pointing the data pipeline at ``archive``."""
    params = {
        "dataset.source.url": archive.url,
        "dataset.source.md5": archive.md5,
        "dataset.expected_sizes.train": 1000,
        "dataset.expected_sizes.test": 200,
        "dataset.validation_size": 100,
        **extra,
    }
    return ",".join(f"{key}={value}" for key, value in params.items())


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


def cifar100_batch(overrides: dict | None = None, n: int = 4) -> dict:
    """A CIFAR-100 ``train``/``test`` batch of ``n`` blank images; an override of None drops the key."""
    payload = {
        b"batch_label": b"batch",
        b"fine_labels": [i % 100 for i in range(n)],
        b"coarse_labels": [i % 20 for i in range(n)],
        b"data": np.zeros((n, 3072), dtype=np.uint8),
        b"filenames": [b"x.png"] * n,
    }
    payload.update(overrides or {})
    return {k: v for k, v in payload.items() if v is not None}


def cifar100_members(**replace: object) -> dict[str, object]:
    """The members of a minimal valid CIFAR-100 archive; ``name=None`` leaves one out."""
    members = {
        "cifar-100-python/train": cifar100_batch(),
        "cifar-100-python/test": cifar100_batch(),
        "cifar-100-python/meta": {
            b"fine_label_names": [f"f{i}".encode() for i in range(100)],
            b"coarse_label_names": [f"c{i}".encode() for i in range(20)],
        },
    }
    members.update({f"cifar-100-python/{k}": v for k, v in replace.items()})
    return {k: v for k, v in members.items() if v is not None}


def link_or_escaping_member(name: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    if kind == tarfile.REGTYPE:
        info.size = 1
    else:
        info.linkname = "/etc/passwd"
    return info


def bad_archive(tmp_path: Path, case: str) -> Archive:
    """Write the archive of one bad-input case; return it with its (matching) md5."""
    path = tmp_path / "mirror" / "cifar-10-python.tar.gz"
    path.parent.mkdir(exist_ok=True)
    members, extra = good_members(), None
    if case == "truncated":
        write_archive(path, members)
        path.write_bytes(path.read_bytes()[:300])
    elif case == "not_gzip":
        path.write_bytes(b"<html>404 not found</html>")
    else:
        if case == "evil_pickle":
            members = good_members(data_batch_1=batch({b"data": RunsCommand(tmp_path / "pwned")}))
        elif case == "wrong_shape":
            members = good_members(data_batch_1=batch({b"data": np.zeros((4, 1024), dtype=np.uint8)}))
        elif case == "wrong_dtype":
            members = good_members(data_batch_1=batch({b"data": np.zeros((4, 3072), dtype=np.int16)}))
        elif case == "missing_key":
            members = good_members(test_batch=batch({b"labels": None}))
        elif case == "bad_label":
            members = good_members(data_batch_5=batch({b"labels": [0, 1, 2, 10]}))
        elif case == "missing_batch":
            del members["cifar-10-batches-py/data_batch_2"]
        else:
            kinds = {
                "dotdot": ("../x", tarfile.REGTYPE),
                "absolute": ("/tmp/x", tarfile.REGTYPE),
                "symlink": ("cifar-10-batches-py/s", tarfile.SYMTYPE),
                "hardlink": ("cifar-10-batches-py/h", tarfile.LNKTYPE),
            }
            name, kind = kinds[case]
            extra = [link_or_escaping_member(name, kind)]
        write_archive(path, members, extra=extra)
    return Archive(path, md5_of(path))


# Each bad_archive case and the ArchiveError message it must raise: tests/sources/cifar10/test_archive.py decodes
# every one; tests/pipelines/data_processing/test_cli.py runs two through `kedro run`.
ARCHIVE_CASES = {
    "truncated": ".*not a readable CIFAR-10 .tar.gz",
    "not_gzip": ".*not a readable CIFAR-10 .tar.gz",
    "dotdot": "refusing member '../x': its path escapes",
    "absolute": "refusing member '/tmp/x': its path escapes",
    "symlink": "refusing link member",
    "hardlink": "refusing link member",
    "evil_pickle": "data_batch_1: unsafe or corrupt pickle .*forbidden global (posix|os).system",
    "wrong_shape": r"data_batch_1: 'data' must have shape \(N, 3072\), got \(4, 1024\)",
    "wrong_dtype": "data_batch_1: 'data' must be uint8, got int16",
    "missing_key": r"test_batch: missing key\(s\) \['labels'\]",
    "bad_label": r"data_batch_5: 1 label\(s\) outside 0-9, e.g. 10",
    "missing_batch": ".*lacks cifar-10-batches-py/data_batch_2",
}


# --- a project folder, run with the kedro CLI ------------------------------------------------------


# The data_processing pipeline's versioned outputs, under the data root.
DATA_OUTPUTS = [
    "01_raw/dataset_source.json",
    "05_model_input/dataset_train.npz",
    "05_model_input/dataset_validation.npz",
    "05_model_input/dataset_test.npz",
    "05_model_input/normalization_stats.json",
    "08_reporting/data_report.json",
    "08_reporting/data_class_counts.csv",
]

# The demo DAG's shortest training that still learns, for tests of what runs and where it is
# saved: cnn 2 epochs and vit 1 instead of the demo's 4 and 6. Demo test accuracies with
# these seeds: cnn 0.806, vit 0.913, simple_cnn 0.797; with
# dataset.validation_size=0, 0.807, 0.942 and 0.779. (cnn at 1 epoch: 0.53, too close to 0.5.)
SHORT_TRAINING = "cnn.training.epochs=2,vit.training.epochs=1"

# Experiment tracking on for one run (tests/conftest.py turns it off): kedro-mlflow then uses
# the store conf/base/mlflow.yml names, in the project folder.
TRACKED = {"IMAGE_RECOGNITION_TRACKING": "on", "MLFLOW_TRACKING_URI": ""}


@dataclass
class Project:
    """A copy of the project's configuration in a temporary folder, run with the kedro CLI."""

    root: Path

    def kedro(self, *args: str, timeout: float = 600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "kedro", *args]
        env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "PYTHONWARNINGS": "ignore", **(env or {})}
        return subprocess.run(
            command, check=False, cwd=self.root, env=env, capture_output=True, text=True, timeout=timeout
        )

    def data_files(self) -> list[str]:
        """Every file under data/ except the .gitkeep placeholders, as relative paths."""
        return sorted(
            p.relative_to(self.root).as_posix()
            for p in (self.root / "data").rglob("*")
            if p.is_file() and p.name != ".gitkeep"
        )


def worker_project(root: Path) -> Path:
    """A project folder as deployed on a worker: pyproject.toml, conf/ and empty data/ (package installed)."""
    root.mkdir()
    shutil.copy(PROJECT_ROOT / "pyproject.toml", root)
    shutil.copytree(PROJECT_ROOT / "conf", root / "conf", ignore=shutil.ignore_patterns("credentials*", "local"))
    for folder in ("conf/local", "src", "data"):
        (root / folder).mkdir()
    return root


# --- a local S3-compatible server (moto) -------------------------------------------------------------

S3_KEY = {"key": "testing", "secret": "testing"}
S3_REGION = "us-east-1"
# What may stay on the local disk when data_root is remote: each training's scratch files.
SCRATCH_FILE = re.compile(r"data/demo/06_models/\w+/scratch/[^/]+\.(pt|lock|done)")


@contextlib.contextmanager
def s3_server(bucket: str) -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 with an empty ``bucket``; yields its URL, stops it after."""
    import boto3  # noqa: PLC0415 (moto[server] and boto3 are test extras; callers skip without them)
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer  # noqa: PLC0415

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    try:
        boto3.client(
            "s3",
            endpoint_url=url,
            region_name=S3_REGION,
            aws_access_key_id=S3_KEY["key"],
            aws_secret_access_key=S3_KEY["secret"],
        ).create_bucket(Bucket=bucket)
        yield url
    finally:
        server.stop()


def s3_environment(endpoint: str) -> dict[str, str]:
    """The standard AWS variables that point any S3 client at ``endpoint``."""
    return {
        "AWS_ACCESS_KEY_ID": S3_KEY["key"],
        "AWS_SECRET_ACCESS_KEY": S3_KEY["secret"],
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_DEFAULT_REGION": S3_REGION,
    }


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now, for a server a test starts."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def no_aws_files(folder: Path) -> dict[str, str]:
    """AWS config and credentials files that do not exist: no profile of the developer's reaches a store."""
    return {
        "AWS_CONFIG_FILE": str(folder / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(folder / "no-aws-credentials"),
    }


def s3_filesystem(endpoint: str):
    """An s3fs filesystem on ``endpoint``, with no cached listings."""
    import s3fs  # noqa: PLC0415 (the s3 extra)

    return s3fs.S3FileSystem(
        **S3_KEY, client_kwargs={"endpoint_url": endpoint, "region_name": S3_REGION}, skip_instance_cache=True
    )


def versioned_objects(keys: list[str]) -> dict[str, list[str]]:
    """``{dataset path: [versions]}`` of the ``<path>/<version>/<name>`` keys among ``keys`` (Kedro's layout)."""
    versions: dict[str, list[str]] = {}
    for key in keys:
        parts = key.split("/")
        if len(parts) >= 3 and parts[-1] == parts[-3]:  # noqa: PLR2004 (<path>/<version>/<name>)
            versions.setdefault("/".join(parts[:-2]), []).append(parts[-2])
    return versions


# --- checkpoints of untrained models, for evaluation and reporting -----------------------------------

# Models of the `evaluated` fixture (tests/conftest.py): the simple_cnn and a tiny vit.
EVALUATED_MODELS = {"simple_cnn": {}, "vit": {"depth": 1, "embed_dim": 32, "num_heads": 2, "patch_size": 8}}
TRAINING_TTA = {"simple_cnn": "none", "cnn": "flip_translate", "vit": "flip_translate"}  # evaluation follows each's own
# Every model, small: the evaluated ones and a narrow cnn.
SMALL_MODELS = {**EVALUATED_MODELS, "cnn": {"widths": [16, 32, 32]}}


def fake_checkpoint(name: str, **training_config) -> dict:
    torch.manual_seed(0)
    config = validate_model_config(name, SMALL_MODELS[name])
    return {
        "format": 1,
        "model_name": name,
        "model_config": config,
        "model_state": build_model(name, config).state_dict(),
        "ema_state": None,
        "normalization": {"mean": [0.5] * 3, "std": [0.25] * 3},
        "training_config": {"seed": 0, "tta": TRAINING_TTA[name], "autocast": "auto", **training_config},
        "epoch": 2,
        "history": fake_history().to_dict("records"),
        "data": {"md5": "0" * 32, "url": "synthetic://cifar10"},
    }


def fake_history() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "epoch": [1, 2],
            "train_loss": [2.0, 1.5],  # plain cross-entropy, like val_loss
            "train_objective": [2.2, 1.8],  # with label smoothing: not plotted against val_loss
            "train_accuracy": [0.2, 0.4],
            "val_loss": [2.1, 1.7],
            "val_accuracy": [0.2, 0.35],
            "train_time_s": [1.0, 2.0],
            "wall_time_s": [4.0, 5.0],
            "compile_time_s": [3.0, 3.0],
        }
    )


# --- image files from outside, good and hostile ------------------------------------------------------


def image_file(image: Image.Image, fmt: str, **save_args: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save_args)
    return buffer.getvalue()


def class_image(label: int, size: tuple[int, int] = (32, 32), seed: int = 0) -> Image.Image:
    """A synthetic image of class ``label`` (the demo's data), resized to ``size`` (width, height)."""
    pixels = make_images(np.array([label]), np.random.default_rng(seed))[0]  # (3, 32, 32)
    return Image.fromarray(pixels.transpose(1, 2, 0), mode="RGB").resize(size, Image.Resampling.BICUBIC)


def _png_declaring(width: int, height: int) -> bytes:
    """A PNG of a few dozen bytes whose header declares ``width`` x ``height`` grey pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


def _palette_with_transparency() -> bytes:
    image = class_image(3, (40, 30)).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return image_file(image, "PNG", transparency=0)


# Files that must be refused: name -> (bytes, the error's message).
BAD_IMAGES = {
    "not_an_image.jpg": (b"these are my notes, not a photograph\n" * 20, "not an image Pillow can read"),
    "truncated.jpg": (image_file(class_image(1, (64, 64)), "JPEG")[:700], "the image data is truncated"),
    "empty.png": (b"", r"the file is empty \(0 bytes\)"),
    "bomb.png": (
        _png_declaring(100_000, 100_000),
        "declares more than 40,000,000 pixels, a possible decompression bomb",
    ),
}

# EPS content under an image's name: Pillow's EPS plugin, if it ever got the file, would run Ghostscript.
EPS_NAMED_PNG = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto 10 10 lineto stroke\n%%EOF\n"


def fake_ghostscript(folder: Path) -> Path:
    """A ``gs`` in ``folder`` (put it first on PATH) that records each run in the file it returns."""
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / "gs-ran"
    (folder / "gs").write_text(f'#!/bin/sh\necho "$@" >> {marker}\nexit 1\n')
    (folder / "gs").chmod(0o755)
    return marker


# A file name that is not UTF-8 (the byte 0xE9, Latin-1's é), as Python holds it, and as it is shown.
NOT_UTF8_NAME = os.fsdecode(b"caf\xe9.png")
NOT_UTF8_SHOWN = "caf\\xe9.png"

# Unusual files that must be predicted: name -> bytes.
ODD_IMAGES = {
    "grey16.png": image_file(Image.fromarray((np.arange(32 * 32).reshape(32, 32) * 60).astype(np.uint16)), "PNG"),
    "palette_transparent.png": _palette_with_transparency(),
    "cmyk.jpg": image_file(class_image(5, (48, 48)).convert("CMYK"), "JPEG"),
    "one_pixel.png": image_file(class_image(2, (1, 1)), "PNG"),
    "very_wide.png": image_file(class_image(7, (10_000, 10)), "PNG"),
}


def write_files(folder: Path, files: dict[str, bytes]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return [folder / name for name in files]


def write_class_images(folder: Path, per_class: int = 3) -> dict[str, int]:
    """Demo-class images in every format and several sizes; file name -> true label."""
    formats = [
        ("png", "PNG", {}),
        ("jpg", "JPEG", {"quality": 95}),
        ("webp", "WEBP", {"lossless": True}),
        ("bmp", "BMP", {}),
        ("gif", "GIF", {}),
    ]
    sizes = [(32, 32), (64, 48), (100, 100)]
    labels, index = {}, 0
    folder.mkdir(parents=True, exist_ok=True)
    for label in range(10):
        for copy in range(per_class):
            extension, fmt, args = formats[index % len(formats)]
            size = sizes[index % len(sizes)]
            image = class_image(label, size, seed=1000 + index)
            name = f"class{label}_{copy}.{extension}"
            (folder / name).write_bytes(image_file(image, fmt, **args))
            labels[name] = label
            index += 1
    return labels


# --- a source URL with credentials ---------------------------------------------------------------------

# A presigned URL's query (AWS's parameters), and the secrets of it and of SOURCE_USERINFO.
PRESIGNED_QUERY = (
    "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLE%2F20250101%2Fus-east-1%2Fs3%2Faws4_request"
    "&X-Amz-Signature=s3cr3tsig"
)
SOURCE_USERINFO = "AKIAUSER:hunter2@"
SOURCE_SECRETS = ("AKIAUSER", "hunter2", "AKIAEXAMPLE", "s3cr3tsig")


def presigned(archive: Archive) -> tuple[str, str]:
    """A file:// URL of ``archive`` with userinfo and a presigned query, and what may be shown of it.

    The fetch reads a file:// URL's path and ignores the rest, as it would a mirror's.
    """
    clean = archive.url.replace("file://", "file://localhost", 1)
    return archive.url.replace("file://", f"file://{SOURCE_USERINFO}localhost", 1) + PRESIGNED_QUERY, clean

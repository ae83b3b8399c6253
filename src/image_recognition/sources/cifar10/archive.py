"""Read the CIFAR-10 python archive safely, in memory, with no Kedro imports.

The archive is untrusted input. Its batches are Python pickles, and a plain
``pickle.load`` runs whatever callable a pickle names. Here every batch goes
through :class:`RestrictedUnpickler`, which resolves only the few numpy names
that array reconstruction needs; anything else (``os.system``, ``eval``, ...)
stops the read before it can run. Members are read from the tar stream in
memory: nothing is extracted to disk, so no member path can escape anywhere.
"""

from __future__ import annotations

import io
import pickle
import pickletools
import tarfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np

from image_recognition.common.errors import InputError

BATCH_FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META_BATCH = "batches.meta"
REQUIRED_MEMBERS = (*TRAIN_BATCHES, TEST_BATCH, META_BATCH)

IMAGE_SHAPE = (3, 32, 32)
PIXELS_PER_IMAGE = 3 * 32 * 32
NUM_CLASSES = 10

# Limits no real batch comes near: one has ~31 MB, ~90,000 opcodes and ~10,000
# tuples (protocol 2 rebuilds each bytes filename from a tuple of arguments).
MAX_MEMBER_BYTES = 256 * 2**20
MAX_PICKLE_OPCODES = 1_000_000
MAX_PICKLE_TUPLES = 50_000

# Keys of the official pickles; a batch may carry no others.
BATCH_KEYS = frozenset({"batch_label", "labels", "data", "filenames"})
REQUIRED_BATCH_KEYS = frozenset({"labels", "data"})
META_KEYS = frozenset({"num_cases_per_batch", "label_names", "num_vis"})

# The only globals a CIFAR batch needs: numpy's array reconstruction (plus a
# latin-1-only stand-in for _codecs.encode, below). numpy 2 renamed numpy.core
# to numpy._core, and old pickles still say numpy.core.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class ArchiveError(InputError, ValueError):
    """The archive or one of its batches is not a valid CIFAR-10 python archive."""


@dataclass(frozen=True)
class CIFAR10Arrays:
    """Decoded CIFAR-10: uint8 images (N, 3, 32, 32) and int64 labels (N,)."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: list[str]


def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    """Stand-in for ``_codecs.encode``, which protocol-2 pickles use to rebuild bytes."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"forbidden _codecs.encode call with encoding {encoding!r}")
    return text.encode("latin1")


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves numpy array reconstruction and nothing else."""

    def find_class(self, module: str, name: str):  # noqa: D102
        if (module, name) == ("_codecs", "encode"):
            return _latin1_bytes
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(
                f"forbidden global {module}.{name}: a CIFAR-10 batch may only reference numpy array reconstruction"
            )
        if module.startswith("numpy.core."):  # numpy 2 moved it; skip the shim's warning
            try:
                return super().find_class(module.replace("numpy.core.", "numpy._core.", 1), name)
            except ImportError:  # numpy 1.x has no numpy._core
                pass
        return super().find_class(module, name)


def check_opcodes(blob: bytes, member: str) -> None:
    """Refuse pickles whose shape no CIFAR batch has, before unpickling them.

    The restricted unpickler stops code, but a hostile pickle can still nest
    millions of tuples, and hashing such a dict key overflows the C stack
    (a segfault, not an exception). A real batch of 10,000 images has about
    90,000 opcodes and 10,000 flat tuples, so the caps leave it ample room.
    """
    tuples = count = 0
    try:
        for opcode, _, _ in pickletools.genops(blob):
            count += 1
            tuples += opcode.name.startswith("TUPLE")
            if tuples > MAX_PICKLE_TUPLES or count > MAX_PICKLE_OPCODES:
                raise ArchiveError(
                    f"{member}: unsafe or corrupt pickle (more than {MAX_PICKLE_TUPLES} tuples or "
                    f"{MAX_PICKLE_OPCODES} opcodes; a CIFAR batch has far fewer)"
                )
    except ArchiveError:
        raise
    except Exception as exc:  # malformed opcode stream
        raise ArchiveError(f"{member}: corrupt pickle ({type(exc).__name__}: {exc})") from exc


def safe_unpickle(blob: bytes, member: str) -> dict[str, object]:
    """Unpickle one batch with :class:`RestrictedUnpickler`; keys become str."""
    check_opcodes(blob, member)
    try:
        obj = RestrictedUnpickler(io.BytesIO(blob), encoding="bytes").load()
    except pickle.UnpicklingError as exc:
        raise ArchiveError(f"{member}: unsafe or corrupt pickle ({exc})") from exc
    except Exception as exc:  # any decoding failure of untrusted bytes
        raise ArchiveError(f"{member}: cannot decode batch ({type(exc).__name__}: {exc})") from exc
    if not isinstance(obj, dict):
        raise ArchiveError(f"{member}: expected a dict, got {type(obj).__name__}")
    if not all(isinstance(key, bytes | str) for key in obj):
        raise ArchiveError(f"{member}: batch keys must be strings")
    return {_as_text(key): value for key, value in obj.items()}


def _as_text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def check_member_path(member: tarfile.TarInfo) -> None:
    """Reject links, special files and paths that would leave the target folder."""
    name = member.name
    if member.issym() or member.islnk():
        raise ArchiveError(f"refusing link member {name!r} -> {member.linkname!r}")
    if not (member.isfile() or member.isdir()):
        raise ArchiveError(f"refusing special member {name!r} (not a file or folder)")
    path = PurePosixPath(name)
    if path.is_absolute() or name.startswith(("/", "\\")) or ".." in path.parts:
        raise ArchiveError(f"refusing member {name!r}: its path escapes the archive folder")


def read_members(archive: str, wanted: Iterable[str]) -> dict[str, bytes]:
    """Return the bytes of the wanted batch members, checking every member path.

    The archive is read as a forward stream, once. Every member is checked, not
    only the wanted ones, so a hostile archive is refused as a whole.
    """
    wanted = set(wanted)
    blobs: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, mode="r|gz") as tar:
            for member in tar:
                check_member_path(member)
                parts = PurePosixPath(member.name).parts
                if member.isfile() and len(parts) == 2 and parts[0] == BATCH_FOLDER and parts[1] in wanted:
                    if member.size > MAX_MEMBER_BYTES:
                        raise ArchiveError(
                            f"refusing member {member.name!r}: {member.size:,} bytes, more than a CIFAR-10 "
                            f"batch can hold ({MAX_MEMBER_BYTES:,})"
                        )
                    blobs[parts[1]] = tar.extractfile(member).read()
    except ArchiveError:
        raise
    except (tarfile.TarError, EOFError, zlib.error, OSError, MemoryError) as exc:
        raise ArchiveError(
            f"{archive} is not a readable CIFAR-10 .tar.gz ({type(exc).__name__}: {exc}); "
            "it may be truncated or another kind of file: delete it and fetch it again"
        ) from exc
    missing = sorted(wanted - blobs.keys())
    if missing:
        raise ArchiveError(
            f"{archive} lacks {', '.join(f'{BATCH_FOLDER}/{m}' for m in missing)}; "
            "it is not the CIFAR-10 python archive"
        )
    return blobs


def decode_batch(blob: bytes, member: str) -> tuple[np.ndarray, np.ndarray]:
    """Decode one data batch into uint8 images (N, 3, 32, 32) and int64 labels."""
    batch = safe_unpickle(blob, member)
    unknown = sorted(batch.keys() - BATCH_KEYS)
    if unknown:
        raise ArchiveError(f"{member}: unexpected keys {unknown}; expected only {sorted(BATCH_KEYS)}")
    missing = sorted(REQUIRED_BATCH_KEYS - batch.keys())
    if missing:
        raise ArchiveError(f"{member}: missing key(s) {missing}")
    data, labels = batch["data"], batch["labels"]
    if not isinstance(data, np.ndarray):
        raise ArchiveError(f"{member}: 'data' must be a numpy array, got {type(data).__name__}")
    if data.dtype != np.uint8:
        raise ArchiveError(f"{member}: 'data' must be uint8, got {data.dtype}")
    if data.ndim != 2 or data.shape[1] != PIXELS_PER_IMAGE:
        raise ArchiveError(f"{member}: 'data' must have shape (N, {PIXELS_PER_IMAGE}), got {data.shape}")
    labels = _labels_array(labels, member)
    if len(labels) != len(data):
        raise ArchiveError(f"{member}: {len(labels)} labels for {len(data)} images")
    outside = labels[(labels < 0) | (labels >= NUM_CLASSES)]
    if len(outside):
        raise ArchiveError(f"{member}: {len(outside)} label(s) outside 0-9, e.g. {int(outside[0])}")
    return data.reshape(-1, *IMAGE_SHAPE), labels


def _labels_array(labels: object, member: str) -> np.ndarray:
    if isinstance(labels, np.ndarray):
        if labels.ndim != 1 or labels.dtype.kind not in "iu":
            raise ArchiveError(f"{member}: 'labels' must be a 1-D integer array")
        return labels.astype(np.int64)
    if not isinstance(labels, list) or not all(type(x) is int for x in labels):
        raise ArchiveError(f"{member}: 'labels' must be a list of ints")
    return np.asarray(labels, dtype=np.int64)


def decode_meta(blob: bytes) -> list[str]:
    """Return the class names from ``batches.meta``."""
    meta = safe_unpickle(blob, META_BATCH)
    unknown = sorted(meta.keys() - META_KEYS)
    if unknown:
        raise ArchiveError(f"{META_BATCH}: unexpected keys {unknown}")
    names = meta.get("label_names")
    if not isinstance(names, list) or not all(isinstance(n, bytes | str) for n in names):
        raise ArchiveError(f"{META_BATCH}: 'label_names' must be a list of strings")
    return [_as_text(n) for n in names]


def load_cifar10_archive(archive: str) -> CIFAR10Arrays:
    """Decode the CIFAR-10 python archive at ``archive`` without extracting it."""
    blobs = read_members(archive, REQUIRED_MEMBERS)
    train = [decode_batch(blobs[name], name) for name in TRAIN_BATCHES]
    test_images, test_labels = decode_batch(blobs[TEST_BATCH], TEST_BATCH)
    return CIFAR10Arrays(
        train_images=np.concatenate([images for images, _ in train]),
        train_labels=np.concatenate([labels for _, labels in train]),
        test_images=test_images,
        test_labels=test_labels,
        class_names=decode_meta(blobs[META_BATCH]),
    )

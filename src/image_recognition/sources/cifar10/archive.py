"""Read the CIFAR-10 and CIFAR-100 python archives safely, in memory, with no Kedro imports.

The archive is untrusted input. Its batches are Python pickles, and a plain
``pickle.load`` runs whatever callable a pickle names. Here every batch goes
through :class:`RestrictedUnpickler`, which resolves only the few numpy names
that array reconstruction needs; anything else (``os.system``, ``eval``, ...)
stops the read before it can run. Members are read from the tar stream in
memory: nothing is extracted to disk, so no member path can escape anywhere.

CIFAR-100 (``cifar-100-python/{train,test,meta}``) goes through the same
unpickler, opcode caps and member-path checks; its labels are the 100 fine
classes, or with ``label="coarse"`` the 20 super-classes.
"""

from __future__ import annotations

import io
import pickle
import pickletools
import tarfile
import zlib
from collections.abc import Iterable
from pathlib import PurePosixPath

import numpy as np

from image_recognition.common.errors import InputError
from image_recognition.common.params import one_of
from image_recognition.sources.cifar10.fetch import md5_of
from image_recognition.sources.decoded import DecodedImages

BATCH_FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META_BATCH = "batches.meta"
REQUIRED_MEMBERS = (*TRAIN_BATCHES, TEST_BATCH, META_BATCH)

IMAGE_SHAPE = (3, 32, 32)
PIXELS_PER_IMAGE = 3 * 32 * 32
NUM_CLASSES = 10

CIFAR100_FOLDER = "cifar-100-python"
CIFAR100_TRAIN, CIFAR100_TEST, CIFAR100_META = "train", "test", "meta"
CIFAR100_NUM_CLASSES = {"fine": 100, "coarse": 20}  # per label granularity
CIFAR100_BATCH_KEYS = frozenset({"batch_label", "fine_labels", "coarse_labels", "data", "filenames"})
CIFAR100_META_KEYS = frozenset({"fine_label_names", "coarse_label_names"})
LABELS = ("fine", "coarse")
CIFAR_KINDS = ("cifar10", "cifar100")

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
    """The archive or one of its batches is not a valid CIFAR-10 or CIFAR-100 python archive."""


# Decoded CIFAR-10 is decoded images like any other source's; the old name stays for existing callers.
CIFAR10Arrays = DecodedImages


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
                f"forbidden global {module}.{name}: a CIFAR batch may only reference numpy array reconstruction"
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


def read_members(
    archive: str, wanted: Iterable[str], folder: str = BATCH_FOLDER, name: str = "CIFAR-10"
) -> dict[str, bytes]:
    """Return the bytes of the wanted batch members of ``folder``, checking every member path.

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
                if member.isfile() and len(parts) == 2 and parts[0] == folder and parts[1] in wanted:
                    if member.size > MAX_MEMBER_BYTES:
                        raise ArchiveError(
                            f"refusing member {member.name!r}: {member.size:,} bytes, more than a {name} "
                            f"batch can hold ({MAX_MEMBER_BYTES:,})"
                        )
                    blobs[parts[1]] = tar.extractfile(member).read()
    except ArchiveError:
        raise
    except (tarfile.TarError, EOFError, zlib.error, OSError, MemoryError) as exc:
        raise ArchiveError(
            f"{archive} is not a readable {name} .tar.gz ({type(exc).__name__}: {exc}); "
            "it may be truncated or another kind of file: delete it and fetch it again"
        ) from exc
    missing = sorted(wanted - blobs.keys())
    if missing:
        raise ArchiveError(
            f"{archive} lacks {', '.join(f'{folder}/{m}' for m in missing)}; it is not the {name} python archive"
        )
    return blobs


def _batch_dict(blob: bytes, member: str, allowed: frozenset[str], required: set[str]) -> dict[str, object]:
    batch = safe_unpickle(blob, member)
    unknown = sorted(batch.keys() - allowed)
    if unknown:
        raise ArchiveError(f"{member}: unexpected keys {unknown}; expected only {sorted(allowed)}")
    missing = sorted(required - batch.keys())
    if missing:
        raise ArchiveError(f"{member}: missing key(s) {missing}")
    return batch


def _images(data: object, member: str) -> np.ndarray:
    if not isinstance(data, np.ndarray):
        raise ArchiveError(f"{member}: 'data' must be a numpy array, got {type(data).__name__}")
    if data.dtype != np.uint8:
        raise ArchiveError(f"{member}: 'data' must be uint8, got {data.dtype}")
    if data.ndim != 2 or data.shape[1] != PIXELS_PER_IMAGE:
        raise ArchiveError(f"{member}: 'data' must have shape (N, {PIXELS_PER_IMAGE}), got {data.shape}")
    return data.reshape(-1, *IMAGE_SHAPE)


def _checked_labels(labels: object, count: int, member: str, key: str, num_classes: int) -> np.ndarray:
    labels = _labels_array(labels, member, key)
    if len(labels) != count:
        raise ArchiveError(f"{member}: {len(labels)} labels for {count} images")
    outside = labels[(labels < 0) | (labels >= num_classes)]
    if len(outside):
        raise ArchiveError(f"{member}: {len(outside)} label(s) outside 0-{num_classes - 1}, e.g. {int(outside[0])}")
    return labels


def decode_batch(blob: bytes, member: str) -> tuple[np.ndarray, np.ndarray]:
    """Decode one CIFAR-10 data batch into uint8 images (N, 3, 32, 32) and int64 labels."""
    batch = _batch_dict(blob, member, BATCH_KEYS, set(REQUIRED_BATCH_KEYS))
    images = _images(batch["data"], member)
    return images, _checked_labels(batch["labels"], len(images), member, "labels", NUM_CLASSES)


def decode_cifar100_batch(blob: bytes, member: str, label: str = "fine") -> tuple[np.ndarray, np.ndarray]:
    """Decode CIFAR-100's ``train`` or ``test`` into uint8 images (N, 3, 32, 32) and int64 ``label`` labels."""
    key = f"{label}_labels"
    batch = _batch_dict(blob, member, CIFAR100_BATCH_KEYS, {"data", key})
    images = _images(batch["data"], member)
    return images, _checked_labels(batch[key], len(images), member, key, CIFAR100_NUM_CLASSES[label])


def _labels_array(labels: object, member: str, key: str = "labels") -> np.ndarray:
    if isinstance(labels, np.ndarray):
        if labels.ndim != 1 or labels.dtype.kind not in "iu":
            raise ArchiveError(f"{member}: '{key}' must be a 1-D integer array")
        return labels.astype(np.int64)
    if not isinstance(labels, list) or not all(type(x) is int for x in labels):
        raise ArchiveError(f"{member}: '{key}' must be a list of ints")
    return np.asarray(labels, dtype=np.int64)


def _names(meta: dict[str, object], member: str, key: str, count: int | None = None) -> list[str]:
    names = meta.get(key)
    if not isinstance(names, list) or not all(isinstance(n, bytes | str) for n in names):
        raise ArchiveError(f"{member}: '{key}' must be a list of strings")
    if count is not None and len(names) != count:
        raise ArchiveError(f"{member}: '{key}' holds {len(names)} names, expected {count}")
    return [_as_text(n) for n in names]


def decode_meta(blob: bytes) -> list[str]:
    """Return the class names from ``batches.meta``."""
    meta = safe_unpickle(blob, META_BATCH)
    unknown = sorted(meta.keys() - META_KEYS)
    if unknown:
        raise ArchiveError(f"{META_BATCH}: unexpected keys {unknown}")
    return _names(meta, META_BATCH, "label_names")


def decode_cifar100_meta(blob: bytes, label: str = "fine") -> list[str]:
    """Return the fine (100) or coarse (20) class names from CIFAR-100's ``meta``."""
    meta = _batch_dict(blob, CIFAR100_META, CIFAR100_META_KEYS, {f"{label}_label_names"})
    return _names(meta, CIFAR100_META, f"{label}_label_names", CIFAR100_NUM_CLASSES[label])


def load_cifar10_archive(archive: str, fingerprint: str | None = None) -> DecodedImages:
    """Decode the CIFAR-10 python archive at ``archive`` without extracting it.

    ``fingerprint`` is the archive's md5 where the caller knows it; else it is computed.
    """
    blobs = read_members(archive, REQUIRED_MEMBERS)
    train = [decode_batch(blobs[name], name) for name in TRAIN_BATCHES]
    test_images, test_labels = decode_batch(blobs[TEST_BATCH], TEST_BATCH)
    return DecodedImages(
        train_images=np.concatenate([images for images, _ in train]),
        train_labels=np.concatenate([labels for _, labels in train]),
        test_images=test_images,
        test_labels=test_labels,
        class_names=decode_meta(blobs[META_BATCH]),
        image_size=IMAGE_SHAPE[-1],
        fingerprint=fingerprint or md5_of(archive),
    )


def load_cifar100_archive(archive: str, label: str = "fine", fingerprint: str | None = None) -> DecodedImages:
    """Decode the CIFAR-100 python archive at ``archive``: its 100 fine classes, or with ``label="coarse"`` its 20 super-classes."""
    one_of("dataset.label", label, LABELS)
    members = (CIFAR100_TRAIN, CIFAR100_TEST, CIFAR100_META)
    blobs = read_members(archive, members, folder=CIFAR100_FOLDER, name="CIFAR-100")
    train_images, train_labels = decode_cifar100_batch(blobs[CIFAR100_TRAIN], CIFAR100_TRAIN, label)
    test_images, test_labels = decode_cifar100_batch(blobs[CIFAR100_TEST], CIFAR100_TEST, label)
    return DecodedImages(
        train_images=train_images,
        train_labels=train_labels,
        test_images=test_images,
        test_labels=test_labels,
        class_names=decode_cifar100_meta(blobs[CIFAR100_META], label),
        image_size=IMAGE_SHAPE[-1],
        fingerprint=fingerprint or md5_of(archive),
    )


def load_cifar_archive(
    archive: str, kind: str = "cifar10", label: str = "fine", fingerprint: str | None = None
) -> DecodedImages:
    """Decode a CIFAR archive of ``kind`` (``cifar10`` or ``cifar100``); CIFAR-10 has only fine labels."""
    one_of("dataset.kind", kind, CIFAR_KINDS)
    if kind == "cifar100":
        return load_cifar100_archive(archive, label, fingerprint)
    if label != "fine":
        one_of("dataset.label (cifar10 has only its 10 classes)", label, ("fine",))
    return load_cifar10_archive(archive, fingerprint)

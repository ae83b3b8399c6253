"""A labelled folder of images (``<root>/train/<class>/<images>``) as decoded uint8 arrays; no Kedro imports.

The layout is torchvision's ``ImageFolder``: one folder per class under
``train/``, and optionally the same under ``test/``. Class names are the sorted
folder names of ``train/``; files in a class folder's subfolders belong to that
class. The source is a local folder, or a ``.zip`` or ``.tar.gz`` of that
layout (with or without one top folder holding ``train/``), unpacked only into a
temporary folder after every member is checked: no ``..``, absolute paths or
links (:func:`unpack_archive`).

Each image is decoded as ``predict`` decodes one (``sources.images``): the
format allow-list, EXIF orientation, mode conversion and the
decompression-bomb limit, then resized (shorter side) and centre-cropped to
``image_size``, in worker processes on the available cores.

What is ignored, refused or skipped:

- files without an image extension and hidden files (``.DS_Store``,
  ``Thumbs.db``, dotfiles and dot-folders, ``__MACOSX``) are ignored and counted
  in ``skipped["ignored"]``;
- a file with an image extension that cannot be decoded stops the read with one
  :class:`BadImagesError` listing such files, unless ``skip_bad_files``: then
  they are listed in ``skipped["bad_files"]``;
- a class folder without images, fewer than two classes, a ``test/`` class that
  ``train/`` lacks, and a symbolic link that leads outside the root are
  :class:`ImageFolderLayoutError`;
- a data set whose arrays would not fit in the memory available is a
  :class:`DataTooLargeError` before anything is decoded (:func:`check_memory`).

:func:`find_duplicates` finds images with the same decoded pixels within and
across the splits the data stage makes.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import logging
import multiprocessing
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any
from urllib.parse import unquote, urlparse

import numpy as np

from image_recognition.common.errors import InputError
from image_recognition.sources.cifar10.archive import ArchiveError, check_member_path
from image_recognition.sources.decoded import DecodedImages
from image_recognition.sources.images import (
    DEFAULT_MAX_IMAGE_PIXELS,
    FORMATS_HINT,
    IMAGE_EXTENSIONS,
    ImageError,
    check_inside,
    decode_image,
    display_name,
)

logger = logging.getLogger(__name__)

SPLITS = ("train", "test")
# Files that file managers and operating systems leave behind; dotfiles and dot-folders are hidden too.
HIDDEN_NAMES = frozenset({"thumbs.db", "desktop.ini", "__macosx", "$recycle.bin"})
# How many bad or ignored files a message or the data report names; the rest are counted.
LISTED_FILES = 20
# With ``workers`` left to its default, decoding stays in this process below this many files or bytes:
# starting worker processes (each imports the package anew) would cost more than it saves.
MIN_FILES_FOR_WORKERS = 256
MIN_BYTES_FOR_WORKERS = 64 * 2**20
# Files a worker decodes per task: large enough to amortise the transfer, small enough to share the work.
MAX_CHUNK_FILES = 512
# The data stage holds about two copies of the arrays at its peak (decoded chunks joined, then split).
MEMORY_COPIES = 2
GB = 1e9


class ImageFolderLayoutError(InputError, ValueError):
    """The folder (or archive) does not have the ``<root>/train/<class>/<images>`` layout, or leaves it."""


class BadImagesError(InputError, ValueError):
    """Files with an image extension could not be decoded; the message lists them and the fix."""


class DataTooLargeError(InputError, ValueError):
    """The decoded data set would not fit in the memory available."""


@dataclass(frozen=True)
class FolderListing:
    """The image files of an image folder, by split: (path relative to the root, label) in path order."""

    root: Path
    class_names: list[str]
    files: dict[str, list[tuple[str, int]]]
    ignored: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return sum(len(files) for files in self.files.values())


def read_image_folder(  # noqa: PLR0913 (the source, the size, and how to treat what it holds)
    path: str | os.PathLike[str],
    image_size: int,
    *,
    skip_bad_files: bool = False,
    workers: int | None = None,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    available_memory: Callable[[], int | None] | None = None,
) -> DecodedImages:
    """Decode the image folder (or ``.zip`` / ``.tar.gz`` of one) at ``path`` to ``image_size`` x ``image_size``.

    ``workers``: processes that decode (default: the cores this process may
    use; in-process for few files); ``available_memory``: returns the bytes
    available (default :func:`available_memory`), for tests.
    """
    with opened_source(path) as root:
        listing = list_image_folder(root)
        check_memory(listing.count, image_size, available_memory)
        relative = [name for split in SPLITS for name, _ in listing.files.get(split, [])]
        images, digests, errors = decode_files(root, relative, image_size, workers, max_image_pixels)
    if errors and not skip_bad_files:
        raise BadImagesError(_bad_files_message(errors))
    arrays = _split_arrays(listing, images, set(errors))
    _check_classes_left(listing, arrays)
    test = arrays.get("test", (None, None))
    return DecodedImages(
        train_images=arrays["train"][0],
        train_labels=arrays["train"][1],
        test_images=test[0],
        test_labels=test[1],
        class_names=listing.class_names,
        image_size=image_size,
        skipped=_skipped(listing.ignored, errors),
        fingerprint=fingerprint(relative, digests),
    )


def _split_arrays(
    listing: FolderListing, images: np.ndarray, bad: set[str]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each split's decoded images and int64 labels, the bad files left out."""
    arrays, start = {}, 0
    for split in SPLITS:
        if split not in listing.files:
            continue
        files = listing.files[split]
        keep = np.array([name not in bad for name, _ in files], dtype=bool)
        labels = np.array([label for _, label in files], dtype=np.int64)
        arrays[split] = (images[start : start + len(files)][keep], labels[keep])
        start += len(files)
    return arrays


def _check_classes_left(listing: FolderListing, arrays: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """Refuse a class of ``train/`` left without images once the bad files are skipped."""
    counts = np.bincount(arrays["train"][1], minlength=len(listing.class_names))
    empty = [name for name, count in zip(listing.class_names, counts) if count == 0]
    if empty:
        raise ImageFolderLayoutError(
            f"the class folders {', '.join(f'train/{display_name(n)}' for n in empty)} have no image that could be "
            "decoded once the bad files were skipped: add images to them, or remove the folders"
        )


def _skipped(ignored: list[str], errors: dict[str, str]) -> dict[str, Any]:
    """What the read ignored (not images by name, hidden) and skipped (bad files), for the data report."""
    skipped: dict[str, Any] = {
        "ignored": {
            "count": len(ignored),
            "examples": [display_name(name) for name in ignored[:LISTED_FILES]],
            "why": f"hidden files and files without an image extension ({', '.join(IMAGE_EXTENSIONS)})",
        }
    }
    if errors:
        skipped["bad_files"] = {
            "count": len(errors),
            "files": [{"file": display_name(name), "error": error} for name, error in sorted(errors.items())],
            "why": "they have an image extension but could not be decoded (dataset.skip_bad_files: true)",
        }
    return skipped


def _bad_files_message(errors: dict[str, str]) -> str:
    listed = sorted(errors.items())[:LISTED_FILES]
    more = f"\n  ... and {len(errors) - len(listed)} more" if len(errors) > len(listed) else ""
    lines = "\n".join(f"  {error}" for _, error in listed)
    return (
        f"{len(errors)} image file{'s' if len(errors) != 1 else ''} in the image folder cannot be decoded:\n"
        f"{lines}{more}\n"
        f"replace or remove them, or set dataset.skip_bad_files: true to skip them "
        "(the data report lists the files skipped)"
    )


def fingerprint(relative_paths: list[str], digests: list[str]) -> str:
    """sha256 over the sorted relative paths of the image files and each file's sha256: names the source's content."""
    total = hashlib.sha256()
    for name, digest in sorted(zip(relative_paths, digests)):
        total.update(os.fsencode(name) + b"\0" + digest.encode() + b"\n")
    return total.hexdigest()


# Reading the source: a folder, or an archive unpacked into a temporary folder.


@contextlib.contextmanager
def opened_source(path: str | os.PathLike[str]) -> Iterator[Path]:
    """The root of the image folder at ``path`` (a folder, ``file://`` URL, ``.zip`` or ``.tar.gz``).

    An archive is unpacked into a temporary folder, removed on exit.
    """
    source = Path(unquote(urlparse(str(path)).path) if str(path).startswith("file://") else path)
    if source.is_dir():
        yield _layout_root(source, source)
        return
    name = source.name.lower()
    if not source.is_file() or not name.endswith((".zip", ".tar.gz", ".tgz")):
        raise ImageFolderLayoutError(
            f"{display_name(str(source))} is not a folder, a .zip or a .tar.gz: point dataset.source.url at a "
            "folder holding train/<class>/<images>, or at an archive of one"
        )
    with tempfile.TemporaryDirectory(prefix="image-folder-") as folder:
        unpack_archive(source, Path(folder))
        yield _layout_root(Path(folder), source)


def _layout_root(folder: Path, source: Path) -> Path:
    """``folder`` if it holds ``train/``, else its one visible subfolder that does."""
    if (folder / "train").is_dir():
        return folder
    visible = [entry for entry in folder.iterdir() if entry.is_dir() and not _hidden(entry.name)]
    if len(visible) == 1 and (visible[0] / "train").is_dir():
        return visible[0]
    raise ImageFolderLayoutError(
        f"no train/ folder in {display_name(str(source))}: put one folder of images per class under "
        "<root>/train/ (and, optionally, a test set the same way under <root>/test/)"
    )


def unpack_archive(archive: Path, target: Path) -> None:
    """Unpack a ``.zip`` or ``.tar.gz`` into ``target`` after checking every member; refuse links and escapes."""
    try:
        if archive.name.lower().endswith(".zip"):
            _unpack_zip(archive, target)
        else:
            _unpack_tar(archive, target)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
        raise ArchiveError(
            f"{display_name(str(archive))} cannot be read as an archive ({type(exc).__name__}: {exc}): "
            "download or pack it again"
        ) from exc


def _unpack_zip(archive: Path, target: Path) -> None:
    with zipfile.ZipFile(archive) as zipped:
        members = zipped.infolist()
        for member in members:
            check_zip_member(member)
        _check_space(archive, sum(member.file_size for member in members), target)
        _write_members(((m.filename, m.is_dir(), lambda m=m: zipped.open(m)) for m in members), target)


def _write_members(members: Iterable[tuple[str, bool, Callable[[], IO[bytes]]]], target: Path) -> None:
    """Write checked archive members (name, is a folder, how to open it) under ``target``; never over a file."""
    for name, is_dir, open_member in members:
        destination = target / PurePosixPath(name)
        if is_dir:
            destination.mkdir(parents=True, exist_ok=True)
            continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        with open_member() as source, open(destination, "xb") as out:
            shutil.copyfileobj(source, out)


def check_zip_member(member: zipfile.ZipInfo) -> None:
    """The zip counterpart of ``check_member_path``: no links, special files or paths that leave the folder."""
    name = member.filename
    kind = stat.S_IFMT(member.external_attr >> 16)
    if kind == stat.S_IFLNK:
        raise ArchiveError(f"refusing link member {name!r}")
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise ArchiveError(f"refusing special member {name!r} (not a file or folder)")
    path = PurePosixPath(name)
    if path.is_absolute() or name.startswith(("/", "\\")) or ".." in path.parts or ":" in (path.parts or ("",))[0]:
        raise ArchiveError(f"refusing member {name!r}: its path escapes the archive folder")


def _unpack_tar(archive: Path, target: Path) -> None:
    with tarfile.open(archive, mode="r:*") as tar:
        members = tar.getmembers()
        for member in members:
            check_member_path(member)
        _check_space(archive, sum(member.size for member in members), target)
        _write_members(((m.name, m.isdir(), lambda m=m: tar.extractfile(m)) for m in members), target)


def _check_space(archive: Path, size: int, target: Path) -> None:
    free = shutil.disk_usage(target).free
    if size > free:
        raise ArchiveError(
            f"{display_name(str(archive))} unpacks to {size / GB:.1f} GB, but the temporary folder has "
            f"{free / GB:.1f} GB free: set TMPDIR to a larger disk, or unpack it and point dataset.source.url "
            "at the folder"
        )


# Listing: which files are images of which class.


def list_image_folder(root: Path) -> FolderListing:
    """The image files under ``root/train`` and ``root/test`` by class, or an :class:`ImageFolderLayoutError`."""
    ignored: list[str] = []
    class_names = _class_folders(root, "train", ignored)
    if len(class_names) < 2:  # noqa: PLR2004 (a classifier needs two classes)
        found = ", ".join(display_name(name) for name in class_names) or "none"
        raise ImageFolderLayoutError(
            f"train/ in the image folder has {len(class_names)} class folder{'s' if len(class_names) != 1 else ''} "
            f"({found}); a classifier needs at least two: add one folder of images per class under train/"
        )
    files: dict[str, list[tuple[str, int]]] = {}
    for split in SPLITS:
        if split == "test" and not (root / "test").is_dir():
            continue
        names = class_names if split == "train" else _test_classes(root, class_names, ignored)
        files[split] = []
        empty = []
        for name in names:
            images = _class_files(root, f"{split}/{name}", ignored)
            empty += [] if images else [f"{split}/{name}"]
            files[split] += [(image, class_names.index(name)) for image in images]
        if empty:
            raise ImageFolderLayoutError(
                f"the class folder{'s' if len(empty) > 1 else ''} {', '.join(display_name(e) for e in empty)} "
                f"{'have' if len(empty) > 1 else 'has'} no images ({FORMATS_HINT}: {', '.join(IMAGE_EXTENSIONS)}): "
                "add images, or remove the folder"
            )
    return FolderListing(root=root, class_names=class_names, files=files, ignored=sorted(ignored))


def _class_folders(root: Path, split: str, ignored: list[str]) -> list[str]:
    """The sorted names of the visible folders in ``root/split``; a link leading outside ``root`` is refused.

    Files beside the class folders belong to no class: they go to ``ignored``.
    """
    folders = []
    for entry in os.scandir(root / split):
        if _hidden(entry.name) or not entry.is_dir():
            ignored.append(f"{split}/{entry.name}")
            continue
        _check_inside(root, f"{split}/{entry.name}")
        folders.append(entry.name)
    return sorted(folders)


def _test_classes(root: Path, class_names: list[str], ignored: list[str]) -> list[str]:
    names = _class_folders(root, "test", ignored)
    missing = [name for name in names if name not in class_names]
    if missing:
        raise ImageFolderLayoutError(
            f"test/ has class folders that train/ lacks: {', '.join(display_name(name) for name in missing)}; "
            "add them to train/ too, or remove them from test/"
        )
    if not names:
        raise ImageFolderLayoutError(
            "test/ in the image folder has no class folders: put its images in one folder per class "
            "(the names of train/'s), or remove test/ to hold out a test set from train/"
        )
    return names


def _class_files(root: Path, folder: str, ignored: list[str]) -> list[str]:
    """The image files under ``root/folder`` (recursively), relative to ``root``, sorted; others go to ``ignored``."""
    images = []
    for directory, subfolders, files in os.walk(root / folder):
        relative = Path(directory).relative_to(root).as_posix()
        for name in list(subfolders):
            if _hidden(name) or os.path.islink(os.path.join(directory, name)):
                subfolders.remove(name)  # not walked: its files are hidden, or reached through a link
                ignored.append(f"{relative}/{name}/")
        for name in files:
            path = f"{relative}/{name}"
            if _hidden(name) or PurePosixPath(name).suffix.lower() not in IMAGE_EXTENSIONS:
                ignored.append(path)
                continue
            _check_inside(root, path)
            images.append(path)
    return sorted(images)


def _check_inside(root: Path, relative: str) -> None:
    try:
        check_inside(root / relative, root, relative)
    except ImageError as exc:
        raise ImageFolderLayoutError(str(exc)) from None


def _hidden(name: str) -> bool:
    return name.startswith(".") or name.lower() in HIDDEN_NAMES


# Decoding, in worker processes.


def decode_files(
    root: Path, relative_paths: list[str], image_size: int, workers: int | None, max_image_pixels: int
) -> tuple[np.ndarray, list[str], dict[str, str]]:
    """Decode the files: uint8 images (N, 3, S, S), each file's sha256 and {relative path: error} for bad files.

    A bad file's place in the images holds zeros. ``workers`` processes decode
    chunks of files (default: the cores this process may use, and this
    process alone for fewer than ``MIN_FILES_FOR_WORKERS`` files or
    ``MIN_BYTES_FOR_WORKERS`` bytes). Worker processes start by the
    ``forkserver`` method, safe beside the threads of PyTorch and logging; like
    any ``multiprocessing`` caller, a script that calls this guards its entry
    point with ``if __name__ == "__main__":``.
    """
    count = len(relative_paths)
    if workers is None:
        workers = workers_for(count, _total_bytes(root, relative_paths))
    logger.info("decoding %d image files in %d process%s", count, workers, "es" if workers > 1 else "")
    chunk = max(1, min(MAX_CHUNK_FILES, -(-count // (workers * 4))))
    chunks = [relative_paths[start : start + chunk] for start in range(0, count, chunk)]
    arguments = (str(root), image_size, max_image_pixels)
    if workers <= 1 or len(chunks) <= 1:
        results = [decode_chunk(part, *arguments) for part in chunks]
    else:
        context = multiprocessing.get_context("forkserver")
        with concurrent.futures.ProcessPoolExecutor(min(workers, len(chunks)), mp_context=context) as pool:
            results = list(pool.map(decode_chunk, chunks, *([argument] * len(chunks) for argument in arguments)))
    images = np.zeros((count, 3, image_size, image_size), dtype=np.uint8)
    digests: list[str] = []
    errors: dict[str, str] = {}
    start = 0
    for part, (decoded, part_digests, part_errors) in zip(chunks, results):
        images[start : start + len(part)] = decoded
        digests += part_digests
        errors.update(part_errors)
        start += len(part)
    return images, digests, errors


def workers_for(count: int, total_bytes: int) -> int:
    """The processes that decode ``count`` files of ``total_bytes`` when ``workers`` is left to its default."""
    if count < MIN_FILES_FOR_WORKERS or total_bytes < MIN_BYTES_FOR_WORKERS:
        return 1
    return len(os.sched_getaffinity(0))


def _total_bytes(root: Path, relative_paths: list[str]) -> int:
    return sum(os.path.getsize(root / name) for name in relative_paths)


def decode_chunk(
    relative_paths: list[str], root: str, image_size: int, max_image_pixels: int
) -> tuple[np.ndarray, list[str], dict[str, str]]:
    """Decode some files of the folder at ``root``: their images, sha256s and errors (as :func:`decode_files`)."""
    images = np.zeros((len(relative_paths), 3, image_size, image_size), dtype=np.uint8)
    digests, errors = [], {}
    for index, name in enumerate(relative_paths):
        try:
            with open(os.path.join(root, name), "rb") as file:
                data = file.read()
        except OSError as exc:
            digests.append("")
            errors[name] = f"{display_name(name)}: cannot be read ({type(exc).__name__}: {exc.strerror or exc})"
            continue
        digests.append(hashlib.sha256(data).hexdigest())
        try:
            images[index] = decode_image(data, image_size, name, max_image_pixels)
        except ImageError as exc:
            errors[name] = str(exc)
    return images, digests, errors


# Memory: refuse a data set that would not fit before decoding it.


def estimate_bytes(count: int, image_size: int) -> int:
    """Bytes of ``count`` uint8 RGB images of ``image_size`` x ``image_size``."""
    return count * 3 * image_size * image_size


def check_memory(count: int, image_size: int, available: Callable[[], int | None] | None = None) -> None:
    """Refuse, with a :class:`DataTooLargeError`, a data set whose arrays would not fit in memory.

    The data stage holds about ``MEMORY_COPIES`` copies of the uint8 arrays at
    its peak; ``available`` returns the bytes available (default
    :func:`available_memory`; None: unknown, nothing is refused).
    """
    free = (available or available_memory)()
    need = MEMORY_COPIES * estimate_bytes(count, image_size)
    if free is not None and need > free:
        raise DataTooLargeError(
            f"{count:,} images at dataset.image_size {image_size} need about {need / GB:.2f} GB of memory "
            f"({estimate_bytes(count, image_size) / GB:.2f} GB of uint8 arrays, {MEMORY_COPIES} copies at the "
            f"peak), but {free / GB:.2f} GB are available: set a smaller dataset.image_size, use fewer images, or "
            "run on a machine with more memory (data sets that need streaming are not supported)"
        )


def available_memory(proc: str = "/proc/meminfo", cgroup: str = "/sys/fs/cgroup") -> int | None:
    """Bytes of memory available: ``MemAvailable``, or the cgroup's limit less its usage where smaller; None if unknown."""
    candidates = []
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(proc).read_text().splitlines():
            if line.startswith("MemAvailable:"):
                candidates.append(int(line.split()[1]) * 1024)
    for limit_file, usage_file in (
        ("memory.max", "memory.current"),
        ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes"),
    ):
        with contextlib.suppress(OSError, ValueError):
            limit = Path(cgroup, limit_file).read_text().strip()
            if limit != "max" and int(limit) < 1 << 60:  # cgroup v1 writes a huge number for "no limit"
                candidates.append(max(0, int(limit) - int(Path(cgroup, usage_file).read_text().strip())))
    return min(candidates) if candidates else None


# Duplicates: the same decoded pixels within or across splits.


def find_duplicates(splits: dict[str, np.ndarray]) -> dict[str, Any]:
    """Images with the same decoded pixels, by a hash of each image's bytes, within and across ``splits``.

    ``counts`` has, for each split, how many of its images repeat an earlier
    one of the same split, and for each pair ``a-b`` (in the order of
    ``splits``) how many of ``a``'s images also appear in ``b``.
    ``drop_train_indices``: the ``train`` images that also appear in another
    split, which ``dataset.duplicates: drop`` removes; duplicates within a split
    are counted, not removed. ``total``: the sum of the counts.
    """
    hashes = {
        name: [hashlib.blake2b(image.tobytes(), digest_size=16).digest() for image in images]
        for name, images in splits.items()
    }
    sets = {name: set(values) for name, values in hashes.items()}
    counts = {name: len(values) - len(sets[name]) for name, values in hashes.items()}
    names = list(splits)
    for position, first in enumerate(names):
        for second in names[position + 1 :]:
            counts[f"{first}-{second}"] = sum(value in sets[second] for value in hashes[first])
    others = set().union(*(sets[name] for name in names if name != "train"))
    drop = [index for index, value in enumerate(hashes.get("train", [])) if value in others]
    return {"counts": counts, "total": sum(counts.values()), "drop_train_indices": drop}

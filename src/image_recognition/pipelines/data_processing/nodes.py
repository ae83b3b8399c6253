"""Nodes of the ``data_processing`` pipeline: fetch, decode, validate, split, describe, whatever the source."""

from __future__ import annotations

import logging
import tempfile
import urllib.parse
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

from image_recognition.common import storage
from image_recognition.common.errors import DataValidationError, ParameterError
from image_recognition.common.redact import redact_url
from image_recognition.pipelines.data_processing.params import IMAGE_FOLDER, KINDS, DataParams, resolve_size
from image_recognition.sources.cifar10.archive import ArchiveError, load_cifar_archive
from image_recognition.sources.cifar10.fetch import FetchError, fetch_verified, is_remote, local_path, md5_of
from image_recognition.sources.cifar10.split import channel_statistics, stratified_holdout
from image_recognition.sources.cifar10.synthetic import synthetic_archive
from image_recognition.sources.decoded import DecodedImages
from image_recognition.sources.image_folder import find_duplicates, read_image_folder

logger = logging.getLogger(__name__)

IMAGE_ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz")


def fetch_dataset(params: dict[str, Any]) -> dict[str, Any]:
    """Make sure the data set's source is in place and verified; describe it.

    A CIFAR archive already in ``dataset.cache_dir`` whose md5 matches is
    reused as it is: nothing is downloaded again. Otherwise the source (http(s),
    ``file://``, a path, or ``synthetic://`` for generated data) is fetched to a
    temporary file that is moved into place only once its md5 matches. A cache
    on object storage (``cache_dir`` under an ``s3://`` data root) is checked
    and filled the same way through a local temporary copy, uploaded in one
    write once verified. A local image folder (or its ``.zip``/``.tar.gz``) is
    read where it is; a remote one (an fsspec URL, or an http(s) archive) is
    checked to exist (an http(s) archive by downloading it, any archive with an md5 by copying and checking it) and
    decoded later from a fresh copy. The description names the source without
    its credentials (``redact.py``).
    """
    config = DataParams.from_dict(params)
    if config.kind == IMAGE_FOLDER:
        return _describe_image_folder(config)
    source = config.source
    if not storage.is_local(config.cache_dir):
        return {**_fetch_to_store(config), "kind": config.kind}
    target = storage.local_path(config.cache_dir) / source.archive_name
    md5 = _ensure_archive(target, config)
    return {
        "kind": config.kind,
        "url": redact_url(source.url),
        "md5": md5,
        "path": target.as_posix(),
        "size_bytes": target.stat().st_size,
    }


def _describe_image_folder(config: DataParams) -> dict[str, Any]:
    """The image folder or archive named by ``dataset.source.url``, checked to exist (and its md5, if given)."""
    url = config.source.url
    if not storage.is_local(url):
        return _describe_remote_folder(config)
    path = local_path(url).absolute()
    if not path.exists():
        raise FetchError(f"image folder {path} does not exist; fix dataset.source.url")
    md5 = _checked_md5(path, config, str(path)) if path.is_file() else None
    size = path.stat().st_size if path.is_file() else None
    return {"kind": config.kind, "url": redact_url(url), "md5": md5, "path": path.as_posix(), "size_bytes": size}


def _checked_md5(local: Path, config: DataParams, name: str) -> str | None:
    """The md5 of the archive at ``local`` if ``dataset.source.md5`` is given, which it must match."""
    if not config.source.md5:
        return None
    md5 = md5_of(local)
    if md5 != config.source.md5.lower():
        raise FetchError(
            f"checksum mismatch for {name}: expected {config.source.md5.lower()}, got {md5}; "
            "fix dataset.source.md5 or the archive"
        )
    return md5


def _describe_remote_folder(config: DataParams) -> dict[str, Any]:
    """:func:`_describe_image_folder` for an fsspec or http(s) URL: checked to exist, and copied to check its md5."""
    url = config.source.url
    if is_remote(url) and not _is_archive_name(url):
        raise ParameterError(
            f"dataset.source.url={redact_url(url)}: an image folder cannot be listed over http(s); "
            "pack it as a .zip or .tar.gz (train/<class>/<images> inside) and give that file's URL"
        )
    record = {"kind": config.kind, "url": redact_url(url), "md5": None, "path": redact_url(url), "size_bytes": None}
    if not is_remote(url):
        fs, path = storage.filesystem(url)
        if not fs.exists(path):
            raise FetchError(
                f"image folder {redact_url(url)} does not exist; fix dataset.source.url "
                "(a folder holding train/<class>/<images>, or a .zip/.tar.gz of one)"
            )
        if not fs.isfile(path):
            return record
        if not config.source.md5:
            return {**record, "size_bytes": fs.size(path)}  # nothing to verify: no copy
    with tempfile.TemporaryDirectory(prefix="image_recognition.") as folder:
        local = _copy_remote_source(config, Path(folder))  # checks the md5 when one is given
        md5 = config.source.md5.lower() if config.source.md5 else None
        return {**record, "md5": md5, "size_bytes": local.stat().st_size}


def _is_archive_name(url: str) -> bool:
    return urllib.parse.urlsplit(url).path.lower().endswith(IMAGE_ARCHIVE_SUFFIXES)


def _copy_remote_source(config: DataParams, folder: Path) -> Path:
    """Copy the remote image folder or archive of ``dataset.source.url`` into local ``folder``; return its path.

    http(s) goes through :func:`fetch_verified` (retries, timeout, md5 when
    given); an fsspec URL is copied with its filesystem.
    """
    url = config.source.url
    name = PurePosixPath(urllib.parse.urlsplit(url).path).name or "image_folder"
    if is_remote(url):
        target = folder / name
        md5 = config.source.md5.lower() if config.source.md5 else None
        try:
            fetch_verified(url, md5, target, retries=config.retries, timeout_s=config.timeout_s)
        except FetchError as exc:
            raise FetchError(f"{exc}; fix dataset.source.url (or dataset.source.md5)") from None
        return target
    fs, path = storage.filesystem(url)
    if fs.isfile(path):
        target = folder / name
        fs.get_file(path, str(target))
        _checked_md5(target, config, redact_url(url))
        return target
    if not fs.isdir(path):
        raise FetchError(f"image folder {redact_url(url)} does not exist (any more); fix dataset.source.url")
    target = folder / "image_folder"
    fs.get(path.rstrip("/") + "/", str(target), recursive=True)
    return target


def _ensure_archive(target: Path, config: DataParams, where: str | None = None) -> str:
    """The verified archive at local ``target``, reused or made; returns its md5.

    ``where`` names the cache in messages when ``target`` is a local copy of it.
    """
    source = config.source
    if source.is_synthetic:
        return _ensure_synthetic_archive(target, source.synthetic_options(), config.kind)
    _ensure_fetched(source.url, source.md5.lower(), target, config, where)
    return source.md5.lower()


def _fetch_to_store(config: DataParams) -> dict[str, Any]:
    """:func:`fetch_dataset` for a cache on a remote filesystem."""
    url = storage.join(config.cache_dir, config.source.archive_name)
    fs, path = storage.filesystem(url)
    stamp = path + ".md5"  # the synthetic archive's options and md5 (_ensure_synthetic_archive)
    with tempfile.TemporaryDirectory(prefix="image_recognition.") as folder:
        local = Path(folder) / config.source.archive_name
        local_stamp = local.with_name(local.name + ".md5")
        for remote, copy in ((path, local), (stamp, local_stamp)):
            if fs.isfile(remote):
                fs.get_file(remote, str(copy))
        cached_md5 = md5_of(local) if local.is_file() else None
        md5 = _ensure_archive(local, config, where=url)
        if md5 != cached_md5:
            logger.info("Uploading the verified archive to %s", url)
            fs.put_file(str(local), path)
        if config.source.is_synthetic and (md5 != cached_md5 or not fs.isfile(stamp)):
            fs.put_file(str(local_stamp), stamp)
        return {"url": redact_url(config.source.url), "md5": md5, "path": url, "size_bytes": local.stat().st_size}


def _ensure_fetched(url: str, md5: str, target: Path, config: DataParams, where: str | None = None) -> None:
    if target.is_file():
        actual = md5_of(target)
        if actual == md5:
            logger.info("Using verified archive %s (md5 %s); nothing to download", target, md5)
            return
        logger.warning("%s has md5 %s, not %s; fetching it again from %s", target, actual, md5, redact_url(url))
    try:
        fetch_verified(url, md5, target, retries=config.retries, timeout_s=config.timeout_s)
    except FetchError as exc:
        if not is_remote(url) or "checksum mismatch" in str(exc):
            raise
        name = config.source.archive_name
        raise FetchError(
            f"{exc}. Offline? Put the {config.kind.upper().replace('CIFAR', 'CIFAR-')} python archive at {where or target} "
            f"(it is used when its md5 is {md5}), or point the source at a mirror: kedro run --params "
            f'"dataset.source.url=file:///path/to/{name},dataset.source.md5=<its md5>"'
        ) from exc


def _ensure_synthetic_archive(target: Path, options: dict[str, int], kind: str = "cifar10") -> str:
    """Generate the synthetic archive once; its bytes depend only on ``options``."""
    stamp = target.with_name(target.name + ".md5")
    expected_stamp = f"{options}"
    if target.is_file() and stamp.is_file():
        recorded_options, _, recorded_md5 = stamp.read_text().partition("\n")
        if recorded_options == expected_stamp and md5_of(target) == recorded_md5.strip():
            logger.info("Using synthetic archive %s (md5 %s)", target, recorded_md5.strip())
            return recorded_md5.strip()
    logger.info("Generating a synthetic CIFAR-format archive at %s with %s", target, options)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        scratch_path = Path(scratch) / target.name
        md5 = _write_synthetic_archive(kind, options, scratch_path)
        scratch_path.replace(target)
    stamp.write_text(f"{expected_stamp}\n{md5}\n")
    return md5


def _write_synthetic_archive(kind: str, options: dict[str, int], path: Path) -> str:
    """Write the synthetic archive of ``kind`` (CIFAR-10 or CIFAR-100 layout) to ``path``; return its md5."""
    return synthetic_archive(kind, path, **options)


def decode_dataset(source: dict[str, Any], params: dict[str, Any]) -> DecodedImages:
    """Decode the source into uint8 arrays at ``dataset.image_size``, whatever its kind.

    A CIFAR archive is decoded in memory with the restricted unpickler; one
    that fails to decode is renamed to ``*.rejected``, so no later run takes it
    for a verified archive (its source is left as it is), and one on object
    storage is decoded from a local temporary copy. An image folder (or its
    ``.zip``/``.tar.gz``) is decoded with the image loader ``predict`` uses,
    after a check that the decoded data set fits in memory; a remote one from a
    temporary local copy of ``dataset.source.url``.
    """
    config = DataParams.from_dict(params)
    if config.kind == IMAGE_FOLDER:
        data = _decode_image_folder(source["path"], config)
    else:
        data = _decode_archive(source, config)
    logger.info(
        "Decoded %d training and %s test images (%d classes) from %s",
        len(data.train_images),
        "no" if data.test_images is None else len(data.test_images),
        len(data.class_names),
        source["path"],
    )
    return data


def _decode_image_folder(path: str, config: DataParams) -> DecodedImages:
    """Decode the folder at ``path``; a remote source (``dataset.source.url``) from a temporary local copy."""
    if storage.is_local(config.source.url):
        return read_image_folder(path, config.image_size, skip_bad_files=config.skip_bad_files)
    with tempfile.TemporaryDirectory(prefix="image_recognition.") as folder:
        local = _copy_remote_source(config, Path(folder))
        return read_image_folder(local, config.image_size, skip_bad_files=config.skip_bad_files)


def _decode_archive(source: dict[str, Any], config: DataParams) -> DecodedImages:
    where = source["path"]
    fs, path = storage.filesystem(where)
    if not fs.isfile(path):
        raise ArchiveError(f"{where} changed since it was fetched (it is gone); run again")
    with storage.local_copy(where) as local:
        actual = md5_of(local)
        if actual != source["md5"]:
            # Another run (another source, same file name) may have replaced it since fetch.
            raise ArchiveError(
                f"{where} changed since it was fetched (md5 {actual}, expected {source['md5']}); run again"
            )
        try:
            return load_cifar_archive(str(local), config.kind, config.label, fingerprint=actual)
        except ArchiveError as exc:
            rejected = path + ".rejected"
            fs.mv(path, rejected)
            raise ArchiveError(
                f"{exc} (moved the archive aside to {where}.rejected; fix the source and run again)"
            ) from exc


def _split_problems(split: str, images: Any, labels: Any, num_classes: int, size: int) -> list[str]:
    problems = []
    if images.dtype != np.uint8:
        problems.append(f"{split} images are {images.dtype}, expected uint8")
    if images.ndim != 4 or images.shape[1:] != (3, size, size) or len(images) == 0:
        problems.append(f"{split} images have shape {images.shape}, expected (N>0, 3, {size}, {size})")
    if labels.shape != (len(images),):
        problems.append(f"{split} has {labels.shape} labels for {len(images)} images")
    elif len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        bad = labels[(labels < 0) | (labels >= num_classes)]
        problems.append(f"{split} has {len(bad)} label(s) outside 0-{num_classes - 1}, e.g. {int(bad[0])}")
    return problems


def validate_dataset(data: DecodedImages, params: dict[str, Any]) -> DecodedImages:
    """Check shapes, dtypes, label range, class names and, if set, the split sizes.

    Returns ``data`` unchanged, so downstream nodes only ever see checked data.
    """
    config = DataParams.from_dict(params)
    num_classes = len(data.class_names)
    expected_classes = (KINDS[config.kind].num_classes or {}).get(config.label)
    problems = []
    if expected_classes and num_classes != expected_classes:
        problems.append(f"{num_classes} class names, expected {expected_classes}")
    elif num_classes < 2:
        problems.append(f"{num_classes} class name(s), expected at least 2")
    for split in ("train", "test"):
        images, labels = getattr(data, f"{split}_images"), getattr(data, f"{split}_labels")
        if images is None and split == "test":
            continue  # an image folder without test/: the split node holds one out
        problems += _split_problems(split, images, labels, num_classes, config.image_size)
        expected = (config.expected_sizes or {}).get(split)
        if expected is not None and len(images) != expected:
            problems.append(f"{split} has {len(images)} images, expected {expected} (dataset.expected_sizes.{split})")
    if problems:
        raise DataValidationError(f"invalid {config.kind} data: " + "; ".join(problems))
    return data


def _holdout(images: np.ndarray, labels: np.ndarray, name: str, size: int | float, seed: int) -> tuple[dict, dict]:
    """Split ``images`` into (kept, held out) dicts; ``size`` a count or a fraction (``name`` in messages)."""
    count = resolve_size(name, size, len(labels))
    keep, holdout = stratified_holdout(labels, count, seed)
    return {"images": images[keep], "labels": labels[keep]}, {"images": images[holdout], "labels": labels[holdout]}


def split_dataset(
    data: DecodedImages, params: dict[str, Any]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray], dict[str, Any]]:
    """Hold out a seeded, stratified validation split (and a test split if the source has none).

    The source's test split passes through untouched; model selection only
    ever sees the validation split. Exact duplicates across the splits are
    found by hash and handled by ``dataset.duplicates``. The last output says
    how the splits were made, for the data report.
    """
    config = DataParams.from_dict(params)
    pool = {"images": data.train_images, "labels": data.train_labels}
    test_held_out = data.test_images is None
    if test_held_out:
        pool, test = _holdout(pool["images"], pool["labels"], "dataset.test_size", config.test_size, config.seed)
    else:
        test = {"images": data.test_images, "labels": data.test_labels}
    train, validation = _holdout(
        pool["images"], pool["labels"], "dataset.validation_size", config.validation_size, config.seed
    )
    train, duplicates = handle_duplicates(train, validation, test, config.duplicates)
    logger.info(
        "Split: %d train, %d validation, %d test", len(train["labels"]), len(validation["labels"]), len(test["labels"])
    )
    notes = {
        "validation_size": len(validation["labels"]),
        "test_held_out": test_held_out,
        "test_size": len(test["labels"]) if test_held_out else None,
        "seed": config.seed,
        "duplicates": duplicates,
    }
    return train, validation, test, notes


def handle_duplicates(
    train: dict[str, np.ndarray], validation: dict[str, np.ndarray], test: dict[str, np.ndarray], rule: str
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Count exact duplicates (same decoded pixels) within and across the splits; apply ``rule`` to those across.

    ``warn`` logs them; ``drop`` removes from train the images that also
    appear in validation or test; ``error`` stops the run before any split is
    written. Duplicates within one split are counted only.
    """
    found = find_duplicates({"train": train["images"], "validation": validation["images"], "test": test["images"]})
    across = {pair: count for pair, count in found["counts"].items() if "-" in pair and count}
    if across and rule == "error":
        raise DataValidationError(
            f"exact duplicate images across the splits ({', '.join(f'{k}: {v}' for k, v in across.items())}); "
            "remove them from the source, or set dataset.duplicates to drop (removes them from train) or warn"
        )
    if across:
        logger.warning("Exact duplicate images across the splits: %s (dataset.duplicates=%s)", across, rule)
    dropped = found["drop_train_indices"] if rule == "drop" else []
    if dropped:
        keep = np.ones(len(train["labels"]), dtype=bool)
        keep[dropped] = False
        train = {"images": train["images"][keep], "labels": train["labels"][keep]}
    return train, {"rule": rule, "counts": found["counts"], "dropped_from_train": len(dropped)}


def compute_normalization(train: dict[str, np.ndarray]) -> dict[str, Any]:
    """Per-channel mean and std on the 0..1 scale, from the training split only."""
    mean, std = channel_statistics(train["images"])
    return {"mean": mean, "std": std, "scale": "0-1", "computed_on": "train split", "images": len(train["labels"])}


def build_data_report(
    source: dict[str, Any],
    data: DecodedImages,
    train: dict[str, np.ndarray],
    validation: dict[str, np.ndarray],
    test: dict[str, np.ndarray],
    notes: dict[str, Any],
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Summarise the data: source, class names, image size, what was skipped, the splits and their class counts."""
    splits = {"train": train, "validation": validation, "test": test}
    num_classes = len(data.class_names)
    counts = pd.DataFrame(
        {name: np.bincount(split["labels"], minlength=num_classes) for name, split in splits.items()},
    )
    counts.insert(0, "class", data.class_names)
    counts.insert(0, "label", range(num_classes))
    report = {
        # Redacted again: a source record saved before URLs were redacted may still hold credentials.
        "source": {
            "kind": source.get("kind", "cifar10"),
            "url": redact_url(source["url"]),
            "md5": source["md5"],
            "size_bytes": source["size_bytes"],
            "fingerprint": getattr(data, "fingerprint", None) or source["md5"],
        },
        "class_names": list(data.class_names),
        "num_classes": num_classes,
        "image_size": int(train["images"].shape[-1]),
        "skipped": dict(getattr(data, "skipped", None) or {}),
        "split": {key: value for key, value in notes.items() if key != "duplicates"},
        "duplicates": notes["duplicates"],
        "sizes": {name: len(split["labels"]) for name, split in splits.items()},
        "class_counts": {name: counts[name].tolist() for name in splits},
    }
    return report, counts

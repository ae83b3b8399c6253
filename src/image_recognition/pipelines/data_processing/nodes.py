"""Nodes of the ``data_processing`` pipeline: fetch, decode, validate, split, describe."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from image_recognition.common import storage
from image_recognition.common.errors import DataValidationError, ParameterError
from image_recognition.common.redact import redact_url
from image_recognition.pipelines.data_processing.params import DataParams
from image_recognition.sources.cifar10.archive import (
    IMAGE_SHAPE,
    NUM_CLASSES,
    ArchiveError,
    CIFAR10Arrays,
    load_cifar10_archive,
)
from image_recognition.sources.cifar10.fetch import FetchError, fetch_verified, is_remote, md5_of
from image_recognition.sources.cifar10.split import channel_statistics, stratified_holdout
from image_recognition.sources.cifar10.synthetic import make_synthetic_cifar10, write_cifar10_archive

logger = logging.getLogger(__name__)


def fetch_cifar10(params: dict[str, Any]) -> dict[str, Any]:
    """Make sure a verified CIFAR-10 archive is in ``cifar10.cache_dir``; describe it.

    An archive already in place whose md5 matches is reused as it is: nothing is
    downloaded again. Otherwise the source (http(s), ``file://``, a path, or
    ``synthetic://`` for generated data) is fetched to a temporary file that is
    moved into place only once its md5 matches. A cache on object storage
    (``cache_dir`` under an ``s3://`` data root) is checked and filled the same
    way through a local temporary copy, uploaded in one write once verified.
    The description names the source without its credentials (``redact.py``).
    """
    config = DataParams.from_dict(params)
    source = config.source
    if not storage.is_local(config.cache_dir):
        return _fetch_to_store(config)
    target = storage.local_path(config.cache_dir) / source.archive_name
    md5 = _ensure_archive(target, config)
    return {"url": redact_url(source.url), "md5": md5, "path": target.as_posix(), "size_bytes": target.stat().st_size}


def _ensure_archive(target: Path, config: DataParams, where: str | None = None) -> str:
    """The verified archive at local ``target``, reused or made; returns its md5.

    ``where`` names the cache in messages when ``target`` is a local copy of it.
    """
    source = config.source
    if source.is_synthetic:
        return _ensure_synthetic_archive(target, source.synthetic_options())
    _ensure_fetched(source.url, source.md5.lower(), target, config, where)
    return source.md5.lower()


def _fetch_to_store(config: DataParams) -> dict[str, Any]:
    """:func:`fetch_cifar10` for a cache on a remote filesystem."""
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
        raise FetchError(
            f"{exc}. Offline? Put the CIFAR-10 python archive at {where or target} (it is used when its md5 is {md5}), "
            "or point the source at a mirror: kedro run --params "
            '"cifar10.source.url=file:///path/to/cifar-10-python.tar.gz,cifar10.source.md5=<its md5>"'
        ) from exc


def _ensure_synthetic_archive(target: Path, options: dict[str, int]) -> str:
    """Generate the synthetic archive once; its bytes depend only on ``options``."""
    stamp = target.with_name(target.name + ".md5")
    expected_stamp = f"{options}"
    if target.is_file() and stamp.is_file():
        recorded_options, _, recorded_md5 = stamp.read_text().partition("\n")
        if recorded_options == expected_stamp and md5_of(target) == recorded_md5.strip():
            logger.info("Using synthetic archive %s (md5 %s)", target, recorded_md5.strip())
            return recorded_md5.strip()
    logger.info("Generating a synthetic CIFAR-format archive at %s with %s", target, options)
    data = make_synthetic_cifar10(**options)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        scratch_path = Path(scratch) / target.name
        md5 = write_cifar10_archive(data, scratch_path)
        scratch_path.replace(target)
    stamp.write_text(f"{expected_stamp}\n{md5}\n")
    return md5


def decode_cifar10(archive: dict[str, Any]) -> CIFAR10Arrays:
    """Decode the archive's batches in memory with the restricted unpickler.

    An archive that fails to decode is renamed to ``*.rejected``, so no later
    run takes it for a verified archive; its source is left as it is. An
    archive on object storage is decoded from a local temporary copy.
    """
    where = archive["path"]
    fs, path = storage.filesystem(where)
    if not fs.isfile(path):
        raise ArchiveError(f"{where} changed since it was fetched (it is gone); run again")
    with storage.local_copy(where) as local:
        actual = md5_of(local)
        if actual != archive["md5"]:
            # Another run (another source, same file name) may have replaced it since fetch.
            raise ArchiveError(
                f"{where} changed since it was fetched (md5 {actual}, expected {archive['md5']}); run again"
            )
        try:
            data = load_cifar10_archive(str(local))
        except ArchiveError as exc:
            rejected = path + ".rejected"
            fs.mv(path, rejected)
            raise ArchiveError(
                f"{exc} (moved the archive aside to {where}.rejected; fix the source and run again)"
            ) from exc
    logger.info(
        "Decoded %d training and %d test images from %s",
        len(data.train_images),
        len(data.test_images),
        where,
    )
    return data


def validate_cifar10(data: CIFAR10Arrays, params: dict[str, Any]) -> CIFAR10Arrays:
    """Check shapes, dtypes, label range, class names and, if set, the split sizes.

    Returns ``data`` unchanged, so downstream nodes only ever see checked data.
    """
    config = DataParams.from_dict(params)
    problems = []
    for split in ("train", "test"):
        images, labels = getattr(data, f"{split}_images"), getattr(data, f"{split}_labels")
        if images.dtype != np.uint8:
            problems.append(f"{split} images are {images.dtype}, expected uint8")
        if images.ndim != 4 or images.shape[1:] != IMAGE_SHAPE or len(images) == 0:
            problems.append(f"{split} images have shape {images.shape}, expected (N>0, 3, 32, 32)")
        if labels.shape != (len(images),):
            problems.append(f"{split} has {labels.shape} labels for {len(images)} images")
        elif len(labels) and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
            bad = labels[(labels < 0) | (labels >= NUM_CLASSES)]
            problems.append(f"{split} has {len(bad)} label(s) outside 0-9, e.g. {int(bad[0])}")
        expected = (config.expected_sizes or {}).get(split)
        if expected is not None and len(images) != expected:
            problems.append(f"{split} has {len(images)} images, expected {expected} (cifar10.expected_sizes.{split})")
    if len(data.class_names) != NUM_CLASSES:
        problems.append(f"batches.meta lists {len(data.class_names)} class names, expected {NUM_CLASSES}")
    if problems:
        raise DataValidationError("invalid CIFAR-10 data: " + "; ".join(problems))
    return data


def split_cifar10(
    data: CIFAR10Arrays, params: dict[str, Any]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Hold out a seeded, stratified validation split from the training images.

    The test split passes through untouched; model selection only ever sees
    the validation split.
    """
    config = DataParams.from_dict(params)
    available = len(data.train_labels)
    if config.validation_size >= available:
        raise ParameterError(
            f"cifar10.validation_size={config.validation_size} leaves no training images: "
            f"there are {available}; set it below {available}"
        )
    keep, holdout = stratified_holdout(data.train_labels, config.validation_size, config.seed)
    train = {"images": data.train_images[keep], "labels": data.train_labels[keep]}
    validation = {"images": data.train_images[holdout], "labels": data.train_labels[holdout]}
    test = {"images": data.test_images, "labels": data.test_labels}
    logger.info("Split: %d train, %d validation, %d test", len(keep), len(holdout), len(data.test_labels))
    return train, validation, test


def compute_normalization(train: dict[str, np.ndarray]) -> dict[str, Any]:
    """Per-channel mean and std on the 0..1 scale, from the training split only."""
    mean, std = channel_statistics(train["images"])
    return {"mean": mean, "std": std, "scale": "0-1", "computed_on": "train split", "images": len(train["labels"])}


def build_data_report(
    archive: dict[str, Any],
    data: CIFAR10Arrays,
    train: dict[str, np.ndarray],
    validation: dict[str, np.ndarray],
    test: dict[str, np.ndarray],
    params: dict[str, Any],
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Summarise the data: source archive, class names and class counts per split."""
    config = DataParams.from_dict(params)
    splits = {"train": train, "validation": validation, "test": test}
    counts = pd.DataFrame(
        {name: np.bincount(split["labels"], minlength=NUM_CLASSES) for name, split in splits.items()},
    )
    counts.insert(0, "class", data.class_names)
    counts.insert(0, "label", range(NUM_CLASSES))
    report = {
        # Redacted again: an archive record saved before URLs were redacted may still hold credentials.
        "source": {"url": redact_url(archive["url"]), "md5": archive["md5"], "size_bytes": archive["size_bytes"]},
        "class_names": list(data.class_names),
        "split": {"validation_size": config.validation_size, "seed": config.seed},
        "sizes": {name: len(split["labels"]) for name, split in splits.items()},
        "class_counts": {name: counts[name].tolist() for name in splits},
    }
    return report, counts

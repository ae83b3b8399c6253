"""Validated parameters of the ``data_processing`` pipeline (the ``dataset`` block of ``parameters_data_processing.yml``).

Defaults depend on ``dataset.kind``: the CIFAR archives have an official URL,
a published md5 and known split sizes; an image folder has none of them and
needs ``dataset.source.url``.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from image_recognition.common.params import (
    boolean,
    non_negative_int,
    number_in_range,
    one_of,
    parameter_error,
    positive_int,
    positive_number,
    reject_unknown_keys,
    text,
)
from image_recognition.models.sizes import DEFAULT_IMAGE_SIZE, check_image_size

SYNTHETIC_SCHEME = "synthetic"
_SYNTHETIC_OPTIONS = {"train_per_class": 500, "test_per_class": 100, "seed": 0}
MD5 = re.compile(r"[0-9a-fA-F]{32}")
IMAGE_FOLDER = "image_folder"
DUPLICATE_RULES = ("warn", "drop", "error")
LABELS = ("fine", "coarse")


@dataclass(frozen=True)
class KindDefaults:
    """What a ``dataset.kind`` brings when its parameters are null."""

    url: str | None
    md5: str | None
    archive_name: str | None
    expected_sizes: dict[str, int] | None
    num_classes: dict[str, int] | None = None  # per dataset.label, for synthetic sizes


KINDS = {
    "cifar10": KindDefaults(
        url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        md5="c58f30108f718f92721af3b95e74349a",
        archive_name="cifar-10-python.tar.gz",
        expected_sizes={"train": 50000, "test": 10000},
        num_classes={"fine": 10},
    ),
    "cifar100": KindDefaults(
        url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        md5="eb9058c3a382ffc7106e4002c42a8d85",
        archive_name="cifar-100-python.tar.gz",
        expected_sizes={"train": 50000, "test": 10000},
        num_classes={"fine": 100, "coarse": 20},
    ),
    IMAGE_FOLDER: KindDefaults(url=None, md5=None, archive_name=None, expected_sizes=None),
}

_KEYS = {
    "kind",
    "source",
    "label",
    "image_size",
    "validation_size",
    "test_size",
    "seed",
    "skip_bad_files",
    "duplicates",
    "cache_dir",
    "download",
    "expected_sizes",
}


@dataclass(frozen=True)
class SourceParams:
    kind: str
    url: str
    md5: str | None  # None for synthetic:// sources (computed) and image folders without one

    @property
    def is_synthetic(self) -> bool:
        return urllib.parse.urlsplit(self.url).scheme == SYNTHETIC_SCHEME

    @property
    def synthetic_kind(self) -> str:
        """The data set a ``synthetic://<kind>?...`` URL generates."""
        return urllib.parse.urlsplit(self.url).netloc

    @property
    def archive_name(self) -> str:
        """File name of the cached archive in ``cache_dir``."""
        default = KINDS[self.kind].archive_name or "image-folder"
        if self.is_synthetic:
            return f"synthetic-{default}"
        return PurePosixPath(urllib.parse.urlsplit(self.url).path).name or default

    def synthetic_options(self) -> dict[str, int]:
        """Options of a ``synthetic://cifar10?train_per_class=..&test_per_class=..&seed=..`` URL."""
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.url).query))
        reject_unknown_keys("dataset.source.url (synthetic query)", query, set(_SYNTHETIC_OPTIONS))
        options = dict(_SYNTHETIC_OPTIONS)
        for key, value in query.items():
            if not value.isdigit():
                raise parameter_error(
                    "dataset.source.url",
                    f"has synthetic option {key}, which must be a non-negative integer, got {value!r}",
                )
            options[key] = int(value)
        return options


def resolve_size(name: str, value: int | float, available: int) -> int:
    """A count as it is, a fraction in (0, 1) as that share of ``available`` images (rounded)."""
    count = value if isinstance(value, int) else round(value * available)
    if count >= available:
        raise parameter_error(
            name, f"is {value}, which leaves no training images: there are {available}; set it below {available}"
        )
    return count


def _count_or_fraction(name: str, value: Any) -> int | float:
    if isinstance(value, float) and not value.is_integer():
        return number_in_range(name, value, 0, 1, include_low=False, include_high=False)
    if isinstance(value, float):
        value = int(value)
    return non_negative_int(name, value)


def _source(kind: str, params: dict[str, Any]) -> SourceParams:
    source = params.get("source") or {}
    reject_unknown_keys("dataset.source", source, {"url", "md5"})
    defaults = KINDS[kind]
    url = source.get("url") if source.get("url") is not None else defaults.url
    if url is None:
        raise parameter_error(
            "dataset.source.url",
            "is required for dataset.kind=image_folder: the folder (or .zip/.tar.gz) of train/<class>/<images>, "
            'e.g. --params "dataset.kind=image_folder,dataset.source.url=file:///abs/path/to/folder"',
        )
    url = text("dataset.source.url", url, "an http(s) URL, a file:// URL or a path")
    md5 = source.get("md5")
    if md5 is None and source.get("url") is None:
        md5 = defaults.md5
    parsed = SourceParams(kind=kind, url=url, md5=md5)
    if parsed.is_synthetic:
        if parsed.synthetic_kind != kind:
            fix = (
                "set dataset.source.url to your folder (file:///abs/path/to/folder)"
                if kind == IMAGE_FOLDER
                else f"use synthetic://{kind}?... or set dataset.kind={parsed.synthetic_kind}"
            )
            raise parameter_error(
                "dataset.source.url",
                f"generates {parsed.synthetic_kind or 'nothing'} data but dataset.kind is {kind}; {fix}",
            )
        parsed.synthetic_options()
    elif md5 is not None or kind != IMAGE_FOLDER:
        text("dataset.source.md5", md5, "a 32-character hex md5", MD5)
    return parsed


def _expected_sizes(kind: str, label: str, source: SourceParams, value: Any) -> dict[str, int] | None:
    """``dataset.expected_sizes``, or the kind's sizes (a synthetic source's follow from its options)."""
    if value is not None:
        reject_unknown_keys("dataset.expected_sizes", value, {"train", "test"})
        return {k: non_negative_int(f"dataset.expected_sizes.{k}", v) for k, v in value.items()}
    defaults = KINDS[kind]
    if source.is_synthetic and defaults.num_classes:
        options, classes = source.synthetic_options(), defaults.num_classes[label]
        return {"train": options["train_per_class"] * classes, "test": options["test_per_class"] * classes}
    return defaults.expected_sizes


@dataclass(frozen=True)
class DataParams:
    """The ``dataset`` parameter block, checked before any file is touched."""

    kind: str
    source: SourceParams
    label: str
    image_size: int
    cache_dir: str
    retries: int
    timeout_s: float
    expected_sizes: dict[str, int] | None
    validation_size: int | float
    test_size: int | float
    seed: int
    skip_bad_files: bool
    duplicates: str

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> DataParams:
        reject_unknown_keys("dataset", params, _KEYS)
        kind = one_of("dataset.kind", params.get("kind", "cifar10"), tuple(KINDS))
        label = one_of("dataset.label", params.get("label", "fine"), LABELS)
        if label != "fine" and kind != "cifar100":
            raise parameter_error(
                "dataset.label", f"is {label}, which applies to dataset.kind=cifar100 only; remove it"
            )
        source = _source(kind, params)
        download = params.get("download") or {}
        reject_unknown_keys("dataset.download", download, {"retries", "timeout_s"})
        image_size = check_image_size("dataset.image_size", params.get("image_size", DEFAULT_IMAGE_SIZE))
        if kind != IMAGE_FOLDER and image_size != 32:
            raise parameter_error("dataset.image_size", f"must be 32 for {kind} (its images are 32x32)")
        return cls(
            kind=kind,
            source=source,
            label=label,
            image_size=image_size,
            cache_dir=text("dataset.cache_dir", params.get("cache_dir", "data/01_raw"), "a folder path"),
            # attempts, the first included
            retries=positive_int("dataset.download.retries", download.get("retries", 3)),
            timeout_s=float(positive_number("dataset.download.timeout_s", download.get("timeout_s", 60))),
            expected_sizes=_expected_sizes(kind, label, source, params.get("expected_sizes")),
            validation_size=_count_or_fraction("dataset.validation_size", params.get("validation_size", 5000)),
            test_size=_count_or_fraction("dataset.test_size", params.get("test_size", 0.2)),
            seed=non_negative_int("dataset.seed", params.get("seed", 0)),
            skip_bad_files=boolean("dataset.skip_bad_files", params.get("skip_bad_files", False)),
            duplicates=one_of("dataset.duplicates", params.get("duplicates", "warn"), DUPLICATE_RULES),
        )

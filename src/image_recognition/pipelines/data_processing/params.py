"""Validated parameters of the ``data_processing`` pipeline (``parameters_data_processing.yml``)."""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from image_recognition.common.params import (
    non_negative_int,
    parameter_error,
    positive_int,
    positive_number,
    reject_unknown_keys,
    text,
)

SYNTHETIC_SCHEME = "synthetic"
_SYNTHETIC_OPTIONS = {"train_per_class": 500, "test_per_class": 100, "seed": 0}
MD5 = re.compile(r"[0-9a-fA-F]{32}")


@dataclass(frozen=True)
class SourceParams:
    url: str
    md5: str | None  # None only for synthetic:// sources, whose md5 is computed

    @property
    def is_synthetic(self) -> bool:
        return urllib.parse.urlsplit(self.url).scheme == SYNTHETIC_SCHEME

    @property
    def archive_name(self) -> str:
        """File name of the cached archive in ``cache_dir``."""
        if self.is_synthetic:
            return "synthetic-cifar-10-python.tar.gz"
        return PurePosixPath(urllib.parse.urlsplit(self.url).path).name or "cifar-10-python.tar.gz"

    def synthetic_options(self) -> dict[str, int]:
        """Options of a ``synthetic://cifar10?train_per_class=..&test_per_class=..&seed=..`` URL."""
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.url).query))
        reject_unknown_keys("cifar10.source.url (synthetic query)", query, set(_SYNTHETIC_OPTIONS))
        options = dict(_SYNTHETIC_OPTIONS)
        for key, value in query.items():
            if not value.isdigit():
                raise parameter_error(
                    "cifar10.source.url",
                    f"has synthetic option {key}, which must be a non-negative integer, got {value!r}",
                )
            options[key] = int(value)
        return options


@dataclass(frozen=True)
class DataParams:
    """The ``cifar10`` parameter block, checked before any file is touched."""

    source: SourceParams
    cache_dir: str
    retries: int
    timeout_s: float
    expected_sizes: dict[str, int] | None
    validation_size: int
    seed: int

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> DataParams:
        reject_unknown_keys(
            "cifar10", params, {"source", "cache_dir", "download", "expected_sizes", "validation_size", "seed"}
        )
        source = params.get("source") or {}
        reject_unknown_keys("cifar10.source", source, {"url", "md5"})
        url = text("cifar10.source.url", source.get("url"), "an http(s) URL, a file:// URL or a path")
        parsed = SourceParams(url=url, md5=source.get("md5"))
        if parsed.is_synthetic:
            parsed.synthetic_options()
        else:
            text("cifar10.source.md5", parsed.md5, "a 32-character hex md5", MD5)
        download = params.get("download") or {}
        reject_unknown_keys("cifar10.download", download, {"retries", "timeout_s"})
        retries = positive_int("cifar10.download.retries", download.get("retries", 3))  # attempts, the first included
        timeout_s = positive_number("cifar10.download.timeout_s", download.get("timeout_s", 60))
        expected = params.get("expected_sizes")
        if expected is not None:
            reject_unknown_keys("cifar10.expected_sizes", expected, {"train", "test"})
            expected = {k: non_negative_int(f"cifar10.expected_sizes.{k}", v) for k, v in expected.items()}
        cache_dir = text("cifar10.cache_dir", params.get("cache_dir", "data/01_raw"), "a folder path")
        return cls(
            source=parsed,
            cache_dir=cache_dir,
            retries=retries,
            timeout_s=float(timeout_s),
            expected_sizes=expected,
            validation_size=non_negative_int("cifar10.validation_size", params.get("validation_size", 5000)),
            seed=non_negative_int("cifar10.seed", params.get("seed", 0)),
        )

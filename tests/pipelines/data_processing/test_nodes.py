"""Unit tests of the data_processing nodes (their parameter checks: test_params.py)."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pytest

from image_recognition.common.errors import DataValidationError, ParameterError
from image_recognition.pipelines.data_processing.nodes import (
    build_data_report,
    compute_normalization,
    decode_dataset,
    fetch_dataset,
    split_dataset,
    validate_dataset,
)
from image_recognition.sources.cifar10.archive import ArchiveError
from image_recognition.sources.cifar10.split import channel_statistics, stratified_holdout


def params(tmp_path, archive=None, **overrides):
    base = {
        "source": {
            "url": archive.url if archive else "synthetic://cifar10?train_per_class=30&test_per_class=5",
            "md5": archive.md5 if archive else None,
        },
        "cache_dir": str(tmp_path / "raw"),
        "download": {"retries": 1, "timeout_s": 5},
        "expected_sizes": {"train": 1000, "test": 200} if archive else None,
        "validation_size": 100,
        "seed": 7,
    }
    base.update(overrides)
    return base


def test_fetch_copies_once_then_reuses(tmp_path, synthetic_archive, caplog):
    record = fetch_dataset(params(tmp_path, synthetic_archive))
    cached = tmp_path / "raw" / "cifar-10-python.tar.gz"
    assert record == {
        "kind": "cifar10",
        "url": synthetic_archive.url,
        "md5": synthetic_archive.md5,
        "path": cached.as_posix(),
        "size_bytes": cached.stat().st_size,
    }
    first_mtime = cached.stat().st_mtime_ns
    with caplog.at_level("INFO"):
        fetch_dataset(params(tmp_path, synthetic_archive))
    assert cached.stat().st_mtime_ns == first_mtime
    assert any("nothing to download" in m for m in caplog.messages)


def test_fetch_replaces_a_cached_archive_with_the_wrong_md5(tmp_path, synthetic_archive):
    cached = tmp_path / "raw" / "cifar-10-python.tar.gz"
    cached.parent.mkdir()
    cached.write_bytes(b"stale")
    fetch_dataset(params(tmp_path, synthetic_archive))
    assert cached.read_bytes() == synthetic_archive.path.read_bytes()


def test_offline_error_says_where_to_put_the_archive(tmp_path):
    config = params(tmp_path, None)
    config["source"] = {"url": "http://127.0.0.1:9/cifar-10-python.tar.gz", "md5": "c58f30108f718f92721af3b95e74349a"}
    with pytest.raises(Exception, match=r"Offline\? Put the CIFAR-10 python archive at .*raw/cifar-10-python.tar.gz"):
        fetch_dataset(config)
    assert not (tmp_path / "raw").exists() or list((tmp_path / "raw").iterdir()) == []


def test_synthetic_source_is_generated_once(tmp_path):
    first = fetch_dataset(params(tmp_path))
    second = fetch_dataset(params(tmp_path))
    assert first == second
    data = decode_dataset(first, params(tmp_path))
    assert data.train_images.shape == (300, 3, 32, 32)


def test_validate_accepts_good_data(synthetic_data, tmp_path):
    config = params(tmp_path, expected_sizes={"train": 1000, "test": 200})
    assert validate_dataset(synthetic_data, config) is synthetic_data


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: {"train_labels": np.where(d.train_labels == 3, 10, d.train_labels)}, "label.*outside 0-9, e.g. 10"),
        (lambda d: {"test_labels": d.test_labels - 1}, "outside 0-9, e.g. -1"),
        (lambda d: {"train_images": d.train_images.astype(np.float32)}, "train images are float32, expected uint8"),
        (lambda d: {"test_images": d.test_images[:, :, :16]}, r"test images have shape \(200, 3, 16, 32\)"),
        (lambda d: {"class_names": d.class_names[:9]}, "9 class names, expected 10"),
        (
            lambda d: {"train_images": d.train_images[:10], "train_labels": d.train_labels[:10]},
            "train has 10 images, expected 1000",
        ),
    ],
)
def test_validate_names_the_problem(synthetic_data, tmp_path, change, message):
    bad = dataclasses.replace(synthetic_data, **change(synthetic_data))
    with pytest.raises(DataValidationError, match=message):
        validate_dataset(bad, params(tmp_path, expected_sizes={"train": 1000, "test": 200}))


def test_split_is_stratified_seeded_and_disjoint(synthetic_data, tmp_path):
    train, validation, test, notes = split_dataset(synthetic_data, params(tmp_path))
    assert notes["test_held_out"] is False and notes["validation_size"] == 100
    assert len(train["labels"]) == 900 and len(validation["labels"]) == 100
    assert np.bincount(validation["labels"]).tolist() == [10] * 10
    assert train["images"].dtype == np.uint8
    again = split_dataset(synthetic_data, params(tmp_path))
    np.testing.assert_array_equal(again[1]["images"], validation["images"])
    other = split_dataset(synthetic_data, params(tmp_path, seed=8))
    assert not np.array_equal(other[1]["images"], validation["images"])
    np.testing.assert_array_equal(test["labels"], synthetic_data.test_labels)
    keep, holdout = stratified_holdout(synthetic_data.train_labels, 100, 7)
    assert set(keep).isdisjoint(holdout) and len(keep) + len(holdout) == 1000


def test_split_does_not_mutate_its_input(synthetic_data, tmp_path):
    before = synthetic_data.train_images.copy()
    split_dataset(synthetic_data, params(tmp_path))
    np.testing.assert_array_equal(synthetic_data.train_images, before)


@pytest.mark.parametrize("size", [1000, 5000])
def test_validation_size_must_leave_training_images(synthetic_data, tmp_path, size):
    with pytest.raises(
        ParameterError, match=f"validation_size is {size}, which leaves no training images: there are 1000"
    ):
        split_dataset(synthetic_data, params(tmp_path, validation_size=size))


def test_normalization_matches_numpy_on_training_split_only(synthetic_data):
    train = {"images": synthetic_data.train_images, "labels": synthetic_data.train_labels}
    stats = compute_normalization(train)
    pixels = synthetic_data.train_images.astype(np.float64) / 255
    np.testing.assert_allclose(stats["mean"], pixels.mean(axis=(0, 2, 3)), rtol=1e-10)
    np.testing.assert_allclose(stats["std"], pixels.std(axis=(0, 2, 3)), rtol=1e-8)
    mean, _ = channel_statistics(synthetic_data.train_images, chunk=7)
    np.testing.assert_allclose(mean, stats["mean"], rtol=1e-12)


def test_data_report(synthetic_data, tmp_path, synthetic_archive):
    config = params(tmp_path, synthetic_archive)
    train, validation, test, notes = split_dataset(synthetic_data, config)
    archive = {"url": synthetic_archive.url, "md5": synthetic_archive.md5, "size_bytes": 1}
    report, counts = build_data_report(archive, synthetic_data, train, validation, test, notes)
    assert report["source"]["md5"] == synthetic_archive.md5
    assert report["class_names"] == synthetic_data.class_names and report["image_size"] == 32
    assert report["split"]["test_held_out"] is False
    assert report["duplicates"]["rule"] == "warn" and report["skipped"] == {}
    assert report["sizes"] == {"train": 900, "validation": 100, "test": 200}
    assert list(counts.columns) == ["label", "class", "train", "validation", "test"]
    assert counts["validation"].sum() == 100 and counts["class"][0] == "pattern_0"


def test_decode_refuses_an_archive_replaced_since_fetch(tmp_path, synthetic_archive):
    record = fetch_dataset(params(tmp_path, synthetic_archive))
    Path(record["path"]).write_bytes(b"replaced by another run")
    with pytest.raises(ArchiveError, match="changed since it was fetched"):
        decode_dataset(record, params(tmp_path))


def test_an_archive_cache_on_object_storage_is_filled_once_then_reused(
    tmp_path, synthetic_archive, memory_store, caplog
):
    config = params(tmp_path, synthetic_archive, cache_dir="memory://bucket/01_raw")
    record = fetch_dataset(config)
    assert record["path"] == "memory://bucket/01_raw/cifar-10-python.tar.gz"
    assert memory_store.cat_file("/bucket/01_raw/cifar-10-python.tar.gz") == synthetic_archive.path.read_bytes()
    uploaded = memory_store.store["/bucket/01_raw/cifar-10-python.tar.gz"]
    caplog.clear()
    with caplog.at_level("INFO"):
        assert fetch_dataset(config) == record
    assert memory_store.store["/bucket/01_raw/cifar-10-python.tar.gz"] is uploaded
    assert not any("Uploading" in message for message in caplog.messages)
    assert not (tmp_path / "raw").exists()  # nothing cached locally
    data = decode_dataset(record, params(tmp_path))
    assert len(data.train_images) == 1000 and len(data.test_images) == 200


def test_a_synthetic_archive_on_object_storage_is_generated_once(tmp_path, memory_store):
    config = params(tmp_path, cache_dir="memory://bucket/raw")
    first = fetch_dataset(config)
    assert memory_store.isfile("/bucket/raw/synthetic-cifar-10-python.tar.gz.md5")
    uploaded = memory_store.store["/bucket/raw/synthetic-cifar-10-python.tar.gz"]
    assert fetch_dataset(config) == first
    assert memory_store.store["/bucket/raw/synthetic-cifar-10-python.tar.gz"] is uploaded


def test_a_missing_stamp_on_object_storage_is_uploaded_again(tmp_path, memory_store):
    config = params(tmp_path, cache_dir="memory://bucket/raw")
    first = fetch_dataset(config)
    memory_store.rm("/bucket/raw/synthetic-cifar-10-python.tar.gz.md5")  # as if killed between the two uploads
    assert fetch_dataset(config) == first
    assert memory_store.isfile("/bucket/raw/synthetic-cifar-10-python.tar.gz.md5")


def test_a_file_url_cache_dir_is_the_local_folder(tmp_path, synthetic_archive):
    record = fetch_dataset(params(tmp_path, synthetic_archive, cache_dir=f"file://{tmp_path}/raw"))
    assert record["path"] == (tmp_path / "raw" / "cifar-10-python.tar.gz").as_posix()
    assert len(decode_dataset(record, params(tmp_path)).test_images) == 200


def test_a_bad_archive_on_object_storage_is_moved_aside(tmp_path, memory_store):
    memory_store.pipe_file("/bucket/raw/cifar-10-python.tar.gz", b"not a tar file")
    record = {
        "url": "file:///x",
        "md5": "0d8d4c9a1b2d8bd8d2d7e6fe0b2ae4d4",
        "path": "memory://bucket/raw/cifar-10-python.tar.gz",
    }
    with pytest.raises(ArchiveError, match="changed since it was fetched"):
        decode_dataset(record, params(tmp_path))
    record["md5"] = hashlib.md5(b"not a tar file").hexdigest()  # noqa: S324
    with pytest.raises(
        ArchiveError, match=r"moved the archive aside to memory://bucket/raw/cifar-10-python\.tar\.gz\.rejected"
    ):
        decode_dataset(record, params(tmp_path))
    assert memory_store.isfile("/bucket/raw/cifar-10-python.tar.gz.rejected")
    assert not memory_store.isfile("/bucket/raw/cifar-10-python.tar.gz")


def test_a_source_without_a_test_set_gets_a_stratified_seeded_test_split(synthetic_data, tmp_path):
    data = dataclasses.replace(synthetic_data, test_images=None, test_labels=None)
    config = params(tmp_path, validation_size=0.1, test_size=0.2)
    validate_dataset(data, {**config, "expected_sizes": {"train": 1000}})
    train, validation, test, notes = split_dataset(data, config)
    assert (len(train["labels"]), len(validation["labels"]), len(test["labels"])) == (720, 80, 200)
    assert np.bincount(test["labels"]).tolist() == [20] * 10
    assert notes["test_held_out"] is True and notes["test_size"] == 200
    again = split_dataset(data, config)
    np.testing.assert_array_equal(again[2]["images"], test["images"])


def _with_duplicates(synthetic_data):
    """``synthetic_data`` whose first 3 test images are copies of training images."""
    test_images = synthetic_data.test_images.copy()
    test_images[:3] = synthetic_data.train_images[:3]
    return dataclasses.replace(synthetic_data, test_images=test_images)


def test_duplicates_are_counted_warned_dropped_or_refused(synthetic_data, tmp_path, caplog):
    data = _with_duplicates(synthetic_data)
    with caplog.at_level("WARNING"):
        train, _, _, notes = split_dataset(data, params(tmp_path, validation_size=0))
    assert notes["duplicates"]["counts"]["train-test"] == 3 and len(train["labels"]) == 1000
    assert any("duplicate" in message for message in caplog.messages)
    train, _, _, notes = split_dataset(data, params(tmp_path, validation_size=0, duplicates="drop"))
    assert len(train["labels"]) == 997 and notes["duplicates"]["dropped_from_train"] == 3
    with pytest.raises(DataValidationError, match=r"exact duplicate images across the splits \(train-test: 3\)"):
        split_dataset(data, params(tmp_path, validation_size=0, duplicates="error"))


def test_an_image_folder_source_is_described_where_it_is(tmp_path):
    folder = tmp_path / "pets"
    (folder / "train").mkdir(parents=True)
    record = fetch_dataset(params(tmp_path, kind="image_folder", source={"url": folder.as_uri()}))
    assert record == {
        "kind": "image_folder",
        "url": folder.as_uri(),
        "md5": None,
        "path": folder.as_posix(),
        "size_bytes": None,
    }
    with pytest.raises(Exception, match="does not exist"):
        fetch_dataset(params(tmp_path, kind="image_folder", source={"url": str(tmp_path / "missing")}))
    assert not (tmp_path / "raw").exists()

"""The archive reader treats its input as hostile: pickles, member paths, shapes, types."""

from __future__ import annotations

import gzip
import tarfile

import numpy as np
import pytest

from image_recognition.common.errors import ParameterError
from image_recognition.sources.cifar10.archive import (
    ArchiveError,
    CIFAR10Arrays,
    load_cifar10_archive,
    load_cifar100_archive,
    load_cifar_archive,
    safe_unpickle,
)
from image_recognition.sources.cifar10.fetch import md5_of
from image_recognition.sources.cifar10.synthetic import (
    SYNTHETIC_COARSE_NAMES,
    coarse_labels,
    make_synthetic_cifar10,
    make_synthetic_cifar100,
    write_cifar10_archive,
    write_cifar100_archive,
)
from image_recognition.sources.decoded import DecodedImages
from tests.helpers import (
    ARCHIVE_CASES,
    RunsCommand,
    bad_archive,
    batch,
    cifar100_batch,
    cifar100_members,
    good_members,
    write_archive,
)


def test_roundtrip_of_synthetic_archive(tmp_path):
    data = make_synthetic_cifar10(train_per_class=20, test_per_class=5, seed=3)
    write_cifar10_archive(data, tmp_path / "a.tar.gz")
    decoded = load_cifar10_archive(str(tmp_path / "a.tar.gz"))
    np.testing.assert_array_equal(decoded.train_images, data.train_images)
    np.testing.assert_array_equal(decoded.test_labels, data.test_labels)
    assert decoded.train_images.dtype == np.uint8 and decoded.train_images.shape == (200, 3, 32, 32)
    assert decoded.class_names == data.class_names


def test_cifar10_decodes_to_decoded_images_with_the_archive_md5_as_fingerprint(tmp_path):
    path = tmp_path / "a.tar.gz"
    md5 = write_cifar10_archive(make_synthetic_cifar10(train_per_class=2, test_per_class=1, seed=0), path)
    decoded = load_cifar_archive(str(path), "cifar10")
    assert isinstance(decoded, DecodedImages) and CIFAR10Arrays is DecodedImages
    assert decoded.fingerprint == md5 and decoded.image_size == 32 and decoded.skipped == {}
    assert load_cifar10_archive(str(path), fingerprint="given").fingerprint == "given"


@pytest.mark.parametrize(("kind", "label"), [("cifar1000", "fine"), ("image_folder", "fine"), ("cifar10", "coarse")])
def test_unknown_kind_or_a_label_the_kind_lacks_is_a_parameter_error(tmp_path, kind, label):
    with pytest.raises(ParameterError, match="dataset.(kind|label)"):
        load_cifar_archive(str(tmp_path / "none.tar.gz"), kind, label)


def test_cifar100_roundtrip_of_synthetic_archive_fine_and_coarse(tmp_path):
    data = make_synthetic_cifar100(train_per_class=3, test_per_class=1, seed=5)
    md5 = write_cifar100_archive(data, tmp_path / "cifar-100-python.tar.gz")
    fine = load_cifar100_archive(str(tmp_path / "cifar-100-python.tar.gz"))
    np.testing.assert_array_equal(fine.train_images, data.train_images)
    np.testing.assert_array_equal(fine.train_labels, data.train_labels)
    np.testing.assert_array_equal(fine.test_labels, data.test_labels)
    assert fine.class_names == data.class_names and len(fine.class_names) == 100 and fine.fingerprint == md5
    coarse = load_cifar_archive(str(tmp_path / "cifar-100-python.tar.gz"), "cifar100", "coarse")
    np.testing.assert_array_equal(coarse.train_images, data.train_images)
    np.testing.assert_array_equal(coarse.train_labels, coarse_labels(data.train_labels))
    assert coarse.class_names == SYNTHETIC_COARSE_NAMES and np.bincount(coarse.test_labels).tolist() == [5] * 20


def test_cifar100_label_must_be_fine_or_coarse(tmp_path):
    with pytest.raises(ParameterError, match="dataset.label must be one of fine, coarse, got 'medium'"):
        load_cifar100_archive(str(tmp_path / "none.tar.gz"), label="medium")


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("../escape", tarfile.REGTYPE),
        ("/etc/cron.d/x", tarfile.REGTYPE),
        ("cifar-100-python/../../x", tarfile.REGTYPE),
        ("cifar-100-python/link", tarfile.SYMTYPE),
        ("cifar-100-python/hard", tarfile.LNKTYPE),
    ],
)
def test_hostile_cifar100_members_refuse_the_whole_archive(tmp_path, name, kind):
    info = tarfile.TarInfo(name)
    info.type = kind
    if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
        info.linkname = "/etc/passwd"
    else:
        info.size = 1
    archive = write_archive(tmp_path / "a.tar.gz", cifar100_members(), extra=[info])
    with pytest.raises(ArchiveError, match="refusing"):
        load_cifar100_archive(archive)


def test_cifar100_pickle_calling_os_system_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    archive = write_archive(
        tmp_path / "a.tar.gz", cifar100_members(train=cifar100_batch({b"data": RunsCommand(marker)}))
    )
    with pytest.raises(ArchiveError, match=r"train: unsafe or corrupt pickle.*forbidden global (posix|os)\.system"):
        load_cifar100_archive(archive)
    assert not marker.exists()


def test_cifar100_deeply_nested_pickle_is_refused_by_the_opcode_caps(tmp_path):
    archive = write_archive(
        tmp_path / "a.tar.gz", cifar100_members(meta=b"\x80\x02})" + b"\x85" * 100_000 + b"K\x01s.")
    )
    with pytest.raises(ArchiveError, match="meta: unsafe or corrupt pickle"):
        load_cifar100_archive(archive)


@pytest.mark.parametrize(
    ("members", "message"),
    [
        (cifar100_members(test=cifar100_batch({b"fine_labels": [0, 1, 2, 100]})), r"test: 1 label\(s\) outside 0-99"),
        (cifar100_members(train=cifar100_batch({b"coarse_labels": [0, 1, 2, 20]})), "train: .*outside 0-19"),
        (cifar100_members(train=cifar100_batch({b"labels": [0] * 4})), "train: unexpected keys"),
        (cifar100_members(train=cifar100_batch({b"fine_labels": None})), r"train: missing key\(s\) \['fine_labels'\]"),
        (cifar100_members(meta={b"fine_label_names": [b"a"], b"coarse_label_names": [b"b"] * 20}), "holds 1 names"),
        (cifar100_members(meta=None), "lacks cifar-100-python/meta; it is not the CIFAR-100 python archive"),
    ],
)
def test_malformed_cifar100_archives_are_named(tmp_path, members, message):
    label = "coarse" if "0-19" in message else "fine"
    with pytest.raises(ArchiveError, match=message):
        load_cifar100_archive(write_archive(tmp_path / "a.tar.gz", members), label=label)


def test_a_cifar10_archive_is_not_taken_for_cifar100(tmp_path):
    archive = write_archive(tmp_path / "a.tar.gz", good_members())
    with pytest.raises(
        ArchiveError, match="lacks cifar-100-python/meta, cifar-100-python/test, cifar-100-python/train"
    ):
        load_cifar100_archive(archive)
    assert md5_of(archive)  # untouched, still readable


def test_minimal_valid_archive_decodes(tmp_path):
    decoded = load_cifar10_archive(write_archive(tmp_path / "a.tar.gz", good_members()))
    assert decoded.train_images.shape == (20, 3, 32, 32)
    assert decoded.class_names[0] == "c0"


def test_pickle_calling_os_system_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    evil = batch({b"data": RunsCommand(marker)})
    archive = write_archive(tmp_path / "a.tar.gz", good_members(data_batch_3=evil))
    with pytest.raises(
        ArchiveError, match=r"data_batch_3: unsafe or corrupt pickle.*forbidden global (posix|os)\.system"
    ):
        load_cifar10_archive(archive)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("module", "name"),
    [("builtins", "eval"), ("subprocess", "Popen"), ("numpy", "load"), ("numpy.testing", "assert_equal")],
)
def test_only_numpy_reconstruction_globals_resolve(module, name):
    blob = b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"."
    with pytest.raises(ArchiveError, match=f"forbidden global {module}.{name}"):
        safe_unpickle(blob, "data_batch_1")


def test_codecs_encode_is_limited_to_latin1():
    blob = b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abcX\x05\x00\x00\x00rot13\x86R."
    with pytest.raises(ArchiveError, match="forbidden _codecs.encode"):
        safe_unpickle(blob, "data_batch_1")


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("../escape", tarfile.REGTYPE),
        ("/etc/cron.d/x", tarfile.REGTYPE),
        ("cifar-10-batches-py/../../x", tarfile.REGTYPE),
        ("cifar-10-batches-py/link", tarfile.SYMTYPE),
        ("cifar-10-batches-py/hard", tarfile.LNKTYPE),
        ("cifar-10-batches-py/fifo", tarfile.FIFOTYPE),
    ],
)
def test_hostile_members_refuse_the_whole_archive(tmp_path, name, kind):
    info = tarfile.TarInfo(name)
    info.type = kind
    if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
        info.linkname = "/etc/passwd"
    elif kind == tarfile.REGTYPE:
        info.size = 1
    archive = write_archive(tmp_path / "a.tar.gz", good_members(), extra=[info])
    with pytest.raises(ArchiveError, match="refusing"):
        load_cifar10_archive(archive)
    assert not (tmp_path.parent / "escape").exists()


@pytest.mark.parametrize(
    ("bad_batch", "message"),
    [
        (batch({b"data": np.zeros((4, 3, 32, 32), dtype=np.uint8)}), r"shape \(N, 3072\)"),
        (batch({b"data": np.zeros((4, 3072), dtype=np.float32)}), "must be uint8, got float32"),
        (batch({b"data": None}), r"missing key\(s\) \['data'\]"),
        (batch({b"labels": None}), r"missing key\(s\) \['labels'\]"),
        (batch({b"labels": ["cat"] * 4}), "'labels' must be a list of ints"),
        (batch({b"labels": [1, 2]}), "2 labels for 4 images"),
        (batch({b"extra": 1}), "unexpected keys"),
        ([1, 2, 3], "expected a dict"),
    ],
)
def test_malformed_batches_are_named(tmp_path, bad_batch, message):
    archive = write_archive(tmp_path / "a.tar.gz", good_members(data_batch_2=bad_batch))
    with pytest.raises(ArchiveError, match=f"data_batch_2: .*{message}"):
        load_cifar10_archive(archive)


def test_missing_batch_is_named(tmp_path):
    members = good_members()
    del members["cifar-10-batches-py/data_batch_4"]
    with pytest.raises(ArchiveError, match="lacks cifar-10-batches-py/data_batch_4"):
        load_cifar10_archive(write_archive(tmp_path / "a.tar.gz", members))


def test_truncated_archive(tmp_path):
    path = tmp_path / "a.tar.gz"
    write_archive(path, good_members())
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ArchiveError, match="not a readable CIFAR-10 .tar.gz.*truncated"):
        load_cifar10_archive(str(path))


@pytest.mark.parametrize(
    "payload",
    [b"this is not an archive", gzip.compress(b"gzip but not tar" * 100, mtime=0)],
    ids=["plain_bytes", "gzip_not_tar"],
)
def test_not_a_gzipped_tar(tmp_path, payload):
    path = tmp_path / "a.tar.gz"
    path.write_bytes(payload)
    with pytest.raises(ArchiveError, match="not a readable CIFAR-10 .tar.gz"):
        load_cifar10_archive(str(path))


@pytest.mark.parametrize("depth", [1_000, 100_000, 3_000_000])
def test_deeply_nested_key_is_refused_without_crashing(depth):
    # A dict whose key is a tuple nested `depth` deep: at 3,000,000 levels,
    # hashing the key would overflow the C stack (a segfault) if it were unpickled.
    blob = b"\x80\x02})" + b"\x85" * depth + b"K\x01s."
    with pytest.raises(ArchiveError, match="data_batch_1: (batch keys must be strings|unsafe or corrupt pickle)"):
        safe_unpickle(blob, "data_batch_1")


def test_oversized_member_is_refused_before_reading(tmp_path, monkeypatch):
    monkeypatch.setattr("image_recognition.sources.cifar10.archive.MAX_MEMBER_BYTES", 1000)
    with pytest.raises(ArchiveError, match="refusing member 'cifar-10-batches-py/data_batch_1': .* bytes, more than"):
        load_cifar10_archive(write_archive(tmp_path / "a.tar.gz", good_members()))


@pytest.mark.parametrize("case", sorted(ARCHIVE_CASES))
def test_every_bad_archive_case_is_refused_with_its_message(tmp_path, case):
    """The archives and messages of the CLI's bad-input cases, decoded directly (two also run through the CLI)."""
    archive = bad_archive(tmp_path, case)
    with pytest.raises(ArchiveError, match=ARCHIVE_CASES[case]):
        load_cifar10_archive(str(archive.path))
    assert not (tmp_path / "pwned").exists()

"""read_image_folder: a labelled folder (or .zip / .tar.gz of one) to uint8 arrays, every refusal with its fix."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from image_recognition.common.errors import InputError
from image_recognition.sources.cifar10.archive import ArchiveError
from image_recognition.sources.decoded import DecodedImages
from image_recognition.sources.image_folder import (
    BadImagesError,
    DataTooLargeError,
    ImageFolderLayoutError,
    available_memory,
    check_memory,
    estimate_bytes,
    find_duplicates,
    read_image_folder,
)
from tests.helpers import BAD_IMAGES, EPS_NAMED_PNG, image_file

COLOURS = {"blue": (0, 0, 255), "green": (0, 255, 0), "red": (255, 0, 0)}


def colour_png(colour: tuple[int, int, int], size: tuple[int, int] = (40, 30), fmt: str = "PNG") -> bytes:
    return image_file(Image.new("RGB", size, colour), fmt)


def make_folder(root: Path, per_class: int = 3, test: bool = True) -> Path:
    """train/ (and test/) with one folder per colour, PNG and JPEG files of a few sizes."""
    for split, count in (("train", per_class), ("test", 2)):
        if split == "test" and not test:
            continue
        for name, colour in COLOURS.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for index in range(count):
                fmt, suffix = ("PNG", "png") if index % 2 == 0 else ("JPEG", "jpg")
                (folder / f"{index}.{suffix}").write_bytes(colour_png(colour, (40 + index, 30), fmt))
    return root


def test_reads_a_folder_as_uint8_arrays_with_sorted_class_names(tmp_path):
    data = read_image_folder(make_folder(tmp_path / "pets"), 32)
    assert isinstance(data, DecodedImages)
    assert data.class_names == ["blue", "green", "red"] and data.image_size == 32
    assert data.train_images.shape == (9, 3, 32, 32) and data.train_images.dtype == np.uint8
    assert data.train_labels.dtype == np.int64 and data.train_labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert data.test_images.shape == (6, 3, 32, 32) and data.test_labels.tolist() == [0, 0, 1, 1, 2, 2]
    red = data.train_images[data.train_labels == 2]
    assert (red[:, 0] > 240).all() and (red[:, 1:] < 15).all()  # JPEG's colours are close, not exact
    assert len(data.fingerprint) == 64 and data.skipped["ignored"]["count"] == 0


def test_other_sizes_and_no_test_folder(tmp_path):
    data = read_image_folder(make_folder(tmp_path / "pets", test=False), 64)
    assert data.train_images.shape == (9, 3, 64, 64) and data.test_images is None and data.test_labels is None


def test_hidden_and_non_image_files_are_ignored_and_counted(tmp_path):
    root = make_folder(tmp_path / "pets")
    for name in (".DS_Store", "Thumbs.db", "notes.txt", ".hidden.png"):
        (root / "train" / "red" / name).write_bytes(b"not an image")
    (root / "train" / ".ipynb_checkpoints").mkdir()
    (root / "train" / "README.md").write_text("read me")
    data = read_image_folder(root, 32)
    assert len(data.train_labels) == 9
    ignored = data.skipped["ignored"]
    assert ignored["count"] == 6
    assert "train/red/.DS_Store" in ignored["examples"] and "train/README.md" in ignored["examples"]


@pytest.mark.parametrize("name", sorted(BAD_IMAGES))
def test_a_bad_image_stops_the_read_naming_it_and_the_fix(tmp_path, name):
    root = make_folder(tmp_path / "pets")
    content, reason = BAD_IMAGES[name]
    (root / "train" / "green" / name).write_bytes(content)
    with pytest.raises(BadImagesError, match=reason) as error:
        read_image_folder(root, 32)
    message = str(error.value)
    assert f"train/green/{name}" in message and "dataset.skip_bad_files: true" in message
    assert message.startswith("1 image file in the image folder cannot be decoded")


def test_a_format_outside_the_allow_list_is_a_bad_file(tmp_path):
    root = make_folder(tmp_path / "pets")
    (root / "train" / "red" / "holiday.png").write_bytes(EPS_NAMED_PNG)
    with pytest.raises(BadImagesError, match="train/red/holiday.png: EPS content, a format never decoded here"):
        read_image_folder(root, 32)


def test_many_bad_files_are_listed_up_to_twenty_and_counted(tmp_path):
    root = make_folder(tmp_path / "pets")
    for index in range(25):
        (root / "train" / "blue" / f"bad{index:02d}.jpg").write_bytes(b"junk" * 10)
    with pytest.raises(BadImagesError) as error:
        read_image_folder(root, 32)
    message = str(error.value)
    assert message.startswith("25 image files") and "... and 5 more" in message
    assert "bad19.jpg" in message and "bad20.jpg" not in message


def test_skip_bad_files_skips_and_lists_them(tmp_path):
    root = make_folder(tmp_path / "pets")
    (root / "train" / "green" / "broken.png").write_bytes(b"")
    (root / "test" / "red" / "broken.jpg").write_bytes(b"junk")
    data = read_image_folder(root, 32, skip_bad_files=True)
    assert len(data.train_labels) == 9 and len(data.test_labels) == 6
    bad = data.skipped["bad_files"]
    assert bad["count"] == 2
    assert [row["file"] for row in bad["files"]] == ["test/red/broken.jpg", "train/green/broken.png"]
    assert "the file is empty" in bad["files"][1]["error"]


def test_a_class_left_empty_by_skipping_is_refused(tmp_path):
    root = make_folder(tmp_path / "pets", per_class=1)
    (root / "train" / "blue" / "0.png").write_bytes(b"junk")
    with pytest.raises(ImageFolderLayoutError, match="train/blue have no image that could be decoded"):
        read_image_folder(root, 32, skip_bad_files=True)


def test_an_empty_class_folder_is_refused_by_name(tmp_path):
    root = make_folder(tmp_path / "pets")
    (root / "train" / "yellow").mkdir()
    (root / "train" / "yellow" / "notes.txt").write_text("no images here")
    with pytest.raises(ImageFolderLayoutError, match="the class folder train/yellow has no images.*add images"):
        read_image_folder(root, 32)


def test_fewer_than_two_classes_is_refused(tmp_path):
    root = tmp_path / "pets"
    (root / "train" / "only").mkdir(parents=True)
    (root / "train" / "only" / "a.png").write_bytes(colour_png((1, 2, 3)))
    with pytest.raises(ImageFolderLayoutError, match=r"has 1 class folder \(only\); a classifier needs at least two"):
        read_image_folder(root, 32)


def test_a_test_class_missing_from_train_is_refused(tmp_path):
    root = make_folder(tmp_path / "pets")
    (root / "test" / "purple").mkdir()
    (root / "test" / "purple" / "a.png").write_bytes(colour_png((128, 0, 128)))
    with pytest.raises(ImageFolderLayoutError, match="test/ has class folders that train/ lacks: purple"):
        read_image_folder(root, 32)


def test_no_train_folder_is_refused(tmp_path):
    (tmp_path / "pets" / "cats").mkdir(parents=True)
    with pytest.raises(ImageFolderLayoutError, match=r"no train/ folder in .*pets: put one folder of images per class"):
        read_image_folder(tmp_path / "pets", 32)


def test_a_path_that_is_neither_folder_nor_archive_is_refused(tmp_path):
    (tmp_path / "images.rar").write_bytes(b"rar")
    with pytest.raises(ImageFolderLayoutError, match="is not a folder, a .zip or a .tar.gz"):
        read_image_folder(tmp_path / "images.rar", 32)


def test_symlinks_leading_outside_the_root_are_refused(tmp_path):
    root = make_folder(tmp_path / "pets")
    outside = tmp_path / "secret.png"
    outside.write_bytes(colour_png((9, 9, 9)))
    os.symlink(outside, root / "train" / "red" / "link.png")
    with pytest.raises(ImageFolderLayoutError, match="train/red/link.png: a symbolic link to .*outside the image"):
        read_image_folder(root, 32)
    (root / "train" / "red" / "link.png").unlink()
    os.symlink(tmp_path, root / "train" / "elsewhere")
    with pytest.raises(ImageFolderLayoutError, match="train/elsewhere: a symbolic link"):
        read_image_folder(root, 32)


def test_a_symlink_inside_the_root_is_read(tmp_path):
    root = make_folder(tmp_path / "pets")
    os.symlink(root / "train" / "red" / "0.png", root / "train" / "red" / "again.png")
    assert len(read_image_folder(root, 32).train_labels) == 10


def zip_of(folder: Path, archive: Path, top: str = "") -> Path:
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in sorted(folder.rglob("*")):
            zipped.write(path, f"{top}{path.relative_to(folder).as_posix()}")
    return archive


def tar_of(folder: Path, archive: Path, top: str = "") -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=top or ".")
    return archive


@pytest.mark.parametrize(
    ("pack", "name", "top"), [(zip_of, "pets.zip", ""), (zip_of, "pets.zip", "pets/"), (tar_of, "pets.tar.gz", "pets")]
)
def test_archives_read_as_the_folder_does(tmp_path, pack, name, top):
    folder = make_folder(tmp_path / "pets")
    (folder / "train" / "red" / ".DS_Store").write_bytes(b"x")
    archive = pack(folder, tmp_path / name, top)
    from_folder, from_archive = read_image_folder(folder, 32), read_image_folder(archive, 32)
    assert np.array_equal(from_folder.train_images, from_archive.train_images)
    assert np.array_equal(from_folder.test_labels, from_archive.test_labels)
    assert from_archive.class_names == from_folder.class_names
    assert from_archive.fingerprint == from_folder.fingerprint
    assert from_archive.skipped["ignored"]["count"] == 1


def test_a_file_url_is_read(tmp_path):
    folder = make_folder(tmp_path / "pets")
    assert read_image_folder(folder.as_uri(), 32).fingerprint == read_image_folder(folder, 32).fingerprint


def test_the_fingerprint_follows_the_content(tmp_path):
    folder = make_folder(tmp_path / "pets")
    before = read_image_folder(folder, 32).fingerprint
    (folder / "train" / "red" / "0.png").write_bytes(colour_png((250, 0, 0)))
    assert read_image_folder(folder, 32).fingerprint != before


def zip_with(archive: Path, info: zipfile.ZipInfo, data: bytes = b"x") -> Path:
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("train/red/0.png", colour_png((255, 0, 0)))
        zipped.writestr(info, data)
    return archive


def test_zip_members_that_escape_or_link_are_refused(tmp_path):
    with pytest.raises(ArchiveError, match="refusing member '../evil.png': its path escapes"):
        read_image_folder(zip_with(tmp_path / "a.zip", zipfile.ZipInfo("../evil.png")), 32)
    with pytest.raises(ArchiveError, match="refusing member '/etc/evil.png'"):
        read_image_folder(zip_with(tmp_path / "b.zip", zipfile.ZipInfo("/etc/evil.png")), 32)
    link = zipfile.ZipInfo("train/red/link.png")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    with pytest.raises(ArchiveError, match="refusing link member 'train/red/link.png'"):
        read_image_folder(zip_with(tmp_path / "c.zip", link, b"/etc/passwd"), 32)
    assert not (tmp_path / "evil.png").exists()


def test_tar_members_that_escape_or_link_are_refused(tmp_path):
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        member = tarfile.TarInfo("../evil.png")
        member.size = 3
        tar.addfile(member, io.BytesIO(b"abc"))
    with pytest.raises(ArchiveError, match="refusing member '../evil.png': its path escapes"):
        read_image_folder(archive, 32)
    with tarfile.open(archive, "w:gz") as tar:
        member = tarfile.TarInfo("train/red/link.png")
        member.type, member.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(member)
    with pytest.raises(ArchiveError, match="refusing link member"):
        read_image_folder(archive, 32)
    assert not (tmp_path / "evil.png").exists()


def test_a_corrupt_archive_is_one_error(tmp_path):
    (tmp_path / "pets.zip").write_bytes(b"PK not really")
    with pytest.raises(ArchiveError, match="cannot be read as an archive.*pack it again"):
        read_image_folder(tmp_path / "pets.zip", 32)


def test_worker_processes_and_this_process_decode_the_same(tmp_path):
    root = make_folder(tmp_path / "pets", per_class=8)
    alone, pooled = read_image_folder(root, 32, workers=1), read_image_folder(root, 32, workers=2)
    assert np.array_equal(alone.train_images, pooled.train_images)
    assert np.array_equal(alone.test_images, pooled.test_images)
    assert np.array_equal(alone.train_labels, pooled.train_labels) and alone.fingerprint == pooled.fingerprint


def test_the_memory_check_refuses_naming_gb_and_the_image_size(tmp_path):
    assert estimate_bytes(1000, 64) == 1000 * 3 * 64 * 64
    with pytest.raises(DataTooLargeError, match=r"need about 0\.02 GB.*smaller dataset\.image_size"):
        check_memory(1000, 64, lambda: 1_000_000)
    check_memory(1000, 64, lambda: 10**9)
    check_memory(1000, 64, lambda: None)  # unknown: nothing refused
    with pytest.raises(DataTooLargeError, match="dataset.image_size 32"):
        read_image_folder(make_folder(tmp_path / "pets"), 32, available_memory=lambda: 100)


def test_available_memory_takes_the_smaller_of_meminfo_and_the_cgroup(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:  8000000 kB\nMemAvailable:    4000000 kB\n")
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    assert available_memory(str(meminfo), str(cgroup)) == 4_000_000 * 1024
    (cgroup / "memory.max").write_text("1000000000\n")
    (cgroup / "memory.current").write_text("400000000\n")
    assert available_memory(str(meminfo), str(cgroup)) == 600_000_000
    (cgroup / "memory.max").write_text("max\n")
    assert available_memory(str(meminfo), str(cgroup)) == 4_000_000 * 1024
    assert available_memory(str(tmp_path / "none"), str(tmp_path / "none")) is None


def test_find_duplicates_finds_planted_duplicates():
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (20, 3, 8, 8), dtype=np.uint8)
    validation = rng.integers(0, 256, (5, 3, 8, 8), dtype=np.uint8)
    test = rng.integers(0, 256, (5, 3, 8, 8), dtype=np.uint8)
    train[3] = train[1]  # within train
    validation[0] = train[7]  # train-validation
    test[2], test[4] = train[11], validation[3]  # train-test, validation-test
    found = find_duplicates({"train": train, "validation": validation, "test": test})
    assert found["counts"] == {
        "train": 1,
        "validation": 0,
        "test": 0,
        "train-validation": 1,
        "train-test": 1,
        "validation-test": 1,
    }
    assert found["drop_train_indices"] == [7, 11] and found["total"] == 4


def test_errors_are_input_errors():
    assert all(issubclass(error, InputError) for error in (BadImagesError, DataTooLargeError, ImageFolderLayoutError))

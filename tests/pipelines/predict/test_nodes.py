"""The predict nodes: the parameters with their defaults, and a folder's table, gallery and log line."""

from __future__ import annotations

import logging

import pytest

from image_recognition.common.errors import ParameterError
from image_recognition.datasets.images import ImageError
from image_recognition.pipelines.predict.nodes import check_predict_params, predict_folder
from tests.helpers import class_image, fake_checkpoint

VERSION = "2026-12-01T10.00.00.000Z"


def _unreadable():
    raise ImageError("broken.png: truncated")


def test_the_parameters_are_checked_and_completed_with_their_defaults():
    config = check_predict_params({"model": "simple_cnn"})
    assert (config["model"], config["resize"], config["keep_going"], config["tta"]) == (
        "simple_cnn",
        "crop",
        False,
        None,
    )
    with pytest.raises(ParameterError, match="predict.resize"):
        check_predict_params({"model": "simple_cnn", "resize": "stretch"})


def test_every_file_gets_a_row_naming_the_checkpoint_version_and_the_failures_are_counted(caplog):
    images = {"b.png": lambda: class_image(1), "a.png": lambda: class_image(0), "broken.png": _unreadable}
    checkpoint = {**fake_checkpoint("simple_cnn"), "_catalog_version": VERSION}
    config = check_predict_params({"model": "simple_cnn", "keep_going": True})
    with caplog.at_level(logging.INFO, logger="image_recognition.pipelines.predict.nodes"):
        table, page = predict_folder(images, checkpoint, config)
    assert table["file"].tolist() == ["a.png", "b.png", "broken.png"]
    assert (table["checkpoint_version"] == VERSION).all() and (table["model"] == "simple_cnn").all()
    assert table["class"].notna().tolist() == [True, True, False]
    assert "a.png" in page and "broken.png: truncated" in page
    assert "predicted 2 images with simple_cnn; 1 files failed (their rows say why)" in caplog.text

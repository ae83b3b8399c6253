"""Nodes of the ``predict`` pipeline: check the parameters, predict a folder of images."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import pandas as pd
from PIL import Image

from image_recognition.serving.prediction import PredictConfig, gallery_html, predict_images

logger = logging.getLogger(__name__)


def check_predict_params(params: dict[str, Any]) -> dict[str, Any]:
    """The ``predict`` parameters, checked (unknown keys, model name, ranges) and with their defaults."""
    return dataclasses.asdict(PredictConfig.from_dict(params))


def predict_folder(
    images: dict[str, Callable[[], Image.Image]], checkpoint: dict[str, Any], config: dict[str, Any]
) -> tuple[pd.DataFrame, str]:
    """The predictions table (one row per image file) and the HTML gallery of a folder of images.

    The checkpoint is ``<predict.model>.checkpoint``, the latest version or the
    one pinned with ``--load-versions``; its version goes in every row.
    """
    settings = PredictConfig(**config)
    predictions = predict_images(images, checkpoint, settings, checkpoint.get("_catalog_version"))
    failed = len(predictions.failed)
    logger.info(
        "predicted %d images with %s%s",
        len(predictions.table) - failed,
        checkpoint["model_name"],
        f"; {failed} files failed (their rows say why)" if failed else "",
    )
    return predictions.table, gallery_html(predictions, settings)

"""Predict the class of new images with a trained checkpoint: the ``predict`` pipeline's and command's core.

Images of any size and mode become the model's input the standard way: EXIF
orientation applied, converted to RGB (transparency composited on white,
16-bit grey scaled to 8 bits), resized with Pillow's antialiased bilinear
filter so that the shorter side is 32 pixels and centre-cropped (``resize:
crop``), or the longer side is 32 pixels and padded with black (``resize: pad``).
The checkpoint's own normalisation and TTA mode follow, batched on the device.

Memory stays bounded whatever the image's shape: the crop is resampled from
the part of the image it keeps, so the scaled image is never built (a
1,000,000 x 1 image scaled to a 32-pixel shorter side would be 32,000,000 x 32
pixels), and 16-bit images are scaled to 8 bits a slice at a time.

The predictions table names each file by :func:`display_name`, so a name
that is not UTF-8 is written to the CSV, the gallery and the terminal as
escaped text that tells it apart from every other name.
"""

from __future__ import annotations

import base64
import html
import io
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from kedro.io.core import DatasetError
from PIL import Image

from image_recognition.common.device import AUTO, DEVICES, resolve_device
from image_recognition.common.errors import InputError
from image_recognition.common.params import boolean, config_from_dict, null_or_one_of, one_of, positive_int
from image_recognition.evaluation.config import EvaluationConfig
from image_recognition.evaluation.cost import inference_recipe
from image_recognition.models import check_model_name
from image_recognition.models.inference import TTA_MODES, load_model, predict_logits
from image_recognition.models.sizes import DEFAULT_IMAGE_SIZE
from image_recognition.sources.images import RESIZE_MODES, ImageError, display_name, to_model_input, to_rgb
from image_recognition.training.checkpoint import checkpoint_class_names, checkpoint_image_size

__all__ = [
    "CIFAR10_CLASS_NAMES",
    "IMAGE_SIZE",
    "PREDICTION_COLUMNS",
    "RESIZE_MODES",
    "PredictConfig",
    "Predictions",
    "UntrainedModelError",
    "checkpoint_image_size",
    "class_names",
    "gallery_html",
    "model_input",
    "predict_images",
    "to_rgb",
]

logger = logging.getLogger(__name__)

# CIFAR-10's classes in label order, for checkpoints trained before they recorded their own.
CIFAR10_CLASS_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
TOP_K = 3
# The image size of checkpoints trained before they recorded their own (``checkpoint_image_size``).
IMAGE_SIZE = DEFAULT_IMAGE_SIZE
PREDICTION_COLUMNS = [
    "file",
    "class",
    "probability",
    "class_2",
    "probability_2",
    "class_3",
    "probability_3",
    "model",
    "checkpoint_version",
    "error",
]


@dataclass(frozen=True)
class PredictConfig:
    """How new images are predicted (``predict`` in parameters_predict.yml)."""

    model: str = "cnn"  # simple_cnn, cnn or vit: whose latest (or pinned) checkpoint predicts
    input_dir: str | None = None  # read by the catalog's predict_images entry; recorded here
    resize: str = "crop"  # crop: shorter side to the checkpoint's size, centre crop; pad: longer side, black borders
    keep_going: bool = False  # false: the first bad file fails the run; true: it gets an error row
    batch_size: int = 256
    tta: str | None = None  # null: the checkpoint's own TTA mode
    device: str = AUTO
    gallery_size: int = 500  # most confident predictions shown in the HTML gallery
    thumbnail_size: int = 96  # pixels, the longer side of each gallery thumbnail

    @classmethod
    def from_dict(cls, params: dict[str, Any] | None) -> PredictConfig:
        return config_from_dict(cls, params, "predict")

    def __post_init__(self) -> None:
        check_model_name(self.model, "predict.model")
        one_of("predict.resize", self.resize, RESIZE_MODES)
        boolean("predict.keep_going", self.keep_going)
        for name in ("batch_size", "gallery_size", "thumbnail_size"):
            positive_int(f"predict.{name}", getattr(self, name))
        one_of("predict.device", self.device, DEVICES)
        null_or_one_of("predict.tta", self.tta, TTA_MODES, "the checkpoint's own")


class UntrainedModelError(InputError, DatasetError):
    """No checkpoint of the model has been saved, so there is nothing to predict or export with.

    A ``DatasetError`` too, so that Kedro passes it on unwrapped and ``kedro run``
    prints its one-line message.
    """

    def __init__(self, model: str) -> None:
        super().__init__(
            f"no {model}.checkpoint has been saved: train it first with `kedro run --pipelines=train_{model}`"
        )


def model_input(image: Image.Image, resize: str = "crop", size: int = IMAGE_SIZE) -> torch.Tensor:
    """An RGB image as the model's uint8 input (3, size, size), aspect ratio kept by a crop or padding.

    ``crop`` gives the centre ``size`` x ``size`` of the image scaled to a
    ``size``-pixel shorter side, resampled straight from the part of the image
    that crop keeps (Pillow's ``box``): the same pixels, without building the
    scaled image (``sources.images.to_model_input``).
    """
    return torch.from_numpy(to_model_input(image, size, resize))


def class_names(checkpoint: dict[str, Any], num_classes: int) -> list[str]:
    """The checkpoint's class names; CIFAR-10's for a 10-class checkpoint that predates them."""
    names = checkpoint_class_names(checkpoint)
    if names and len(names) == num_classes:
        return list(names)
    if num_classes == len(CIFAR10_CLASS_NAMES):
        return list(CIFAR10_CLASS_NAMES)
    return [f"class_{index}" for index in range(num_classes)]


@dataclass
class Predictions:
    """One row per file (PREDICTION_COLUMNS) and each predicted file's thumbnail (PNG bytes)."""

    table: pd.DataFrame
    thumbnails: dict[str, bytes]

    @property
    def failed(self) -> pd.DataFrame:
        return self.table[self.table["error"].notna()]


def predict_images(
    loaders: dict[str, Callable[[], Image.Image]],
    checkpoint: dict[str, Any],
    config: PredictConfig,
    checkpoint_version: str | None = None,
    thumbnails: bool = True,
) -> Predictions:
    """Predict every image ``loaders`` can load, in name order.

    A file that fails to load raises its :class:`ImageError` unless
    ``config.keep_going``; then it gets a row with the error and no class.
    The ``file`` column (and the thumbnails' keys) hold each name as
    :func:`display_name` shows it.
    """
    names, inputs, rows, shown = [], [], [], {}
    size = checkpoint_image_size(checkpoint)
    for name in sorted(loaders):
        file = display_name(name)
        try:
            image = to_rgb(loaders[name]())
            inputs.append(model_input(image, config.resize, size))
        except ImageError as exc:
            if not config.keep_going:
                raise
            rows.append({"file": file, "error": str(exc)})
            logger.warning("%s", exc)
            continue
        except Exception as exc:  # noqa: BLE001 (a file that decodes but cannot be converted is still one bad file)
            error = ImageError(f"{file}: cannot be converted to RGB ({type(exc).__name__}: {exc})")
            if not config.keep_going:
                raise error from exc
            rows.append({"file": file, "error": str(error)})
            continue
        names.append(file)
        if thumbnails:
            shown[file] = _thumbnail(image, config.thumbnail_size)
    probabilities = _probabilities(torch.stack(inputs), checkpoint, config) if inputs else torch.empty(0, 1)
    if inputs:
        labels = class_names(checkpoint, probabilities.shape[1])
        top = probabilities.topk(min(TOP_K, probabilities.shape[1]), dim=1)
        for index, name in enumerate(names):
            row: dict[str, Any] = {"file": name}
            for rank, (p, label) in enumerate(zip(top.values[index].tolist(), top.indices[index].tolist()), start=1):
                suffix = "" if rank == 1 else f"_{rank}"
                row[f"class{suffix}"], row[f"probability{suffix}"] = labels[label], round(p, 6)
            rows.append(row)
    table = pd.DataFrame(rows, columns=PREDICTION_COLUMNS).sort_values("file", kind="stable").reset_index(drop=True)
    table["model"] = checkpoint["model_name"]
    table["checkpoint_version"] = checkpoint_version
    return Predictions(table=table, thumbnails=shown)


def _probabilities(images: torch.Tensor, checkpoint: dict[str, Any], config: PredictConfig) -> torch.Tensor:
    """Softmax over the checkpoint's classes, with its TTA mode (or ``config.tta``), in its recipe's precision."""
    device = resolve_device(config.device)
    recipe = inference_recipe(checkpoint.get("training_config"), checkpoint["model_name"], device)
    model = load_model(checkpoint, device, channels_last=recipe.channels_last)
    tta = EvaluationConfig(tta=config.tta).tta_for(checkpoint)
    normalization = checkpoint["normalization"]
    logits = predict_logits(
        model,
        images,
        normalization["mean"],
        normalization["std"],
        batch_size=config.batch_size,
        tta=tta,
        device=device,
        autocast_dtype=recipe.autocast_dtype,
        channels_last=recipe.channels_last,
        tf32=recipe.tf32,
        progress=f"predicting {len(images):,} images with {checkpoint['model_name']} (tta {tta})",
    )
    return logits.softmax(dim=1)


def _thumbnail(image: Image.Image, size: int) -> bytes:
    """PNG bytes of ``image`` shrunk to fit ``size`` x ``size`` (never enlarged), without a full-size copy."""
    scale = min(1.0, size / max(image.size))
    fitted = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    small = image.resize(fitted, Image.Resampling.BICUBIC, reducing_gap=2.0)
    buffer = io.BytesIO()
    small.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


_GALLERY_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
.grid { display: flex; flex-wrap: wrap; gap: 12px; }
figure { margin: 0; width: 128px; text-align: center; font-size: 12px; }
figure img { max-width: 96px; max-height: 96px; image-rendering: pixelated; border: 1px solid #ccc; }
figcaption { overflow-wrap: anywhere; }
.p { color: #555; }
table { border-collapse: collapse; } td { border: 1px solid #ccc; padding: 2px 6px; }
"""


def gallery_html(predictions: Predictions, config: PredictConfig) -> str:
    """A self-contained page: thumbnails with their labels, most confident first, then the failed files."""
    table = predictions.table
    ok = table[table["error"].isna()].sort_values(["probability", "file"], ascending=[False, True])
    shown = ok.head(config.gallery_size)
    model = html.escape(str(table["model"].iloc[0])) if len(table) else ""
    version = html.escape(str(table["checkpoint_version"].iloc[0])) if len(table) else ""
    cards = []
    for row in shown.to_dict("records"):
        name = html.escape(row["file"])
        thumbnail = predictions.thumbnails.get(row["file"])
        image = (
            f'<img alt="{name}" src="data:image/png;base64,{base64.b64encode(thumbnail).decode()}">'
            if thumbnail
            else ""
        )
        caption = f'<b>{html.escape(row["class"])}</b> <span class="p">{row["probability"]:.1%}</span><br>{name}'
        cards.append(f"<figure>{image}<figcaption>{caption}</figcaption></figure>")
    failed = table[table["error"].notna()]
    errors = "".join(
        f"<tr><td>{html.escape(row.file)}</td><td>{html.escape(row.error)}</td></tr>" for row in failed.itertuples()
    )
    more = f" (the {len(shown)} most confident of {len(ok)})" if len(shown) < len(ok) else ""
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Predictions</title>"
        f"<style>{_GALLERY_STYLE}</style></head><body>"
        f"<h1>Predictions of {model}</h1><p>Checkpoint version {version}: {len(ok)} images predicted{more}, "
        f"{len(failed)} failed. Sorted by confidence.</p>"
        f"<div class='grid'>{''.join(cards)}</div>"
        + (f"<h2>Files that could not be predicted</h2><table>{errors}</table>" if errors else "")
        + "</body></html>"
    )

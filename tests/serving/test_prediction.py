"""New images to predictions: RGB the standard way, 32x32 by crop or pad, top-3 rows, a gallery."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
import tracemalloc

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image

from image_recognition.common.errors import ParameterError
from image_recognition.datasets.images import ImageError, image_loaders
from image_recognition.serving import prediction
from image_recognition.serving.prediction import (
    CIFAR10_CLASS_NAMES,
    IMAGE_SIZE,
    PREDICTION_COLUMNS,
    PredictConfig,
    checkpoint_image_size,
    gallery_html,
    model_input,
    predict_images,
    to_rgb,
)
from tests.helpers import ODD_IMAGES, PROJECT_ROOT, class_image, fake_checkpoint, image_file


def test_sixteen_bit_grey_is_scaled_not_clipped_to_white():
    image = Image.open(io.BytesIO(ODD_IMAGES["grey16.png"]))
    assert image.mode.startswith("I")
    pixels = np.asarray(to_rgb(image))
    assert pixels.shape == (32, 32, 3) and 0 < pixels.mean() < 200  # clipping would make most of it 255


def test_transparency_is_composited_on_white():
    image = Image.new("RGBA", (4, 4), (10, 20, 30, 0))
    assert to_rgb(image).getpixel((0, 0)) == (255, 255, 255)
    palette = Image.open(io.BytesIO(ODD_IMAGES["palette_transparent.png"]))
    assert palette.mode == "P" and "transparency" in palette.info
    assert to_rgb(palette).mode == "RGB"
    assert to_rgb(Image.new("LA", (2, 2), (0, 255))).getpixel((0, 0)) == (0, 0, 0)


def test_cmyk_converts_to_rgb():
    assert to_rgb(Image.new("CMYK", (2, 2), (0, 255, 255, 0))).getpixel((0, 0)) == (255, 0, 0)


def test_exif_orientation_is_applied():
    wide = Image.new("RGB", (40, 20), "red")
    exif = wide.getexif()
    exif[0x0112] = 6  # rotate 90 degrees to display
    buffer = io.BytesIO()
    wide.save(buffer, format="JPEG", exif=exif)
    assert to_rgb(Image.open(buffer)).size == (20, 40)


@pytest.mark.parametrize("size", [(1, 1), (10_000, 10), (10, 10_000), (32, 32), (640, 480)])
@pytest.mark.parametrize("resize", ["crop", "pad"])
def test_any_size_becomes_the_models_input(size, resize):
    pixels = model_input(Image.new("RGB", size, (200, 100, 50)), resize)
    assert pixels.shape == (3, 32, 32) and pixels.dtype == torch.uint8


def test_crop_fills_the_frame_and_pad_keeps_the_whole_image():
    wide = Image.new("RGB", (64, 32), (200, 100, 50))
    assert (model_input(wide, "crop")[0] == 200).all()
    padded = model_input(wide, "pad")
    assert (padded[:, :8] == 0).all() and (padded[:, -8:] == 0).all()  # black above and below
    assert (padded[0, 8:24] == 200).all()


@pytest.fixture
def bounded_resizes(monkeypatch):
    """Every resize (Pillow's or torchvision's) asks for at most 32 x 32 pixels, else fails before allocating."""
    requested = []

    def check(pixels: int) -> None:
        requested.append(pixels)
        assert pixels <= IMAGE_SIZE * IMAGE_SIZE, f"a resize asked for {pixels:,} pixels"

    pillow_resize, torchvision_resize = Image.Image.resize, TF.resize

    def pillow(self, size, *args, **kwargs):
        check(size[0] * size[1])
        return pillow_resize(self, size, *args, **kwargs)

    def torchvision(image, size, *args, **kwargs):
        check(size[0] * size[1])
        return torchvision_resize(image, size, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "resize", pillow)
    monkeypatch.setattr(TF, "resize", torchvision)
    return requested


@pytest.mark.parametrize("size", [(1_000_000, 1), (1, 1_000_000), (4_000_000, 1)])
def test_a_thin_png_is_cropped_without_building_the_scaled_image(tmp_path, bounded_resizes, size):
    """A 3 KB PNG of 1,000,000 x 1 pixels once became 32,000,000 x 32 pixels (5.4 GiB) before the crop."""
    halves = Image.new("RGB", size, (255, 0, 0))  # red, then blue from the middle on
    halves.paste((0, 0, 255), (size[0] // 2, size[1] // 2, *size) if size[0] > 1 else (0, size[1] // 2, *size))
    path = tmp_path / "thin.png"
    path.write_bytes(image_file(halves, "PNG"))
    pixels = model_input(to_rgb(image_loaders([path])[str(path)]()), "crop")
    assert bounded_resizes and pixels.shape == (3, 32, 32) and pixels.dtype == torch.uint8
    first, last = (pixels[:, :, 0], pixels[:, :, -1]) if size[0] > 1 else (pixels[:, 0], pixels[:, -1])
    # The crop's centre is the image's centre: the one source pixel either side, red and blue, blended.
    assert (first[0] > 200).all() and (first[2] < 55).all()
    assert (last[0] < 55).all() and (last[2] > 200).all()


def scaled_then_cropped(image: Image.Image, resize: str) -> torch.Tensor:
    """What model_input gave before: the whole image scaled by torchvision, then centre-cropped or padded."""
    pixels = TF.pil_to_tensor(image)
    height, width = pixels.shape[-2:]
    scale = IMAGE_SIZE / (min(height, width) if resize == "crop" else max(height, width))
    scaled = TF.resize(pixels, [max(1, round(height * scale)), max(1, round(width * scale))], antialias=True)
    return TF.center_crop(scaled, [IMAGE_SIZE, IMAGE_SIZE])


@pytest.mark.parametrize("size", [(64, 48), (640, 480), (33, 1000), (5000, 3), (31, 17), (1001, 999), (7, 5)])
@pytest.mark.parametrize("resize", ["crop", "pad"])
def test_model_input_is_the_whole_image_scaled_then_cropped_or_padded(size, resize):
    image = Image.fromarray(np.random.default_rng(sum(size)).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    difference = (model_input(image, resize).int() - scaled_then_cropped(image, resize).int()).abs()
    assert difference.max() <= 1  # one level of 255 at most: Pillow's and torchvision's rounding


def test_sixteen_bit_images_are_scaled_without_float64_copies_of_the_image():
    """As one float64 array a 40-megapixel 16-bit image took about 1 GB; numpy's allocations are traced."""
    values = np.random.default_rng(0).integers(0, 65536, (1500, 2000), dtype=np.uint16)
    image = Image.fromarray(values)
    tracemalloc.start()
    try:
        grey = np.asarray(to_rgb(image))[..., 0]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * values.size  # less than one float64 array of the image
    assert (grey == np.clip(np.rint(values / 257.0), 0, 255)).all()


@pytest.mark.slow
def test_predicting_a_thin_png_keeps_its_peak_memory_bounded(tmp_path):
    """Peak RSS of a process that predicts a generated 1,000,000 x 1 PNG, above its own after a small image."""
    thin = tmp_path / "thin.png"
    thin.write_bytes(image_file(Image.new("RGB", (1_000_000, 1), (200, 100, 50)), "PNG"))
    small = tmp_path / "small.png"
    small.write_bytes(image_file(class_image(1), "PNG"))
    code = textwrap.dedent(
        f"""
        import resource
        from pathlib import Path
        from image_recognition.datasets.images import image_loaders
        from image_recognition.serving.prediction import PredictConfig, predict_images
        from tests.helpers import fake_checkpoint

        checkpoint, config = fake_checkpoint("simple_cnn"), PredictConfig(model="simple_cnn")
        predict_images(image_loaders([Path({str(small)!r})]), checkpoint, config)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        table = predict_images(image_loaders([Path({str(thin)!r})]), checkpoint, config).table
        assert table["error"].isna().all()
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, check=False, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert int(result.stdout.split()[-1]) < 256 * 2**20  # the old way took 5.4 GiB


def loaders_for(images: dict[str, Image.Image | Exception]):
    def load(value):
        def call():
            if isinstance(value, Exception):
                raise value
            return value

        return call

    return {name: load(value) for name, value in images.items()}


def test_predictions_have_a_row_per_file_with_the_top_three():
    checkpoint = fake_checkpoint("simple_cnn")
    images = {f"img{i}.png": class_image(i % 10, (48, 40), seed=i) for i in range(12)}
    predictions = predict_images(loaders_for(images), checkpoint, PredictConfig(model="simple_cnn"), "2026-v")
    table = predictions.table
    assert list(table.columns) == PREDICTION_COLUMNS
    assert list(table["file"]) == sorted(images)
    assert set(table["class"]) <= set(CIFAR10_CLASS_NAMES)  # this checkpoint predates its own class names
    assert (table["probability"] >= table["probability_2"]).all()
    assert (table["probability_2"] >= table["probability_3"]).all()
    assert (table[["probability", "probability_2", "probability_3"]].sum(axis=1) <= 1 + 1e-6).all()
    assert (table["model"] == "simple_cnn").all() and (table["checkpoint_version"] == "2026-v").all()
    assert table["error"].isna().all() and set(predictions.thumbnails) == set(images)


def test_class_names_come_from_the_checkpoint():
    checkpoint = fake_checkpoint("simple_cnn")
    checkpoint["data"]["class_names"] = [f"pattern_{i}" for i in range(10)]
    table = predict_images(loaders_for({"a.png": class_image(1)}), checkpoint, PredictConfig(model="simple_cnn")).table
    assert table["class"][0].startswith("pattern_")


def test_images_are_resized_to_the_checkpoints_image_size(monkeypatch):
    seen = []

    def probabilities(images, checkpoint, config):
        seen.append(tuple(images.shape))
        return torch.full((len(images), 3), 1 / 3)

    monkeypatch.setattr(prediction, "_probabilities", probabilities)
    checkpoint = {**fake_checkpoint("simple_cnn"), "image_size": 48, "class_names": ["cat", "dog", "fox"]}
    table = predict_images(
        loaders_for({"a.png": class_image(1, (90, 60))}), checkpoint, PredictConfig("simple_cnn")
    ).table
    assert seen == [(1, 3, 48, 48)] and table["class"][0] in {"cat", "dog", "fox"}


def test_the_checkpoints_image_size_defaults_to_32():
    assert checkpoint_image_size(fake_checkpoint("simple_cnn")) == IMAGE_SIZE == 32
    assert checkpoint_image_size({"image_size": 64}) == 64


def test_a_bad_file_stops_prediction_unless_keep_going():
    checkpoint = fake_checkpoint("simple_cnn")
    images = {
        "a.png": class_image(1),
        "b.png": ImageError("b.png: the file is empty (0 bytes)"),
        "c.png": class_image(2),
    }
    with pytest.raises(ImageError, match="b.png: the file is empty"):
        predict_images(loaders_for(images), checkpoint, PredictConfig(model="simple_cnn"))
    table = predict_images(loaders_for(images), checkpoint, PredictConfig(model="simple_cnn", keep_going=True)).table
    assert table.set_index("file")["error"].notna().to_dict() == {"a.png": False, "b.png": True, "c.png": False}
    assert table.set_index("file")["class"].isna()["b.png"]


def test_gallery_is_self_contained_sorted_and_escapes_file_names():
    checkpoint = fake_checkpoint("simple_cnn")
    images = {f"<script>alert({i})</script>.png": class_image(i, seed=i) for i in range(5)}
    images["broken.png"] = ImageError("broken.png: not an image Pillow can read")
    config = PredictConfig(model="simple_cnn", keep_going=True, gallery_size=3)
    predictions = predict_images(loaders_for(images), checkpoint, config)
    page = gallery_html(predictions, config)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert page.count("data:image/png;base64,") == 3 and "the 3 most confident of 5" in page
    assert "broken.png: not an image" in page and "http" not in page
    shown = predictions.table.dropna(subset=["class"]).sort_values("probability", ascending=False)
    first, second = (page.index(f"{p:.1%}") for p in shown["probability"].head(2))
    assert first <= second


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"model": "resnet"}, "predict.model must be one of simple_cnn, cnn, vit, got 'resnet'"),
        ({"resize": "stretch"}, "predict.resize must be one of crop, pad"),
        ({"batchsize": 8}, "unknown parameter.*predict.batchsize"),
        ({"tta": "all"}, "predict.tta must be null"),
        ({"batch_size": 0}, "predict.batch_size must be a positive integer"),
    ],
)
def test_bad_parameters_are_refused(params, message):
    with pytest.raises(ParameterError, match=message):
        PredictConfig.from_dict(params)


@pytest.mark.slow
def test_kedro_commands_do_not_import_torchvision():
    """Only resizing an image needs torchvision (and the torch._dynamo it imports): seconds per command."""
    code = (
        "import sys, image_recognition.settings, image_recognition.cli\n"
        "from image_recognition.pipeline_registry import register_pipelines\n"
        "register_pipelines()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torchvision'))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"

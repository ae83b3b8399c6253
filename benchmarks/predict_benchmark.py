"""Images/s of predicting PNG files on the CPU: the ``predict`` pipeline's node against ONNX Runtime.

Writes ``--count`` PNG files (demo-class images, 64x48 pixels) to a temporary
folder, then times, each end to end from the files on disk:

- ``predict_pipeline``: the ``predict`` pipeline's node (``predict_folder``)
  on ``ImageFolderDataset``'s loaders: checked decoding, RGB, resizing,
  PyTorch inference, the table and the HTML gallery with its thumbnails;
- ``predict_pipeline_no_gallery``: the same without thumbnails and gallery;
- ``onnxruntime``: the same decoding and resizing, then the exported ONNX
  graph in ONNX Runtime on the CPU.

Each also reports its inference alone (model images/s on the decoded batch):
PyTorch in the recipe's precision on this CPU (bf16 autocast where the CPU
computes bf16 natively, as the pipeline runs it) and in fp32, ONNX Runtime in
fp32.
The model is the recipe's (``--recipe``, default the CPU profile's ``cnn``),
freshly initialised: speed does not depend on the weights. TTA is off in all
three, since the ONNX graph holds one view.

    PYTHONPATH=src python benchmarks/predict_benchmark.py --count 10000
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from common import logger, machine_info, setup_logging, write_json  # noqa: E402
from PIL import Image  # noqa: E402

from image_recognition.datasets.images import ImageFolderDataset  # noqa: E402
from image_recognition.evaluation.cost import inference_recipe  # noqa: E402
from image_recognition.models import build_model  # noqa: E402
from image_recognition.models.inference import load_model, predict_logits  # noqa: E402
from image_recognition.pipelines.predict.nodes import predict_folder  # noqa: E402
from image_recognition.serving.export import ExportConfig, onnx_bytes  # noqa: E402
from image_recognition.serving.prediction import PredictConfig, model_input, predict_images, to_rgb  # noqa: E402
from image_recognition.sources.cifar10.synthetic import make_images  # noqa: E402
from image_recognition.training.recipes import RECIPE_MODELS, recipe  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10_000, help="PNG files to predict")
    parser.add_argument("--recipe", default="cnn_cpu", choices=sorted(RECIPE_MODELS))
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/predict_cpu.json"))
    return parser.parse_args(argv)


def write_pngs(folder: Path, count: int) -> None:
    rng = np.random.default_rng(0)
    labels = np.arange(count) % 10
    for start in range(0, count, 1000):
        images = make_images(labels[start : start + 1000], rng)
        for offset, pixels in enumerate(images):
            image = Image.fromarray(pixels.transpose(1, 2, 0)).resize((64, 48), Image.Resampling.BILINEAR)
            image.save(folder / f"{start + offset:05d}.png")


def checkpoint_for(recipe_name: str) -> dict[str, Any]:
    settings = recipe(recipe_name)
    model_name = RECIPE_MODELS[recipe_name]
    torch.manual_seed(0)
    model = build_model(model_name, settings["model"])
    return {
        "model_name": model_name,
        "model_config": settings["model"],
        "training_config": {**settings["training"], "tta": "none"},
        "model_state": model.state_dict(),
        "ema_state": None,
        "normalization": {"mean": [0.49, 0.48, 0.45], "std": [0.25, 0.24, 0.26]},
        "data": {},
    }


def timed(run) -> tuple[Any, float]:
    start = time.perf_counter()
    value = run()
    return value, time.perf_counter() - start


def decoded_batch(folder: Path) -> np.ndarray:
    loaders = ImageFolderDataset(path=str(folder)).load()
    return torch.stack([model_input(to_rgb(load())) for load in loaders.values()]).numpy()


def time_pipeline(folder: Path, checkpoint: dict[str, Any], config: PredictConfig, count: int) -> dict[str, Any]:
    """Rows of the predict pipeline's node, with and without its thumbnails and gallery."""
    rows = {}

    def node():  # the pipeline's node: predictions, thumbnails and the gallery
        return predict_folder(ImageFolderDataset(path=str(folder)).load(), checkpoint, dataclasses.asdict(config))

    def without_gallery():
        return predict_images(ImageFolderDataset(path=str(folder)).load(), checkpoint, config, thumbnails=False)

    for name, run in (("predict_pipeline", node), ("predict_pipeline_no_gallery", without_gallery)):
        _, seconds = timed(run)
        rows[name] = {"seconds": seconds, "images_per_s": count / seconds}
        logger.info("%s: %.0f images/s", name, count / seconds)
    return rows


def time_pytorch(checkpoint: dict[str, Any], pixels: np.ndarray, settings: Any, batch_size: int) -> dict[str, float]:
    """Seconds of inference alone: the pipeline's precision and memory format, and plain fp32 as ONNX Runtime runs."""
    normalization = checkpoint["normalization"]
    torch_seconds = {}
    for name, dtype, channels_last in (
        ("inference_only_pytorch", settings.autocast_dtype, settings.channels_last),
        ("inference_only_pytorch_fp32", None, False),
    ):
        model = load_model(checkpoint, "cpu", channels_last=channels_last)
        _, torch_seconds[name] = timed(
            lambda model=model, dtype=dtype, channels_last=channels_last: predict_logits(
                model,
                pixels,
                normalization["mean"],
                normalization["std"],
                batch_size=batch_size,
                tta="none",
                device="cpu",
                autocast_dtype=dtype,
                channels_last=channels_last,
            )
        )
    return torch_seconds


def onnxruntime_logits(checkpoint: dict[str, Any], batch_size: int) -> tuple[Any, str]:
    """(a function from uint8 images to logits through the exported model in ONNX Runtime on the CPU, its version)."""
    import onnxruntime  # noqa: PLC0415 (the export extra)

    session = onnxruntime.InferenceSession(
        onnx_bytes(checkpoint, ExportConfig(model=checkpoint["model_name"])), providers=["CPUExecutionProvider"]
    )

    def ort_logits(batch: np.ndarray) -> np.ndarray:
        return np.concatenate(
            [
                session.run(None, {"images": batch[i : i + batch_size].astype(np.float32) / 255.0})[0]
                for i in range(0, len(batch), batch_size)
            ]
        )

    return ort_logits, onnxruntime.__version__


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    setup_logging()
    checkpoint = checkpoint_for(args.recipe)
    config = PredictConfig(model=checkpoint["model_name"], batch_size=args.batch_size, tta="none", device="cpu")
    with tempfile.TemporaryDirectory(prefix="predict-benchmark-") as tmp:
        folder = Path(tmp)
        logger.info("writing %d PNG files to %s", args.count, folder)
        write_pngs(folder, args.count)
        rows = time_pipeline(folder, checkpoint, config, args.count)
        pixels, decode_seconds = timed(lambda: decoded_batch(folder))
        settings = inference_recipe(checkpoint["training_config"], checkpoint["model_name"], torch.device("cpu"))
        torch_seconds = time_pytorch(checkpoint, pixels, settings, args.batch_size)
        ort_logits, ort_version = onnxruntime_logits(checkpoint, args.batch_size)
        _, ort_seconds = timed(lambda: ort_logits(pixels))
        _, ort_total = timed(lambda: ort_logits(decoded_batch(folder)))
    rows["onnxruntime"] = {"seconds": ort_total, "images_per_s": args.count / ort_total}
    rows["decode_and_resize_only"] = {"seconds": decode_seconds, "images_per_s": args.count / decode_seconds}
    for name, seconds in torch_seconds.items():
        rows[name] = {"seconds": seconds, "images_per_s": args.count / seconds}
    rows["inference_only_onnxruntime"] = {"seconds": ort_seconds, "images_per_s": args.count / ort_seconds}
    for name in ("onnxruntime", "decode_and_resize_only", *torch_seconds, "inference_only_onnxruntime"):
        logger.info("%s: %.0f images/s", name, rows[name]["images_per_s"])
    report = {
        "benchmark": "predict",
        "files": args.count,
        "file_format": "PNG, 64x48 RGB",
        "recipe": args.recipe,
        "model": checkpoint["model_name"],
        "model_config": checkpoint["model_config"],
        "batch_size": args.batch_size,
        "tta": "none",
        "pytorch_precision": settings.precision,
        "pytorch_memory_format": settings.memory_format,
        "onnxruntime_precision": "fp32",
        "onnxruntime": ort_version,
        "machine": machine_info(),
        "results": rows,
    }
    write_json(report, args.out)
    return report


if __name__ == "__main__":
    main()

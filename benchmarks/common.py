"""Shared helpers of the benchmark scripts: machine facts, evaluation, JSON output.

Benchmarks need only torch, torchvision and numpy plus this package on
PYTHONPATH (``PYTHONPATH=src``): no Kedro.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from image_recognition.training import TrainResult, predict_logits
from image_recognition.training.device import autocast_dtype

logger = logging.getLogger("benchmarks")


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def machine_info() -> dict[str, Any]:
    """CPU, GPU and library facts that make a timing interpretable."""
    cpu = platform.processor()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "cuda_available": torch.cuda.is_available(),
        # Other load on the machine slows CPU timings; record it with them.
        "load_average_1_5_15": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
        info["cuda"] = torch.version.cuda
    return info


def test_accuracy(
    result: TrainResult,
    images: np.ndarray,
    labels: np.ndarray,
    mean: list[float],
    std: list[float],
    training: dict[str, Any],
) -> tuple[float, float]:
    """(accuracy, seconds) of the trained model on a held-out split, with the recipe's TTA."""
    first = next(result.model.parameters())
    device = first.device
    # Feed a channels_last model channels_last batches, as in training.
    channels_last = first.ndim == 4 and first.is_contiguous(memory_format=torch.channels_last)  # noqa: PLR2004
    start = time.perf_counter()
    logits = predict_logits(
        result.model,
        images,
        mean,
        std,
        batch_size=training.get("eval_batch_size", 1024),
        tta=training.get("tta", "none"),
        device=device,
        autocast_dtype=autocast_dtype(training.get("autocast", "auto"), device),
        channels_last=channels_last,
    )
    seconds = time.perf_counter() - start
    return float((logits.argmax(1).numpy() == labels).mean()), seconds


def training_seconds(result: TrainResult) -> float:
    """Setup (data upload, whitening) plus the synchronised training time of every epoch."""
    return result.setup_time_s + sum(row["epoch_time_s"] for row in result.history)


def write_json(data: dict[str, Any], path: str | Path) -> None:
    """Write ``data`` as indented JSON, atomically enough for a results file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps(data, indent=2, default=float) + "\n")
    temporary.replace(path)
    logger.info("wrote %s", path)

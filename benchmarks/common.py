"""Shared helpers of the benchmark scripts: machine facts, evaluation, JSON output.

Benchmarks need only torch, torchvision and numpy plus this package on
PYTHONPATH (``PYTHONPATH=src``): no Kedro.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from image_recognition.common.atomic import atomic_write
from image_recognition.common.device import autocast_dtype
from image_recognition.models import build_model
from image_recognition.training import TrainResult, predict_logits
from image_recognition.training.recipes import recipe

logger = logging.getLogger("benchmarks")
REPO_ROOT = Path(__file__).resolve().parents[1]

# Dense bf16 peak of the GPU a recipe is sized for (H100 SXM; an H200 has the same).
REFERENCE_PEAK_TFLOPS = 989.0
# airbench94's published run: 0.36 PFLOPs in 3.83 s on an A100 (312 TFLOP/s
# dense bf16/fp16 peak), about 94 TFLOP/s or 30% of peak. It is the same
# network as the cnn recipe, and the best utilisation known for it.
AIRBENCH94_PFLOPS, AIRBENCH94_A100_SECONDS, A100_PEAK_TFLOPS = 0.36, 3.83, 312.0
AIRBENCH94_TFLOPS = AIRBENCH94_PFLOPS * 1e3 / AIRBENCH94_A100_SECONDS
AIRBENCH94_FRACTION = AIRBENCH94_TFLOPS / A100_PEAK_TFLOPS
# The share of the peak each recipe can be expected to sustain, (low, high).
# The cnn: at least airbench94's A100 rate (an H100 is not slower; 9.5% of its
# peak), at most the same 30% share of the H100's peak (so small a net keeps a
# smaller share of a higher peak busy). A small ViT (384 wide, 6 blocks, 64
# tokens) at batch 512: 15 to 20%.
SUSTAINED_FRACTIONS: dict[str, tuple[float, float]] = {
    "cnn": (AIRBENCH94_TFLOPS / REFERENCE_PEAK_TFLOPS, AIRBENCH94_FRACTION),
    "vit": (0.15, 0.20),
}
# The GPU recipes as users run them: record mode, on all of CIFAR-10's training images.
CIFAR10_TRAIN_IMAGES = 50_000


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


class StepLimitReached(Exception):  # noqa: N818 (a signal, not an error)
    """Raised as the step after a :class:`StepClock`'s last would begin: ends a step-limited run."""


class StepClock:
    """Counts training steps, times those after a warm-up and stops the run after ``max_steps``.

    The training loop calls :meth:`begin_step` as each step begins. The clock
    starts as step ``warmup_steps + 1`` begins and stops as step
    ``max_steps + 1`` would begin, raising :class:`StepLimitReached`: so it
    times ``max_steps - warmup_steps`` whole steps, each with the making of
    its batch and what an epoch boundary adds (drawing the next epoch's order
    and augmentation), but not what runs inside :meth:`excluded` (evaluation
    passes between epochs). On the CPU no device queue runs behind the
    clock; a CUDA caller would synchronise first.
    """

    def __init__(self, max_steps: int, warmup_steps: int) -> None:
        if not 0 <= warmup_steps < max_steps:
            raise ValueError(f"need 0 <= warm-up steps < max steps, got {warmup_steps} and {max_steps}")
        self.max_steps, self.warmup_steps = max_steps, warmup_steps
        self.steps = 0  # steps begun
        self.timed_images = 0
        self.excluded_s = 0.0
        self._started: float | None = None
        self.timed_s: float | None = None  # set when the last step has ended

    def begin_step(self, images: int) -> None:
        """Step ``steps + 1`` begins, on ``images`` images; raises StepLimitReached after the last."""
        now = time.perf_counter()
        if self.steps == self.warmup_steps:
            self._started = now
        if self.steps == self.max_steps:
            self.timed_s = now - self._started - self.excluded_s
            raise StepLimitReached(f"stopped after {self.max_steps} steps")
        if self.steps >= self.warmup_steps:
            self.timed_images += images
        self.steps += 1

    @contextlib.contextmanager
    def excluded(self) -> Iterator[None]:
        """Time spent in this block, inside the timed steps, is not counted."""
        start = time.perf_counter()
        try:
            yield
        finally:
            if self._started is not None and self.timed_s is None:
                self.excluded_s += time.perf_counter() - start

    def summary(self) -> dict[str, Any]:
        """Steps, images and seconds timed, and images/s (None when the run ended before the last step)."""
        return {
            "steps_run": self.steps,
            "warmup_steps": self.warmup_steps,
            "timed_steps": self.max_steps - self.warmup_steps if self.timed_s is not None else None,
            "timed_images": self.timed_images,
            "timed_s": self.timed_s,
            "excluded_s": self.excluded_s,
            "images_per_s": self.timed_images / self.timed_s if self.timed_s else None,
        }


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
    """The run's training time as the engine defines it (``train_time_s``: setup plus every epoch's steps)."""
    return float(result.history[-1]["train_time_s"])


def write_json(data: dict[str, Any], path: str | Path) -> None:
    """Write ``data`` as indented JSON, whole or not at all, with the conditions every result carries.

    The command that ran, the commit and the date are added where the
    benchmark did not set them: ``render_results.py`` puts them in every row.
    """
    conditions = {
        "benchmark_command": shlex.join(["python", _script_path(), *sys.argv[1:]]),
        "commit": _git("rev-parse", "HEAD"),
        # Uncommitted changes to the code measured (the package and the benchmarks), not to docs or results.
        "dirty": None
        if (status := _git("status", "--porcelain", "--", "src", "benchmarks/*.py")) is None
        else bool(status),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    with atomic_write(path) as file:
        file.write((json.dumps({**conditions, **data}, indent=2, default=float) + "\n").encode())
    logger.info("wrote %s", path)


def _script_path() -> str:
    script = Path(sys.argv[0]).resolve()
    with contextlib.suppress(ValueError):
        return str(script.relative_to(REPO_ROOT))
    return str(script)


def _git(*args: str) -> str | None:
    """Output of a git command in the repository, or None without git."""
    try:
        done = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def training_flops_per_image(model_name: str, model_config: dict[str, Any]) -> float:
    """FLOPs of one training step (forward and backward) per image, by torch's flop counter.

    Counted on the CPU in fp32 with attention on the math kernel (the counter
    has no rule for some fused ones); precision does not change the count.
    """
    torch.manual_seed(0)
    model = build_model(model_name, model_config).train()
    images = torch.randn(2, 3, 32, 32)
    labels = torch.zeros(2, dtype=torch.long)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(images), labels).backward()
    return counter.get_total_flops() / len(images)


def compute_estimate(model_name: str, settings: dict[str, Any], train_images: int) -> dict[str, Any]:
    """The recipe's training compute and its estimated time on the reference GPU.

    Steps drop the ragged last batch, as the engine does; compile time is not
    part of the estimate.
    """
    training = settings["training"]
    per_image = training_flops_per_image(model_name, settings["model"])
    images = (train_images // training["batch_size"]) * training["batch_size"] * training["epochs"]
    total = per_image * images
    low, high = SUSTAINED_FRACTIONS[model_name]
    peak = REFERENCE_PEAK_TFLOPS * 1e12
    return {
        "training_gflops_per_image": per_image / 1e9,
        "images_seen": images,
        "total_pflops": total / 1e15,
        "reference_peak_tflops": REFERENCE_PEAK_TFLOPS,
        "sustained_fraction": {"low": low, "high": high},
        # The shortest time at the highest utilisation, the longest at the lowest.
        "estimated_time_s": {"low": total / (high * peak), "high": total / (low * peak)},
    }


def gpu_recipe_estimates(vit_epochs: int | None = None) -> dict[str, Any]:
    """Training compute and estimated GPU time of both GPU recipes, in record mode (no GPU needed)."""
    vit = recipe("vit")
    if vit_epochs:
        vit["training"]["epochs"] = vit_epochs
    found = {
        "cnn": compute_estimate("cnn", recipe("cnn"), CIFAR10_TRAIN_IMAGES),
        "vit": compute_estimate("vit", vit, CIFAR10_TRAIN_IMAGES),
    }
    for name, estimate in found.items():
        logger.info(
            "%s: %.3f GFLOPs per training image, %.2f PFLOPs in all, estimated %.1f-%.1f s at %.0f-%.0f%% of %.0f TFLOP/s",
            name,
            estimate["training_gflops_per_image"],
            estimate["total_pflops"],
            estimate["estimated_time_s"]["low"],
            estimate["estimated_time_s"]["high"],
            100 * estimate["sustained_fraction"]["low"],
            100 * estimate["sustained_fraction"]["high"],
            estimate["reference_peak_tflops"],
        )
    return found

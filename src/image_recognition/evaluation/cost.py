"""What a model costs: parameters, FLOPs, throughput, latency, peak memory and training time.

Every speed is measured the way the model is used: in its training recipe's
precision and memory format, at the image size it was built for, and, for
predictions, with the test-time augmentation views its accuracy counts.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from image_recognition.common.device import (
    AUTO,
    autocast,
    autocast_dtype,
    configure_backends,
    synchronize,
    use_channels_last,
)
from image_recognition.models import CONVNET_NAMES, count_parameters
from image_recognition.models.inference import TTA_VIEWS, tta_logits
from image_recognition.models.sizes import model_image_size


@dataclass(frozen=True)
class InferenceRecipe:
    """The precision and memory format a checkpoint was trained in, resolved for one device."""

    autocast_dtype: torch.dtype | None  # None: full precision (fp32)
    channels_last: bool
    tf32: bool = True  # TF32 matmuls and convolutions on CUDA, as in training (the training default)

    @property
    def precision(self) -> str:
        """In the training config's words: ``"bf16"`` autocast, or ``"fp32"``."""
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.autocast_dtype]

    @property
    def memory_format(self) -> str:
        return "channels_last" if self.channels_last else "contiguous"


def inference_recipe(training_config: dict[str, Any] | None, model_name: str, device: torch.device) -> InferenceRecipe:
    """The recipe's ``autocast``, ``channels_last`` and ``tf32`` on ``device``.

    A checkpoint without these keys was trained with their default, ``AUTO``
    (the fast setting for the device) and TF32 on, which is how it is resolved here.
    """
    config = training_config or {}
    return InferenceRecipe(
        autocast_dtype=autocast_dtype(config.get("autocast", AUTO), device),
        channels_last=use_channels_last(config.get("channels_last", AUTO), device, model_name in CONVNET_NAMES),
        tf32=bool(config.get("tf32", True)),
    )


def count_flops(model: nn.Module, image_shape: tuple[int, ...] | None = None) -> int:
    """FLOPs of one forward pass on one image, by torch's flop counter (a multiply-add is 2).

    ``image_shape`` defaults to (3, S, S) at the size S the model was built for.

    Attention runs on the math backend while counting: the counter has no rule
    for some fused kernels (the CPU's among them), which would drop attention
    from the count and make it depend on the device.
    """
    device = next(model.parameters()).device
    image_shape = image_shape or _image_shape(model)
    sample = torch.zeros((1, *image_shape), device=device)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model.eval()(sample)
    return int(counter.get_total_flops())


def _image_shape(model: nn.Module) -> tuple[int, int, int]:
    """(3, S, S): one input image of the size ``model`` was built for."""
    size = model_image_size(model)
    return (3, size, size)


def _seconds(device: torch.device, run: Callable[[], Any], repeats: int) -> float:
    """Seconds for ``repeats`` calls of ``run``: CUDA events on CUDA, else the clock after synchronising."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(repeats):
            run()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1000
    synchronize(device)
    started = time.perf_counter()
    for _ in range(repeats):
        run()
    synchronize(device)
    return time.perf_counter() - started


@torch.no_grad()
def measure_throughput(  # noqa: PLR0913 (each knob of the measurement is named)
    model: nn.Module,
    batch_size: int,
    device: torch.device,
    batches: int = 50,
    warmup: int = 5,
    tta: str = "none",
    recipe: InferenceRecipe | None = None,
) -> float:
    """Predictions per second at ``batch_size`` over ``batches`` timed batches, after ``warmup`` ones.

    A prediction averages the ``tta`` views, so with ``tta="none"`` this is
    images per second of single forward passes. The backend settings (TF32,
    cuDNN autotuning) are training's, as in every prediction.
    """
    recipe = recipe or InferenceRecipe(autocast_dtype=None, channels_last=False)
    memory_format = torch.channels_last if recipe.channels_last else torch.contiguous_format
    model.eval()
    batch = torch.randn(batch_size, *_image_shape(model), device=device).contiguous(memory_format=memory_format)
    with configure_backends(device, recipe.tf32), autocast(device, recipe.autocast_dtype):
        for _ in range(warmup):
            tta_logits(model, batch, tta)
        seconds = _seconds(device, lambda: tta_logits(model, batch, tta), batches)
    return batches * batch_size / seconds


@torch.no_grad()
def measure_latency_ms(
    model: nn.Module,
    device: torch.device,
    repeats: int = 20,
    warmup: int = 3,
    recipe: InferenceRecipe | None = None,
) -> float:
    """Median milliseconds of one single-image forward pass (one view)."""
    recipe = recipe or InferenceRecipe(autocast_dtype=None, channels_last=False)
    memory_format = torch.channels_last if recipe.channels_last else torch.contiguous_format
    model.eval()
    image = torch.randn(1, *_image_shape(model), device=device).contiguous(memory_format=memory_format)
    with configure_backends(device, recipe.tf32), autocast(device, recipe.autocast_dtype):
        for _ in range(warmup):
            model(image)
        timings = [_seconds(device, lambda: model(image), 1) * 1000 for _ in range(repeats)]
    return statistics.median(timings)


def measure_cost(  # noqa: PLR0913 (the evaluation settings, named)
    model: nn.Module,
    *,
    tta: str,
    recipe: InferenceRecipe,
    device: torch.device,
    batch_size: int,
    batches: int,
    latency_repeats: int,
    history: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """What the model costs, as the ``cost`` of its metrics record.

    FLOPs and speed of one view and of one ``tta`` prediction, in the recipe's
    precision and layout; the parameter count; the training (setup plus steps) and
    the compile time of the last epoch in ``history`` (None without one); and
    the device's peak memory since the caller's :func:`reset_peak_memory`.
    """
    views = TTA_VIEWS[tta]
    flops = count_flops(model)
    images_per_s = measure_throughput(model, batch_size, device, batches, recipe=recipe)
    predictions_per_s = (
        images_per_s if views == 1 else measure_throughput(model, batch_size, device, batches, tta=tta, recipe=recipe)
    )
    return {
        "parameters": count_parameters(model),
        "tta_views": views,
        "flops_per_image": flops,  # one view
        "flops_per_prediction": flops * views,  # every TTA view of one test image
        "throughput_images_per_s": images_per_s,  # one view
        "throughput_predictions_per_s": predictions_per_s,  # with every TTA view
        "throughput_batches": batches,
        "latency_ms": measure_latency_ms(model, device, latency_repeats, recipe=recipe),  # one view
        "precision": recipe.precision,
        "memory_format": recipe.memory_format,
        **training_times(history),
        "peak_memory_mib": peak_memory_mib(device),
        "device": str(device),
        "device_name": device_name(device),
    }


def training_times(history: list[dict[str, Any]] | None) -> dict[str, float | bool | None]:
    """Seconds of training (the engine's ``train_time_s``: setup plus steps) and of compiling, and whether the steps ran compiled.

    All from the last epoch of a training history. ``compiled`` is False where
    compiling failed and the run fell back to eager steps. A history from
    before compile times were recorded counts 0 s of compiling; one from
    before the fallback existed says nothing (None) about compiling.
    """
    if not history:
        return {"training_time_s": None, "compile_time_s": None, "compiled": None}
    last = history[-1]
    return {
        "training_time_s": float(last["train_time_s"]),
        "compile_time_s": float(last.get("compile_time_s") or 0.0),
        "compiled": last.get("compiled"),
    }


def device_name(device: torch.device) -> str:
    """The GPU's name on CUDA, else the processor's (``"cpu"`` where the platform does not say)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or "cpu"


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mib(device: torch.device) -> float | None:
    """Peak memory allocated on the device since the last reset; None where not reported (CPU)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    if device.type == "mps":
        return torch.mps.driver_allocated_memory() / 2**20
    return None

"""What a model costs: parameters, FLOPs, throughput, latency and peak memory."""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from image_recognition.training.device import synchronize


def count_flops(model: nn.Module, image_shape: tuple[int, ...] = (3, 32, 32)) -> int:
    """FLOPs of one forward pass on one image, by torch's flop counter (a multiply-add is 2).

    Attention runs on the math backend while counting: the counter has no rule
    for some fused kernels (the CPU's among them), which would drop attention
    from the count and make it depend on the device.
    """
    device = next(model.parameters()).device
    sample = torch.zeros((1, *image_shape), device=device)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model.eval()(sample)
    return int(counter.get_total_flops())


@torch.no_grad()
def measure_throughput(
    model: nn.Module, batch_size: int, device: torch.device, batches: int = 5, warmup: int = 2
) -> float:
    """Images per second of forward passes at ``batch_size`` (after warm-up, synchronised)."""
    model.eval()
    batch = torch.randn(batch_size, 3, 32, 32, device=device)
    for _ in range(warmup):
        model(batch)
    synchronize(device)
    started = time.perf_counter()
    for _ in range(batches):
        model(batch)
    synchronize(device)
    return batches * batch_size / (time.perf_counter() - started)


@torch.no_grad()
def measure_latency_ms(model: nn.Module, device: torch.device, repeats: int = 20, warmup: int = 3) -> float:
    """Median milliseconds of one single-image forward pass."""
    model.eval()
    image = torch.randn(1, 3, 32, 32, device=device)
    for _ in range(warmup):
        model(image)
    timings = []
    for _ in range(repeats):
        synchronize(device)
        started = time.perf_counter()
        model(image)
        synchronize(device)
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


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

"""Pick the device and the speed settings (autocast, memory layout, TF32)."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

import torch

logger = logging.getLogger(__name__)

# The default of every device-dependent setting (device, autocast,
# channels_last, fused optimizer): the fast choice for the device found. A
# checkpoint without one of these settings was trained with this default.
AUTO = "auto"
# The device settings a parameter may name: "auto" picks cuda, then mps, then cpu.
DEVICES = (AUTO, "cpu", "cuda", "mps")
# Set to 0 or 1, whether the CPU counts as computing bf16 natively, whatever it is (cpu_has_native_bf16).
CPU_BF16_VARIABLE = "IMAGE_RECOGNITION_CPU_BF16"


def resolve_device(name: str | torch.device | None = AUTO) -> torch.device:
    """``"auto"``/None -> CUDA if available, else MPS, else CPU; otherwise as named.

    Asking for an accelerator that is missing is an error rather than a silent
    CPU fallback: a GPU recipe would otherwise run on the CPU, far slower.
    """
    if isinstance(name, torch.device):
        return name
    if name in (None, AUTO):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but CUDA is not available; set device: auto or cpu")
    if name == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError("device 'mps' requested but MPS is not available; set device: auto or cpu")
    return torch.device(name)


@contextlib.contextmanager
def configure_backends(device: torch.device, tf32: bool) -> Iterator[None]:
    """TF32 and cuDNN autotuning on CUDA (faster; not bit-reproducible) while
    the block runs; the caller's settings are restored afterwards.

    TF32 goes through the ``fp32_precision`` settings ("tf32" or "ieee") of
    cuBLAS matmuls and cuDNN convolutions, never the legacy ``allow_tf32``
    flags: Inductor reads the new ones, and torch raises when a process mixes
    the two.
    """
    if device.type != "cuda":
        yield
        return
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    saved = (matmul.fp32_precision, conv.fp32_precision, torch.backends.cudnn.benchmark)
    precision = "tf32" if tf32 else "ieee"
    matmul.fp32_precision = precision
    conv.fp32_precision = precision
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        matmul.fp32_precision, conv.fp32_precision, torch.backends.cudnn.benchmark = saved


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX).

    Elsewhere oneDNN emulates bf16, and autocast makes a convnet many times
    slower than fp32. ``IMAGE_RECOGNITION_CPU_BF16=0`` answers no on any CPU
    (with ``ONEDNN_MAX_CPU_ISA=AVX2`` and ``ATEN_CPU_CAPABILITY=avx2`` a run
    then computes as on an AVX2-only CPU: benchmarks/dag_benchmark.py
    ``--as-avx2-cpu``); ``1`` answers yes.
    """
    forced = os.environ.get(CPU_BF16_VARIABLE, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            flags = cpuinfo.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def autocast_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """bf16 for ``"bf16"``; None (full precision) for ``"off"``.

    ``"auto"`` is bf16 where the hardware computes it natively: CUDA, and CPUs
    with AVX512-BF16 or AMX. Elsewhere emulated bf16 is far slower than fp32.
    """
    native = device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16())
    if mode == "bf16" or (mode == AUTO and native):
        return torch.bfloat16
    return None


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    """``torch.autocast`` for ``dtype``, or nothing when dtype is None."""
    if dtype is None:
        yield
    else:
        with torch.autocast(device_type=device.type, dtype=dtype):
            yield


def use_channels_last(setting: str | bool, device: torch.device, is_convnet: bool) -> bool:
    """channels_last helps convnets on CUDA (tensor cores) and oneDNN; auto = CUDA only."""
    if setting == AUTO:
        return is_convnet and device.type == "cuda"
    return bool(setting)


def use_fused_optimizer(setting: str | bool, device: torch.device) -> bool:
    """Fused optimizer kernels: one launch per step instead of one per tensor."""
    if setting == AUTO:
        return device.type == "cuda"
    return bool(setting)


def synchronize(device: torch.device) -> None:
    """Wait for queued device work, so a wall clock read afterwards is honest."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()

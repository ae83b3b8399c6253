"""Backend settings: TF32 through torch's fp32_precision API, applied wherever a model runs."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from torch import nn

from image_recognition.common.device import configure_backends
from image_recognition.evaluation import cost
from image_recognition.models import inference
from image_recognition.serving import prediction

CUDA = torch.device("cuda")
CPU = torch.device("cpu")


@pytest.fixture()
def backend_settings() -> Iterator[None]:
    """Put the process's backend settings back as they were, whatever the test set."""
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    saved = (matmul.fp32_precision, conv.fp32_precision, torch.backends.cudnn.benchmark)
    yield
    matmul.fp32_precision, conv.fp32_precision, torch.backends.cudnn.benchmark = saved


def _settings() -> tuple[str, str, bool]:
    return (
        torch.backends.cuda.matmul.fp32_precision,
        torch.backends.cudnn.conv.fp32_precision,
        torch.backends.cudnn.benchmark,
    )


@pytest.mark.parametrize(("tf32", "precision", "before"), [(True, "tf32", "ieee"), (False, "ieee", "tf32")])
@pytest.mark.usefixtures("backend_settings")
def test_tf32_is_set_through_fp32_precision_and_restored(tf32: bool, precision: str, before: str) -> None:
    # A process that has set TF32 the new way, as Inductor does: torch raises
    # on any read of the legacy allow_tf32 flags from now on (a "mix" of the APIs).
    torch.backends.cuda.matmul.fp32_precision = before
    torch.backends.cudnn.conv.fp32_precision = before
    torch.backends.cudnn.benchmark = False
    with configure_backends(CUDA, tf32=tf32):
        assert _settings() == (precision, precision, True)
    assert _settings() == (before, before, False)


@pytest.mark.usefixtures("backend_settings")
def test_the_cpu_leaves_the_backend_settings_alone() -> None:
    torch.backends.cudnn.benchmark = False
    before = _settings()
    with configure_backends(CPU, tf32=True):
        assert _settings() == before


class _Recorder:
    """A stand-in for configure_backends that records its arguments and whether its block is running."""

    def __init__(self) -> None:
        self.calls: list[tuple[torch.device, bool]] = []
        self.active = False

    @contextlib.contextmanager
    def __call__(self, device: torch.device, tf32: bool) -> Iterator[None]:
        self.calls.append((torch.device(device), tf32))
        self.active = True
        try:
            yield
        finally:
            self.active = False


class _Watched(nn.Module):
    """A tiny classifier that notes, at each forward pass, whether the backend settings were on."""

    def __init__(self, recorder: _Recorder) -> None:
        super().__init__()
        self.recorder = recorder
        self.head = nn.Linear(3, 10)
        self.passes: list[bool] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.passes.append(self.recorder.active)
        return self.head(images.mean(dim=(2, 3)))


@pytest.fixture()
def recorder(monkeypatch) -> _Recorder:
    recorder = _Recorder()
    for module in (inference, cost):
        monkeypatch.setattr(module, "configure_backends", recorder, raising=False)
    return recorder


def test_predictions_run_under_the_backend_settings(recorder: _Recorder) -> None:
    model = _Watched(recorder)
    images = np.zeros((4, 3, 8, 8), dtype=np.uint8)
    inference.predict_logits(model, images, [0.5] * 3, [0.25] * 3, batch_size=2, device="cpu", tf32=False)
    assert recorder.calls == [(CPU, False)]
    assert model.passes == [True, True]


def test_prediction_uses_the_checkpoint_tf32_setting(recorder: _Recorder, monkeypatch) -> None:
    model = _Watched(recorder)
    monkeypatch.setattr(prediction, "load_model", lambda *args, **kwargs: model)
    checkpoint = {
        "model_name": "simple_cnn",
        "training_config": {"tf32": False, "autocast": "off"},
        "normalization": {"mean": [0.5] * 3, "std": [0.25] * 3},
    }
    config = prediction.PredictConfig(device="cpu", tta="none")
    prediction._probabilities(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), checkpoint, config)
    assert recorder.calls == [(CPU, False)]
    assert model.passes and all(model.passes)


def test_cost_measurements_run_under_the_backend_settings(recorder: _Recorder) -> None:
    model = _Watched(recorder)
    recipe = cost.inference_recipe({"tf32": False, "autocast": "off"}, "simple_cnn", CPU)
    assert recipe.tf32 is False
    cost.measure_throughput(model, batch_size=2, device=CPU, batches=1, warmup=1, recipe=recipe)
    cost.measure_latency_ms(model, CPU, repeats=1, warmup=1, recipe=recipe)
    assert recorder.calls == [(CPU, False), (CPU, False)]
    assert model.passes and all(model.passes)


@pytest.mark.parametrize(("forced", "native"), [("0", False), ("1", True)])
def test_the_cpus_bf16_can_be_declared_absent_or_present(monkeypatch, forced, native):
    """How the benchmark runs as on a CPU without native bf16 (benchmarks/dag_benchmark.py --as-avx2-cpu)."""
    from image_recognition.common import device  # noqa: PLC0415

    monkeypatch.setenv(device.CPU_BF16_VARIABLE, forced)
    assert device.cpu_has_native_bf16() is native
    assert (device.autocast_dtype("auto", CPU) is torch.bfloat16) is native

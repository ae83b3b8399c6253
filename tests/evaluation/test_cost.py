"""Cost measurements: FLOPs by hand, the checkpoint's recipe, the TTA views counted; behaviour, never timing."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from image_recognition.common import device
from image_recognition.evaluation.cost import (
    InferenceRecipe,
    count_flops,
    inference_recipe,
    measure_cost,
    measure_latency_ms,
    measure_throughput,
    peak_memory_mib,
    training_times,
)
from image_recognition.models import build_model
from image_recognition.models.inference import TTA_VIEWS

CPU = torch.device("cpu")
FP32 = InferenceRecipe(autocast_dtype=None, channels_last=False)


class Recorder(nn.Module):
    """A tiny convnet that records, per forward pass, its input's memory format and its compute dtype."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 10)
        self.calls: list[tuple[bool, torch.dtype]] = []

    def forward(self, x):
        features = self.conv(x)  # bf16 under bf16 autocast, whatever the input's dtype
        self.calls.append((x.is_contiguous(memory_format=torch.channels_last), features.dtype))
        return self.head(features.mean((2, 3)))


def test_tta_views_are_the_forward_passes_of_tta_logits():
    for tta, views in TTA_VIEWS.items():
        model = Recorder()
        measure_throughput(model, batch_size=2, device=CPU, batches=1, warmup=0, tta=tta)
        assert len(model.calls) == views, tta


@pytest.mark.parametrize("tta", ["none", "flip", "flip_translate"])
def test_throughput_runs_the_requested_number_of_batches(tta):
    model = Recorder()
    assert measure_throughput(model, batch_size=2, device=CPU, batches=7, warmup=3, tta=tta) > 0
    assert len(model.calls) == (3 + 7) * TTA_VIEWS[tta]  # warm-up, then the timed batches


def test_throughput_and_latency_use_the_recipes_bf16_and_channels_last():
    recipe = inference_recipe({"autocast": "bf16", "channels_last": True}, "cnn", CPU)
    assert recipe == InferenceRecipe(autocast_dtype=torch.bfloat16, channels_last=True)
    model = Recorder().to(memory_format=torch.channels_last)
    measure_throughput(model, batch_size=2, device=CPU, batches=2, warmup=1, tta="flip", recipe=recipe)
    measure_latency_ms(model, CPU, repeats=2, warmup=1, recipe=recipe)
    assert model.calls and set(model.calls) == {(True, torch.bfloat16)}


def test_full_precision_recipe_measures_contiguous_fp32():
    model = Recorder()
    measure_throughput(model, batch_size=2, device=CPU, batches=2, warmup=1, recipe=FP32)
    assert set(model.calls) == {(False, torch.float32)}


def test_recipe_resolves_for_the_evaluation_device_and_model(monkeypatch):
    cuda = torch.device("cuda")  # resolving needs no GPU
    auto = {"autocast": "auto", "channels_last": "auto"}
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: True)
    assert inference_recipe(auto, "cnn", CPU) == InferenceRecipe(torch.bfloat16, channels_last=False)
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: False)
    assert inference_recipe(auto, "cnn", CPU) == FP32  # emulated bf16 would be far slower than fp32
    assert inference_recipe(auto, "cnn", cuda) == InferenceRecipe(torch.bfloat16, channels_last=True)
    assert inference_recipe(auto, "vit", cuda) == InferenceRecipe(torch.bfloat16, channels_last=False)
    assert inference_recipe({"autocast": "off", "channels_last": False}, "cnn", cuda) == FP32
    assert inference_recipe(None, "cnn", CPU) == FP32  # an old checkpoint: the training defaults
    assert (inference_recipe(auto, "cnn", cuda).precision, FP32.precision) == ("bf16", "fp32")
    assert (inference_recipe(auto, "cnn", cuda).memory_format, FP32.memory_format) == ("channels_last", "contiguous")


@pytest.mark.parametrize(("tta", "views"), [("none", 1), ("flip", 2), ("flip_translate", 6)])
def test_cost_states_its_views_and_flops_per_prediction(tta, views):
    model = Recorder()
    cost = measure_cost(model, tta=tta, recipe=FP32, device=CPU, batch_size=2, batches=2, latency_repeats=1)
    assert cost["tta_views"] == views and cost["flops_per_image"] == count_flops(model)
    assert cost["flops_per_prediction"] == views * cost["flops_per_image"]
    assert cost["throughput_images_per_s"] > 0 and cost["throughput_predictions_per_s"] > 0
    assert (cost["precision"], cost["memory_format"], cost["throughput_batches"]) == ("fp32", "contiguous", 2)
    if views == 1:
        assert cost["throughput_predictions_per_s"] == cost["throughput_images_per_s"]  # measured once


def test_cost_record_counts_parameters_and_takes_training_times_from_the_last_epoch():
    model = Recorder()
    history = [
        {"train_time_s": 1.0, "compile_time_s": 9.0, "compiled": True},
        {"train_time_s": 2.5, "compile_time_s": 9.0, "compiled": False},
    ]
    cost = measure_cost(
        model, tta="none", recipe=FP32, device=CPU, batch_size=2, batches=1, latency_repeats=1, history=history
    )
    assert cost["parameters"] == sum(p.numel() for p in model.parameters())
    assert (cost["training_time_s"], cost["compile_time_s"]) == (2.5, 9.0)
    assert cost["compiled"] is False  # the run fell back to eager steps: its times are eager times
    assert (cost["device"], cost["peak_memory_mib"]) == ("cpu", None) and cost["device_name"]


@pytest.mark.parametrize(
    ("history", "times"),
    [
        (None, (None, None, None)),  # no history: nothing to report
        ([{"train_time_s": 3}], (3.0, 0.0, None)),  # a checkpoint from before compile times were recorded
        ([{"train_time_s": 3, "compile_time_s": None}], (3.0, 0.0, None)),
    ],
)
def test_training_times_of_old_or_missing_histories(history, times):
    assert tuple(training_times(history).values()) == times


def test_flops_of_a_linear_layer_by_hand():
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
    assert count_flops(model) == 2 * 3 * 32 * 32 * 10  # one multiply-add = 2 FLOPs


class AttentionOnly(nn.Module):
    """Treats an image (1, 3, 32, 32) as q = k = v with 3 heads, 32 tokens of width 32."""

    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))  # count_flops reads the device from a parameter

    def forward(self, x):
        return torch.nn.functional.scaled_dot_product_attention(x, x, x)


def test_flops_count_attention_by_hand():
    # q @ k^T and attn @ v: 2 matmuls of (32 x 32) @ (32 x 32) per head, 2 FLOPs per multiply-add
    assert count_flops(AttentionOnly()) == 3 * 2 * (2 * 32 * 32 * 32)


def test_throughput_latency_and_memory_on_cpu():
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
    device = torch.device("cpu")
    assert measure_throughput(model, batch_size=8, device=device, batches=2) > 0
    assert measure_latency_ms(model, device, repeats=3) > 0
    assert peak_memory_mib(device) is None  # the CPU reports no device memory


def test_flops_and_speeds_are_measured_at_the_size_the_model_was_built_for():
    small = build_model("simple_cnn", {"num_classes": 100})
    large = build_model("simple_cnn", {"num_classes": 100, "image_size": 64})
    assert count_flops(large) > 3 * count_flops(small)  # 4x the conv pixels, and a wider fc1
    assert count_flops(large) == count_flops(large, (3, 64, 64))
    assert measure_throughput(large, batch_size=2, device=CPU, batches=1, warmup=0) > 0  # a 32 px batch would fail
    assert measure_latency_ms(large, CPU, repeats=1, warmup=0) > 0

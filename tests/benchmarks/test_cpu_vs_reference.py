"""The side-by-side CPU benchmark: both sides step-limited and timed the same way, ratios in the JSON.

A stand-in for airbench94.py keeps its shape (``hyp``, ``CifarLoader``,
``make_net``, ``evaluate`` between epochs, ``main``): no real reference, no
real data.
"""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.benchmarks.test_benchmarks import without_kedro_env
from tests.helpers import PROJECT_ROOT

BENCHMARKS = PROJECT_ROOT / "benchmarks"
FAKE_BODY = """
import torch
from torch import nn

hyp = {"opt": {"batch_size": 1024}}


class CifarLoader:
    def __init__(self, path, train=True, batch_size=500):
        data = torch.load(path + ("/train.pt" if train else "/test.pt"))
        self.images = (data["images"].float() / 255).permute(0, 3, 1, 2).contiguous()  # NCHW, as its crops
        self.labels = data["labels"]
        self.batch_size = batch_size

    def __iter__(self):
        order = torch.randperm(len(self.images))
        for i in range(len(self.images) // self.batch_size):
            index = order[i * self.batch_size : (i + 1) * self.batch_size]
            yield self.images[index], self.labels[index]


def make_net():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10)).to(
        memory_format=torch.channels_last
    )


def evaluate(model, loader):
    return 0.5


def print_training_details(variables, is_final_entry):
    pass


def main(run):
    train_loader = CifarLoader("cifar10", train=True, batch_size=hyp["opt"]["batch_size"])
    model = make_net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    for epoch in range(100):
        for inputs, labels in train_loader:
            outputs = model(inputs)
            loss = nn.functional.cross_entropy(outputs, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        val_acc = evaluate(model, train_loader)
    return val_acc
"""


def fake_reference(tmp_path: Path) -> Path:
    """airbench94.py's shape, with its CUDA-bound texts in comments (CPU_CHANGES must find them)."""
    runner = runpy.run_path(str(BENCHMARKS / "airbench_reference.py"), run_name="reference")
    cuda_lines = [f"# {old}" for old, _, count in runner["CPU_CHANGES"] for _ in range(count)]
    path = tmp_path / "airbench94.py"
    path.write_text("\n".join(cuda_lines) + FAKE_BODY)
    return path


@pytest.mark.slow
def test_smoke_run_writes_both_sides_images_per_s_and_their_ratio(tmp_path: Path) -> None:
    out = tmp_path / "vs.json"
    script = BENCHMARKS / "cpu_vs_reference.py"
    command = [sys.executable, str(script), "--smoke", "--reference", str(fake_reference(tmp_path))]
    command += ["--precisions", "fp32", "bf16", "--max-steps", "8", "--warmup-steps", "2", "--out", str(out)]
    env = without_kedro_env(tmp_path)  # it needs no Kedro, as on the GPU machine
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["smoke"] is True and report["max_steps"] == 8 and report["warmup_steps"] == 2
    assert {"cpu_flags", "native_bf16", "load_average_1_5_15", "torch_threads"} <= set(report["machine"])
    assert report["started"].endswith("UTC") and "commit" in report and "finished" in report
    assert set(report["precisions"]) == set(report["ratios"]) == {"fp32", "bf16"}
    for precision, sides in report["precisions"].items():
        project, reference = sides["project"], sides["reference"]
        for side in (project, reference):
            # 6 timed steps of 100 images, after 2 untimed ones; 5 steps an epoch, so an epoch boundary inside
            assert side["steps_run"] == 8 and side["timed_steps"] == 6 and side["timed_images"] == 600
            assert side["images_per_s"] == pytest.approx(600 / side["timed_s"])
            assert side["batch_size"] == 100 and side["model_channels_last"] is True
        assert project["batch_channels_last"] is True and reference["batch_channels_last"] is False
        assert reference["excluded_s"] >= 0  # the evaluation between epochs is timed apart
        assert report["ratios"][precision] == pytest.approx(project["images_per_s"] / reference["images_per_s"])
    assert report["precisions"]["bf16"]["project"]["whitening_conv"] == "fp32 under autocast"


def test_reference_forward_runs_under_autocast_only_when_asked(tmp_path: Path) -> None:
    """--autocast bf16 computes the reference's forward in bf16 and hands fp32 logits to its loss."""
    runner = runpy.run_path(str(BENCHMARKS / "airbench_reference.py"), run_name="reference")
    source = runner["cpu_source"](fake_reference(tmp_path))
    images = torch.zeros(2, 3, 8, 8)
    for dtype, expected_inner in ((None, torch.float32), (torch.bfloat16, torch.bfloat16)):
        namespace = runner["load_reference"](source, tmp_path / "airbench94.py")
        runner["autocast_forward"](namespace, dtype)
        net = namespace["make_net"]()
        inner = []
        net[-1].register_forward_hook(lambda _module, _inputs, output, seen=inner: seen.append(output.dtype))
        assert net(images).dtype == torch.float32
        assert inner == [expected_inner]


def test_step_clock_times_the_steps_after_warm_up_and_stops_after_the_last() -> None:
    common = runpy.run_path(str(BENCHMARKS / "common.py"), run_name="common")
    clock = common["StepClock"](max_steps=4, warmup_steps=1)
    with pytest.raises(common["StepLimitReached"]):  # noqa: PT012 (the loop is the run the clock stops)
        for _ in range(10):
            clock.begin_step(32)
            with clock.excluded():
                pass
    summary = clock.summary()
    assert summary["steps_run"] == 4 and summary["timed_steps"] == 3 and summary["timed_images"] == 96
    assert summary["images_per_s"] == pytest.approx(96 / summary["timed_s"])
    with pytest.raises(ValueError, match="warm-up steps < max steps"):
        common["StepClock"](max_steps=2, warmup_steps=2)

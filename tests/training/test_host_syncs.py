"""The training step copies nothing from the host to the device and draws nothing on the host.

Each host-to-device copy in a step is a copy plus a wait on CUDA. A CPU-only
torch cannot run CUDA tensors, even fake ones, so the check runs on the CPU
with a dispatch mode that sees every op of the step, the backward pass
included, and records each one that would bring host data to the device on a
GPU: a tensor made from Python or NumPy values (``torch.tensor``,
``as_tensor``, ``from_numpy`` all end in ``aten.lift_fresh``) and a copy
between devices. On the CPU every tensor is a host tensor, so a draw from the
host generator cannot be told from a draw on the device: the host
generator's state is checked instead, and must not move within a step.
"""

from __future__ import annotations

import itertools
import traceback
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import image_recognition
from image_recognition.models.tiny import TINY_MODELS
from image_recognition.sources.cifar10.split import channel_statistics
from image_recognition.sources.cifar10.synthetic import make_synthetic_cifar10
from image_recognition.training import batches, train
from image_recognition.training.augment import strong

aten = torch.ops.aten
_FROM_HOST_VALUES = (aten.lift_fresh.default, aten.lift_fresh_copy.default)
_SOURCE = Path(image_recognition.__file__).parent  # src/image_recognition

# Every feature the step has: TrivialAugment, MixUp/CutMix, cutout, translate,
# flips, label smoothing, gradient clipping, EMA (with lookahead on the CNN).
RECIPES = {
    "vit": {
        "optimizer": "adamw",
        "lr": 1e-3,
        "trivial_augment": 1.0,
        "mixup_alpha": 0.8,
        "cutmix_alpha": 1.0,
        "label_smoothing": 0.1,
        "cutout": 4,
        "grad_clip": 1.0,
        "ema_decay": 0.9,
    },
    "cnn": {
        "lr": 0.1,
        "label_smoothing": 0.1,
        "flip": "alternating",
        "ema_decay": 0.7,
        "ema_ramp": True,
        "lookahead": True,
    },
}


class HostDataToDevice(TorchDispatchMode):
    """Records each op that puts host data on a device, with the project's line that called it."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204 (torch's protocol)
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        between_devices = (func is aten._to_copy.default and args[0].device != out.device) or (
            func is aten.copy_.default and args[0].device != args[1].device
        )
        if func in _FROM_HOST_VALUES or between_devices:
            self.found.append(f"{func} at {_caller()}")
        return out


def _caller() -> str:
    """The innermost frame in the project's source or in this file: the line that made the copy."""
    frame = [
        frame
        for frame in traceback.extract_stack()
        if (frame.filename.startswith(str(_SOURCE)) or frame.filename == __file__)
        and frame.name not in {"__torch_dispatch__", "_caller"}
    ][-1]
    return f"{Path(frame.filename).name}:{frame.lineno} {frame.line}"


def upload_a_constant(x: torch.Tensor) -> torch.Tensor:
    """What a step must not do: build a tensor from Python values and copy it to the batch's device."""
    return x + torch.tensor([1.0]).to(x.device)


def test_the_mode_flags_a_tensor_made_from_host_values_and_nothing_computed_on_the_device() -> None:
    x = torch.ones(4)
    with HostDataToDevice() as mode:
        upload_a_constant(x)
    assert len(mode.found) == 1
    assert "lift_fresh" in mode.found[0] and "torch.tensor([1.0]).to(x.device)" in mode.found[0]
    with HostDataToDevice() as mode:  # Python scalars and device factories stay on the device
        torch.where(x > 0, 1.0, x * 2.0) + torch.zeros(4, device=x.device) + torch.arange(4, device=x.device)
        x.to(torch.float64)
    assert mode.found == []


def test_a_step_of_an_uploaded_trivial_augment_plan_makes_no_tensor_from_host_values() -> None:
    """Every op, geometric ones included; the constants the ops need are built by the upload, not by the step."""
    strong._constants.cache_clear()
    ops = torch.arange(len(strong.TRIVIAL_AUGMENT_OPS)).repeat(3)
    policy = (ops, torch.linspace(-1.0, 1.0, len(ops)))
    plan = strong.TrivialAugmentPlan.upload([policy, policy], torch.device("cpu"))
    images = torch.rand(len(ops), 3, 8, 8, generator=torch.Generator().manual_seed(0))
    with HostDataToDevice() as mode:
        out = plan.apply(1, images)
    assert mode.found == []
    assert torch.equal(out, strong.apply_trivial_augment(images, *policy))


@pytest.fixture(scope="module")
def tiny_data() -> dict:
    """50 training images: 2 steps an epoch at batch 25."""
    data = make_synthetic_cifar10(train_per_class=5, test_per_class=2, seed=0)
    mean, std = channel_statistics(data.train_images)
    return {
        "train_split": {"images": data.train_images, "labels": data.train_labels},
        "validation_split": {"images": data.test_images, "labels": data.test_labels},
        "normalization": {"mean": mean, "std": std},
    }


def _watch_steps(monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], list[int]]:
    """Run every training step but the run's first under HostDataToDevice; return (copies, host draws by step).

    A step runs from the making of its batch to the loop's request for the
    next one: the mode is entered before each batch of the epoch's batches is
    made and left when the next is asked for. The first step is left out
    because the optimiser builds its state there (Adam's step counts are host
    tensors by design). The epoch's start, where the host-drawn augmentation
    is uploaded once, is not part of any step.
    """
    copies: list[str] = []
    host_draws: list[int] = []
    host_generators: list[torch.Generator] = []
    seed_epoch, epoch_steps = batches.seed_epoch, batches.EpochBatches.__iter__

    def seed_and_keep_the_host_generator(*args):  # noqa: ANN002, ANN202
        generators = seed_epoch(*args)
        host_generators.append(generators[1])
        return generators

    def watched_steps(self):  # noqa: ANN001, ANN202
        steps = epoch_steps(self)
        for step in itertools.count():
            if self.epoch == 0 and step == 0:  # the run's first step
                yield next(steps)
                continue
            host_state = host_generators[-1].get_state()
            with HostDataToDevice() as mode:
                batch = next(steps, None)
                if batch is None:
                    return
                yield batch  # the step runs here, in the loop's body
            copies.extend(f"epoch {self.epoch + 1} step {step + 1}: {found}" for found in mode.found)
            host_draws.append(int(not torch.equal(host_state, host_generators[-1].get_state())))

    monkeypatch.setattr(batches, "seed_epoch", seed_and_keep_the_host_generator)
    monkeypatch.setattr(batches.EpochBatches, "__iter__", watched_steps)
    return copies, host_draws


@pytest.mark.parametrize("model", sorted(RECIPES))
def test_a_training_step_copies_nothing_to_the_device_and_draws_nothing_on_the_host(
    model: str, tiny_data: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    copies, host_draws = _watch_steps(monkeypatch)
    training = {"epochs": 2, "batch_size": 25, "device": "cpu", "log_every": 1, **RECIPES[model]}
    train(model, TINY_MODELS[model], training, **tiny_data)
    assert len(host_draws) == 3  # 2 epochs of 2 steps, the first left out
    assert copies == []
    assert sum(host_draws) == 0


def test_the_check_catches_a_copy_put_back_into_the_step(tiny_data: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """TrivialAugment's constants built at every step again, as they were: each build is caught."""
    copies, _ = _watch_steps(monkeypatch)
    monkeypatch.setattr(strong, "_constants", strong._constants.__wrapped__)
    training = {"epochs": 1, "batch_size": 25, "device": "cpu", **RECIPES["vit"]}
    train("vit", TINY_MODELS["vit"], training, **tiny_data)
    assert copies
    assert all("strong.py" in copy and "torch.tensor(" in copy for copy in copies)

"""Parameter groups by role, the learning-rate schedule and the weight average: its decay, window and bias correction."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from image_recognition.models import build_model
from image_recognition.training.config import TrainingConfig
from image_recognition.training.optim import (
    WHITENING_BIAS,
    WeightEMA,
    build_optimizer,
    build_scheduler,
    ema_decay_at,
    lr_factor,
    parameter_groups,
)
from image_recognition.training.recipes import recipe


def _groups_by_name(model: nn.Module, config: TrainingConfig) -> dict[str, tuple[float, float]]:
    """parameter name -> (lr, weight decay) of the group holding it."""
    names = {id(param): name for name, param in model.named_parameters()}
    return {
        names[id(param)]: (group["lr"], group["weight_decay"])
        for group in parameter_groups(model, config)
        for param in group["params"]
    }


def test_cnn_record_recipe_scales_the_lr_of_batchnorm_parameters_only() -> None:
    settings = recipe("cnn")
    config = TrainingConfig.from_dict(settings["training"])
    model = build_model("cnn", {"widths": [8, 16, 16]})
    groups = _groups_by_name(model, config)
    base_lr, scaled_lr = config.lr, config.lr * 64
    decay = config.weight_decay
    # The whitening bias trains at the base rate and decays (airbench: "other" params).
    assert groups["whiten.bias"] == pytest.approx((base_lr, decay))
    # Its filters, and BatchNorm's frozen scales, are not trained at all.
    assert "whiten.weight" not in groups
    assert not any(name.endswith("norm1.weight") for name in groups)
    # BatchNorm shifts: 64x the lr, decay divided by 64 so the decay per step is the same.
    assert groups["groups.0.norm1.bias"] == pytest.approx((scaled_lr, decay / 64))
    # Kernels and the head: base lr, decayed.
    assert groups["groups.0.conv1.weight"] == pytest.approx((base_lr, decay))
    assert groups["head.weight"] == pytest.approx((base_lr, decay))
    scaled = {name for name, (lr, _) in groups.items() if lr == pytest.approx(scaled_lr)}
    assert scaled == {name for name in groups if ".norm" in name}


def test_vit_recipe_decays_weight_matrices_only() -> None:
    settings = recipe("vit")
    config = TrainingConfig.from_dict(settings["training"])
    model = build_model("vit", {**settings["model"], "embed_dim": 32, "num_heads": 2, "depth": 1})
    groups = _groups_by_name(model, config)
    decay = config.weight_decay
    assert groups["blocks.0.attn.qkv.weight"] == pytest.approx((config.lr, decay))
    assert groups["patch_embed.stages.0.weight"] == pytest.approx((config.lr, decay))  # conv stem kernel
    for name in ("blocks.0.attn.qkv.bias", "blocks.0.norm1.weight", "pos_embed", "patch_embed.stages.1.bias"):
        assert groups[name] == pytest.approx((config.lr, 0.0)), name
    assert all(lr == pytest.approx(config.lr) for lr, _ in groups.values())  # bias_lr_scale 1


def test_lr_factor_at_start_end_of_warmup_and_end() -> None:
    config = TrainingConfig.from_dict(recipe("cnn")["training"])  # linear, 23% warmup, 0.2 -> 1 -> 0.07
    total = 1000
    warmup = int(0.23 * total)
    assert lr_factor(0, total, config) == pytest.approx(0.2)
    assert lr_factor(warmup // 2, total, config) == pytest.approx(0.2 + 0.8 * (warmup // 2) / warmup)
    assert lr_factor(warmup, total, config) == pytest.approx(1.0)
    assert lr_factor(total, total, config) == pytest.approx(0.07)
    cosine = TrainingConfig(lr_schedule="cosine", warmup_fraction=0.1, lr_start_factor=0.01, lr_end_factor=0.0)
    assert lr_factor(0, total, cosine) == pytest.approx(0.01)
    assert lr_factor(100, total, cosine) == pytest.approx(1.0)
    assert lr_factor(550, total, cosine) == pytest.approx(0.5)  # half way through the decay
    assert lr_factor(total, total, cosine) == pytest.approx(0.0, abs=1e-12)


def test_ema_update_averages_floats_copies_counters_and_looks_ahead() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    ema = WeightEMA(model)
    before = {key: value.clone() for key, value in ema.state_dict().items()}
    with torch.no_grad():
        for param in model.parameters():
            param.add_(1.0)
    model[1].num_batches_tracked.fill_(7)
    ema.update(model, decay=0.75, lookahead=True)
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            assert ema.state_dict()[key].item() == 7
            continue
        live_before_lookahead = before[key] + (1.0 if key in dict(model.named_parameters()) else 0.0)
        expected = 0.75 * before[key] + 0.25 * live_before_lookahead
        torch.testing.assert_close(ema.state_dict()[key], expected)
        torch.testing.assert_close(value, expected)  # lookahead: the live weights take the average


def test_ema_updates_reuse_their_tensor_lists_and_follow_in_place_weight_changes(monkeypatch) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    ema = WeightEMA(model)
    calls = []
    state_dict = model.state_dict
    monkeypatch.setattr(model, "state_dict", lambda *args, **kwargs: calls.append(1) or state_dict(*args, **kwargs))
    expected = {key: value.clone() for key, value in ema.state_dict().items()}
    for step in range(3):
        with torch.no_grad():
            for param in model.parameters():
                param.add_(1.0)  # in place, as an optimizer step
        model[1].num_batches_tracked.fill_(step)
        ema.update(model, decay=0.5)
        for key, live in state_dict().items():
            expected[key] = live.clone() if key.endswith("num_batches_tracked") else 0.5 * expected[key] + 0.5 * live
    assert len(calls) <= 1  # the lists are built once, not at every step
    for key, value in expected.items():
        torch.testing.assert_close(ema.state_dict()[key], value)


def test_a_frozen_whitening_bias_keeps_its_value_and_lr_0_through_the_schedule() -> None:
    """The freeze is in the optimiser, not in requires_grad: one graph, one DDP wrapper for the run."""
    config = TrainingConfig.from_dict(recipe("cnn")["training"])  # decays biases; warm-up lr grows each step
    model = build_model("cnn", {"widths": [8, 16, 16]})
    optimizer = build_optimizer(model, config, fused=False)
    scheduler = build_scheduler(optimizer, 100, config)
    (whitening,) = [group for group in optimizer.param_groups if group.get("role") == WHITENING_BIAS]
    assert whitening["params"] == [model.whiten.bias]
    assert optimizer.param_groups[0].get("role") is None  # the group whose lr the history logs

    def step() -> None:
        optimizer.zero_grad()
        model(torch.randn(4, 3, 32, 32)).square().sum().backward()
        optimizer.step()
        scheduler.step()

    step()
    scheduler.freeze(WHITENING_BIAS, True)
    frozen = model.whiten.bias.detach().clone()
    assert torch.count_nonzero(frozen) > 0  # it trained before the freeze
    for _ in range(3):
        step()
        assert model.whiten.bias.requires_grad and model.whiten.bias.grad is not None
        assert (whitening["lr"], whitening["weight_decay"]) == (0.0, 0.0)  # the schedule keeps it at 0
        assert optimizer.param_groups[0]["lr"] == pytest.approx(
            config.lr * lr_factor(scheduler.last_epoch, 100, config)
        )
    assert torch.equal(model.whiten.bias, frozen)  # not even decayed
    scheduler.freeze(WHITENING_BIAS, False)  # thawed: back on the schedule, with its decay
    assert whitening["lr"] == pytest.approx(config.lr * lr_factor(scheduler.last_epoch, 100, config))
    assert whitening["weight_decay"] == pytest.approx(config.weight_decay)


# The training split of CIFAR-10 after the validation split is taken out.
TRAINING_IMAGES = 45_000


# The GPU ViT recipe's steps: batches of 512, 200 epochs.
VIT_STEPS = TRAINING_IMAGES // 512 * 200


def _initial_share(config: TrainingConfig, total_steps: int) -> float:
    """The share of the random initial weights left in the EMA after ``total_steps``."""
    share = 1.0
    for step in range(config.ema_every, total_steps + 1, config.ema_every):
        share *= ema_decay_at(step, total_steps, config)
    return share


@pytest.mark.parametrize("name", ["vit", "cnn", "cnn_cpu"])
def test_no_recipe_keeps_the_random_initial_weights_in_its_average(name: str) -> None:
    config = TrainingConfig.from_dict(recipe(name)["training"])
    assert config.ema_decay > 0
    # A budgeted recipe (cnn_cpu) is checked at 4 epochs, as short as a slow CPU makes its run.
    total_steps = TRAINING_IMAGES // config.batch_size * (config.epochs or 4)
    # The first update takes (nearly) the live weights; a plain 0.9998 would keep 3% of the initial ones.
    assert ema_decay_at(config.ema_every, total_steps, config) < 1e-5
    assert _initial_share(config, total_steps) < 1e-9


def test_the_vit_average_still_spans_about_5000_steps_at_the_end() -> None:
    config = TrainingConfig.from_dict(recipe("vit")["training"])
    decay = ema_decay_at(VIT_STEPS, VIT_STEPS, config)
    assert decay == pytest.approx(0.9998, abs=1e-5)
    assert 4000 < 1 / (1 - decay) < 6000


def test_the_airbench_ramp_is_unchanged() -> None:
    config = TrainingConfig.from_dict({"ema_decay": 0.8, "ema_every": 5, "ema_ramp": True})
    assert ema_decay_at(50, 100, config) == pytest.approx(0.8 * 0.5**3)
    assert ema_decay_at(100, 100, config) == pytest.approx(0.8)


def test_the_bias_corrected_average_is_the_decay_weighted_mean_of_the_weights_seen() -> None:
    decay, every = 0.9, 2
    config = TrainingConfig.from_dict({"ema_decay": decay, "ema_every": every})
    model = nn.Linear(1, 1, bias=False)
    ema = WeightEMA(model)
    seen = []
    for update in range(1, 8):
        with torch.no_grad():
            model.weight.fill_(float(update**2))
        seen.append(float(update**2))
        ema.update(model, ema_decay_at(update * every, 100, config))
    weights = [decay ** (len(seen) - 1 - k) for k in range(len(seen))]
    expected = sum(w * v for w, v in zip(weights, seen, strict=True)) / sum(weights)
    assert ema.state_dict()["weight"].item() == pytest.approx(expected, rel=1e-5)

"""One optimisation step, and the losses it logs beside what it minimises."""

from __future__ import annotations

import pytest
import torch

from image_recognition.training.budget import Plan
from image_recognition.training.optim import ema_decay_at
from image_recognition.training.step import losses, train_step
from tests.training.test_probe import _run


def test_the_logged_loss_is_plain_cross_entropy_whatever_the_smoothing() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    labels = torch.tensor([0, 2])
    objective, loss = losses(logits, labels, None, 0.2)
    assert loss == pytest.approx(torch.nn.functional.cross_entropy(logits, labels).item())
    assert objective > loss  # smoothing pulls towards the wrong classes too
    assert not loss.requires_grad


def test_a_step_advances_the_schedule_and_averages_with_the_decay_of_the_runs_planned_length(data_args: dict) -> None:
    run = _run("cnn", data_args, ema_every=1)
    run.adopt(Plan(total_steps=40, steps_per_epoch=15, whiten_bias_steps=12))
    images = run.batches.normalize(run.batches.train_x[:64])
    labels = run.batches.train_y[:64]
    before = {k: v.clone() for k, v in run.ema.state_dict().items()}
    live_before = {k: v.clone() for k, v in run.model.state_dict().items()}
    train_step(run, images, labels, None)
    train_step(run, images, labels, None)
    assert run.global_step == 2 and run.scheduler.last_epoch == 2
    # With lookahead the live weights are the EMA; its second update used the decay at step 2 of 40.
    decay = ema_decay_at(2, 40, run.config)
    assert 0 < decay < run.config.ema_decay
    changed = [
        k for k, v in run.model.state_dict().items() if v.is_floating_point() and not torch.equal(v, live_before[k])
    ]
    assert changed and any(not torch.equal(run.ema.state_dict()[k], before[k]) for k in changed)

"""The speed probe: it measures on the run's own model and optimiser, then leaves the run as it found it."""

from __future__ import annotations

import pytest
import torch

from image_recognition.models import validate_model_config
from image_recognition.models.tiny import TINY_MODELS
from image_recognition.training import budget, engine
from image_recognition.training.config import TrainingConfig
from image_recognition.training.probe import MIN_STEPS, probe
from tests.training.helpers import LEARNING_RECIPES, assert_same_state


def _run(name: str, data_args: dict, **training):  # noqa: ANN202
    config = TrainingConfig.from_dict({**LEARNING_RECIPES[name], "epochs": None, "budget_s": 60.0, **training})
    splits = (data_args["train_split"], data_args["validation_split"])
    model_config = validate_model_config(name, TINY_MODELS[name])
    return engine.setup(name, model_config, config, torch.device("cpu"), None, splits, data_args["normalization"], None)


@pytest.mark.parametrize("name", ["cnn", "vit"])
def test_the_probe_leaves_the_weights_optimiser_schedule_ema_and_generators_as_they_were(
    name: str, data_args: dict
) -> None:
    run = _run(name, data_args)
    before = {
        "model": {k: v.clone() for k, v in run.model.state_dict().items()},
        "ema": {k: v.clone() for k, v in run.ema.state_dict().items()} if run.ema else {},
        "rng": torch.get_rng_state(),
        "lr": [group["lr"] for group in run.optimizer.param_groups],
        "scheduler": run.scheduler.state_dict()["last_epoch"],
    }
    measured = probe(run)
    assert measured.steps >= MIN_STEPS and measured.step_s > 0 and measured.validation_s > 0
    assert measured.images_per_s == pytest.approx(measured.batch_size / measured.step_s)
    assert_same_state(run.model.state_dict(), before["model"])
    if run.ema:
        assert_same_state(run.ema.state_dict(), before["ema"])
    assert torch.equal(torch.get_rng_state(), before["rng"])
    assert not run.optimizer.state  # no momentum left behind
    assert [group["lr"] for group in run.optimizer.param_groups] == before["lr"]
    assert run.scheduler.state_dict()["last_epoch"] == before["scheduler"]
    assert run.global_step == 0


def test_the_probe_times_steady_steps_after_its_warm_up_on_the_clock_it_is_given(
    monkeypatch: pytest.MonkeyPatch, data_args: dict
) -> None:
    """Each step costs 1 s on a fake clock, the first two 10 s (warm-up): the probe measures 1 s a step."""
    now = [0.0]
    calls = [0]
    real_step = engine.train_step

    def step(*args):  # noqa: ANN002, ANN202
        calls[0] += 1
        now[0] += 10.0 if calls[0] <= 2 else 1.0
        return real_step(*args)

    monkeypatch.setattr(budget, "clock", lambda: now[0])
    monkeypatch.setattr("image_recognition.training.probe.train_step", step)
    measured = probe(_run("cnn", data_args))
    assert measured.step_s == pytest.approx(1.0)
    # At least MIN_STEPS, and no more once 2 s (MIN_SECONDS) have passed.
    assert measured.steps == MIN_STEPS

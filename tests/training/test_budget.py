"""Training to a time budget: the plan comes from the measured speed, and the run ends within the budget.

Every clock here is fake (:class:`FakeCosts`): a step, a validation pass and
a checkpoint each cost a set number of seconds, so the tests are exact on
any machine. Real wall time belongs in benchmarks/dag_benchmark.py.
"""

from __future__ import annotations

import math

import pytest

from image_recognition.common.errors import ParameterError
from image_recognition.models.inference import TTA_VIEWS
from image_recognition.models.tiny import TINY_MODELS
from image_recognition.training import budget, engine, monitor, probe, train, validation
from image_recognition.training import checkpoint as checkpoint_module
from image_recognition.training import step as step_module
from image_recognition.training.budget import PLAN_MARGIN, Plan, Probe, plan_budget
from image_recognition.training.config import TrainingConfig
from image_recognition.training.optim import ema_decay_at, lr_factor
from tests.training.helpers import LEARNING_RECIPES, assert_same_state, without_timing

# The slack a budgeted run may end past its budget: the final validation and
# checkpoint are planned at the probe's costs, and with fake costs the plan is exact.
TOLERANCE_S = 1e-6
# The functions FakeCosts wraps, as they are before any test patches them.
REAL_STEP, REAL_EVALUATE, REAL_SAVE = step_module.train_step, validation.evaluate, checkpoint_module.save_checkpoint


class FakeCosts:
    """A clock that moves only when the run works: each step, validation pass and checkpoint costs set seconds."""

    def __init__(self, step_s: float, validation_s: float, checkpoint_s: float = 0.0) -> None:
        self.now, self.step_s, self.validation_s, self.checkpoint_s = 1000.0, step_s, validation_s, checkpoint_s
        self.steps = 0

    def install(self, monkeypatch: pytest.MonkeyPatch) -> FakeCosts:
        monkeypatch.setattr(budget, "clock", lambda: self.now)
        real_step, real_evaluate, real_save = REAL_STEP, REAL_EVALUATE, REAL_SAVE

        def step(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            self.now += self.step_s
            self.steps += 1
            return real_step(*args, **kwargs)

        def evaluate(run, tta, ema=True):  # noqa: ANN001, ANN202
            self.now += self.validation_s * TTA_VIEWS[tta]
            return real_evaluate(run, tta, ema)

        def save(*args):  # noqa: ANN002, ANN202
            self.now += self.checkpoint_s
            return real_save(*args)

        for module in (engine, probe):
            monkeypatch.setattr(module, "train_step", step)
            monkeypatch.setattr(module, "evaluate", evaluate)
        monkeypatch.setattr(validation, "evaluate", evaluate)
        monkeypatch.setattr(engine, "save_checkpoint", save)
        return self


def _probe(step_s: float = 0.1, validation_s: float = 2.0, setup_s: float = 0.5, checkpoint_s: float = 0.3) -> Probe:
    return Probe(step_s, 10, validation_s, setup_s, checkpoint_s, seconds=3.0, batch_size=256)


def _planned_cost(steps: int, steps_per_epoch: int, probe: Probe, views: int, checkpoint_every: int) -> float:
    """What ``steps`` cost at the probe's prices, counted independently of the engine's planner."""
    epochs = math.ceil(steps / steps_per_epoch)
    checkpoints = (epochs - 1) // checkpoint_every if checkpoint_every else 0
    per_epoch = probe.validation_s + probe.epoch_setup_s
    end = probe.validation_s * views + probe.checkpoint_s
    return steps * probe.step_s + epochs * per_epoch + checkpoints * probe.checkpoint_s + end


@pytest.mark.parametrize(("budget_s", "spent_s", "steps_per_epoch"), [(300, 10, 50), (61, 4, 176), (3600, 30, 175)])
@pytest.mark.parametrize("checkpoint_every", [0, 1, 3])
def test_the_plan_takes_the_most_steps_whose_measured_costs_fit_the_budget(
    budget_s: float, spent_s: float, steps_per_epoch: int, checkpoint_every: int
) -> None:
    config = TrainingConfig(epochs=None, budget_s=budget_s, tta="flip_translate", checkpoint_every=checkpoint_every)
    measured = _probe()
    plan = plan_budget(config, steps_per_epoch, measured, spent_s)
    room = budget_s * (1 - PLAN_MARGIN) - spent_s

    def cost(steps: int) -> float:
        return _planned_cost(steps, steps_per_epoch, measured, views=6, checkpoint_every=checkpoint_every)

    assert cost(plan.total_steps) <= room + 1e-9
    assert cost(plan.total_steps + 1) > room  # one more step would not fit
    assert plan.epochs == plan.total_steps / steps_per_epoch
    assert plan.whiten_bias_steps == round(0.3 * plan.total_steps)
    assert plan.budget_s == budget_s and plan.probe == measured


def test_a_faster_machine_plans_proportionally_more_steps() -> None:
    config = TrainingConfig(epochs=None, budget_s=600, checkpoint_every=0)
    slow = plan_budget(config, 100, _probe(step_s=0.2, validation_s=0.0, setup_s=0.0, checkpoint_s=0.0), 0.0)
    fast = plan_budget(config, 100, _probe(step_s=0.1, validation_s=0.0, setup_s=0.0, checkpoint_s=0.0), 0.0)
    assert fast.total_steps == pytest.approx(2 * slow.total_steps, abs=1)
    assert slow.total_steps == math.floor(600 * (1 - PLAN_MARGIN) / 0.2)


def test_a_budget_too_short_for_one_step_is_one_error_naming_the_least_that_works() -> None:
    config = TrainingConfig(epochs=None, budget_s=5)
    with pytest.raises(ParameterError, match=r"cnn\.training\.budget_s \(5 s\) leaves no time to train") as error:
        plan_budget(config, 50, _probe(), 4.0, "cnn.training")
    assert "\n" not in str(error.value) and "give at least" in str(error.value)


@pytest.mark.parametrize(
    ("given", "which"), [({"epochs": 10, "budget_s": 60}, "both"), ({"epochs": None, "budget_s": None}, "neither")]
)
def test_epochs_and_a_budget_together_or_neither_is_a_one_line_error(given: dict, which: str) -> None:
    with pytest.raises(ParameterError, match=f"give exactly one \\(got {which}\\)") as error:
        TrainingConfig.from_dict(given, section="vit.training")
    assert "vit.training.budget_s and vit.training.epochs" in str(error.value)
    assert "\n" not in str(error.value)


def test_a_budgeted_run_plans_from_its_measured_speed_and_builds_its_schedule_for_exactly_that_length(
    monkeypatch: pytest.MonkeyPatch, data_args: dict
) -> None:
    costs = FakeCosts(step_s=0.05, validation_s=0.2, checkpoint_s=0.1).install(monkeypatch)
    training = {**LEARNING_RECIPES["cnn"], "epochs": None, "budget_s": 12.0, "log_every": 0, "ema_every": 1}
    result = train("cnn", TINY_MODELS["cnn"], training, **data_args)
    plan = Plan.from_dict(result.checkpoint["plan"])
    config = TrainingConfig.from_dict(training)

    assert plan.probe.step_s == pytest.approx(0.05)  # measured, on the fake clock
    assert plan.probe.validation_s == pytest.approx(0.2)
    assert plan == plan_budget(config, plan.steps_per_epoch, plan.probe, plan.spent_s)
    assert not plan.total_steps % plan.steps_per_epoch == 0  # the last epoch is partial here
    # The run took exactly the planned steps, in ceil(epochs) epochs, the last one short.
    assert result.final_metrics["steps"] == plan.total_steps == result.checkpoint["global_step"]
    assert [row["steps"] for row in result.history][-1] == plan.total_steps % plan.steps_per_epoch
    assert len(result.history) == plan.epoch_count
    # The schedule and EMA were built for that length: the last step ran at the end of the decay.
    assert result.history[-1]["lr"] == pytest.approx(
        config.lr * lr_factor(plan.total_steps - 1, plan.total_steps, config)
    )
    assert result.checkpoint["scheduler_state"]["last_epoch"] == plan.total_steps
    assert ema_decay_at(plan.total_steps, plan.total_steps, config) == pytest.approx(config.ema_decay)
    # The whitening bias froze at 30% of the planned steps.
    frozen = [g for g in result.checkpoint["optimizer_state"]["param_groups"] if g.get("role") == "whitening_bias"]
    assert frozen and frozen[0]["frozen"]
    assert plan.whiten_bias_steps == round(0.3 * plan.total_steps)
    assert result.final_metrics["wall_time_s"] <= 12.0
    assert costs.steps > plan.total_steps  # the probe's steps came first, and left no trace (test_probe.py)


def test_a_run_on_a_machine_that_slows_down_stops_early_within_its_budget(
    monkeypatch: pytest.MonkeyPatch, data_args: dict
) -> None:
    costs = FakeCosts(step_s=0.05, validation_s=0.2).install(monkeypatch)
    real_adopt = engine.TrainingRun.adopt

    def adopt_then_slow_down(run, plan):  # noqa: ANN001, ANN202
        real_adopt(run, plan)
        costs.step_s *= 3  # everything after the probe runs three times slower than measured

    monkeypatch.setattr(engine.TrainingRun, "adopt", adopt_then_slow_down)
    training = {**LEARNING_RECIPES["cnn"], "epochs": None, "budget_s": 20.0, "log_every": 0}
    result = train("cnn", TINY_MODELS["cnn"], training, **data_args)
    plan = result.checkpoint["plan"]
    assert result.checkpoint["stopped_early"] is True
    assert result.final_metrics["steps"] < plan["total_steps"]
    assert result.final_metrics["wall_time_s"] <= training["budget_s"] + TOLERANCE_S
    assert result.final_metrics["wall_time_s"] > 0.9 * training["budget_s"]  # it used the budget, not gave up early


def test_a_budgeted_run_never_warns_that_it_will_take_long(
    monkeypatch: pytest.MonkeyPatch, data_args: dict, caplog: pytest.LogCaptureFixture
) -> None:
    FakeCosts(step_s=100.0, validation_s=1.0).install(monkeypatch)
    monkeypatch.setattr(monitor, "ETA_WARNING_S", 1.0)
    training = {**LEARNING_RECIPES["simple_cnn"], "epochs": None, "budget_s": 3000.0, "log_every": 0}
    with caplog.at_level("INFO"):
        result = train("simple_cnn", TINY_MODELS["simple_cnn"], training, **data_args)
    assert "projected to take" not in caplog.text
    plan = result.checkpoint["plan"]
    decision = [r.getMessage() for r in caplog.records if r.getMessage().startswith("simple_cnn: budget")]
    assert decision == [
        f"simple_cnn: budget 3000 s; measured {16 / 100.0:,.0f} images/s (100000.0 ms a step over "
        f"{plan['probe']['steps']} steps, validation 1.0 s); planned {plan['total_steps']} steps = "
        f"{plan['epochs']:.2f} epochs after {plan['spent_s']:.1f} s of setup and probe"
    ]


class _Killed(Exception):
    """Stands for the process being killed: raised from a step, after the first checkpoint."""


def test_a_budgeted_run_killed_mid_way_resumes_with_its_recorded_plan_and_ends_as_an_uninterrupted_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path, data_args: dict
) -> None:
    training = {**LEARNING_RECIPES["cnn"], "epochs": None, "budget_s": 10.0, "log_every": 0, "checkpoint_every": 1}
    FakeCosts(step_s=0.05, validation_s=0.2).install(monkeypatch)
    uninterrupted = train("cnn", TINY_MODELS["cnn"], training, **data_args)

    checkpoint = tmp_path / "run.pt"
    FakeCosts(step_s=0.05, validation_s=0.2).install(monkeypatch)
    real_step = engine.train_step

    def killed_in_epoch_three(run, *batch):  # noqa: ANN001, ANN002, ANN202
        if run.global_step == 2 * run.steps_per_epoch + 3 and run.plan.probe is not None:
            raise _Killed
        return real_step(run, *batch)

    monkeypatch.setattr(engine, "train_step", killed_in_epoch_three)
    with pytest.raises(_Killed):
        train("cnn", TINY_MODELS["cnn"], training, checkpoint_path=checkpoint, **data_args)
    monkeypatch.setattr(engine, "train_step", real_step)

    def no_probe(run):  # noqa: ANN001, ANN202
        raise AssertionError("a resumed run measured its speed again")

    monkeypatch.setattr(engine, "probe", no_probe)
    resumed = train("cnn", TINY_MODELS["cnn"], {**training, "resume": True}, checkpoint_path=checkpoint, **data_args)

    assert resumed.checkpoint["plan"] == uninterrupted.checkpoint["plan"]
    assert without_timing(resumed.history) == without_timing(uninterrupted.history)
    assert_same_state(resumed.checkpoint["model_state"], uninterrupted.checkpoint["model_state"])
    assert resumed.final_metrics["steps"] == uninterrupted.final_metrics["steps"]


def test_a_checkpoint_of_an_epochs_run_is_not_resumed_as_a_budgeted_one(tmp_path, data_args: dict) -> None:
    checkpoint = tmp_path / "run.pt"
    training = {**LEARNING_RECIPES["simple_cnn"], "epochs": 1, "log_every": 0}
    train("simple_cnn", TINY_MODELS["simple_cnn"], training, checkpoint_path=checkpoint, **data_args)
    budgeted = {**training, "epochs": None, "budget_s": 30.0, "resume": True}
    with pytest.raises(ParameterError, match="trained to training.epochs and this run gives training.budget_s"):
        train("simple_cnn", TINY_MODELS["simple_cnn"], budgeted, checkpoint_path=checkpoint, **data_args)


def test_in_a_data_parallel_group_the_plan_is_rank_zeros_and_the_group_follows_it(
    monkeypatch: pytest.MonkeyPatch, small: dict, group_of_one
) -> None:
    """Every rank probes the same fixed steps (each waits for the others) and takes rank 0's plan; no clock stop."""
    costs = FakeCosts(step_s=0.05, validation_s=0.2).install(monkeypatch)
    group_of_one(0, 1)
    shared = []
    real_broadcast = engine.ProcessGroup.broadcast

    def broadcast(self, value):  # noqa: ANN001, ANN202
        shared.append(value)
        return real_broadcast(self, value)

    monkeypatch.setattr(engine.ProcessGroup, "broadcast", broadcast)
    real_adopt = engine.TrainingRun.adopt

    def adopt_then_slow_down(run, plan):  # noqa: ANN001, ANN202
        real_adopt(run, plan)
        costs.step_s *= 3  # a single process would stop early; the group does not

    monkeypatch.setattr(engine.TrainingRun, "adopt", adopt_then_slow_down)
    training = {**LEARNING_RECIPES["cnn"], "epochs": None, "budget_s": 8.0, "log_every": 0, "batch_size": 40}
    result = train("cnn", TINY_MODELS["cnn"], training, **small)
    plan = Plan.from_dict(result.checkpoint["plan"])
    assert [value for value in shared if isinstance(value, Plan)] == [plan]
    assert plan.probe.steps == probe.GROUP_STEPS
    assert result.final_metrics["steps"] == plan.total_steps and not result.checkpoint["stopped_early"]

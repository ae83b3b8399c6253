"""Progress of training and evaluation: a bar on a terminal, plain lines elsewhere, a warning for long runs."""

from __future__ import annotations

import io
import logging
import re

import pytest
from rich.console import Console

from image_recognition.common import progress
from image_recognition.common.progress import JobProgress, format_duration
from image_recognition.models.inference import predict_logits
from image_recognition.sources.cifar10.split import channel_statistics
from image_recognition.sources.cifar10.synthetic import make_synthetic_cifar10
from image_recognition.training import monitor, train

EPOCHS, BATCH = 2, 50  # 200 images: 4 steps an epoch


@pytest.fixture(scope="module")
def tiny_run() -> dict:
    """Arguments of ``train`` for a seconds-long simple_cnn run on synthetic data."""
    data = make_synthetic_cifar10(train_per_class=20, test_per_class=5, seed=0)
    mean, std = channel_statistics(data.train_images)
    return {
        "model_name": "simple_cnn",
        "model_config": {},
        "training": {"epochs": EPOCHS, "batch_size": BATCH, "device": "cpu", "log_every": 0},
        "train_split": {"images": data.train_images, "labels": data.train_labels},
        "validation_split": {"images": data.test_images, "labels": data.test_labels},
        "normalization": {"mean": mean, "std": std},
    }


def progress_lines(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == progress.__name__]


class FakeClock:
    """time.perf_counter that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_without_a_terminal_progress_is_plain_lines_at_most_one_per_interval(monkeypatch, caplog):
    clock = FakeClock()
    monkeypatch.setattr(progress.time, "perf_counter", clock)
    monkeypatch.setattr(progress, "_rich_console", lambda: None)
    job = JobProgress("vit", total_steps=100, images_per_step=10)
    job.start_part("epoch 1/2", 50)
    with caplog.at_level(logging.INFO, logger="image_recognition.common.progress"):
        for step in range(50):
            clock.now += 4.0  # a 4-second step
            if step >= 10:  # the caller hands in a loss it has read
                job.show_loss(0.5)
            job.step()
    lines = progress_lines(caplog)
    # 200 s of work at one line per PLAIN_INTERVAL_S (30 s): a line every 8th step.
    assert len(lines) == 200 // 32
    assert lines[0] == "vit epoch 1/2: step 8/50, 2 img/s, ETA 6:08"  # 92 steps left at 4 s; no loss yet
    assert lines[1] == "vit epoch 1/2: step 16/50, loss 0.5000, 2 img/s, ETA 5:36"


def test_a_training_run_without_a_terminal_writes_periodic_lines(tiny_run, monkeypatch, caplog):
    monkeypatch.setattr(progress, "PLAIN_INTERVAL_S", 0.0)  # a line every step
    monkeypatch.setattr(progress, "_rich_console", lambda: None)
    with caplog.at_level(logging.INFO, logger="image_recognition.common.progress"):
        train(**tiny_run)
    lines = progress_lines(caplog)
    assert len(lines) == EPOCHS * 4
    pattern = r"simple_cnn epoch (\d)/2: step (\d)/4, loss \d+\.\d{4}, [\d,]+ img/s, ETA \d+:\d\d"
    steps = [re.fullmatch(pattern, line).groups() for line in lines]
    assert steps == [(str(e), str(s)) for e in (1, 2) for s in (1, 2, 3, 4)]


def test_a_training_run_in_a_terminal_shows_a_bar_with_the_eta(tiny_run, monkeypatch, caplog):
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, color_system=None, width=150)
    monkeypatch.setattr(progress, "_rich_console", lambda: console)
    with caplog.at_level(logging.INFO, logger="image_recognition.common.progress"):
        train(**tiny_run)
    output = screen.getvalue()
    assert "simple_cnn epoch 1/2" in output and "simple_cnn epoch 2/2" in output
    assert re.search(r"4/4 loss \d+\.\d{4} \| [\d,]+ img/s \| ETA \d+:\d\d", output), output[-500:]
    assert not progress_lines(caplog)  # the bar replaces the plain lines


def test_the_bar_shows_the_epochs_running_mean_loss_from_its_sums(tiny_run, monkeypatch):
    """Not a loss the bar reads itself (each read waits for the device): at each epoch's end, its train_loss."""
    console = Console(file=io.StringIO(), force_terminal=True, color_system=None, width=150)
    monkeypatch.setattr(progress, "_rich_console", lambda: console)
    shown_at_the_end = []
    end_part = JobProgress.end_part

    def record_and_end(self):
        shown_at_the_end.append(self.loss)
        end_part(self)

    monkeypatch.setattr(JobProgress, "end_part", record_and_end)
    history = train(**tiny_run).history
    assert shown_at_the_end == pytest.approx([row["train_loss"] for row in history], rel=1e-6)


def test_the_eta_warning_fires_only_past_the_threshold(tiny_run, monkeypatch, caplog):
    monkeypatch.setattr(progress, "_rich_console", lambda: None)
    with caplog.at_level(logging.WARNING, logger=monitor.__name__):
        train(**tiny_run)
        assert not [r for r in caplog.records if r.levelno == logging.WARNING]
        monkeypatch.setattr(monitor, "ETA_WARNING_S", 1e-6)
        train(**tiny_run)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == monitor.__name__]
    assert len(warnings) == 1  # once, after the first epoch
    message = warnings[0]
    assert re.match(r"training simple_cnn is projected to take 0:\d\d on cpu \(2 epochs at \d+ s each\)", message)
    assert "training.budget_s" in message and "training.epochs" in message


def test_durations_read_as_clock_times():
    assert [format_duration(s) for s in (0, 59.6, 61, 3600, 3723, 90061)] == [
        "0:00",
        "1:00",
        "1:01",
        "1:00:00",
        "1:02:03",
        "25:01:01",
    ]


def test_evaluation_shows_its_progress_too(tiny_run, monkeypatch, caplog):
    monkeypatch.setattr(progress, "PLAIN_INTERVAL_S", 0.0)
    monkeypatch.setattr(progress, "_rich_console", lambda: None)
    model = train(**tiny_run).model
    images = tiny_run["validation_split"]["images"]  # 50 images
    stats = tiny_run["normalization"]
    caplog.clear()  # the training's own lines
    with caplog.at_level(logging.INFO, logger=progress.__name__):
        logits = predict_logits(model, images, stats["mean"], stats["std"], batch_size=20, progress="evaluating vit")
    assert logits.shape == (50, 10)
    lines = progress_lines(caplog)
    assert [line.split(",")[0] for line in lines] == [f"evaluating vit 50 images: step {i}/3" for i in (1, 2, 3)]
    assert "loss" not in lines[0]  # evaluation has none to show

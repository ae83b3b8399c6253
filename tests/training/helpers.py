"""What several training test files share: recipes that learn fast, comparisons, data-parallel settings."""

from __future__ import annotations

import multiprocessing

import torch

from image_recognition.models.tiny import TINY_MODELS
from tests.helpers import free_port

# The history columns that do not depend on timing: equal between identical runs.
TIMING_FREE = ("epoch", "steps", "train_loss", "train_objective", "train_accuracy", "val_loss", "val_accuracy", "lr")

# Settings under which each tiny model learns the synthetic classes in seconds.
LEARNING_RECIPES = {
    "cnn": {
        "epochs": 5,
        "batch_size": 64,
        "lr": 0.2,
        "weight_decay": 5e-4,
        "label_smoothing": 0.1,
        "ema_decay": 0.7,
        "ema_every": 2,
        "ema_ramp": True,
        "lookahead": True,
        "tta": "flip_translate",
    },
    "vit": {
        "epochs": 8,
        "batch_size": 64,
        "optimizer": "adamw",
        "lr": 3e-3,
        "weight_decay": 0.05,
        "cutout": 8,
        "ema_decay": 0.9,
    },
    "simple_cnn": {"epochs": 10, "batch_size": 16, "lr": 0.02, "translate": 0},
}

CHANCE = 0.1

LEARNED = 0.6


def without_timing(history: list[dict]) -> list[dict]:
    return [{key: row[key] for key in TIMING_FREE} for row in history]


def assert_same_state(left: dict, right: dict) -> None:
    assert left.keys() == right.keys()
    for key, value in left.items():
        assert torch.equal(value, right[key]), key


# Deterministic runs (no stochastic regularisation), in fp32, with the augmentation on:
# every rank draws the whole global batch's augmentation and keeps its share.
EXACT = {
    "epochs": 2,
    "batch_size": 40,
    "lr": 0.05,
    "autocast": "off",
    "label_smoothing": 0.1,
    "flip": "alternating",
    "translate": 2,
    "whiten_bias_epochs": 1,  # the cnn's stem bias freezes mid-run, in the optimiser: one DDP wrapper
    "log_every": 0,
}
TWO = {"nproc_per_node": 2}
VIT = {**TINY_MODELS["vit"], "drop_path_rate": 0.0}  # patch stem: no BatchNorm
# With the strong augmentation and MixUp/CutMix: each rank makes its share and the share mixed with it.
STRONG = {"trivial_augment": 1.0, "cutout": 8, "mixup_alpha": 0.8, "cutmix_alpha": 1.0}
VIT_TRAINING = {**EXACT, **STRONG, "optimizer": "adamw", "lr": 1e-3}


def largest_difference(left: dict, right: dict) -> float:
    assert left.keys() == right.keys()
    return max((left[key].double() - right[key].double()).abs().max().item() for key in left)


def in_two_processes(target, *args) -> dict[int, tuple]:
    """Run ``target(rank, port, *args, queue)`` for ranks 0 and 1 in spawned processes; {rank: what it put}."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    port = free_port()
    processes = [context.Process(target=target, args=(rank, port, *args, queue)) for rank in (0, 1)]
    for process in processes:
        process.start()
    results = {rank: rest for rank, *rest in (queue.get(timeout=300) for _ in processes)}
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    return results

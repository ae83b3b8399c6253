"""Evaluated results of untrained models on synthetic data: enough to draw every figure."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from image_recognition.models import build_model, validate_model_config
from image_recognition.pipelines.evaluation.nodes import evaluate_model

TINY_CONFIGS = {"simple_cnn": {}, "vit": {"depth": 1, "embed_dim": 32, "num_heads": 2, "patch_size": 8}}
TRAINING_TTA = {"simple_cnn": "none", "vit": "flip_translate"}  # evaluation follows each checkpoint's own


def fake_checkpoint(name: str, **training_config) -> dict:
    torch.manual_seed(0)
    config = validate_model_config(name, TINY_CONFIGS[name])
    return {
        "format": 1,
        "model_name": name,
        "model_config": config,
        "model_state": build_model(name, config).state_dict(),
        "ema_state": None,
        "normalization": {"mean": [0.5] * 3, "std": [0.25] * 3},
        "training_config": {"seed": 0, "tta": TRAINING_TTA[name], "autocast": "auto", **training_config},
        "epoch": 2,
        "history": fake_history().to_dict("records"),
        "data": {"md5": "0" * 32, "url": "synthetic://cifar10"},
    }


def fake_history() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "epoch": [1, 2],
            "train_loss": [2.0, 1.5],  # plain cross-entropy, like val_loss
            "train_objective": [2.2, 1.8],  # with label smoothing: not plotted against val_loss
            "train_accuracy": [0.2, 0.4],
            "val_loss": [2.1, 1.7],
            "val_accuracy": [0.2, 0.35],
            "train_time_s": [1.0, 2.0],
            "wall_time_s": [4.0, 5.0],
            "compile_time_s": [3.0, 3.0],
        }
    )


@pytest.fixture(scope="session")
def evaluation_inputs(synthetic_data):
    test = {"images": synthetic_data.test_images, "labels": synthetic_data.test_labels}
    report = {
        "class_names": synthetic_data.class_names,
        "source": {"url": "synthetic://cifar10", "md5": "0" * 32},
        "sizes": {"test": len(synthetic_data.test_labels)},
    }
    params = {"latency_repeats": 2, "throughput_batch_size": 16, "throughput_batches": 2, "top_errors": 10}
    return test, report, params


@pytest.fixture(scope="session")
def evaluated(evaluation_inputs):
    """model -> the six parts the report reads, for simple_cnn and a tiny vit."""
    test, report, params = evaluation_inputs
    results = {}
    for name in TINY_CONFIGS:
        metrics, per_class, confusion, reliability, errors = evaluate_model(fake_checkpoint(name), test, report, params)
        results[name] = {
            "metrics": metrics,
            "history": fake_history(),
            "per_class": per_class,
            "confusion": confusion,
            "reliability": reliability,
            "errors": errors,
        }
    return results

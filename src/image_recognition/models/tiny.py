"""Tiny model configs for smoke runs and tests: each model trains in seconds on two CPU cores.

One source for the tests (``tests/training``) and the GPU benchmark's smoke run
(``benchmarks/gpu_benchmark.py --smoke``). Each entry overrides a model's
defaults, which is how the tests use it, or a recipe's ``model`` block, which is
how the smoke run shrinks the GPU recipes. ``stem_channels`` only counts where
the conv stem is chosen (the GPU vit recipe); the default patch stem ignores it.
No Kedro imports here.
"""

from __future__ import annotations

from typing import Any

TINY_MODELS: dict[str, dict[str, Any]] = {
    "simple_cnn": {},
    "cnn": {"widths": [16, 32, 32]},
    "vit": {"embed_dim": 32, "depth": 2, "num_heads": 2, "drop_path_rate": 0.1, "stem_channels": [8, 16, 16]},
}

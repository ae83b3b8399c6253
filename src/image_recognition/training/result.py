"""What a training run takes and returns: the splits, the result, the history's timing columns, divergence."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

ArrayLike = np.ndarray | torch.Tensor
# A data split as the catalog loads it: {"images": uint8 (N, 3, H, W), "labels": (N,)}.
Split = Mapping[str, ArrayLike]
# Per-channel statistics on the 0..1 scale: {"mean": [...], "std": [...]}.
Normalization = Mapping[str, Sequence[float]]

# History columns that measure time and so differ between identical runs.
TIMING_KEYS = ("epoch_time_s", "images_per_s", "train_time_s", "wall_time_s", "compile_time_s")


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite: the run has diverged."""


@dataclass
class TrainResult:
    """What :func:`image_recognition.training.train` returns.

    ``checkpoint`` is the final checkpoint dict (loadable with
    ``weights_only=True`` once saved), ``history`` one dict per epoch, ``model``
    the trained model in eval mode (EMA weights if any) on the training device,
    ``final_metrics`` the validation loss/accuracy with the configured TTA,
    ``setup_time_s`` the time spent before the first step (data upload,
    whitening, model build) and ``compile_time_s`` the time spent warming up
    ``torch.compile`` before the training clock started (0 without compile).
    ``compiled`` says whether the steps ran compiled: False without compile,
    and when compiling failed and the run fell back to the eager module.
    """

    checkpoint: dict[str, Any]
    history: list[dict[str, Any]]
    model: nn.Module
    final_metrics: dict[str, Any] = field(default_factory=dict)
    setup_time_s: float = 0.0
    compile_time_s: float = 0.0
    compiled: bool = False

"""Evaluation settings as one validated dataclass, built from the ``evaluation`` parameters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from image_recognition.common.device import AUTO, DEVICES
from image_recognition.common.errors import ParameterError
from image_recognition.common.params import config_from_dict, null_or_one_of, one_of, positive_int
from image_recognition.models.inference import TTA_MODES, tta_mode

# The settings that count something: each must be a positive integer.
_COUNTS = (
    "batch_size",
    "throughput_batch_size",
    "throughput_batches",
    "latency_repeats",
    "calibration_bins",
    "top_errors",
)


@dataclass(frozen=True)
class EvaluationConfig:
    """How a checkpoint is scored and timed on the test split (parameters_evaluation.yml)."""

    # Test-time augmentation of the headline accuracy: None takes the
    # checkpoint's own training tta, so a model trained without flips is not
    # scored with them.
    tta: str | None = None
    batch_size: int = 1000  # evaluation batch size
    throughput_batch_size: int = 256  # batch size of the throughput measurement
    throughput_batches: int = 50  # timed batches after warm-up; fewer make a noisier figure
    latency_repeats: int = 20  # single-image forward passes; the median is reported
    calibration_bins: int = 15  # expected calibration error and its reliability table
    top_errors: int = 24  # most confident mistakes kept for the gallery
    device: str = AUTO  # cuda, then mps, then cpu

    @classmethod
    def from_dict(cls, params: dict[str, Any] | None) -> EvaluationConfig:
        """The ``evaluation`` parameters over the defaults; unknown keys are refused."""
        return config_from_dict(cls, params, "evaluation")

    def __post_init__(self) -> None:
        null_or_one_of("evaluation.tta", self.tta, TTA_MODES, "the checkpoint's own")
        for name in _COUNTS:
            positive_int(f"evaluation.{name}", getattr(self, name))
        one_of("evaluation.device", self.device, DEVICES)

    def tta_for(self, checkpoint: dict[str, Any]) -> str:
        """The TTA mode to score ``checkpoint`` with: this config's, else the one it was validated with in training."""
        if self.tta is not None:
            return self.tta
        tta = (checkpoint.get("training_config") or {}).get("tta", "none")
        try:
            return tta_mode(tta)
        except ValueError:
            raise ParameterError(
                f"{checkpoint['model_name']} checkpoint has training tta {tta!r}; "
                f"set evaluation.tta to one of {TTA_MODES}"
            ) from None

"""The training engine in plain PyTorch: no Kedro imports, runs where torch runs.

:func:`train` (in :mod:`.run`) is the entry point; it may import models, sources and common, never a layer above.
"""

from image_recognition.models import validate_model_config
from image_recognition.models.inference import load_model, predict_logits
from image_recognition.training.checkpoint import load_checkpoint, save_checkpoint
from image_recognition.training.config import TrainingConfig
from image_recognition.training.result import TIMING_KEYS, NonFiniteLossError, TrainResult
from image_recognition.training.run import train

__all__ = [
    "TIMING_KEYS",
    "NonFiniteLossError",
    "TrainResult",
    "TrainingConfig",
    "load_checkpoint",
    "load_model",
    "predict_logits",
    "save_checkpoint",
    "train",
    "validate_model_config",
]

"""The tiny configs of the smoke runs: valid, and much smaller than each model's defaults."""

from __future__ import annotations

import pytest

from image_recognition.models import MODEL_NAMES, count_parameters, meta_model, validate_model_config
from image_recognition.models.tiny import TINY_MODELS


def test_every_model_has_a_tiny_config() -> None:
    assert set(TINY_MODELS) == set(MODEL_NAMES)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_a_tiny_config_is_valid_and_no_larger_than_the_default(name: str) -> None:
    tiny = count_parameters(meta_model(name, validate_model_config(name, TINY_MODELS[name])))
    default = count_parameters(meta_model(name))
    assert tiny <= default
    if TINY_MODELS[name]:  # the tutorial network has nothing to shrink
        assert tiny < default / 10

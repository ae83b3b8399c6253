"""What a run returns: defaults that say nothing was compiled or warmed up, and the timing columns of its history."""

from __future__ import annotations

from torch import nn

from image_recognition.training import train
from image_recognition.training.result import TIMING_KEYS, NonFiniteLossError, TrainResult


def test_a_result_says_nothing_was_compiled_unless_told() -> None:
    result = TrainResult(checkpoint={}, history=[], model=nn.Linear(1, 1))
    assert (result.final_metrics, result.setup_time_s, result.compile_time_s, result.compiled) == ({}, 0.0, 0.0, False)
    assert issubclass(NonFiniteLossError, RuntimeError)


def test_every_timing_key_is_a_column_of_the_history(data_args: dict) -> None:
    result = train("simple_cnn", {}, {"epochs": 1, "batch_size": 250, "translate": 0}, **data_args)
    assert set(TIMING_KEYS) <= set(result.history[-1])

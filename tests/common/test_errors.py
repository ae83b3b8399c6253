"""The errors a user can fix: one base class that the CLI catches, and ValueErrors where a value is wrong."""

from __future__ import annotations

import pytest

from image_recognition.common.errors import DataValidationError, InputError, ParameterError


@pytest.mark.parametrize("error", [ParameterError, DataValidationError])
def test_a_bad_parameter_or_bad_data_is_an_input_error_and_a_value_error(error):
    assert issubclass(error, InputError)
    assert issubclass(error, ValueError)  # callers that catch ValueError keep working

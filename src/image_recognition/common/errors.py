"""Errors a user can fix. The ``kedro run`` wrapper prints only their message."""


class InputError(Exception):
    """Bad input (data, archive or parameters): the message names the problem and the fix."""


class ParameterError(InputError, ValueError):
    """A parameter is unknown, missing or out of range."""


class DataValidationError(InputError, ValueError):
    """The decoded data set does not have CIFAR-10's shapes, types or labels."""

"""Project CLI: Kedro's own ``run``, with one-line errors for bad input.

A run that fails on bad input (a checksum mismatch, a hostile archive, an
unknown parameter) ends with the error's message and exit status 1 instead of
a page of traceback; every other failure keeps Kedro's full traceback.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from typing import Any

import click
from kedro.framework.cli.project import run as kedro_run

from image_recognition.errors import InputError


@click.group(name="image_recognition")
def cli() -> None:
    """Commands of the image_recognition project."""


def _short_errors(callback: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(callback)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return callback(*args, **kwargs)
        except InputError as exc:
            raise click.ClickException(f"{type(exc).__name__}: {exc}") from None

    return wrapper


run = copy.copy(kedro_run)
run.callback = _short_errors(kedro_run.callback)
cli.add_command(run)

"""Project CLI: Kedro's own ``run``, with one-line errors for bad input, and ``predict``.

A run that fails on bad input (a checksum mismatch, a hostile archive, an
unknown parameter) ends with the error's message and exit status 1 instead of
a page of traceback; every other failure keeps Kedro's full traceback.

``kedro predict`` (and ``image-recognition predict``) predicts image files
named on the command line with a checkpoint from the project's catalog:

    image-recognition predict --model cnn [--checkpoint-version V] [--json] [--keep-going] PATH...

Exit status 0 when every file was predicted; 1 with one ``Error:`` line on the
first bad file, or, with ``--keep-going``, after predicting every good file and
reporting each bad one.

``kedro params`` (and ``image-recognition params``) shows one block of parameters
as a run resolves it, so no one merges ``conf/base`` and an environment in their head:

    image-recognition params cnn --env cpu

A model's block is its whole recipe with the code's defaults filled in, as its
training pipeline checks it; ``evaluation`` likewise; any other block as merged.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import pandas as pd
import yaml
from kedro.framework.cli.project import run as kedro_run
from kedro.framework.project import settings
from kedro.framework.session import KedroSession
from kedro.io.core import DatasetError, Version

from image_recognition.common.errors import InputError
from image_recognition.common.params import config_to_dict
from image_recognition.datasets.files import saved_versions
from image_recognition.datasets.images import image_loaders
from image_recognition.evaluation.config import EvaluationConfig
from image_recognition.models import MODEL_NAMES, check_model_name
from image_recognition.pipelines.training.nodes import check_training_params
from image_recognition.serving.prediction import PredictConfig, UntrainedModelError, predict_images


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
        except DatasetError as exc:
            # The catalog wraps a dataset's refusal of its file (a crafted checkpoint) in a plain DatasetError.
            if isinstance(exc.__cause__, InputError):
                raise click.ClickException(f"{type(exc.__cause__).__name__}: {exc.__cause__}") from None
            raise

    return wrapper


run = copy.copy(kedro_run)
run.callback = _short_errors(kedro_run.callback)
cli.add_command(run)


@cli.command()
@click.option("--model", "-m", required=True, help=f"the model whose checkpoint predicts: {', '.join(MODEL_NAMES)}")
@click.option("--checkpoint-version", help="a version of <model>.checkpoint (default: the latest)")
@click.option("--env", "-e", envvar="KEDRO_ENV", help="the Kedro environment whose catalog holds the checkpoints")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per file on stdout instead of a table")
@click.option("--keep-going", is_flag=True, help="predict every good file and report each bad one (exit 1 if any)")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
def predict(  # noqa: PLR0913 (the command's options)
    model: str,
    checkpoint_version: str | None,
    env: str | None,
    as_json: bool,
    keep_going: bool,
    paths: tuple[Path, ...],
) -> None:
    """Predict the class of each image file, and of each image in each folder, in PATHS."""
    # Kedro's and the project's log lines go to stderr: stdout holds only the answer.
    stdout = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):
        try:
            check_model_name(model, "--model")
            with KedroSession.create(project_path=Path.cwd(), env=env) as session:
                context = session.load_context()
            params = {**(context.params.get("predict") or {}), "model": model, "keep_going": keep_going}
            params.pop("input_dir", None)
            config = PredictConfig.from_dict(params)
            checkpoint, version = _load_checkpoint(context.catalog, model, checkpoint_version)
            loaders = image_loaders(paths)
            predictions = predict_images(loaders, checkpoint, config, version, thumbnails=False)
        except InputError as exc:
            raise click.ClickException(str(exc)) from None
    _print_predictions(predictions.table, as_json, stdout)
    if len(predictions.failed):
        sys.exit(1)


@cli.command()
@click.argument("name")
@click.option("--env", "-e", envvar="KEDRO_ENV", help="the Kedro environment (default: as kedro run picks it)")
@click.option(
    "--conf-source",
    type=click.Path(exists=True, path_type=Path),
    help="the configuration folder or archive, as for a packaged run (default: the project's conf/)",
)
def params(name: str, env: str | None, conf_source: Path | None) -> None:
    """Show the parameters NAME (a model: its recipe) as a run resolves them, with the code's defaults."""
    stdout = sys.stdout
    # The loader logs what it chose: to stderr, so that stdout holds only the YAML.
    with contextlib.redirect_stdout(sys.stderr):
        source = conf_source or Path.cwd() / settings.CONF_SOURCE
        loader = settings.CONFIG_LOADER_CLASS(str(source), env=env, **settings.CONFIG_LOADER_ARGS)
        parameters = loader["parameters"]
        if name not in parameters:
            raise click.ClickException(f"no parameters named {name!r}; the names are {', '.join(sorted(parameters))}")
        try:
            resolved = _with_defaults(name, parameters[name])
        except InputError as exc:
            raise click.ClickException(str(exc)) from None
    layers = [loader.base_env, getattr(loader, "hardware_env", None), loader.env or loader.default_run_env]
    stdout.write(f"# {name}: {' + '.join(f'conf/{layer}' for layer in dict.fromkeys(filter(None, layers)))}\n")
    stdout.write(yaml.dump({name: resolved}, Dumper=_FlowListDumper, sort_keys=False))


def _with_defaults(name: str, block: Any) -> Any:
    """A model's block, or ``evaluation``, validated with the code's defaults filled in; any other block as it is."""
    if name in MODEL_NAMES and isinstance(block, dict):
        spec = check_training_params(block.get("model"), block.get("training"))
        rest = {key: value for key, value in block.items() if key not in ("model", "training")}
        resolved = {"model": {"name": spec["model_name"], **spec["model_config"]}, "training": spec["training"], **rest}
    elif name == "evaluation":
        resolved = config_to_dict(EvaluationConfig.from_dict(block))
    else:
        resolved = block
    return json.loads(json.dumps(resolved))  # plain lists and dicts for YAML


class _FlowListDumper(yaml.SafeDumper):
    """YAML as the parameter files write it: lists on one line (``widths: [64, 128, 256]``)."""

    def represent_list(self, data: list[Any]) -> yaml.Node:
        return self.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True)


_FlowListDumper.add_representer(list, _FlowListDumper.represent_list)


def _load_checkpoint(catalog: Any, model: str, version: str | None) -> tuple[dict[str, Any], str]:
    """``<model>.checkpoint`` from the project's catalog: the pinned version, else the latest."""
    name = f"{model}.checkpoint"
    dataset = catalog.get(name, version=Version(version, None) if version else None)
    saved = saved_versions(dataset)
    if not saved:
        raise UntrainedModelError(model)
    if version is not None and version not in saved:
        raise InputError(f"{name} has no version {version!r}; the saved ones are {', '.join(saved[-5:])} (newest last)")
    return dataset.load(), dataset.resolve_load_version()


def _print_predictions(table: pd.DataFrame, as_json: bool, stdout: Any) -> None:
    """The table as JSON lines or a rich table; its file names are already escaped by ``display_name``."""
    rows = table.to_dict("records")
    if as_json:
        for row in rows:
            record = {key: value for key, value in row.items() if not pd.isna(value)}  # no class on an error row
            stdout.write(json.dumps(record) + "\n")
        stdout.flush()
        return
    from rich.console import Console  # noqa: PLC0415 (only the table needs rich)
    from rich.table import Table  # noqa: PLC0415
    from rich.text import Text  # noqa: PLC0415

    shown = Table(title=f"{table['model'].iloc[0]} {table['checkpoint_version'].iloc[0]}")
    # File names are never shortened: folded on a terminal, on one line in a pipe or a file.
    shown.add_column("file", overflow="fold")
    for name in ("class", "probability", "2nd", "3rd"):
        shown.add_column(name)
    for row in rows:
        if isinstance(row["error"], str):
            click.echo(f"Error: {row['error']}", err=True)
            continue
        ranks = [
            f"{row[f'class_{k}']} {row[f'probability_{k}']:.1%}"
            for k in (2, 3)
            if isinstance(row.get(f"class_{k}"), str)
        ]
        # Text: a name is shown as it is, never read as rich markup ("[red]", "[/]").
        shown.add_row(Text(row["file"]), row["class"], f"{row['probability']:.1%}", *ranks, *[""] * (2 - len(ranks)))
    Console(file=stdout, width=None if stdout.isatty() else 10_000).print(shown)

"""Kedro's configuration loader, plus a recipe layer chosen by the hardware found.

Kedro merges two layers of ``conf/``: ``base`` and one run environment
(``--env``, else ``$KEDRO_ENV``, else ``local``). The recipes in ``base`` are
sized for a GPU; on a CPU they would train for the better part of a day. So
when the user has not chosen an environment, this loader merges three
layers: ``base``, then the hardware's recipe environment (``cpu`` where torch
finds no CUDA device, none where it does), then ``local``, so the user's own
settings still win. An explicit ``--env`` or ``KEDRO_ENV`` turns the hardware
layer off: ``--env=base`` forces the GPU recipes, ``--env=cpu`` the CPU ones.

``kedro run``, ``kedro viz``, the notebook and the Airflow tasks all load
their configuration through this class (``CONFIG_LOADER_CLASS`` in
``settings.py``), so they resolve alike. What was chosen, and why, is logged
once per process.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from kedro.config import MissingConfigException, OmegaConfigLoader
from omegaconf import OmegaConf

logger = logging.getLogger(__name__)

# The environment holding the recipes for machines without CUDA.
CPU_ENV = "cpu"
# Globals that `--params` (and an Airflow DAG run's kedro_params) may set for one run.
RUNTIME_GLOBALS = frozenset({"data_root", "scratch_root"})
_announced: set[str] = set()


def hardware_env() -> str | None:
    """The recipe environment for this machine: ``cpu`` without CUDA, None (the GPU recipes of base) with it."""
    return None if torch.cuda.is_available() else CPU_ENV


def training_lengths(parameters: dict[str, Any]) -> str:
    """How long each model trains, in words: "training budgets cnn 660 s, vit 660 s" (epochs where not budgeted)."""
    if parameters.get("training_budget_s") is not None:
        return f"a training budget of {_seconds(parameters['training_budget_s'])} for every model (training_budget_s)"
    lengths = []
    for name, block in sorted(parameters.items()):
        training = block.get("training") if isinstance(block, dict) else None
        if isinstance(training, dict) and isinstance(block.get("model"), dict):
            budget = training.get("budget_s")
            lengths.append(
                f"{name} {_seconds(budget)}" if budget is not None else f"{name} {training.get('epochs')} epochs"
            )
    return "training " + ", ".join(lengths)


def _seconds(value: Any) -> str:
    """A budget as the log line shows it; a value that is not a number is shown as given (the checks refuse it)."""
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    return f"{value:g} s" if is_number else f"{value!r} s"


def _announce(message: str) -> None:
    """Log ``message`` once per process: a run creates more than one loader."""
    if message not in _announced:
        _announced.add(message)
        logger.info(message)


class HardwareAwareConfigLoader(OmegaConfigLoader):
    """An OmegaConfigLoader that, when no environment was chosen, layers the hardware's recipes under ``local``."""

    def __init__(self, conf_source: str, env: str | None = None, **kwargs: Any) -> None:
        self.hardware_env = None if env else hardware_env()  # before super(), which loads the globals
        super().__init__(conf_source, env=env, **kwargs)
        if env:
            _announce(f"configuration environment {env!r}, as chosen (--env or KEDRO_ENV)")
        elif not self.hardware_env:
            _announce(
                f"CUDA device found: using the GPU recipes (conf/{self.base_env}); --env={CPU_ENV} forces the CPU ones"
            )

    def __getitem__(self, key: str) -> dict[str, Any]:
        if key in self or key not in self.config_patterns:
            return super().__getitem__(key)
        if key == "globals":
            OmegaConf.clear_resolver("runtime_params")  # not allowed in globals, as in Kedro's own loader
        else:
            self._register_runtime_params_resolver()
        run_env = self.env or self.default_run_env
        merged = self._merge_layers(key, [self.base_env, *filter(None, [self.hardware_env]), run_env])
        if key == "parameters" and self.hardware_env:
            _announce(
                f"no CUDA device found: using the {self.hardware_env} recipes (conf/{self.hardware_env}), "
                f"{training_lengths(merged)}; --env=base forces the GPU recipes"
            )
        if key == "globals":
            # `--params data_root=s3://bucket/prefix` moves every layer: globals take
            # no ${runtime_params:...}, so the loader puts the value in.
            merged.update({k: v for k, v in (self.runtime_params or {}).items() if k in RUNTIME_GLOBALS})
        return merged

    def _merge_layers(self, key: str, envs: list[str]) -> dict[str, Any]:
        """Each environment's files merged and resolved on their own, then merged in order, as Kedro merges two.

        Each layer merges into the ones below it with Kedro's ``merge_strategy``
        for ``key``: "soft" (key by key) for parameters, so an environment lists
        only what it changes (``settings.py``). One difference from Kedro:
        ``--params`` values are merged into each layer's own top-level keys
        only. Kedro merges them into a layer whole, so ``--params
        dataset.validation_size=0`` with ``--env=cpu`` (whose files have no
        ``dataset`` block) made a ``dataset`` block of that one key, which a
        destructive merge would put in place of all of base's.
        """
        patterns = [*self.config_patterns[key]]
        processed: set = set()
        merged: dict[str, Any] | None = None
        for env in dict.fromkeys(envs):  # in order, each once
            path = self._get_conf_env_path(env)
            files = self._read_dir_configs(path, patterns, key, processed, key == "credentials")
            own_keys = {top for config in files.values() for top in config}  # before the merge adds --params
            layer = self._merge_and_resolve(key, files)
            if merged is None:
                merged = layer
                continue
            layer = {top: value for top, value in layer.items() if top in own_keys}
            merged = self._merge_configs(merged, layer, key, path)
        if not processed and key != "globals":
            raise MissingConfigException(f"No files of YAML or JSON format found in {envs} matching {patterns}")
        return merged or {}

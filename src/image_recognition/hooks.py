"""Project hooks."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.io import AbstractVersionedDataset
from kedro.pipeline import Pipeline

logger = logging.getLogger(__name__)


class DiscardFailedRunHook:
    """Remove the versions a failed run saved, so no later run loads half a run.

    Kedro saves each node's outputs as soon as the node finishes. Were a run to
    fail after its split node, ``latest`` would then mix new splits with old
    statistics. On a pipeline error this hook deletes every versioned output
    the run saved under its own save version; earlier versions stay untouched.
    """

    def __init__(self) -> None:
        self._catalog: Any = None
        self._saved: list[str] = []

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Pipeline, catalog: Any) -> None:
        self._catalog, self._saved = catalog, []

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any, node: Any) -> None:
        self._saved.append(dataset_name)

    @hook_impl
    def on_pipeline_error(self, error: Exception, run_params: dict[str, Any], pipeline: Pipeline, catalog: Any) -> None:
        for name in self._saved:
            dataset = catalog.get(name) if name in catalog else None
            if not isinstance(dataset, AbstractVersionedDataset) or not dataset._version:
                continue
            version = dataset._version.save
            if not version:
                continue
            folder = Path(str(dataset._get_versioned_path(version))).parent
            if folder.is_dir():
                shutil.rmtree(folder)
                logger.warning("Run failed: removed %s, which it had saved", folder)
        self._saved = []

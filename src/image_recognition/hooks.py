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


class ValidateParametersHook:
    """Run the parameter-checking nodes before anything else in the pipeline.

    Nodes whose function has ``validates_parameters = True`` take only
    parameters, so they can run before the first node: a typo in a training
    recipe then fails the run at once, not after the data stages.
    """

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Pipeline, catalog: Any) -> None:
        for node in pipeline.nodes:
            if getattr(node.func, "validates_parameters", False):
                node.run({name: catalog.load(name) for name in node.inputs})


class InputVersionsHook:
    """Tell provenance-recording nodes which catalog versions they were given.

    Nodes never see the catalog, so they cannot know that their checkpoint is
    version ``2026-…Z`` of ``cnn.checkpoint``. For nodes whose function has
    ``records_input_versions = True``, every dict loaded from a versioned
    dataset is handed over as a copy with a ``_catalog_version`` key; this
    respects ``--load-versions`` pins.
    """

    @hook_impl
    def before_node_run(self, node: Any, catalog: Any, inputs: dict[str, Any]) -> dict[str, Any] | None:
        if not getattr(node.func, "records_input_versions", False):
            return None
        updated = {}
        for name, value in inputs.items():
            dataset = catalog.get(name) if name in catalog else None
            if isinstance(value, dict) and isinstance(dataset, AbstractVersionedDataset) and dataset._version:
                updated[name] = {**value, "_catalog_version": dataset.resolve_load_version()}
        return updated or None

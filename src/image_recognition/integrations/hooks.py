"""Project hooks."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import fsspec
from kedro.framework.hooks import hook_impl
from kedro.io import AbstractVersionedDataset
from kedro.io.core import get_filepath_str
from kedro.pipeline import Node, Pipeline

from image_recognition.common.errors import InputError

logger = logging.getLogger(__name__)

# Node tags the hooks act on, set where each pipeline is declared (pipelines/*/pipeline.py),
# so kedro viz shows which nodes a hook touches.
VALIDATES_PARAMETERS = "validates_parameters"
RECORDS_INPUT_VERSIONS = "records_input_versions"


class DataStoreHook:
    """Give the data root's filesystem the ``data_store`` credentials, before any dataset is made.

    With ``data_root`` on object storage (``s3://bucket/prefix``), every catalog
    entry and the archive cache reach it with the storage options of the
    ``data_store`` entry in ``conf/local/credentials.yml``; without that entry,
    the filesystem's standard sources apply (``AWS_*`` variables, ``~/.aws``).
    See :mod:`image_recognition.common.storage`.
    """

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        from kedro.config import MissingConfigException  # noqa: PLC0415

        from image_recognition.common.storage import DATA_STORE_CREDENTIALS, configure_data_store  # noqa: PLC0415

        data_root = str(context.config_loader["globals"].get("data_root", "data"))
        try:
            credentials = context.config_loader["credentials"]
        except MissingConfigException:
            credentials = {}
        configure_data_store(data_root, credentials.get(DATA_STORE_CREDENTIALS))


class DiscardFailedRunHook:
    """Remove the versions a failed run saved, so no later run loads half a run.

    Kedro saves each node's outputs as soon as the node finishes. Were a run to
    fail after its split node, ``latest`` would then mix new splits with old
    statistics. This hook records each versioned dataset the run saves; on a
    pipeline error it deletes those files, at this run's save version, on
    whatever filesystem the dataset uses. Nothing else is touched: not earlier
    versions, and not another run's files, even one that got the same save
    version and made this run's save fail. A save that fails writes nothing
    (every versioned dataset of the catalog writes its file whole or not at all).

    A run killed outright (SIGKILL, out of memory) or stopped with Ctrl-C gets
    no error hook from Kedro: its finished outputs stay, each complete.
    Saves are recorded where hooks run in the session's process: Kedro's
    ``SequentialRunner`` (the project's) and ``ThreadRunner``, not ``ParallelRunner``.
    """

    def __init__(self) -> None:
        # Names this run saved. settings.HOOKS holds one instance for every session of the
        # process, and a process runs one session at a time.
        self._saved: list[str] = []

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Pipeline, catalog: Any) -> None:
        self._saved = []

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any, node: Node) -> None:
        self._saved.append(dataset_name)

    @hook_impl
    def after_pipeline_run(self, run_params: dict[str, Any], run_result: Any, pipeline: Pipeline, catalog: Any) -> None:
        self._saved = []

    @hook_impl
    def on_pipeline_error(self, error: Exception, run_params: dict[str, Any], pipeline: Pipeline, catalog: Any) -> None:
        saved, self._saved = self._saved, []
        for name in sorted(set(saved)):
            dataset = catalog.get(name) if name in catalog else None
            version = getattr(getattr(dataset, "_version", None), "save", None)
            if not isinstance(dataset, AbstractVersionedDataset) or not version:
                continue
            # kedro-datasets' datasets and the project's keep their fsspec filesystem
            # in _fs: the version may be on object storage.
            fs = getattr(dataset, "_fs", None) or fsspec.filesystem("file")
            protocol = getattr(dataset, "_protocol", "file")
            path = dataset._get_versioned_path(version)
            file, folder = get_filepath_str(path, protocol), get_filepath_str(path.parent, protocol)
            if fs.exists(file):
                fs.rm(file)
                logger.warning("Run failed: removed %s, which it had saved", file)
            with contextlib.suppress(OSError):  # the version folder stays if anything else is in it
                if fs.isdir(folder) and not fs.ls(folder):
                    fs.rmdir(folder)


class SelectedCheckpointHook:
    """Give the ``predict`` and ``export`` pipelines the checkpoint their parameters name.

    Their nodes take ``predict_checkpoint`` and ``export_checkpoint``; this hook
    makes each the very dataset ``<model>.checkpoint`` of the model that
    ``predict.model`` (``export.model``) names, so ``--load-versions=
    cnn.checkpoint:<version>`` pins it as it pins evaluation's. An unknown
    model name is left to the pipeline's parameter check, which names the fix.
    A run of a pipeline that takes the checkpoint of a model never trained
    stops before its first node, with the command that trains one.
    """

    ALIASES = {"predict_checkpoint": "params:predict.model", "export_checkpoint": "params:export.model"}

    @hook_impl
    def after_catalog_created(self, catalog: Any, parameters: dict[str, Any], load_versions: dict[str, str]) -> None:
        from image_recognition.datasets.files import saved_versions  # noqa: PLC0415 (keeps torch out of hook loading)
        from image_recognition.models import MODEL_NAMES  # noqa: PLC0415

        for alias, parameter in self.ALIASES.items():
            model = parameters.get(parameter)
            if model not in MODEL_NAMES:
                continue
            name = f"{model}.checkpoint"
            dataset = catalog.get(name)
            pinned = (load_versions or {}).get(name)
            if pinned and pinned not in (saved := saved_versions(dataset)):
                raise InputError(
                    f"--load-versions names {name}:{pinned}, which was never saved; "
                    f"the saved versions are {', '.join(saved[-5:]) or 'none'} (newest last)"
                )
            catalog[alias] = dataset

    @hook_impl(tryfirst=True)  # before any tracking run opens; after ValidateParametersHook, registered later
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Pipeline, catalog: Any) -> None:
        from image_recognition.datasets.files import saved_versions  # noqa: PLC0415
        from image_recognition.serving.prediction import UntrainedModelError  # noqa: PLC0415

        inputs = pipeline.inputs()
        for alias, parameter in self.ALIASES.items():
            if alias in inputs and alias in catalog and not saved_versions(catalog.get(alias)):
                raise UntrainedModelError(catalog.load(parameter))


class ValidateParametersHook:
    """Run the parameter-checking nodes before anything else in the pipeline.

    Nodes tagged ``validates_parameters`` take only parameters, so they can run
    before the first node: a typo in a training recipe then fails the run at
    once, not after the data stages. (They run again in their place, where
    their output is used.) It runs before any other hook's ``before_pipeline_run``,
    so a bad recipe fails before kedro-mlflow opens an MLflow run that Kedro,
    failing outside the pipeline, would never close as failed.
    """

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Pipeline, catalog: Any) -> None:
        for node in pipeline.only_nodes_with_tags(VALIDATES_PARAMETERS).nodes:
            node.run({name: catalog.load(name) for name in node.inputs})


class InputVersionsHook:
    """Tell provenance-recording nodes which catalog versions they were given.

    Nodes never see the catalog, so they cannot know that their checkpoint is
    version ``2026-…Z`` of ``cnn.checkpoint``. For nodes tagged
    ``records_input_versions``, every dict loaded from a versioned dataset is
    handed over as a copy with a ``_catalog_version`` key; this respects
    ``--load-versions`` pins.
    """

    @hook_impl
    def before_node_run(self, node: Node, catalog: Any, inputs: dict[str, Any]) -> dict[str, Any] | None:
        if RECORDS_INPUT_VERSIONS not in node.tags:
            return None
        updated = {}
        for name, value in inputs.items():
            dataset = catalog.get(name) if name in catalog else None
            if isinstance(value, dict) and isinstance(dataset, AbstractVersionedDataset) and dataset._version:
                updated[name] = {**value, "_catalog_version": dataset.resolve_load_version()}
        return updated or None

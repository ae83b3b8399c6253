"""Project hooks."""

from __future__ import annotations

import logging
from typing import Any

import fsspec
from kedro.framework.hooks import hook_impl
from kedro.io import AbstractVersionedDataset
from kedro.io.core import get_filepath_str
from kedro.pipeline import Node, Pipeline

from image_recognition.errors import InputError

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
    See :mod:`image_recognition.storage`.
    """

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        from kedro.config import MissingConfigException  # noqa: PLC0415

        from image_recognition.storage import DATA_STORE_CREDENTIALS, configure_data_store  # noqa: PLC0415

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
    statistics. On a pipeline error this hook deletes, for every versioned
    output of the pipeline, the folder of this run's save version, including
    any file a failing save left half-written, on whatever filesystem the
    dataset uses; earlier versions stay untouched.

    A run killed outright (SIGKILL, out of memory) or stopped with Ctrl-C gets
    no error hook from Kedro: its finished outputs stay, each complete.
    """

    @hook_impl
    def on_pipeline_error(self, error: Exception, run_params: dict[str, Any], pipeline: Pipeline, catalog: Any) -> None:
        for name in sorted(pipeline.all_outputs()):
            dataset = catalog.get(name) if name in catalog else None
            version = getattr(getattr(dataset, "_version", None), "save", None)
            if not isinstance(dataset, AbstractVersionedDataset) or not version:
                continue
            # kedro-datasets' datasets and the project's keep their fsspec filesystem
            # in _fs: the version may be on object storage.
            fs = getattr(dataset, "_fs", None) or fsspec.filesystem("file")
            folder = get_filepath_str(
                dataset._get_versioned_path(version).parent, getattr(dataset, "_protocol", "file")
            )
            if fs.isdir(folder):
                fs.rm(folder, recursive=True)
                logger.warning("Run failed: removed %s, which it had saved", folder)


class SelectedCheckpointHook:
    """Give the ``predict`` and ``export`` pipelines the checkpoint their parameters name.

    Their nodes take ``predict_checkpoint`` and ``export_checkpoint``; this hook
    makes each the very dataset ``<model>.checkpoint`` of the model that
    ``predict.model`` (``export.model``) names, so ``--load-versions=
    cnn.checkpoint:<version>`` pins it as it pins evaluation's. An unknown
    model name is left to the pipeline's parameter check, which names the fix.
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

"""Project hooks: a failed run leaves no version behind; tagged nodes get checked early and see input versions."""

from __future__ import annotations

import fsspec
import numpy as np
import pytest
from kedro.framework.hooks.manager import _create_hook_manager
from kedro.io import DataCatalog, MemoryDataset
from kedro.io.core import DatasetError, Version
from kedro.pipeline import Node, Pipeline
from kedro.runner import SequentialRunner
from kedro_datasets.json import JSONDataset

from image_recognition.datasets import AtomicJSONDataset, NpzDataset
from image_recognition.integrations.hooks import (
    RECORDS_INPUT_VERSIONS,
    VALIDATES_PARAMETERS,
    DiscardFailedRunHook,
    InputVersionsHook,
    ValidateParametersHook,
)
from image_recognition.models import MODEL_NAMES
from image_recognition.pipeline_registry import register_pipelines

OLD, FAILED = "2026-01-01T00.00.00.000Z", "2026-01-02T00.00.00.000Z"


def identity(x):
    return x


def pair(x, y):
    return x, y


def fail(x):
    raise RuntimeError("boom")


def run_like_a_session(pipeline: Pipeline, catalog: DataCatalog, hook) -> None:
    """Run ``pipeline`` with ``hook`` as ``KedroSession.run`` does: the run hooks around the runner."""
    hook_manager = _create_hook_manager()
    hook_manager.register(hook)
    hook_manager.hook.before_pipeline_run(run_params={}, pipeline=pipeline, catalog=catalog)
    try:
        SequentialRunner().run(pipeline, catalog, hook_manager)
    except Exception as error:
        hook_manager.hook.on_pipeline_error(error=error, run_params={}, pipeline=pipeline, catalog=catalog)
        raise
    hook_manager.hook.after_pipeline_run(run_params={}, run_result={}, pipeline=pipeline, catalog=catalog)


def json_at(path, version: str | None) -> AtomicJSONDataset:
    return AtomicJSONDataset(filepath=str(path), version=Version(None, version))


def test_failed_run_versions_are_removed_and_older_ones_kept(tmp_path):
    json_at(tmp_path / "a.json", OLD).save({"run": "old"})
    catalog = DataCatalog(
        {"x": MemoryDataset({"run": "failed"}), "a": json_at(tmp_path / "a.json", FAILED), "b": MemoryDataset()}
    )
    pipeline = Pipeline([Node(identity, "x", "a", name="n1"), Node(fail, "a", "b", name="n2")])

    with pytest.raises(RuntimeError, match="boom"):
        run_like_a_session(pipeline, catalog, DiscardFailedRunHook())

    assert not (tmp_path / "a.json" / FAILED).exists()
    assert json_at(tmp_path / "a.json", None).load() == {"run": "old"}


def test_a_failed_run_deletes_only_what_it_saved_not_the_run_whose_version_it_clashed_with(tmp_path):
    """Two runs with one save version: the second fails on its second save and removes its first only."""
    hook = DiscardFailedRunHook()  # settings.HOOKS holds one instance for every session of a process
    first = DataCatalog(
        {"x": MemoryDataset({"run": 1}), "a": json_at(tmp_path / "a.json", OLD), "b": json_at(tmp_path / "b.json", OLD)}
    )
    run_like_a_session(Pipeline([Node(pair, ["x", "x"], ["a", "b"], name="n")]), first, hook)

    second = DataCatalog(
        {"x": MemoryDataset({"run": 2}), "c": json_at(tmp_path / "c.json", OLD), "a": json_at(tmp_path / "a.json", OLD)}
    )
    pipeline = Pipeline([Node(identity, "x", "c", name="n1"), Node(identity, "c", "a", name="n2")])
    with pytest.raises(DatasetError, match="must not exist"):
        run_like_a_session(pipeline, second, hook)

    assert not (tmp_path / "c.json").exists() or not any((tmp_path / "c.json").iterdir())
    assert json_at(tmp_path / "a.json", None).load() == {"run": 1}
    assert json_at(tmp_path / "b.json", None).load() == {"run": 1}


def test_failed_run_versions_are_removed_from_object_storage_too():
    root = "memory:///failed-run-hook"
    memory = fsspec.filesystem("memory")
    NpzDataset(f"{root}/split.npz", version=Version(None, OLD)).save({"labels": np.arange(3)})
    catalog = DataCatalog(
        {
            "x": MemoryDataset({"labels": np.arange(1)}),
            "split": NpzDataset(f"{root}/split.npz", version=Version(None, FAILED)),
            "y": MemoryDataset(),
        }
    )
    pipeline = Pipeline([Node(identity, "x", "split", name="n1"), Node(fail, "split", "y", name="n2")])
    try:
        with pytest.raises(RuntimeError, match="boom"):
            run_like_a_session(pipeline, catalog, DiscardFailedRunHook())
        assert not memory.exists(f"/failed-run-hook/split.npz/{FAILED}")
        assert NpzDataset(f"{root}/split.npz", version=Version(None, None)).load()["labels"].tolist() == [0, 1, 2]
    finally:
        memory.rm("/failed-run-hook", recursive=True)


def test_only_nodes_tagged_validates_parameters_run_before_the_pipeline():
    ran = []

    def check(value):
        ran.append(value)
        return value

    catalog = DataCatalog({"params:a": MemoryDataset("a"), "params:b": MemoryDataset("b")})
    pipeline = Pipeline(
        [
            Node(check, "params:a", "checked_a", name="check_a", tags=VALIDATES_PARAMETERS),
            Node(check, "params:b", "checked_b", name="check_b"),
        ]
    )
    ValidateParametersHook().before_pipeline_run({}, pipeline, catalog)
    assert ran == ["a"]


def test_nodes_tagged_records_input_versions_get_each_versioned_dict_input_with_its_version(tmp_path):
    JSONDataset(filepath=str(tmp_path / "a.json"), version=Version(None, OLD)).save({"run": "old"})
    catalog = DataCatalog(
        {"a": JSONDataset(filepath=str(tmp_path / "a.json"), version=Version(None, None)), "b": MemoryDataset()}
    )
    inputs = {"a": {"run": "old"}, "b": {"in": "memory"}}
    tagged = Node(pair, ["a", "b"], "c", name="tagged", tags=RECORDS_INPUT_VERSIONS)
    untagged = Node(pair, ["a", "b"], "c", name="untagged")

    assert InputVersionsHook().before_node_run(tagged, catalog, inputs) == {
        "a": {"run": "old", "_catalog_version": OLD}
    }
    assert InputVersionsHook().before_node_run(untagged, catalog, inputs) is None
    assert inputs == {"a": {"run": "old"}, "b": {"in": "memory"}}  # copies: the loaded inputs are unchanged


def test_the_pipelines_tag_the_nodes_the_hooks_act_on():
    everything = register_pipelines()["__default__"]
    checks = everything.only_nodes_with_tags(VALIDATES_PARAMETERS).nodes
    recorders = everything.only_nodes_with_tags(RECORDS_INPUT_VERSIONS).nodes
    assert {node.name for node in checks} == {f"{model}.check_training_params_node" for model in MODEL_NAMES}
    assert {node.name for node in recorders} == {
        f"{model}.{name}" for model in MODEL_NAMES for name in ("train_model_node", "evaluate_model_node")
    }

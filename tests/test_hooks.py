"""Project hooks: a failed run leaves no version behind; tagged nodes get checked early and see input versions."""

from __future__ import annotations

import fsspec
import numpy as np
from kedro.io import DataCatalog, MemoryDataset
from kedro.io.core import Version
from kedro.pipeline import Node, Pipeline
from kedro_datasets.json import JSONDataset

from image_recognition.datasets import NpzDataset
from image_recognition.hooks import (
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


def test_failed_run_versions_are_removed_and_older_ones_kept(tmp_path):
    saved = JSONDataset(filepath=str(tmp_path / "a.json"), version=Version(None, FAILED))
    half_written = JSONDataset(filepath=str(tmp_path / "b.json"), version=Version(None, FAILED))
    JSONDataset(filepath=str(tmp_path / "a.json"), version=Version(None, OLD)).save({"run": "old"})
    saved.save({"run": "failed"})
    partial = tmp_path / "b.json" / FAILED / "b.json"
    partial.parent.mkdir(parents=True)
    partial.write_text('{"trunc')  # a save that died halfway: Kedro never reported it as saved
    catalog = DataCatalog({"a": saved, "b": half_written})
    pipeline = Pipeline([Node(identity, "x", "a", name="n1"), Node(identity, "a", "b", name="n2")])

    DiscardFailedRunHook().on_pipeline_error(RuntimeError("boom"), {}, pipeline, catalog)

    assert not (tmp_path / "a.json" / FAILED).exists() and not (tmp_path / "b.json" / FAILED).exists()
    latest = JSONDataset(filepath=str(tmp_path / "a.json"), version=Version(None, None))
    assert latest.load() == {"run": "old"}


def test_failed_run_versions_are_removed_from_object_storage_too():
    root = "memory:///failed-run-hook"
    memory = fsspec.filesystem("memory")
    old = NpzDataset(f"{root}/split.npz", version=Version(None, OLD))
    old.save({"labels": np.arange(3)})
    failed = NpzDataset(f"{root}/split.npz", version=Version(None, FAILED))
    failed.save({"labels": np.arange(1)})
    catalog = DataCatalog({"split": failed})
    try:
        DiscardFailedRunHook().on_pipeline_error(
            RuntimeError("boom"), {}, Pipeline([Node(identity, "x", "split", name="n")]), catalog
        )
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

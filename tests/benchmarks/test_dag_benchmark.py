"""benchmarks/dag_benchmark.py: plain ``kedro run`` from a fresh clone, timed."""

from __future__ import annotations

import json
import runpy

import pytest

from tests.helpers import PROJECT_ROOT, SHORT_TRAINING

SCRIPT = PROJECT_ROOT / "benchmarks" / "dag_benchmark.py"


@pytest.fixture(scope="module")
def dag_benchmark():
    return runpy.run_path(str(SCRIPT))


def test_node_times_are_read_from_the_log(dag_benchmark):
    log = "\n".join(
        [
            "2026-12-01 00:00:00,100 - kedro.pipeline.node - INFO - Running node: cnn.train_model_node: train([a]) -> [b]",
            "2026-12-01 00:00:05,000 - image_recognition.common.progress - INFO - cnn epoch 1/2: step 3/9",
            "2026-12-01 00:09:30,900 - kedro.runner - INFO - Completed node: cnn.train_model_node",
            "2026-12-01 00:09:31,000 - kedro.pipeline.node - INFO - Running node: report_node: report([c]) -> [d]",
        ]
    )
    # A node still running when the log ends has no time.
    assert dag_benchmark["node_times"](log) == {"cnn.train_model_node": 570.0}


def test_an_archive_is_required_outside_the_demo(dag_benchmark, tmp_path, capsys):
    with pytest.raises(SystemExit):
        dag_benchmark["parse_args"]([])
    assert "give --archive" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        dag_benchmark["parse_args"](["--archive", str(tmp_path / "missing.tar.gz")])
    assert "no such file" in capsys.readouterr().err


def test_extra_params_join_the_archive_source_in_one_params_option(dag_benchmark, tmp_path):
    archive = tmp_path / "cifar-10-python.tar.gz"
    archive.write_bytes(b"not checked here")
    args = dag_benchmark["parse_args"](["--archive", str(archive), "--params", "cnn.training.epochs=2"])
    command = dag_benchmark["kedro_command"](args)
    assert command[3:5] == ["run", "--params"]
    assert command[5] == (
        f"dataset.source.url={archive.as_uri()},dataset.source.md5=2c15c45fc9f915a427352349fdc374c2,"
        "cnn.training.epochs=2"
    )


@pytest.mark.slow
def test_the_demo_dag_runs_from_a_fresh_clone(dag_benchmark, tmp_path):
    out = tmp_path / "dag.json"
    args = ["--env", "demo", "--params", SHORT_TRAINING, "--out", str(out), "--keep", str(tmp_path / "clone")]
    dag_benchmark["main"](args)
    report = json.loads(out.read_text())
    assert report["command"] == f"kedro run --env=demo --params {SHORT_TRAINING}"
    assert report["wall_time_s"] > 0
    assert set(report["test_accuracy"]) == {"simple_cnn", "cnn", "vit"}
    assert min(report["test_accuracy"].values()) > 0.5  # learnable synthetic data; chance is 0.1
    nodes = set(report["node_times_s"])
    assert {"simple_cnn.train_model_node", "cnn.train_model_node", "vit.evaluate_model_node"} <= nodes
    assert any(name.endswith("render_report_node") for name in nodes)
    assert report["emulated"] is None
    assert set(report["training"]) == {"simple_cnn", "cnn", "vit"}  # each model's plan, read from its checkpoint


@pytest.mark.slow
def test_a_budgeted_demo_dag_records_each_models_plan_as_on_an_avx2_only_cpu(dag_benchmark, tmp_path):
    """The equal-budget and AVX2-only runs of the docs, end to end on the demo data."""
    out = tmp_path / "dag.json"
    args = ["--env", "demo", "--params", "training_budget_s=6", "--as-avx2-cpu", "--out", str(out)]
    report = dag_benchmark["main"](args)
    assert json.loads(out.read_text())["emulated"]["environment"]["IMAGE_RECOGNITION_CPU_BF16"] == "0"
    for model, plan in report["training"].items():
        assert plan["budget_s"] == 6.0, model
        assert 0 < plan["steps"] <= plan["planned_steps"] and plan["probe_images_per_s"] > 0
        assert plan["training_wall_time_s"] <= 6.0

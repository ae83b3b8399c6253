"""benchmarks/predict_benchmark.py: every row, on a few files."""

from __future__ import annotations

import json
import runpy

from tests.helpers import PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "benchmarks" / "predict_benchmark.py"


def test_each_way_of_predicting_reports_its_throughput(tmp_path):
    out = tmp_path / "predict.json"
    runpy.run_path(str(SCRIPT))["main"](["--count", "40", "--batch-size", "16", "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["files"] == 40 and report["model"] == "cnn"
    assert set(report["results"]) == {
        "predict_pipeline",
        "predict_pipeline_no_gallery",
        "onnxruntime",
        "decode_and_resize_only",
        "inference_only_pytorch",
        "inference_only_pytorch_fp32",
        "inference_only_onnxruntime",
    }
    for name, row in report["results"].items():
        assert row["seconds"] > 0 and row["images_per_s"] == 40 / row["seconds"], name

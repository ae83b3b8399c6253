"""The comparison table and the HTML report."""

from __future__ import annotations

import re

from image_recognition.common.device import cpu_has_native_bf16
from image_recognition.reporting import figures
from image_recognition.reporting.report import comparison_table, data_description, equal_budget_sentence, render_html


def test_report_with_one_model_is_self_contained(evaluated):
    results = {"vit": evaluated["vit"]}
    table = comparison_table(results)
    assert table["model"].tolist() == ["vit"]
    figs = {name: figures.per_class_f1(results) for name in ("a", "b")}
    report = {"source": {"url": "synthetic://cifar10", "md5": "0" * 32}, "sizes": {"test": 200}}
    page = render_html(results, figs, table, report)
    assert page.count("<script") >= 2 and "cdn.plot.ly" not in page.split("<body>", 1)[1][:2000]
    assert 'id="a"' in page and 'id="b"' in page and "Provenance" in page
    assert not re.search(r"<(script|link|img)[^>]*\s(src|href)=", page)  # nothing to fetch: opens offline


def test_comparison_table_states_views_and_compile_time(evaluated):
    table = comparison_table(evaluated).set_index("model")
    assert table.loc["vit", "tta_views"] == 6 and table.loc["simple_cnn", "tta_views"] == 1
    assert table.loc["vit", "flops_per_prediction"] == 6 * table.loc["vit", "flops_per_image"]
    assert table.loc["vit", "compile_time_s"] == 3.0 and table.loc["vit", "training_time_s"] == 2.0
    precision = "bf16" if cpu_has_native_bf16() else "fp32"  # the fixture's recipe says autocast "auto"
    assert table.loc["vit", "precision"] == precision and table.loc["vit", "memory_format"] == "contiguous"


def test_the_report_names_the_data_set_its_classes_and_size(evaluated):
    results = {"vit": evaluated["vit"]}
    names = [f"fine_{index}" for index in range(100)]
    report = {
        "source": {"kind": "cifar100", "url": "synthetic://cifar100", "md5": "1" * 32},
        "class_names": names,
        "num_classes": 100,
        "image_size": 64,
        "sizes": {"test": 200},
    }
    page = render_html(results, {}, comparison_table(results), report)
    assert "<h1>CIFAR-100 model comparison</h1>" in page
    assert (
        "100 classes (fine_0, fine_1, fine_2, fine_3, fine_4, fine_5, fine_6, fine_7, fine_8, fine_9 and 90 more)"
        in page
    )
    assert "64×64 px images" in page
    folder = {**report, "source": {"kind": "image_folder", "url": "file:///d", "md5": None, "fingerprint": "abc"}}
    page = render_html(results, {}, comparison_table(results), folder)
    assert "Image folder model comparison" in page and "fingerprint <code>abc</code>" in page


def test_an_older_data_report_is_cifar10s(evaluated):
    title, classes = data_description({"source": {"url": "u", "md5": "0" * 32}, "sizes": {"test": 1}})
    assert (title, classes) == ("CIFAR-10", "10 classes, 32×32 px images")


def _with_budget(result: dict, budget_s: float | None, accuracy: float, epochs: float, speed: float) -> dict:
    metrics = {**result["metrics"], "quality": {**result["metrics"]["quality"], "accuracy": accuracy}}
    metrics["training"] = {
        **metrics["training"],
        "budget_s": budget_s,
        "planned_steps": 100,
        "steps": 100,
        "epochs": epochs,
        "train_images_per_s": speed,
    }
    return {**result, "metrics": metrics}


def test_models_given_the_same_budget_are_compared_in_one_sentence(evaluated):
    results = {
        "cnn": _with_budget(evaluated["vit"], 300.0, 0.8512, 4.1, 1950.0),
        "vit": _with_budget(evaluated["vit"], 300.0, 0.7212, 3.2, 1400.0),
        "simple_cnn": _with_budget(evaluated["simple_cnn"], 60.0, 0.45, 2.0, 9000.0),
    }
    table = comparison_table(results)
    assert table.set_index("model").loc["vit", "budget_s"] == 300.0
    assert equal_budget_sentence(table) == (
        "With the same training budget of 300 s each, cnn reached 85.12% in 4.10 epochs at 1,950 images/s; "
        "vit reached 72.12% in 3.20 epochs at 1,400 images/s: cnn got further, 13.0 percentage points ahead of vit."
    )
    page = render_html(
        results, {}, table, {"source": {"url": "synthetic://cifar10", "md5": "0" * 32}, "sizes": {"test": 200}}
    )
    assert "cnn got further, 13.0 percentage points ahead of vit." in page and "planned_steps" in page


def test_without_a_shared_budget_there_is_no_comparison_sentence(evaluated):
    table = comparison_table(
        {
            "cnn": _with_budget(evaluated["vit"], 300.0, 0.85, 4.1, 1950.0),
            "vit": _with_budget(evaluated["vit"], 200.0, 0.72, 3.2, 1400.0),
        }
    )
    assert equal_budget_sentence(table) is None
    epochs_only = comparison_table(evaluated)  # trained to epochs: no budget at all
    assert epochs_only["budget_s"].isna().all() and equal_budget_sentence(epochs_only) is None
    page = render_html(
        evaluated, {}, epochs_only, {"source": {"url": "synthetic://cifar10", "md5": "0" * 32}, "sizes": {"test": 200}}
    )
    assert "training budget" not in page

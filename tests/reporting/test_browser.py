"""The HTML report in a real browser: headless Chromium renders every figure.

Needs Debian's ``chromium`` (``.ci/run`` installs it); skipped, with the reason,
where it is missing.
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from image_recognition.pipelines.reporting.pipeline import FIGURES
from image_recognition.reporting import figures
from image_recognition.reporting.report import comparison_table, render_html

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.slow,  # headless Chromium in a subprocess
    pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (apt-get install chromium)"),
]


def chromium(tmp_path, *args: str) -> subprocess.CompletedProcess:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=15000",
    ]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120, check=True)


@pytest.fixture
def report_file(tmp_path, evaluated, evaluation_inputs):
    test, report, _ = evaluation_inputs
    draw = {
        "learning_curves": figures.learning_curves,
        "confusion_matrices": figures.confusion_matrices,
        "per_class_f1": figures.per_class_f1,
        "reliability_diagram": figures.reliability_diagram,
        "accuracy_vs_cost": figures.accuracy_vs_cost,
    }
    figs = {name: func(evaluated) for name, func in draw.items()}
    figs["error_gallery"] = figures.error_gallery(evaluated, test["images"])
    assert set(figs) == set(FIGURES)
    path = tmp_path / "report.html"
    path.write_text(render_html(evaluated, figs, comparison_table(evaluated), report))
    return path


def test_every_figure_renders_in_chromium(tmp_path, report_file):
    dom = chromium(tmp_path, "--dump-dom", report_file.as_uri()).stdout
    for name in FIGURES:
        section = dom.split(f'id="{name}"', 1)[1].split('class="figure"', 1)[0]
        assert "main-svg" in section, f"figure {name} did not render"


def test_screenshot_shows_the_figures(tmp_path, report_file):
    shot = tmp_path / "report.png"
    chromium(tmp_path, "--window-size=1300,4000", f"--screenshot={shot}", report_file.as_uri())
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    saturation = pixels.max(axis=2) - pixels.min(axis=2)
    coloured_rows = (saturation > 60).mean(axis=1) > 0.02  # rows crossed by plotted colour
    # Text and table are grey: with its scripts stripped, this page has no coloured
    # row at all. Drawn figures add colour, all the way down the page.
    assert coloured_rows.mean() > 0.1, f"only {coloured_rows.mean():.0%} of the rows show figure colour"
    bands = np.array_split(coloured_rows[400:], 5)
    assert all(band.any() for band in bands), "a stretch of the page has no figure in it"

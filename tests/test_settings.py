"""The project's settings: a first screen without noise, and plain log lines off a terminal."""

from __future__ import annotations

import copy
import io
import logging
import os
import re
import shutil
import subprocess
import sys
import warnings

import pytest
import rich
import yaml
from kedro.config import OmegaConfigLoader
from kedro.framework.project import LOGGING, configure_logging
from kedro.logging import RichHandler
from omegaconf import OmegaConf
from rich.console import Console

from image_recognition import settings
from tests.helpers import PROJECT_ROOT

# A line of conf/logging.yml's format: "2026-12-05 13:21:35,988 INFO kedro.runner...: message".
LOG_RECORD = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ \S+: ")
# The first line of a warning Python prints itself: "path.py:187: UserWarning: message".
PYTHON_WARNING = re.compile(r"\S+\.py:\d+: \w+: ")


def test_only_the_register_new_resolver_warnings_of_kedro_and_its_plugins_are_hidden():
    deprecation = "register_new_resolver() is deprecated and will be removed in a future release."
    with warnings.catch_warnings(record=True) as caught:
        warnings.resetwarnings()
        warnings.simplefilter("always")
        settings.hide_register_new_resolver_warnings()
        OmegaConfigLoader(str(PROJECT_ROOT / "conf"), **settings.CONFIG_LOADER_ARGS)["parameters"]  # Kedro's calls
        warnings.warn_explicit(
            deprecation, UserWarning, "mlflow_hook.py", 1, "kedro_mlflow.framework.hooks.mlflow_hook"
        )
        OmegaConf.register_new_resolver("test_settings", lambda: 1, replace=True)  # anyone else's: still shown
        warnings.warn_explicit(
            "another warning", UserWarning, "omegaconf_config.py", 1, "kedro.config.omegaconf_config"
        )
        warnings.warn_explicit(deprecation, UserWarning, "other.py", 1, "kedro.config.omegaconf_config_other")
    shown = [(w.filename, str(w.message).split("\n")[0]) for w in caught]
    assert shown == [(__file__, deprecation), ("omegaconf_config.py", "another warning"), ("other.py", deprecation)]


@pytest.fixture
def restored_logging(monkeypatch):
    """Put the logging configuration, and what Kedro's rich handler installs, back after the test."""
    saved = copy.deepcopy(LOGGING.data)
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr(sys, "displayhook", sys.displayhook)
    monkeypatch.delenv("KEDRO_LOGGING_CONFIG", raising=False)
    monkeypatch.chdir(PROJECT_ROOT)
    configure_logging(yaml.safe_load((PROJECT_ROOT / "conf" / "logging.yml").read_text()))
    yield
    configure_logging(saved)
    logging.captureWarnings(False)


def _root_handlers() -> list[type]:
    """The root logger's handlers but pytest's own."""
    return [type(h) for h in logging.getLogger().handlers if not type(h).__module__.startswith("_pytest")]


def test_on_a_terminal_the_root_handler_is_kedros_rich_one(restored_logging, monkeypatch):
    monkeypatch.setattr(rich, "get_console", lambda: Console(file=io.StringIO(), force_terminal=True))
    settings.rich_logging_on_a_terminal()
    assert _root_handlers() == [RichHandler]


def test_off_a_terminal_each_message_stays_one_plain_line(restored_logging, monkeypatch):
    monkeypatch.setattr(rich, "get_console", lambda: Console(file=io.StringIO(), force_terminal=False))
    settings.rich_logging_on_a_terminal()
    assert _root_handlers() == [logging._StderrHandler]
    monkeypatch.setenv("KEDRO_LOGGING_CONFIG", str(PROJECT_ROOT / "benchmarks" / "plain_logging.yml"))
    monkeypatch.setattr(rich, "get_console", lambda: Console(file=io.StringIO(), force_terminal=True))
    settings.rich_logging_on_a_terminal()  # a logging configuration of the user's own choice is left alone
    assert _root_handlers() == [logging._StderrHandler]


@pytest.mark.slow  # the kedro CLI, in a subprocess
def test_a_captured_run_prints_one_line_per_message_and_changes_no_tracked_file(project):
    """As a newcomer's clone in CI: no omegaconf deprecation, no message folded over lines, a clean git status."""
    git = shutil.which("git")
    if git is None:
        pytest.skip("needs git")
    shutil.copy(PROJECT_ROOT / ".gitignore", project.root)
    for command in (["init", "-q"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "t"]):
        subprocess.run([git, *command], cwd=project.root, check=True, capture_output=True)
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "NO_COLOR", "PYTHONWARNINGS")}
    command = [sys.executable, "-m", "kedro", "run", "--env=demo", "--pipelines=data_processing"]
    result = subprocess.run(
        command, cwd=project.root, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "register_new_resolver" not in output
    lines = output.splitlines()
    assert any(LOG_RECORD.match(line) and "Pipeline execution completed successfully" in line for line in lines)
    for before, line in zip(["", *lines], lines, strict=False):
        # Each line is a whole log record, or a warning Python printed (its line, then its source line).
        assert LOG_RECORD.match(line) or PYTHON_WARNING.match(line) or PYTHON_WARNING.match(before), line
    status = subprocess.run(
        [git, "status", "--porcelain"], check=False, cwd=project.root, capture_output=True, text=True
    )
    assert status.stdout == ""

"""The README stays a short front door, its links resolve, and the docs site builds strictly."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import PROJECT_ROOT

README = PROJECT_ROOT / "README.md"
README_MAX_LINES = 150
# [text](target): the targets of Markdown links, leaving out images' and code's brackets.
LINK = re.compile(r"(?<!!)\[[^\]]+\]\(([^)\s]+)\)")


def _local_links(markdown: str) -> list[str]:
    """The link targets that point into the repository (no scheme, not a bare anchor), anchors removed."""
    targets = (target.split("#", 1)[0] for target in LINK.findall(markdown))
    return [target for target in targets if target and "://" not in target and not target.startswith("mailto:")]


def test_readme_is_at_most_150_lines():
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines: move detail to docs/"


def test_readme_links_resolve_and_reach_the_docs():
    links = _local_links(README.read_text(encoding="utf-8"))
    missing = [target for target in links if not (PROJECT_ROOT / target).exists()]
    assert not missing, f"README.md links to missing files: {missing}"
    assert any(target.startswith("docs/") for target in links), "README.md links to no docs page"


def test_local_links_ignore_urls_anchors_and_images():
    text = "[a](docs/a.md#x) [b](https://x.org/y) [c](#top) ![img](pic.png) [d](mailto:me@x.org)"
    assert _local_links(text) == ["docs/a.md"]


@pytest.mark.slow
def test_the_docs_site_builds_strictly(tmp_path):
    mkdocs = Path(sys.executable).parent / "mkdocs"
    assert mkdocs.exists(), "mkdocs is missing: pip install -e '.[docs]' (the test extra includes it)"
    command = [str(mkdocs), "build", "--strict", "-f", str(PROJECT_ROOT / "mkdocs.yml"), "-d", str(tmp_path / "site")]
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=300, cwd=PROJECT_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "results" / "index.html").is_file()

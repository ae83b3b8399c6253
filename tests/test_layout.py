"""The tests mirror the package, and the package's top holds only what Kedro requires there.

Module ``src/image_recognition/<package>/<module>.py`` is tested in
``tests/<package>/test_<module>.py`` (``__main__.py`` in ``test_main.py``). A
package's ``__init__.py`` that holds code, not just imports and ``__all__``, is
tested in ``tests/<package>/test_<package>.py`` (``models/__init__.py`` in
``tests/models/test_models.py``). A module that needs no test file of its own
says so in its package's ``__init__`` docstring, on a line of the form::

    No test file: `<module>` — <why>
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

from tests.helpers import PROJECT_ROOT

PACKAGE = "image_recognition"
# What Kedro requires at the top of the package (it imports ``<package>.cli``).
TOP_LEVEL_MODULES = {"__init__.py", "__main__.py", "cli.py", "settings.py", "pipeline_registry.py"}
NO_TEST_FILE = re.compile(r"^\s*No test file: `(?P<module>\w+)` [—-]+ (?P<why>\S.*)$", re.MULTILINE)


def _source_root() -> Path:
    return PROJECT_ROOT / "src" / PACKAGE


def _docstring(init: Path) -> str | None:
    return ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))


def _holds_code(init: Path) -> bool:
    """Whether a package's ``__init__`` does more than import, re-export and set dunder names."""
    for statement in ast.parse(init.read_text(encoding="utf-8")).body:
        if isinstance(statement, ast.Import | ast.ImportFrom):
            continue
        if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant):
            continue  # the docstring
        targets = statement.targets if isinstance(statement, ast.Assign) else []
        if targets and all(isinstance(t, ast.Name) and t.id.startswith("__") for t in targets):
            continue  # __all__, __version__
        return True
    return False


def expected_test_file(module: Path) -> Path | None:
    """Where the tests of ``module`` (a path under the package) live; None if it needs none."""
    parts = module.relative_to(_source_root()).parts
    folder, name = PROJECT_ROOT.joinpath("tests", *parts[:-1]), module.stem
    if name == "__init__":
        return folder / f"test_{module.parent.name}.py" if _holds_code(module) else None
    return folder / f"test_{name.strip('_')}.py"


def exempt_modules(package: Path) -> set[str]:
    """The modules that ``package``'s ``__init__`` docstring says need no test file, with why."""
    return {match["module"] for match in NO_TEST_FILE.finditer(_docstring(package / "__init__.py") or "")}


def untested_modules() -> list[str]:
    """Modules whose test file is missing and whose package does not say why it needs none."""
    missing = []
    for module in sorted(_source_root().rglob("*.py")):
        expected = expected_test_file(module)
        if expected is None or expected.exists() or module.stem in exempt_modules(module.parent):
            continue
        missing.append(f"{module.relative_to(PROJECT_ROOT)} -> {expected.relative_to(PROJECT_ROOT)}")
    return missing


def test_every_module_has_its_test_file_or_its_package_says_why_not():
    assert untested_modules() == []


def test_every_exempted_module_exists():
    stale = [
        f"{package.relative_to(PROJECT_ROOT)}: {name}"
        for package in sorted(p.parent for p in _source_root().rglob("__init__.py"))
        for name in sorted(exempt_modules(package))
        if not (package / f"{name}.py").exists()
    ]
    assert stale == []


def test_the_top_of_the_package_holds_only_what_kedro_requires():
    top = _source_root()
    modules = {path.name for path in top.glob("*.py")}
    assert modules <= TOP_LEVEL_MODULES, sorted(modules - TOP_LEVEL_MODULES)
    folders = [p for p in top.iterdir() if p.is_dir() and p.name != "__pycache__"]
    assert [p.name for p in folders if not (p / "__init__.py").exists()] == []


def test_every_package_has_a_docstring():
    packages = sorted(_source_root().rglob("__init__.py"))
    assert [str(p.relative_to(PROJECT_ROOT)) for p in packages if not _docstring(p)] == []


def test_the_checks_find_a_missing_test_file_and_honour_a_reason(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "PROJECT_ROOT", tmp_path)
    package = tmp_path / "src" / PACKAGE / "things"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('"""Things.\n\nNo test file: `glue` — only re-exports.\n"""\n')
    for name in ["tested", "untested", "glue"]:
        (package / f"{name}.py").write_text("X = 1\n")
    (tmp_path / "tests" / "things").mkdir(parents=True)
    (tmp_path / "tests" / "things" / "test_tested.py").write_text("")
    assert untested_modules() == [f"src/{PACKAGE}/things/untested.py -> tests/things/test_untested.py"]
    (package / "__init__.py").write_text('"""Things."""\n\nLIMIT = 3\n')
    assert untested_modules() == [
        f"src/{PACKAGE}/things/__init__.py -> tests/things/test_things.py",
        f"src/{PACKAGE}/things/glue.py -> tests/things/test_glue.py",
        f"src/{PACKAGE}/things/untested.py -> tests/things/test_untested.py",
    ]

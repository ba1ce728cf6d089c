"""The package's edges: course tooling in its own wing, one version source (error classes: tests/test_errors.py)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pt_helpers

PACKAGE = Path(pt_helpers.__file__).parent
ROOT = PACKAGE.parent


def _module(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE).with_suffix("").parts)


def test_no_chapter_module_or_notebook_imports_the_course_wing():
    importers = []
    for py in PACKAGE.rglob("*.py"):
        if _module(py).startswith("course"):
            continue
        for node in ast.walk(ast.parse(py.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and "course" in node.module.split("."):
                importers.append(_module(py))
    for nb in (ROOT / "notebooks").glob("*.ipynb"):
        if "pt_helpers.course" in nb.read_text(encoding="utf-8"):
            importers.append(nb.name)
    assert not importers, f"course tooling imported by {importers}"


def test_the_course_tools_run_as_modules():
    for tool in ("run", "site", "student"):
        out = subprocess.run(
            [sys.executable, "-m", f"pt_helpers.course.{tool}", "--help"], capture_output=True, text=True, cwd=ROOT
        )
        assert out.returncode == 0 and f"pt_helpers.course.{tool}" in out.stdout, out.stderr[-500:]


def test_one_version_source():
    """pyproject reads the version from pt_helpers.__version__ (setuptools' dynamic attr), declared nowhere else."""
    from setuptools.config.pyprojecttoml import read_configuration

    project = read_configuration(ROOT / "pyproject.toml", expand=True)["project"]
    assert "version" in project.get("dynamic", []) and project["version"] == pt_helpers.__version__
    raw = read_configuration(ROOT / "pyproject.toml", expand=False)
    assert raw["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "pt_helpers.__version__"}


def test_jupytext_is_not_a_dependency_since_nothing_imports_it():
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert "jupytext" not in text
    for py in [*PACKAGE.rglob("*.py"), *(ROOT / "tests").glob("*.py")]:
        assert "import " + "jupytext" not in py.read_text(encoding="utf-8"), py

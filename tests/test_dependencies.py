"""Every package the course imports directly is declared in pyproject.toml.

The imports are read from the source (``ast``) of ``pt_helpers/`` and of every notebook's code cells; the
standard library (``sys.stdlib_module_names``) and the package itself are left out; an import name is mapped to
the distribution that provides it with ``importlib.metadata.packages_distributions`` (``sklearn`` →
scikit-learn, ``yaml`` → PyYAML). The package's own modules need a runtime dependency; the course tooling
(``pt_helpers/course``) and the notebooks may also use the ``dev`` extra, which ``make install`` installs.
"""

from __future__ import annotations

import ast
import json
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
tomllib = pytest.importorskip("tomllib")  # Python ≥ 3.11


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503: rouge_score = rouge-score, PyYAML = pyyaml


def _declared(requirements: list[str]) -> set[str]:
    return {_canonical(re.split(r"[\s;<>=!~\[(]", r.strip(), maxsplit=1)[0]) for r in requirements}


def _optional(tree: ast.AST) -> set[int]:
    """ids of the import nodes inside ``try: … except ImportError`` (optional by design: the code runs without)."""
    optional = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try):
            caught = {ast.unparse(h.type) for h in node.handlers if h.type is not None}
            if caught & {"ImportError", "ModuleNotFoundError", "(ImportError, ModuleNotFoundError)"}:
                optional |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return optional


def top_level_imports(source: str) -> set[str]:
    """The top-level names of every absolute import in ``source`` (anywhere: module level or in a function),
    except those inside ``try: … except ImportError``."""
    tree = ast.parse(source)
    optional = _optional(tree)
    found = set()
    for node in ast.walk(tree):
        if id(node) in optional:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def notebook_source(path: Path) -> str:
    """A notebook's code cells as one Python source (IPython's %magic and !shell lines left out)."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    lines = []
    for cell in cells:
        if cell["cell_type"] == "code":
            source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            lines += [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
    return "\n".join(lines)


def third_party(names: set[str]) -> set[str]:
    return {n for n in names if n not in sys.stdlib_module_names and n != "pt_helpers"}


def _undeclared(files: dict[str, set[str]], declared: set[str]) -> dict[str, list[str]]:
    """``{import name: [files]}`` of imports whose distribution is not in ``declared``."""
    provides = packages_distributions()
    missing: dict[str, list[str]] = {}
    for where, names in files.items():
        for name in third_party(names):
            dists = {_canonical(d) for d in provides.get(name, [name])}
            if not dists & declared:
                missing.setdefault(name, []).append(where)
    return missing


PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
RUNTIME = _declared(PYPROJECT["dependencies"])
DEV = _declared(PYPROJECT["optional-dependencies"]["dev"])


def test_the_package_imports_only_runtime_dependencies():
    files = {
        str(p.relative_to(ROOT)): top_level_imports(p.read_text(encoding="utf-8"))
        for p in sorted((ROOT / "pt_helpers").rglob("*.py"))
        if "course" not in p.relative_to(ROOT / "pt_helpers").parts
    }
    assert _undeclared(files, RUNTIME) == {}


def test_the_course_tooling_and_the_notebooks_import_only_declared_packages():
    files = {
        str(p.relative_to(ROOT)): top_level_imports(p.read_text()) for p in (ROOT / "pt_helpers/course").glob("*.py")
    }
    files |= {
        str(p.relative_to(ROOT)): top_level_imports(notebook_source(p)) for p in (ROOT / "notebooks").glob("*.ipynb")
    }
    assert _undeclared(files, RUNTIME | DEV) == {}


def test_scipy_is_declared_and_found_as_imported():
    """scipy is imported directly by pt_helpers.stats: declared itself, not only through scikit-learn."""
    assert "scipy" in top_level_imports((ROOT / "pt_helpers" / "stats.py").read_text())
    assert "scipy" in RUNTIME


def test_the_check_finds_an_undeclared_import():
    files = {"x.py": top_level_imports("import os\nimport numpy as np\nfrom sklearn.metrics import f1_score\n")}
    assert _undeclared(files, {"numpy"}) == {"sklearn": ["x.py"]}
    assert _undeclared(files, {"numpy", "scikit-learn"}) == {}
    assert top_level_imports("from . import models\nfrom .x import y\n") == set()  # relative imports are ours
    assert top_level_imports("try:\n    import IPython\nexcept ImportError:\n    pass\n") == set()


def test_the_version_has_one_source():
    """pyproject.toml reads the version from pt_helpers.__version__ (no second copy to drift)."""
    assert "version" not in PYPROJECT and "version" in PYPROJECT["dynamic"]
    dynamic = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["dynamic"]
    assert dynamic["version"] == {"attr": "pt_helpers.__version__"}


def test_citation_and_changelog_follow_the_version():
    """CITATION.cff (CFF 1.2.0) carries the version too: it must be pt_helpers.__version__, as the changelog's."""
    import yaml

    import pt_helpers

    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert cff["cff-version"] == "1.2.0" and {"authors", "message", "title"} <= set(cff)
    assert str(cff["version"]) == pt_helpers.__version__
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert re.search(rf"^## .*\b{re.escape(pt_helpers.__version__)}\b", changelog, re.M)

"""The package's layout: one home per idea, and no module imports a later one (so no import cycles).

The order is the one ``pt_helpers/__init__.py`` documents; a module may import only modules before it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pt_helpers

PACKAGE = Path(pt_helpers.__file__).parent
ORDER = re.findall(r"^    (\w+)\s", pt_helpers.__doc__, flags=re.M)
ORDER = ORDER[: ORDER.index("results")] + ["results", "plots", "source"]  # course tooling: pt_helpers/course


def _imports(path: Path) -> set[str]:
    """Sibling modules that ``path`` imports anywhere in it (module level or inside a function)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
    return found


def test_every_module_is_in_the_documented_order():
    modules = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert modules <= set(ORDER), f"modules missing from pt_helpers/__init__.py's map: {sorted(modules - set(ORDER))}"


def test_no_module_imports_a_later_one():
    later = []
    for name in ORDER:
        path = PACKAGE / f"{name}.py"
        for dep in _imports(path) & set(ORDER):
            if ORDER.index(dep) >= ORDER.index(name):
                later.append(f"{name} imports {dep}")
    assert not later, later


def test_one_home_for_shared_building_blocks():
    """Mean pooling, the cache expander, the context check, the loop, the method registry and a task's splits are
    defined once."""
    homes = {
        "def mean_pool(": "scoring",
        "def expand_cache(": "frozen",
        "def check_context(": "frozen",
        "def real_position_ids(": "frozen",
        "def fit(": "training",
        "def lr_at(": "training",
        "def register_method(": "adapters",  # the method registry
        "def task_splits(": "data",  # a task's train / selection / evaluation split
        "def texts_of(": "data",  # a pair task joined into one text
    }
    for needle, home in homes.items():
        where = [p.stem for p in PACKAGE.rglob("*.py") if re.search("^" + re.escape(needle), p.read_text(), re.M)]
        assert where == [home], f"{needle} defined in {where}, expected only in {home}"

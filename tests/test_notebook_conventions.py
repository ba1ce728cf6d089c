"""The notebooks' conventions, checked without running them: short code cells, and package code shown only
through named markers (pt_helpers/source.py) that exist — and every marker the package defines is shown.

The cell-length rule is the one the project states in its notebook report (a code cell of more than 25
non-blank lines "belongs in pt_helpers"; the developers' guide aims at about 15).
"""

from __future__ import annotations

import ast
import importlib
import io
import json
import tokenize
from pathlib import Path

import pytest

import pt_helpers
from pt_helpers.source import _MARK, source_of

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
PACKAGE = Path(pt_helpers.__file__).parent
MAX_CELL_LINES = 25  # non-blank lines of one code cell (the project's notebook report flags more)
SHOW = ("show_source", "source_of")
# markers defined in modules whose owners still have to show or drop them (issue #26, item 5): this list may
# only shrink — a listed marker that is shown or gone fails the test, so it is taken off
NOT_YET_SHOWN: set[tuple[str, str]] = set()


def _code_cells(path: Path) -> list[str]:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]


def _python(source: str) -> ast.Module | None:
    """A cell's syntax tree, IPython magics (``%matplotlib inline``) left out; None if it is not Python."""
    lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
    try:
        return ast.parse("\n".join(lines))
    except SyntaxError:
        return None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_code_cells_stay_short(path):
    long = []
    for i, src in enumerate(_code_cells(path)):
        n = len([line for line in src.splitlines() if line.strip()])
        if n > MAX_CELL_LINES:
            long.append(f"code cell {i} ({n} lines): {src.splitlines()[0][:60]!r}")
    assert not long, f"{path.name}: cells over {MAX_CELL_LINES} lines belong in pt_helpers: {long}"


def _names(tree: ast.Module) -> dict[str, str]:
    """``{name in the notebook: dotted path it was imported from}`` for the notebook's imports."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                names[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                names[a.asname or a.name] = f"{node.module}.{a.name}"
    return names


def _resolve(dotted: str):
    """The object at a dotted path: the longest importable module prefix, then attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def _shown(path: Path) -> list[tuple[str, str | None]]:
    """``(dotted path of the object, marker or None)`` of every show_source / source_of call in a notebook."""
    trees = [t for t in map(_python, _code_cells(path)) if t is not None]
    names = {k: v for t in trees for k, v in _names(t).items()}
    calls = []
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in SHOW and node.args:
                head, *rest = ast.unparse(node.args[0]).split(".")
                marker = node.args[1].value if len(node.args) > 1 and isinstance(node.args[1], ast.Constant) else None
                calls.append((".".join([names.get(head, head), *rest]), marker))
    return calls


def _defined_markers() -> set[tuple[str, str]]:
    """``(module, marker)`` of every ``# [name]`` comment line in the package (comments only, not docstrings)."""
    found = set()
    for py in PACKAGE.rglob("*.py"):
        module = ".".join(py.relative_to(PACKAGE).with_suffix("").parts)
        for tok in tokenize.generate_tokens(io.StringIO(py.read_text(encoding="utf-8")).readline):
            if tok.type == tokenize.COMMENT and (m := _MARK.match(tok.string)) and not m.group(1):
                found.add((module, m.group(2)))
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_shown_marker_exists_in_what_it_shows(path):
    for dotted, marker in _shown(path):
        assert source_of(_resolve(dotted), marker).strip(), f"{path.name}: show_source({dotted}, {marker!r}) is empty"


def test_every_marker_the_package_defines_is_shown():
    shown = set()
    for path in NOTEBOOKS:
        for dotted, marker in _shown(path):
            if marker is not None:
                obj = _resolve(dotted)
                module = getattr(obj, "__module__", None) or obj.__name__
                shown.add((module.removeprefix("pt_helpers."), marker))
    defined = _defined_markers()
    assert shown <= defined, f"shown but not defined: {sorted(shown - defined)}"
    never = defined - shown
    assert never == NOT_YET_SHOWN, (
        f"markers no notebook shows (show them or drop the marker lines): {sorted(never - NOT_YET_SHOWN)}; "
        f"taken care of since, drop from NOT_YET_SHOWN: {sorted(NOT_YET_SHOWN - never)}"
    )


# parameters whose default None declares no type, so `-p n_sentences abc` still fails deep in a cell instead of
# at check_parameters; their notebooks' owners annotate them (``n_sentences: int | None = None``). May only shrink.
NOT_YET_ANNOTATED: set[tuple[str, str]] = set()


def test_every_parameter_declares_its_type():
    """A parameter's type comes from its default, or from an annotation when the default is None."""
    from pt_helpers.parameters import declared_parameters

    untyped = set()
    for path in NOTEBOOKS:
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        cell = next(c for c in cells if "parameters" in c.get("metadata", {}).get("tags", []))
        for name, param in declared_parameters("".join(cell["source"])).items():
            if param.type_name in ("None", "any"):
                untyped.add((path.name[:2], name))
    assert untyped == NOT_YET_ANNOTATED, (
        f"annotate (name: int | None = None): {sorted(untyped - NOT_YET_ANNOTATED)}; "
        f"annotated since, drop from NOT_YET_ANNOTATED: {sorted(NOT_YET_ANNOTATED - untyped)}"
    )


# notebooks whose code still resolves a profile its own way instead of through device.profile_settings (issue #26,
# item 4; 09's owner moves it over): this set may only shrink — a listed notebook that no longer does fails the test
OWN_PROFILE_IDIOM: set[str] = set()
PROFILE_NAMES = ("quick", "full")


def _mentions_profile_name(node: ast.expr) -> bool:
    """``"full"``, or a tuple / list / set holding ``"quick"`` or ``"full"``."""
    if isinstance(node, ast.Constant):
        return node.value in PROFILE_NAMES
    return isinstance(node, (ast.Tuple, ast.List, ast.Set)) and any(map(_mentions_profile_name, node.elts))


def _is_profile(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id == "profile"


def profile_idioms(source: str, parameters: set[str]) -> list[str]:
    """What in a notebook's code picks a value by the profile other than through profile_settings: indexing by
    ``profile`` (``{...}[profile]``, ``.get(profile)``), comparing ``profile`` with "quick"/"full", and ``max`` /
    ``min`` of a parameter (``max(n_test, 300)``: a full-profile floor that silently replaces the reader's value)."""
    tree = _python(source)
    found = []
    for node in ast.walk(tree) if tree is not None else ():
        if isinstance(node, ast.Subscript) and _is_profile(node.slice):
            found.append(f"`{ast.unparse(node)[:50]}` indexes by the profile")
        elif isinstance(node, ast.Compare) and any(map(_is_profile, [node.left, *node.comparators])):
            if any(map(_mentions_profile_name, [node.left, *node.comparators])):
                found.append(f"`{ast.unparse(node)}` compares the profile")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
            if node.args and _is_profile(node.args[0]):
                found.append(f"`{ast.unparse(node)[:50]}` looks the profile up")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("max", "min"):
            if any(isinstance(a, ast.Name) and a.id in parameters for a in node.args):
                found.append(f"`{ast.unparse(node)[:50]}` replaces a parameter's value")
    return found


def test_profile_idioms_are_found():
    """The detector below catches each idiom the notebooks used before profile_settings (and not the helper)."""
    params = {"n_test", "n_sentences"}
    for bad in (
        'n_sentences = n_sentences or {"quick": 20, "full": 300}[profile]',
        'if profile == "full":\n    n_test = max(n_test, 300)',
        'QUICK = profile == "quick"',
        "settings = dict(quick=dict(a=1), full=dict(a=2))[profile]",
        "x = profiles.get(profile)",
        'if profile in ("full",):\n    pass',
    ):
        assert profile_idioms(bad, params), bad
    good = "settings = profile_settings(profile, dict(n_test=48), dict(n_test=300), given=dict(n_test=n_test))\n"
    assert not profile_idioms(good + 'print(f"{profile} profile", max(1, settings["n_test"] // 2))', params)


def _parameters(path: Path) -> set[str]:
    from pt_helpers.parameters import declared_parameters

    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    cell = next(c for c in cells if "parameters" in c.get("metadata", {}).get("tags", []))
    return set(declared_parameters("".join(cell["source"])))


def test_profiles_resolve_through_profile_settings():
    """Every notebook takes its quick/full values from device.profile_settings and nowhere else, so a value the
    reader typed (``-p n_test 50``) is never replaced by the profile's."""
    own = {}
    for path in NOTEBOOKS:
        params = _parameters(path)
        cells = _code_cells(path)
        idioms = [f"cell {i}: {what}" for i, src in enumerate(cells) for what in profile_idioms(src, params)]
        uses_helper = any("profile_settings(" in src for src in cells)
        if idioms or ("profile" in params and not uses_helper):
            own[path.name[:2]] = idioms or ["has a profile parameter but never calls profile_settings"]
    assert set(own) <= OWN_PROFILE_IDIOM, {k: v for k, v in own.items() if k not in OWN_PROFILE_IDIOM}
    gone = sorted(OWN_PROFILE_IDIOM - set(own))
    assert not gone, f"moved to profile_settings since, drop from OWN_PROFILE_IDIOM: {gone}"


def _dict_keys(cell: ast.Module, node: ast.expr) -> dict[str, ast.expr]:
    """``{key: value node}`` of ``dict(a=1)`` / ``{"a": 1}``, or of a name built in the cell by ``x = dict(...)`` and
    ``x |= dict(...)``."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict":
        return {k.arg: k.value for k in node.keywords if k.arg}
    if isinstance(node, ast.Dict):
        return {k.value: v for k, v in zip(node.keys, node.values) if isinstance(k, ast.Constant)}
    found = {}
    if isinstance(node, ast.Name):
        for stmt in cell.body:
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [getattr(stmt, "target", None)]
            if isinstance(stmt, (ast.Assign, ast.AugAssign)) and any(
                isinstance(t, ast.Name) and t.id == node.id for t in targets
            ):
                found |= _dict_keys(cell, stmt.value)
    return found


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if p.name[:2] not in OWN_PROFILE_IDIOM], ids=lambda p: p.name)
def test_every_typed_parameter_reaches_profile_settings(path):
    """A parameter named like one of the settings is handed to profile_settings as ``given`` (itself, unchanged),
    so the value a reader types wins over the profile's."""
    for tree in filter(None, map(_python, _code_cells(path))):
        calls = [
            n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "profile_settings"
        ]
        for call in calls:
            kw = {k.arg: k.value for k in call.keywords}
            quick = _dict_keys(tree, kw["quick"] if "quick" in kw else call.args[1])
            given = _dict_keys(tree, kw["given"]) if "given" in kw else {}
            for name in _parameters(path) & set(quick):
                assert isinstance(given.get(name), ast.Name) and given[name].id == name, (
                    f"{path.name}: parameter {name!r} is a setting: pass given=dict({name}={name}) to profile_settings"
                )

"""A notebook's parameters, typed by its own ``parameters`` cell — checked however the notebook is run.

Defined for every chapter (01–09): each notebook calls :func:`check_parameters` in the cell right after its
``parameters`` cell. papermill (``papermill -p seed abc``, or ``python -m pt_helpers.course.run``) injects
the new values in a cell of its own, headed ``# Parameters``, after the parameters cell; this check compares
each injected value with the type its parameters cell declares — an annotation (``n_eval: int | None =
None``) if it has one, else the type of the default (``seed = 0`` is an int) — and stops with a
:class:`~pt_helpers.errors.ParameterError` naming the parameter, the declared type and the value, before
any cell uses it. A default of ``None`` without an annotation declares no type: such a value is not checked.

The declared types are read from the kernel's input history (IPython's ``In``): the injected cell and the
cell run just before it, the parameters cell. Run interactively (nothing injected), the check does nothing.
The course's command-line runner types ``-p`` values by the same rules before it starts a notebook.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ParameterError

INJECTED_HEADER = "# Parameters"  # the first line of the cell papermill injects (its Python translator)


@dataclass
class NotebookParameter:
    """One variable of a notebook's ``parameters`` cell: its name, declared type and default's source text."""

    name: str
    type_name: str  # "str", "int", "float", "bool", "list", "dict", "tuple", "None" or "any"
    default: str  # the default's source text, e.g. '"gpt2"', "0", '[" positive", " negative"]'
    help: str = ""
    optional: bool = False  # annotated ``X | None`` / ``Optional[X]``: None is allowed too

    def describe(self) -> str:
        """``seed (int, default 0)``; ``n_eval (int or None, default None)``; ``x (default None)`` untyped."""
        kind = "" if self.type_name in ("None", "any") else f"{self.type_name}{' or None' if self.optional else ''}, "
        return f"{self.name} ({kind}default {self.default})"


_TYPE_ALIASES = {
    "str": "str",
    "int": "int",
    "float": "float",
    "bool": "bool",
    "list": "list",
    "dict": "dict",
    "tuple": "tuple",
    "sequence": "list",
    "mapping": "dict",
    "none": "None",
    "nonetype": "None",
}
_LITERAL_TYPES = {
    str: "str",
    bool: "bool",
    int: "int",
    float: "float",
    list: "list",
    dict: "dict",
    tuple: "tuple",
    type(None): "None",
}


def _type_parts(node: ast.expr) -> list[ast.expr]:
    """``int | None`` → [int, None]; ``Optional[int]`` → [int, None]; ``Union[int, str]`` → [int, str]."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _type_parts(node.left) + _type_parts(node.right)
    if isinstance(node, ast.Subscript):
        outer = ast.unparse(node.value).rsplit(".", 1)[-1]
        inner = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        if outer == "Optional":
            return [*inner, ast.Constant(None)]
        if outer == "Union":
            return [p for e in inner for p in _type_parts(e)]
    return [node]


def type_from_annotation(annotation: str) -> tuple[str, bool]:
    """``(type name, None allowed)``: ``"int"`` → ("int", False), ``"int | None"`` → ("int", True),
    ``"List[str]"`` → ("list", False); a union of several types, or one not listed, is ("any", …)."""
    try:
        node = ast.parse(annotation.strip().strip("'\""), mode="eval").body
    except SyntaxError:
        return "any", False
    names = []
    for part in _type_parts(node):
        if isinstance(part, ast.Constant) and part.value is None:
            names.append("None")
            continue
        base = ast.unparse(part.value if isinstance(part, ast.Subscript) else part).rsplit(".", 1)[-1].lower()
        names.append(_TYPE_ALIASES.get(base, "any"))
    optional = "None" in names and len(names) > 1
    kinds = {n for n in names if n != "None"} or {"None"}
    return (kinds.pop() if len(kinds) == 1 else "any"), optional


def type_from_default(default: str) -> str:
    """The type of a default written as a Python literal; ``"any"`` for an expression (``os.cpu_count()``)."""
    try:
        value = ast.literal_eval(default)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return "any"
    return _LITERAL_TYPES.get(type(value), "any")


def assignments(source: str) -> list[tuple[str, str | None, str]]:
    """``(name, annotation or None, default source)`` of each top-level ``name = value`` in ``source``."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    found = []
    for node in tree.body:
        if isinstance(node, ast.Assign):
            names, annotation = [t.id for t in node.targets if isinstance(t, ast.Name)], None
        elif isinstance(node, ast.AnnAssign) and node.value is not None and isinstance(node.target, ast.Name):
            names, annotation = [node.target.id], ast.unparse(node.annotation)
        else:
            continue
        default = ast.get_source_segment(source, node.value) or ""
        found += [(name, annotation, default) for name in names]
    return found


def make_parameter(name: str, annotation: str | None, default: str, help: str = "") -> NotebookParameter:
    """A parameter typed by its annotation when it has one, else by its default."""
    if annotation:
        type_name, optional = type_from_annotation(annotation)
    else:
        type_name, optional = type_from_default(default), False
    return NotebookParameter(name, type_name, default, help, optional)


def declared_parameters(source: str) -> dict[str, NotebookParameter]:
    """The parameters a ``parameters`` cell's source declares, in its order."""
    return {name: make_parameter(name, ann, default) for name, ann, default in assignments(source)}


_ACCEPTS: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),  # an int will do where a float is declared
    "bool": (bool,),
    "list": (list, tuple),
    "tuple": (list, tuple),
    "dict": (dict,),
}
_WRITE_IT = {"int": "8", "float": "0.5", "bool": "True", "str": "word"}


def value_fits(param: NotebookParameter, value: Any) -> bool:
    """Whether ``value`` has the type ``param`` declares (a bool is not an int, nor an int a bool)."""
    accepted = _ACCEPTS.get(param.type_name)
    if accepted is None or (value is None and param.optional):
        return True
    if isinstance(value, bool) and param.type_name in ("int", "float"):
        return False
    return isinstance(value, accepted)


def check_values(values: Mapping[str, Any], declared: Mapping[str, NotebookParameter], where: str) -> None:
    """Raise :class:`ParameterError` for the first value whose type is not the one its parameter declares."""
    __tracebackhide__ = True  # IPython shows the message, not this function's frames
    for name, value in values.items():
        param = declared.get(name)
        if param is None or value_fits(param, value):
            continue
        kind = param.type_name + (" or None" if param.optional else "")
        if param.type_name in ("list", "dict", "tuple"):
            example = f"-y '{name}: [...]'"  # YAML keeps the structure
        else:  # -r keeps a str a str (papermill's -p turns 2024 into an int)
            example = f"{'-r' if param.type_name == 'str' else '-p'} {name} {_WRITE_IT[param.type_name]}"
        raise ParameterError(
            f"parameter {name!r} of {where} is declared {kind} in its parameters cell ({name} = {param.default}), "
            f"but it was given {value!r} ({type(value).__name__}). Pass {'an' if kind[0] in 'aeiou' else 'a'} "
            f"{kind}, e.g. papermill {example}."
        )


def _history() -> list[str]:
    """The kernel's input history (IPython's ``In``), or [] outside IPython."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency of the notebooks' kernel
        return []
    shell = get_ipython()
    if shell is None:
        return []
    return list(shell.user_ns.get("In") or shell.history_manager.input_hist_raw)


def check_parameters(namespace: Mapping[str, Any] | None = None, history: list[str] | None = None) -> None:
    """Check the values papermill injected against the types the notebook's parameters cell declares.

    Called once by each notebook, in the cell after its parameters cell. ``history`` (the kernel's input
    history, IPython's ``In``, by default) holds the injected cell (``# Parameters`` …) and, just before
    it, the parameters cell; ``namespace`` (the kernel's variables, by default) holds the values.
    """
    __tracebackhide__ = True
    history = _history() if history is None else history
    injected = [i for i, src in enumerate(history) if src.lstrip().startswith(INJECTED_HEADER)]
    if not injected or injected[-1] == 0:
        return  # run interactively: nothing was injected, the parameters cell's own values are used
    i = injected[-1]
    declared = declared_parameters(history[i - 1])
    if namespace is None:
        from IPython import get_ipython

        namespace = get_ipython().user_ns
    given = {name: namespace[name] for name, _, _ in assignments(history[i]) if name in namespace}
    check_values(given, declared, "this notebook")

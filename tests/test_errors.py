"""Tests of pt_helpers.errors: every error class of the course is defined there, as a CourseError, so a user
catches them all with one ``except CourseError`` (and by the built-in kind, e.g. ``FileNotFoundError``)."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import pt_helpers
from pt_helpers import errors

PACKAGE = Path(pt_helpers.__file__).parent
# error classes still defined in their modules (issue #26, item 6); this list may only shrink
ERRORS_NOT_YET_MOVED: set[str] = set()


def _module(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE).with_suffix("").parts)


def test_every_error_class_is_defined_in_errors():
    outside = set()
    for py in PACKAGE.rglob("*.py"):
        if py.name == "errors.py":
            continue
        for node in ast.walk(ast.parse(py.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and any(
                ast.unparse(b).endswith(("Error", "Exception")) for b in node.bases
            ):
                outside.add(f"{_module(py)}.{node.name}")
    assert outside == ERRORS_NOT_YET_MOVED, (
        f"define these in errors.py: {sorted(outside - ERRORS_NOT_YET_MOVED)}; "
        f"moved since, drop from the list: {sorted(ERRORS_NOT_YET_MOVED - outside)}"
    )


def test_every_error_class_is_a_course_error_and_keeps_its_built_in_kind():
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass) if c.__module__ == errors.__name__]
    assert len(classes) > 10 and all(issubclass(c, errors.CourseError) for c in classes)
    assert issubclass(errors.CourseError, ValueError)
    with pytest.raises(FileNotFoundError):  # caught as what it is, too
        raise errors.DataFileMissingError("data/x.tsv is missing")
    assert issubclass(errors.PromptShapeError, errors.PromptError)


def test_check_texts_names_the_input_and_the_bad_item():
    assert errors.check_texts(("a", "b"), "texts") == ["a", "b"]
    with pytest.raises(TypeError, match=r"texts\[1\] is None \(NoneType\), not a string \(a missing value"):
        errors.check_texts(["a", None], "texts")
    with pytest.raises(errors.EmptyTextError, match=r"inputs\[0\] is empty"):
        errors.check_texts(["  "], "inputs", allow_empty=False)

"""Tests of pt_helpers.course.student: solution cells become stubs, outputs are stripped, the rest is kept."""

from __future__ import annotations

import re

import nbformat
import pytest

from pt_helpers.course import student


def _course(folder):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    intro = nbformat.v4.new_markdown_cell("# 01 · Demo · 演示")
    params = nbformat.v4.new_code_cell("seed = 0", metadata={"tags": ["parameters"]})
    params.outputs = [nbformat.v4.new_output("stream", name="stdout", text="hi\n")]
    params.execution_count = 3
    solution = nbformat.v4.new_code_cell("def answer():\n    return 42  # SECRET", metadata={"tags": ["solution"]})
    solution.outputs = [nbformat.v4.new_output("execute_result", data={"text/plain": "42"}, execution_count=4)]
    check = nbformat.v4.new_code_cell("ch01.check_1(answer)")
    nb.cells = [intro, params, solution, check]
    folder.mkdir()
    nbformat.write(nb, folder / "01_demo.ipynb")
    (folder / "glossary.md").write_text("# Glossary\n")
    return nb


def test_student_copy_replaces_solutions_and_strips_outputs(tmp_path):
    original = _course(tmp_path / "notebooks")
    report = student.make_student_copy(tmp_path / "notebooks", tmp_path / "student")
    assert report == {"01_demo.ipynb": 1}
    nb = nbformat.read(tmp_path / "student" / "01_demo.ipynb", as_version=4)
    nbformat.validate(nb)
    assert len(nb.cells) == len(original.cells)
    stub = nb.cells[2]
    assert stub.source == "# YOUR CODE HERE\nraise NotImplementedError" and "SECRET" not in stub.source
    assert "solution" not in stub.metadata.get("tags", []) and stub.id == original.cells[2].id
    assert nb.cells[0].source == original.cells[0].source  # everything else kept
    assert nb.cells[1].source == "seed = 0" and nb.cells[1].metadata["tags"] == ["parameters"]
    assert nb.cells[3].source == "ch01.check_1(answer)"
    assert all(c.outputs == [] and c.execution_count is None for c in nb.cells if c.cell_type == "code")
    assert (tmp_path / "student" / "glossary.md").is_file()
    src = nbformat.read(tmp_path / "notebooks" / "01_demo.ipynb", as_version=4)
    assert "SECRET" in src.cells[2].source  # the source is untouched


def test_student_cli_and_errors(tmp_path, capsys):
    _course(tmp_path / "notebooks")
    assert student.main([str(tmp_path / "notebooks"), str(tmp_path / "out")]) == 0
    assert "01_demo.ipynb: 1 solution cell(s) replaced" in capsys.readouterr().out
    with pytest.raises(student.StudentCopyError, match="another folder"):
        student.make_student_copy(tmp_path / "notebooks", tmp_path / "notebooks")
    with pytest.raises(student.StudentCopyError, match="does not exist"):
        student.make_student_copy(tmp_path / "missing", tmp_path / "out2")
    (tmp_path / "empty").mkdir()
    assert student.main([str(tmp_path / "empty"), str(tmp_path / "out3")]) == 2


def _student_module():
    """pt_helpers.student, or pt_helpers.course.student once course tooling has its own wing."""
    import importlib

    for name in ("pt_helpers.course.student", "pt_helpers.student"):
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError:
            continue
    raise AssertionError("neither pt_helpers.course.student nor pt_helpers.student exists")


def _parse(source: str):
    """A code cell's syntax tree; IPython magics and shell lines (``%…``, ``!…``) are blanked out first."""
    import ast

    lines = source.splitlines()
    return ast.parse("\n".join("" if ln.lstrip().startswith(("%", "!")) else ln for ln in lines))


def _checked_answers(source: str) -> set[str]:
    """Names handed as FIRST argument to an exercise checker ``chNN.check_K(...)`` in a cell: the learner's
    answers (later arguments are the course's own objects: the model, a tokenizer, a measured value)."""
    import ast

    names = set()
    for node in ast.walk(_parse(source)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr.startswith("check_")
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id.startswith("ch")
            and node.args
            and isinstance(node.args[0], ast.Name)
        ):
            names.add(node.args[0].id)
    return names


def _defined(source: str) -> set[str]:
    """Names a cell binds outside function bodies (assignments, also inside ``with``/``for``/``if``; functions;
    classes)."""
    import ast

    names, todo = set(), list(_parse(source).body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)  # its body is its own scope
            continue
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        todo.extend(ast.iter_child_nodes(node))
    return names


def test_make_student_leaves_no_exercise_answer_in_the_hand_out(tmp_path):
    """Every exercise answer — a name given to a ``chNN.check_K`` checker — is defined in a cell tagged
    ``solution`` in the course, and in the hand-out ``make student`` writes no cell defines it any more. Fails on
    an answer written in an untagged cell (as notebook 08's were, beside their checks)."""
    from pathlib import Path

    student_module = _student_module()
    notebooks = Path(__file__).resolve().parents[1] / "notebooks"
    student_module.make_student_copy(notebooks, tmp_path / "student")
    student_module.make_nbgrader_copy(notebooks, tmp_path / "nbgrader")  # its hand-out: release/course/
    hand_outs = (tmp_path / "student", tmp_path / "nbgrader" / "release" / student_module.NBGRADER_ASSIGNMENT)
    code = lambda nb: [c.source for c in nb.cells if c.cell_type == "code"]  # noqa: E731
    leaks, untagged, n_answers = [], [], 0
    for path in sorted(notebooks.glob("[0-9][0-9]_*.ipynb")):
        course = nbformat.read(path, as_version=4)
        answers = set().union(*(_checked_answers(s) for s in code(course)))
        solutions = set().union(*(_defined(c.source) for c in course.cells if student_module.is_solution(c)))
        n_answers += len(answers)
        untagged += [f"{path.name}: {a}" for a in sorted(answers - solutions)]
        for folder in hand_outs:
            hand_out = nbformat.read(folder / path.name, as_version=4)
            leaks += [f"{folder.name}/{path.name}: {a}" for s in code(hand_out) for a in sorted(answers & _defined(s))]
    assert n_answers >= 20, f"only {n_answers} checked answers found: has the checker call changed its form?"
    assert not untagged, f"exercise answers defined outside a cell tagged 'solution': {untagged}"
    assert not leaks, f"answers still defined in the hand-out: {leaks}"


# nbgrader's cell metadata, schema version 3 (nbgrader/nbgraderformat/v3.json and MetadataValidatorV3's rules)
NBGRADER_KEYS = {"schema_version", "grade", "locked", "solution", "task", "grade_id", "points", "checksum", "cell_type"}


def _check_nbgrader_cell(cell, seen_ids):
    meta = cell.metadata["nbgrader"]
    assert {"schema_version", "grade", "locked", "solution"} <= set(meta) <= NBGRADER_KEYS, meta
    assert meta["schema_version"] == 3 and all(isinstance(meta[k], bool) for k in ("grade", "locked", "solution"))
    if meta["grade"] or meta["solution"] or meta["locked"]:
        assert re.fullmatch(r"[a-zA-Z0-9_\-]+", meta["grade_id"]) and meta["grade_id"] not in seen_ids
        seen_ids.add(meta["grade_id"])
    if meta["grade"]:
        assert isinstance(meta["points"], (int, float)) and meta["points"] >= 0
    if cell.cell_type == "markdown":  # nbgrader: a markdown cell is graded only as a solution
        assert meta["grade"] == meta["solution"]


def test_nbgrader_copy_marks_solutions_and_tests_the_way_nbgrader_reads_them(tmp_path):
    _course(tmp_path / "notebooks")
    report = student.make_nbgrader_copy(tmp_path / "notebooks", tmp_path / "nbgrader")
    assert report == {"01_demo.ipynb": (1, 1)}
    source = nbformat.read(tmp_path / "nbgrader" / "source" / "course" / "01_demo.ipynb", as_version=4)
    release = nbformat.read(tmp_path / "nbgrader" / "release" / "course" / "01_demo.ipynb", as_version=4)
    for nb in (source, release):
        nbformat.validate(nb)
        seen = set()
        for cell in nb.cells:
            if "nbgrader" in cell.metadata:
                _check_nbgrader_cell(cell, seen)
        assert seen == {"ch01_solution_1", "ch01_test_1"}
        assert all(c.outputs == [] for c in nb.cells if c.cell_type == "code")
    sol, test = source.cells[2], source.cells[3]
    assert sol.metadata["nbgrader"] | {} == {
        "schema_version": 3,
        "grade": False,
        "locked": False,
        "solution": True,
        "task": False,
        "grade_id": "ch01_solution_1",
    }
    assert sol.source.startswith("### BEGIN SOLUTION\n") and sol.source.endswith("\n### END SOLUTION")
    assert "SECRET" in sol.source  # the instructor's copy keeps the answer, for nbgrader generate_assignment
    assert test.metadata["nbgrader"]["grade"] and test.metadata["nbgrader"]["locked"]
    assert test.metadata["nbgrader"]["points"] == 1 and test.source == "ch01.check_1(answer)"
    stub = release.cells[2]
    assert stub.source == student.STUB_SOURCE and "SECRET" not in stub.source and stub.metadata["nbgrader"]["solution"]
    assert "nbgrader" not in release.cells[1].metadata  # the parameters cell is neither
    with pytest.raises(student.StudentCopyError, match="outside the notebooks"):
        student.make_nbgrader_copy(tmp_path / "notebooks", tmp_path / "notebooks" / "nbgrader")


def test_checker_cells_are_found_by_their_call():
    cell = nbformat.v4.new_code_cell
    assert student.is_checker(cell("%time\nch05.check_2(prompt, model)"))
    assert not student.is_checker(cell("check_2(prompt)")) and not student.is_checker(cell("x = ch05.helper(1)"))
    assert not student.is_checker(nbformat.v4.new_markdown_cell("ch05.check_2(prompt)"))


def test_student_cli_writes_the_nbgrader_copy(tmp_path, capsys):
    _course(tmp_path / "notebooks")
    args = [str(tmp_path / "notebooks"), str(tmp_path / "out"), "--nbgrader", str(tmp_path / "nbg")]
    assert student.main(args) == 0
    assert "1 solution cells, 1 autograder test cells" in capsys.readouterr().out
    assert (tmp_path / "nbg" / "release" / "course" / "01_demo.ipynb").is_file()

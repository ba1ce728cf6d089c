"""Tests of pt_helpers.course.student: solution cells become stubs, outputs are stripped, the rest is kept."""

from __future__ import annotations

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

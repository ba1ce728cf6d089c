"""Make the hand-out copy of the course: solutions replaced by stubs, outputs stripped.

    python -m pt_helpers.course.student notebooks build/student

    python -m pt_helpers.course.student notebooks build/student --nbgrader build/nbgrader   # `make student`

Every cell tagged ``solution`` becomes a code cell ``# YOUR CODE HERE`` + ``raise NotImplementedError``
(tagged ``exercise`` so it is easy to find); every other cell is kept as it is, with outputs and
execution counts removed. Markdown files beside the notebooks (the glossary) are copied unchanged.

``--nbgrader DIR`` also writes a copy for a classroom that grades with nbgrader, in nbgrader's course layout
(cell metadata ``"nbgrader"``, schema version 3, as nbgrader's ``nbgraderformat/v3.json`` defines it):

* ``DIR/source/course/NN_name.ipynb`` — the instructor's version: each solution cell keeps its answer between
  ``### BEGIN SOLUTION`` / ``### END SOLUTION`` and is marked ``solution: true, grade: false``; each cell that
  calls an exercise checker (``chNN.check_K(...)``) and is not itself a solution is an autograder test cell
  (``grade: true, locked: true, points: 1``). ``nbgrader generate_assignment course`` makes the release from it.
* ``DIR/release/course/NN_name.ipynb`` — the hand-out, ready as it is: the same metadata, solutions replaced by
  the stub. No answer survives in it (a test checks this for both hand-outs).
"""

from __future__ import annotations

import argparse
import ast
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import nbformat

from ..errors import CourseError, StudentCopyError

SOLUTION_TAG = "solution"
STUB_TAG = "exercise"
STUB_SOURCE = "# YOUR CODE HERE\nraise NotImplementedError"


def stub_cell() -> nbformat.NotebookNode:
    """The code cell that replaces a solution: ``# YOUR CODE HERE`` then ``raise NotImplementedError``."""
    cell = nbformat.v4.new_code_cell(STUB_SOURCE)
    cell.metadata["tags"] = [STUB_TAG]
    return cell


def is_solution(cell: nbformat.NotebookNode) -> bool:
    """True for a cell tagged ``solution``."""
    return SOLUTION_TAG in cell.get("metadata", {}).get("tags", [])


def strip_outputs(cell: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Remove outputs, the execution count and execution metadata from a code cell (in place)."""
    if cell.cell_type == "code":
        cell.outputs = []
        cell.execution_count = None
        for key in ("execution", "papermill", "collapsed", "scrolled"):
            cell.metadata.pop(key, None)
    return cell


def student_notebook(nb: nbformat.NotebookNode) -> tuple[nbformat.NotebookNode, int]:
    """A copy of ``nb`` with solution cells stubbed and outputs stripped; also the number of stubs."""
    out = nbformat.from_dict(nb)  # deep copy
    cells, n_stubs = [], 0
    for cell in out.cells:
        if is_solution(cell):
            stub = stub_cell()
            if "id" in cell:
                stub["id"] = cell["id"]
            cells.append(stub)
            n_stubs += 1
        else:
            cells.append(strip_outputs(cell))
    out.cells = cells
    out.metadata.pop("papermill", None)
    return out, n_stubs


def make_student_copy(src_dir: str | Path, dst_dir: str | Path) -> dict[str, int]:
    """Write the student copy of every ``*.ipynb`` (and ``*.md``) in ``src_dir`` to ``dst_dir``.

    Returns ``{notebook file name: number of solution cells replaced}``.
    """
    src, dst = Path(src_dir), Path(dst_dir)
    if not src.is_dir():
        raise StudentCopyError(f"source folder {src} does not exist; pass the folder holding the notebooks.")
    if dst.resolve() == src.resolve():
        raise StudentCopyError(
            "the student copy must go to another folder than the notebooks (it would "
            "overwrite the solutions); e.g. build/student."
        )
    notebooks = sorted(src.glob("*.ipynb"))
    if not notebooks:
        raise StudentCopyError(f"no .ipynb files in {src}.")
    dst.mkdir(parents=True, exist_ok=True)
    report = {}
    for path in notebooks:
        nb, n = student_notebook(nbformat.read(path, as_version=4))
        nbformat.validate(nb)
        nbformat.write(nb, dst / path.name)
        report[path.name] = n
    for path in sorted(src.glob("*.md")):
        shutil.copy2(path, dst / path.name)
    return report


NBGRADER_SCHEMA_VERSION = 3
NBGRADER_ASSIGNMENT = "course"
BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"


def is_checker(cell: nbformat.NotebookNode) -> bool:
    """True for a code cell that calls an exercise checker ``chNN.check_K(...)`` (read from its syntax tree)."""
    if cell.get("cell_type") != "code":
        return False
    lines = cell.source.splitlines()
    try:  # IPython magics and shell lines are not Python
        tree = ast.parse("\n".join("" if ln.lstrip().startswith(("%", "!")) else ln for ln in lines))
    except SyntaxError:
        return False
    return any(
        isinstance(n, ast.Call)
        and isinstance(n.func, ast.Attribute)
        and n.func.attr.startswith("check_")
        and isinstance(n.func.value, ast.Name)
        and n.func.value.id.startswith("ch")
        for n in ast.walk(tree)
    )


def nbgrader_metadata(kind: str, grade_id: str, points: float = 1) -> dict:
    """nbgrader's cell metadata (schema 3) for a ``"solution"`` cell or an autograder ``"test"`` cell."""
    meta = {
        "schema_version": NBGRADER_SCHEMA_VERSION,
        "grade": kind == "test",
        "locked": kind == "test",  # a learner must not edit the test that grades them
        "solution": kind == "solution",
        "task": False,
        "grade_id": grade_id,
    }
    if kind == "test":
        meta["points"] = points
    return meta


def nbgrader_notebook(
    nb: nbformat.NotebookNode, prefix: str, *, release: bool
) -> tuple[nbformat.NotebookNode, int, int]:
    """``nb`` marked for nbgrader: the instructor's version (``release=False``: answers between BEGIN/END SOLUTION)
    or the hand-out (answers replaced by the stub). Returns the notebook, its solution and test cell counts."""
    out = nbformat.from_dict(nb)
    n_solutions = n_tests = 0
    cells = []
    for cell in out.cells:
        if is_solution(cell):
            n_solutions += 1
            if release:
                new = stub_cell()
                if "id" in cell:
                    new["id"] = cell["id"]
                cell = new
            else:
                cell = strip_outputs(cell)
                cell.source = f"{BEGIN_SOLUTION}\n{cell.source.rstrip()}\n{END_SOLUTION}"
            cell.metadata["nbgrader"] = nbgrader_metadata("solution", f"{prefix}_solution_{n_solutions}")
        elif is_checker(cell):
            n_tests += 1
            cell = strip_outputs(cell)
            cell.metadata["nbgrader"] = nbgrader_metadata("test", f"{prefix}_test_{n_tests}")
        else:
            cell = strip_outputs(cell)
        cells.append(cell)
    out.cells = cells
    out.metadata.pop("papermill", None)
    return out, n_solutions, n_tests


def make_nbgrader_copy(src_dir: str | Path, dst_dir: str | Path) -> dict[str, tuple[int, int]]:
    """Write nbgrader's ``source/course/`` (instructor) and ``release/course/`` (hand-out) copies of every course
    notebook ``NN_name.ipynb`` in ``src_dir``; return ``{file: (solution cells, test cells)}``."""
    from ..project import NOTEBOOK_PATTERN

    src, dst = Path(src_dir), Path(dst_dir)
    if not src.is_dir():
        raise StudentCopyError(f"source folder {src} does not exist; pass the folder holding the notebooks.")
    if src.resolve() in (dst.resolve(), *dst.resolve().parents):
        raise StudentCopyError("the nbgrader copy must go outside the notebooks folder; e.g. build/nbgrader.")
    report = {}
    for path in sorted(p for p in src.glob("*.ipynb") if NOTEBOOK_PATTERN.match(p.name)):
        nb = nbformat.read(path, as_version=4)
        for version in ("source", "release"):
            marked, n_sol, n_test = nbgrader_notebook(nb, f"ch{path.name[:2]}", release=version == "release")
            nbformat.validate(marked)
            folder = dst / version / NBGRADER_ASSIGNMENT
            folder.mkdir(parents=True, exist_ok=True)
            nbformat.write(marked, folder / path.name)
        report[path.name] = (n_sol, n_test)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: ``python -m pt_helpers.course.student SRC_DIR DST_DIR``."""
    p = argparse.ArgumentParser(
        prog="python -m pt_helpers.course.student", description="Copy notebooks with solution cells replaced by stubs."
    )
    p.add_argument("src_dir", nargs="?", default="notebooks")
    p.add_argument("dst_dir", nargs="?", default="build/student")
    p.add_argument("--nbgrader", metavar="DIR", help="also write nbgrader's source/ and release/ copies in DIR")
    args = p.parse_args(argv)
    try:
        report = make_student_copy(args.src_dir, args.dst_dir)
        graded = make_nbgrader_copy(args.src_dir, args.nbgrader) if args.nbgrader else {}
    except CourseError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 2
    for name, n in report.items():
        print(f"{name}: {n} solution cell(s) replaced")
    print(f"student copy in {args.dst_dir}")
    if args.nbgrader:
        n_sol, n_test = (sum(v[i] for v in graded.values()) for i in (0, 1))
        print(
            f"nbgrader copy in {args.nbgrader}: source/{NBGRADER_ASSIGNMENT}/ (instructor) and "
            f"release/{NBGRADER_ASSIGNMENT}/ (hand-out), {len(graded)} notebooks, {n_sol} solution cells, "
            f"{n_test} autograder test cells"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

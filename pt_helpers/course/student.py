"""Make the hand-out copy of the course: solutions replaced by stubs, outputs stripped.

    python -m pt_helpers.course.student notebooks build/student

Every cell tagged ``solution`` becomes a code cell ``# YOUR CODE HERE`` + ``raise NotImplementedError``
(tagged ``exercise`` so it is easy to find); every other cell is kept as it is, with outputs and
execution counts removed. Markdown files beside the notebooks (the glossary) are copied unchanged.
"""

from __future__ import annotations

import argparse
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


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: ``python -m pt_helpers.course.student SRC_DIR DST_DIR``."""
    p = argparse.ArgumentParser(
        prog="python -m pt_helpers.course.student", description="Copy notebooks with solution cells replaced by stubs."
    )
    p.add_argument("src_dir", nargs="?", default="notebooks")
    p.add_argument("dst_dir", nargs="?", default="build/student")
    args = p.parse_args(argv)
    try:
        report = make_student_copy(args.src_dir, args.dst_dir)
    except CourseError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 2
    for name, n in report.items():
        print(f"{name}: {n} solution cell(s) replaced")
    print(f"student copy in {args.dst_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

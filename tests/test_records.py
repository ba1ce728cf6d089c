"""The recorded notebook runs share one layout, one findings convention and one script (benchmarks/README.md,
"Recorded notebook runs")."""

from __future__ import annotations

import json
import re

import nbformat
import pytest
from _records import RECORDS, ROOT, load_record, recorder

RECORDED = sorted(RECORDS.glob("ch*_quick.json"))


def test_the_five_chapters_have_records():
    assert {p.name for p in RECORDED} >= {f"ch{c}_quick.json" for c in ("01", "02", "03", "04", "09")}


@pytest.mark.parametrize("path", RECORDED, ids=lambda p: p.name)
def test_every_record_has_the_layout(path):
    chapter = re.fullmatch(r"ch(\d\d)_quick\.json", path.name).group(1)
    rec = load_record(chapter)  # fails on any other layout
    assert rec["profile"] == "quick" and "device" not in rec  # a device key would put it in the bench table
    (notebook,) = (ROOT / "notebooks").glob(rec["notebook"])
    has_cell = recorder().findings_cell(nbformat.read(notebook, as_version=4), notebook.name) is not None
    assert has_cell == (rec["findings"] is not None), (
        f"{notebook.name} {'has' if has_cell else 'has no'} cell tagged 'findings' but its record "
        f"{'has none' if has_cell else 'has findings'}: re-record it"
    )


def test_one_script_records_notebook_runs():
    scripts = [p.name for p in (ROOT / "benchmarks").glob("*.py") if "papermill" in p.read_text(encoding="utf-8")]
    assert scripts == ["_notebook_record.py"], f"one home for recording a notebook run: {scripts}"


def test_no_notebook_keeps_an_older_findings_convention():
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        code = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
        assert "record_path" not in code and "FINDINGS " not in code, f"{path.name}: print findings in a tagged cell"


def test_the_layout_check_catches_an_old_layout():
    rec = load_record("04")
    assert recorder().layout_problems(rec) == []
    old = {("load_average_before" if k == "load_average_start" else k): v for k, v in rec.items()}
    assert recorder().layout_problems(old)
    assert recorder().layout_problems(rec | {"date": "2026-12-06 23:31 UTC"})  # not ISO 8601
    assert recorder().layout_problems(rec | {"threads": 2})  # not the command's OMP_NUM_THREADS


GNU_TIME = """\tCommand being timed: "env OMP_NUM_THREADS=1 python -m papermill a.ipynb b.ipynb"
\tUser time (seconds): 336.54
\tSystem time (seconds): 3.65
\tElapsed (wall clock) time (h:mm:ss or m:ss): 18:11.56
\tMaximum resident set size (kbytes): 1464512
"""


def test_gnu_time_report_is_read_exactly():
    got = recorder()._time_v(GNU_TIME)
    assert got == dict(wall_s=1091.56, cpu_s=340.19, user_s=336.54, sys_s=3.65, max_rss_mib=1430.1875)


def test_the_findings_are_the_json_the_tagged_cell_printed(tmp_path):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("print(json.dumps(findings))", metadata={"tags": ["findings"]})
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text='saved to x\n{"a": [1, 2], "b": "≥"}\nmore\n')]
    nb.cells = [nbformat.v4.new_code_cell("x = 1"), cell]
    path = tmp_path / "07_x.ipynb"
    nbformat.write(nb, path)
    assert recorder().findings_of(path) == {"a": [1, 2], "b": "≥"}
    nb.cells.insert(1, nbformat.v4.new_code_cell("x = 2", metadata={"tags": ["injected-parameters"]}))  # papermill
    nbformat.write(nb, path)
    assert recorder().findings_of(path) == {"a": [1, 2], "b": "≥"}
    cell.outputs = []
    nbformat.write(nb, path)
    with pytest.raises(SystemExit, match="printed no JSON"):
        recorder().findings_of(path)
    nb.cells[0].metadata["tags"] = ["findings"]
    nbformat.write(nb, path)
    with pytest.raises(SystemExit, match="exactly one"):
        recorder().findings_of(path)


def test_a_record_is_not_replaced_unasked(tmp_path, capsys):
    out = tmp_path / "ch02.json"
    out.write_text("{}")
    with pytest.raises(SystemExit):  # before any run
        recorder().main(["02", "--out", str(out)])
    assert "--replace" in capsys.readouterr().err and json.loads(out.read_text()) == {}

"""Tests of pt_helpers.run: notebook lookup, parameter parsing, execution with papermill, failures."""
from __future__ import annotations

import json

import nbformat
import pytest

from pt_helpers import run
from pt_helpers.errors import CourseError


def _write_notebook(path, cells):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for kind, source, tags in cells:
        cell = (nbformat.v4.new_code_cell if kind == "code" else nbformat.v4.new_markdown_cell)(source)
        if tags:
            cell.metadata["tags"] = tags
        nb.cells.append(cell)
    nbformat.write(nb, path)
    return path


@pytest.fixture
def course(tmp_path):
    """A throwaway course folder: 01 works with parameters, 02 fails in its third cell."""
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    _write_notebook(nbs / "01_tiny.ipynb", [
        ("markdown", "# Tiny · 小\n\n**Goals:** multiply.", None),
        ("code", "k = 2\nword = 'a'", ["parameters"]),
        ("code", "result = k * 10\nprint('RESULT', result, word)", None)])
    _write_notebook(nbs / "02_broken.ipynb", [
        ("markdown", "# Broken · 坏", None),
        ("code", "x = 1", ["parameters"]),
        ("code", "y = x + 1", None),
        ("code", "raise ZeroDivisionError('planted failure ' + str(y))", None)])
    (nbs / "notes.ipynb").write_text("{}")  # not NN_name: never picked up
    return tmp_path


def test_find_notebook_by_number_name_and_errors(course):
    nbs = course / "notebooks"
    assert [p.name for p in run.list_notebooks(nbs)] == ["01_tiny.ipynb", "02_broken.ipynb"]
    assert run.find_notebook("01", nbs).name == "01_tiny.ipynb"
    assert run.find_notebook("2", nbs).name == "02_broken.ipynb"
    assert run.find_notebook("01_tiny", nbs).name == "01_tiny.ipynb"
    with pytest.raises(run.NotebookNotFoundError, match="Available: 01_tiny.ipynb, 02_broken.ipynb"):
        run.find_notebook("07", nbs)
    with pytest.raises(CourseError, match="does not exist"):
        run.list_notebooks(course / "nowhere")


def test_parse_parameters_reads_yaml_values():
    params = run.parse_parameters([["k", "8"], ["lr", "0.5"], ["model_name", "gpt2"], ["flag", "true"],
                                   ["sizes", "[1, 2]"]])
    assert params == {"k": 8, "lr": 0.5, "model_name": "gpt2", "flag": True, "sizes": [1, 2]}
    assert isinstance(params["k"], int)
    with pytest.raises(run.ParameterError, match="not a Python identifier"):
        run.parse_parameters([["bad-name", "1"]])
    with pytest.raises(run.ParameterError, match="YAML"):
        run.parse_parameters([["x", "[1, 2"]])


def test_format_seconds():
    assert run.format_seconds(8.2) == "8 s"
    assert run.format_seconds(75.3) == "1 min 15 s"


def test_cli_injects_parameters_shows_progress_and_records_timing(course, capsys):
    out_dir, timings = course / "executed", course / "timings.json"
    status = run.main(["01", "-p", "k", "8", "-p", "word", "hello", "--notebooks-dir", str(course / "notebooks"),
                       "-o", str(out_dir), "--timings", str(timings)])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert "Executing" in captured.err and "cell/s" in captured.err  # papermill's tqdm progress bar
    assert "[1/1] 01_tiny.ipynb" in captured.out
    executed = nbformat.read(out_dir / "01_tiny.ipynb", as_version=4)
    printed = "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs)
    assert "RESULT 80 hello" in printed  # k=8 (an int, from YAML) replaced the default k=2
    data = json.loads(timings.read_text())
    device_type = run.current_device()[0]
    entry = data["01_tiny.ipynb"][device_type]
    assert entry["parameters"] == {"k": 8, "word": "hello"} and 0 < entry["seconds"] < 120


def test_timings_keep_other_device_types(tmp_path):
    path = tmp_path / "t.json"
    for device_type, secs in (("cpu", 100.0), ("cuda", 12.0), ("cpu", 90.0)):
        run.record_timing(path, run.RunRecord("03_x.ipynb", "o", secs, device_type, device_type + " box"))
    data = run.load_timings(path)
    assert data["03_x.ipynb"]["cpu"]["seconds"] == 90.0  # rerun replaces its own device type …
    assert data["03_x.ipynb"]["cuda"]["seconds"] == 12.0  # … and keeps the other one


def test_cli_failure_names_notebook_and_cell_and_exits_nonzero(course, capsys):
    status = run.main(["all", "--no-progress", "--notebooks-dir", str(course / "notebooks"),
                       "-o", str(course / "executed"), "--timings", str(course / "timings.json")])
    err = capsys.readouterr().err
    assert status == 1
    assert "02_broken.ipynb failed in cell" in err
    assert "ZeroDivisionError: planted failure 2" in err
    assert "raise ZeroDivisionError" in err  # the failing cell's source is shown
    timings = json.loads((course / "timings.json").read_text())
    assert "01_tiny.ipynb" in timings and "02_broken.ipynb" not in timings  # failures are not timed


def test_cli_unknown_notebook_exits_2(course, capsys):
    assert run.main(["09", "--notebooks-dir", str(course / "notebooks")]) == 2
    assert "no notebook" in capsys.readouterr().err

"""Tests of pt_helpers.course.run: notebook lookup, parameters typed by the notebook, execution, failures kept apart."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from pt_helpers.course import run, site
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


TINY = [
    ("markdown", "# Tiny · 小\n\n**Goals:** multiply.", None),
    ("code", "k = 2\nword = 'a'", ["parameters"]),
    ("code", "result = k * 10\nprint('RESULT', result, word, type(word).__name__)", None),
]
TINY_BROKEN = TINY[:2] + [("code", "raise ValueError('the data file is missing')", None)]

PARAMETERS_CELL = """\
text = "The movie was good."          # a sentence
label_words = [" positive", " negative"]
seed = 0
lr = 0.1
pool = True
overrides = {}
n_eval = None                          # None: the profile decides
do_sample = False                      # decoding: False = greedy (papermill cannot parse this line)
count: int = 3
"""


@pytest.fixture
def course(tmp_path):
    """A throwaway course folder: 01 works with parameters, 02 fails in its third cell."""
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    _write_notebook(nbs / "01_tiny.ipynb", TINY)
    _write_notebook(
        nbs / "02_broken.ipynb",
        [
            ("markdown", "# Broken · 坏", None),
            ("code", "x = 1", ["parameters"]),
            ("code", "y = x + 1", None),
            ("code", "raise ZeroDivisionError('planted failure ' + str(y))", None),
        ],
    )
    (nbs / "notes.ipynb").write_text("{}")  # not NN_name: never picked up
    return tmp_path


@pytest.fixture
def params_nb(tmp_path):
    """A notebook whose parameters cell has one variable of each kind (never executed)."""
    return _write_notebook(
        tmp_path / "05_params.ipynb",
        [("markdown", "# Params", None), ("code", PARAMETERS_CELL, ["parameters"]), ("code", "print(text)", None)],
    )


def _cli(course, *args):
    return run.main(
        [
            *args,
            "--no-progress",
            "--notebooks-dir",
            str(course / "notebooks"),
            "-o",
            str(course / "executed"),
            "--timings",
            str(course / "timings.json"),
        ]
    )


def _printed(path):
    nb = nbformat.read(path, as_version=4)
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


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


def test_parse_parameters_keeps_raw_strings_and_checks_names():
    params = run.parse_parameters([["seed", "8"], ["text", "Verdict: a fine film"], ["sizes", "[1, 2]"]])
    assert params == {"seed": "8", "text": "Verdict: a fine film", "sizes": "[1, 2]"}
    with pytest.raises(run.ParameterError, match="not a Python identifier"):
        run.parse_parameters([["bad-name", "1"]])
    with pytest.raises(run.ParameterError, match="-p NAME VALUE"):
        run.parse_parameters([["lonely"]])


def test_notebook_parameters_reads_types_from_the_parameters_cell(params_nb):
    declared = run.notebook_parameters(params_nb)
    types = {name: p.type_name for name, p in declared.items()}
    assert types == {
        "text": "str",
        "label_words": "list",
        "seed": "int",
        "lr": "float",
        "pool": "bool",
        "overrides": "dict",
        "n_eval": "None",
        "do_sample": "bool",  # recovered although papermill's line parser skips it
        "count": "int",  # from the annotation
    }
    assert declared["text"].help == "a sentence" and declared["seed"].default == "0"


def test_type_parameters_string_stays_a_string(params_nb):
    typed = run.type_parameters({"text": "Verdict: a fine film"}, params_nb)
    assert typed == {"text": "Verdict: a fine film"}  # YAML would have made it {"Verdict": "a fine film"}
    assert run.type_parameters({"text": "[1, 2]"}, params_nb) == {"text": "[1, 2]"}


def test_type_parameters_parses_and_checks_typed_values(params_nb):
    typed = run.type_parameters(
        {
            "label_words": '[" great", " terrible"]',
            "seed": "8",
            "lr": "1",  # an int where a float is expected is fine
            "pool": "false",
            "overrides": '{"max_steps": 10}',
            "n_eval": "20",
            "do_sample": "True",
            "count": "5",
        },
        params_nb,
    )
    assert typed == {
        "label_words": [" great", " terrible"],
        "seed": 8,
        "lr": 1.0,
        "pool": False,
        "overrides": {"max_steps": 10},
        "n_eval": 20,
        "do_sample": True,
        "count": 5,
    }
    assert isinstance(typed["lr"], float) and isinstance(typed["seed"], int)
    assert run.type_parameters({"lr": "1e-3", "n_eval": "null"}, params_nb) == {"lr": 0.001, "n_eval": None}
    yaml_typed = run.type_parameters({"overrides": "{max_steps: 10}"}, params_nb)  # YAML too
    assert yaml_typed == {"overrides": {"max_steps": 10}}


def test_type_parameters_wrong_type_names_the_parameter_and_the_type(params_nb):
    with pytest.raises(run.ParameterError, match=r"'label_words' of 05_params.ipynb expects a list") as err:
        run.type_parameters({"label_words": "positive"}, params_nb)
    assert "-p label_words '[" in str(err.value)  # shows how to write a list
    with pytest.raises(run.ParameterError, match=r"'seed' of 05_params.ipynb expects an int .*'abc' is not one"):
        run.type_parameters({"seed": "abc"}, params_nb)
    with pytest.raises(run.ParameterError, match="'seed'.*expects an int"):
        run.type_parameters({"seed": "true"}, params_nb)  # a bool is not an int here
    with pytest.raises(run.ParameterError, match="'lr'.*expects a float"):
        run.type_parameters({"lr": "fast"}, params_nb)
    with pytest.raises(run.ParameterError, match="'pool'.*expects a bool"):
        run.type_parameters({"pool": "maybe"}, params_nb)
    with pytest.raises(run.ParameterError, match="'overrides'.*expects a dict"):
        run.type_parameters({"overrides": "[1]"}, params_nb)


def test_unknown_parameter_lists_the_notebooks_parameters(params_nb, tmp_path):
    with pytest.raises(run.ParameterError) as err:
        run.type_parameters({"sed": "1"}, params_nb)
    message = str(err.value)
    assert "05_params.ipynb has no parameter 'sed'" in message and "did you mean 'seed'?" in message
    for line in (
        "seed (int, default 0)",
        'label_words (list, default [" positive", " negative"])',
        'text (str, default "The movie was good.")  # a sentence',
        "n_eval (default None)",
    ):
        assert line in message
    plain = _write_notebook(tmp_path / "06_plain.ipynb", [("code", "x = 1", None)])
    with pytest.raises(run.ParameterError, match="no cell tagged 'parameters'"):
        run.type_parameters({"x": "2"}, plain)


def test_resolve_parameters_over_several_notebooks(course):
    nbs = sorted((course / "notebooks").glob("0*.ipynb"))
    resolved = run.resolve_parameters(nbs, {"k": "8", "x": "5"})
    assert resolved == {nbs[0]: {"k": 8}, nbs[1]: {"x": 5}}  # each notebook gets what it declares
    with pytest.raises(run.ParameterError, match=r"none of the 2 notebooks has a parameter 'zz'") as err:
        run.resolve_parameters(nbs, {"zz": "1"})
    assert "01_tiny.ipynb: k, word" in str(err.value) and "02_broken.ipynb: x" in str(err.value)
    assert run.resolve_parameters(nbs, typed={"k": 3}) == {nbs[0]: {"k": 3}, nbs[1]: {}}


def test_format_seconds():
    assert run.format_seconds(8.2) == "8 s"
    assert run.format_seconds(75.3) == "1 min 15 s"


def test_cli_injects_typed_parameters_shows_progress_and_records_timing(course, capsys):
    out_dir, timings = course / "executed", course / "timings.json"
    status = run.main(
        ["01", "-p", "k", "8", "-p", "word", "Verdict: a fine film", "--notebooks-dir", str(course / "notebooks"),
         "-o", str(out_dir), "--timings", str(timings)]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert "Executing" in captured.err and "cell/s" in captured.err  # papermill's tqdm progress bar
    assert "[1/1] 01_tiny.ipynb" in captured.out
    # k=8 (an int, typed by the default k = 2) replaced the default; the text arrived as the very string typed
    assert "RESULT 80 Verdict: a fine film str" in _printed(out_dir / "01_tiny.ipynb")
    data = json.loads(timings.read_text())
    device_type = run.current_device()[0]
    entry = data["01_tiny.ipynb"][device_type]
    assert entry["parameters"] == {"k": 8, "word": "Verdict: a fine film"} and 0 < entry["seconds"] < 120
    assert sorted(p.name for p in out_dir.iterdir()) == ["01_tiny.ipynb"]  # no temporary file left behind


def test_cli_bad_parameters_exit_2_before_anything_runs(course, capsys):
    assert _cli(course, "01", "-p", "k", "abc") == 2
    err = capsys.readouterr().err
    assert "'k' of 01_tiny.ipynb expects an int" in err and "Traceback" not in err
    assert _cli(course, "01", "-p", "kk", "3") == 2
    err = capsys.readouterr().err
    assert "has no parameter 'kk'" in err and "k (int, default 2)" in err and "word (str, default 'a')" in err
    assert _cli(course, "all", "-p", "k", "abc") == 2  # checked for every notebook before the first one runs
    assert not (course / "executed").exists() and not (course / "timings.json").exists()


def test_timings_keep_other_device_types(tmp_path):
    path = tmp_path / "t.json"
    for device_type, secs in (("cpu", 100.0), ("cuda", 12.0), ("cpu", 90.0)):
        run.record_timing(path, run.RunRecord("03_x.ipynb", "o", secs, device_type, device_type + " box"))
    data = run.load_timings(path)
    assert data["03_x.ipynb"]["cpu"]["seconds"] == 90.0  # rerun replaces its own device type …
    assert data["03_x.ipynb"]["cuda"]["seconds"] == 12.0  # … and keeps the other one


def test_cli_failure_names_notebook_and_cell_and_exits_nonzero(course, capsys):
    status = _cli(course, "all")
    err = capsys.readouterr().err
    assert status == 1
    assert "02_broken.ipynb failed in cell" in err
    assert "ZeroDivisionError: planted failure 2" in err
    assert "raise ZeroDivisionError" in err  # the failing cell's source is shown
    assert "no earlier good executed copy" in err and "02_broken.failed.ipynb" in err
    timings = json.loads((course / "timings.json").read_text())
    assert "01_tiny.ipynb" in timings and "02_broken.ipynb" not in timings  # failures are not timed
    executed = course / "executed"
    assert not (executed / "02_broken.ipynb").exists()  # a failed run never becomes the executed copy
    record = json.loads((executed / "02_broken.failed.json").read_text())
    assert (record["ename"], record["evalue"]) == ("ZeroDivisionError", "planted failure 2")
    assert record["last_good"] is None and record["failed_copy"].endswith("02_broken.failed.ipynb")


def test_keep_going_runs_the_rest_and_still_exits_nonzero(course, capsys):
    assert _cli(course, "02", "01") == 1  # by default the first failure stops the run
    assert not (course / "executed" / "01_tiny.ipynb").exists()
    capsys.readouterr()
    assert _cli(course, "02", "01", "--keep-going") == 1
    err = capsys.readouterr().err
    assert "02_broken.ipynb failed in cell" in err and "on to the next notebook" in err
    assert "1 of 2 notebooks failed: 02_broken.ipynb (each error is printed above; 1 ran to the end)" in err
    assert "RESULT 20" in _printed(course / "executed" / "01_tiny.ipynb")  # the notebook after the failure ran


def test_failed_rerun_keeps_the_last_good_copy_and_the_site_shows_both(course, capsys):
    executed, html_dir = course / "executed", course / "html"
    source = course / "notebooks" / "01_tiny.ipynb"
    assert _cli(course, "01") == 0
    good = (executed / "01_tiny.ipynb").read_bytes()
    meta = nbformat.read(executed / "01_tiny.ipynb", as_version=4).metadata["papermill"]
    assert meta["output_path"] == str((executed / "01_tiny.ipynb").resolve())  # not the temporary file's name
    timings_before = (course / "timings.json").read_text()

    _write_notebook(source, TINY_BROKEN)  # the chapter breaks (an edit, a missing file …)
    assert _cli(course, "01", "--html", str(html_dir)) == 1
    err = capsys.readouterr().err
    assert "ValueError: the data file is missing" in err and "the last good executed copy is kept" in err
    assert (executed / "01_tiny.ipynb").read_bytes() == good  # untouched
    assert (course / "timings.json").read_text() == timings_before
    record = json.loads((executed / "01_tiny.failed.json").read_text())
    assert record["notebook"] == "01_tiny.ipynb" and record["cell_index"] is not None
    assert (record["ename"], record["evalue"]) == ("ValueError", "the data file is missing")
    assert record["last_good"] == str((executed / "01_tiny.ipynb").resolve()) and record["failed_at"]
    failed_meta = nbformat.read(record["failed_copy"], as_version=4).metadata["papermill"]
    assert failed_meta["output_path"] == record["failed_copy"]  # not the temporary file's name
    assert (
        "the data file is missing" in record["error"]
        and "the data file is missing" in Path(record["failed_copy"]).read_text()
    )
    assert sorted(p.name for p in executed.iterdir()) == ["01_tiny.failed.ipynb", "01_tiny.failed.json",
                                                          "01_tiny.ipynb"]  # fmt: skip
    page = (html_dir / "index.html").read_text(encoding="utf-8")  # --html builds the map after a failure too
    assert "✗ FAILED" in page and "ValueError: the data file is missing" in page
    assert "href='01_tiny.html'" in page and "href='01_tiny.failed.html'" in page
    assert "RESULT 20" in (html_dir / "01_tiny.html").read_text(encoding="utf-8")  # the last good run's page

    _write_notebook(source, TINY)  # fixed: the next success replaces the copy and clears the failure
    assert _cli(course, "01", "--html", str(html_dir)) == 0
    assert sorted(p.name for p in executed.iterdir()) == ["01_tiny.ipynb"]
    assert "FAILED" not in (html_dir / "index.html").read_text(encoding="utf-8")
    assert not (html_dir / "01_tiny.failed.html").exists()


def test_interrupted_run_leaves_the_last_good_copy_and_no_debris(course, monkeypatch, capsys):
    import papermill

    executed = course / "executed"
    executed.mkdir()
    (executed / "01_tiny.ipynb").write_text("last good copy")
    seen = {}

    def interrupted(input_path, output_path, **kwargs):
        seen["output"] = output_path
        with open(output_path, "w") as fh:
            fh.write('{"half": ')  # a half-written notebook …
        raise KeyboardInterrupt  # … and Ctrl-C

    monkeypatch.setattr(papermill, "execute_notebook", interrupted)
    assert _cli(course, "01") == 130
    assert "interrupted" in capsys.readouterr().err
    tmp = seen["output"]
    assert tmp != str(executed / "01_tiny.ipynb") and str(executed.resolve()) in tmp  # written beside, not over
    assert (executed / "01_tiny.ipynb").read_text() == "last good copy"
    assert sorted(p.name for p in executed.iterdir()) == ["01_tiny.ipynb"]  # no temp file, no failure record


def test_failure_before_any_cell_is_recorded_without_a_copy(course, monkeypatch):
    import papermill

    def no_kernel(input_path, output_path, **kwargs):
        raise RuntimeError("No such kernel named python9")

    monkeypatch.setattr(papermill, "execute_notebook", no_kernel)
    with pytest.raises(run.NotebookFailedError, match="before any cell ran: RuntimeError: No such kernel") as err:
        run.execute(course / "notebooks" / "01_tiny.ipynb", course / "executed", timings_file=None,
                    device=("cpu", "cpu"))  # fmt: skip
    assert err.value.output is None
    record = json.loads((course / "executed" / "01_tiny.failed.json").read_text())
    assert record["failed_copy"] is None and record["cell_index"] is None
    assert sorted(p.name for p in (course / "executed").iterdir()) == ["01_tiny.failed.json"]
    # the map shows it as failed, though there is neither a good page nor a failed copy to render
    index = site.build_site(course / "executed", course / "html", timings_file=course / "t.json",
                            notebooks_dir=course / "notebooks")  # fmt: skip
    page = index.read_text(encoding="utf-8")
    assert "✗ FAILED" in page and "No such kernel named python9" in page and "no good run of this chapter yet" in page


def test_cli_unknown_notebook_exits_2(course, capsys):
    assert run.main(["09", "--notebooks-dir", str(course / "notebooks")]) == 2
    assert "no notebook" in capsys.readouterr().err


# a child that holds ~150 MB and starts a grandchild that holds ~300 MB and burns CPU, then waits for it
_PARENT = """
import subprocess, sys
block = bytearray(150 * 2**20)
code = "b = bytearray(300 * 2**20)\\nfor i in range(0, len(b), 4096): b[i] = 1\\nx = sum(range(3 * 10**6))"
for i in range(0, len(block), 4096): block[i] = 1
sys.exit(subprocess.run([sys.executable, "-c", code]).returncode + 3)
"""


def test_measure_run_sees_the_grandchild_cpu_and_peak(tmp_path):
    """The edition's measurement: the papermill process waits for its kernel, so the kernel's peak and CPU
    time are in the runner's wait4 report; the exit status comes back too."""
    import json
    import subprocess
    import sys

    # Measured from a fresh interpreter, not from this pytest process: Linux carries a process's peak RSS across
    # fork + exec into the child's ru_maxrss, so a child forked from a pytest that has loaded torch and models
    # reports at least pytest's own size (559 MiB seen), whatever the child itself used.
    code = (
        "import json, sys; from pt_helpers.course import run; "
        f"print(json.dumps(run.measure_run([sys.executable, '-c', {_PARENT!r}])))"
    )
    m = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert m["returncode"] == 3  # the child's own status
    assert 300 <= m["peak_rss_mib"] < 450  # the largest process (the grandchild), not the sum of the two
    assert 0 < m["cpu_seconds"] and m["seconds"] > 0
    assert m["load_before"] >= 0 and m["load_after"] >= 0


def test_an_interrupted_measurement_ends_the_runner_and_its_kernel(tmp_path):
    """Ctrl-C during `make edition` must not leave the kernel (a grandchild) running: the group is ended."""
    import os
    import signal
    import sys
    import time

    pid_file = tmp_path / "grandchild.pid"
    code = (
        "import subprocess, sys, time\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(p.pid))\n"
        "time.sleep(120)\n"
    )

    class Interrupted(Exception):
        pass

    def _raise(*_):
        raise Interrupted

    old = signal.signal(signal.SIGALRM, _raise)
    signal.alarm(5)  # time for the child to start its grandchild, even on a loaded machine
    try:
        with pytest.raises(Interrupted):
            run.measure_run([sys.executable, "-c", code])
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    grandchild = int(pid_file.read_text())
    for _ in range(50):  # it was sent SIGTERM; give it a moment to go
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(grandchild, signal.SIGKILL)
        pytest.fail("the grandchild outlived the interrupted measurement")

"""The drift check behind ``make test-latest`` (.ci/test_latest.py): pins, version table, JUnit reading, blame."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("test_latest_script", ROOT / ".ci" / "test_latest.py")
drift = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(drift)

JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" errors="1" failures="1"
skipped="1" tests="5"><testcase classname="tests.test_a" name="test_ok"/>
<testcase classname="tests.test_a" name="test_new_api">
<failure message="TypeError: got an unexpected keyword&#10;second line">Traceback
  File "/x/.venv-latest/lib/python3.11/site-packages/transformers/modeling_utils.py", line 1
TypeError</failure></testcase>
<testcase classname="tests.test_b" name="test_setup"><error message="boom">no site-packages here</error></testcase>
<testcase classname="tests.test_b" name="test_skip"><skipped message="no gpu"/></testcase>
<testcase classname="tests.test_b" name="test_ok2"/></testsuite></testsuites>"""


def test_pins_include_torch_from_the_makefile():
    pins = drift.pinned_versions()
    assert pins["transformers"] and pins["peft"]
    assert pins["torch"] in (ROOT / "Makefile").read_text()


def test_version_table_marks_only_newer_releases():
    rows = drift.version_table(
        {"torch": "2.13.0", "peft": "0.21.2", "datasets": "5.2.0"},
        {"torch": "2.14.1", "peft": "0.21.2", "datasets": "5.1.0"},
    )
    assert [r["package"] for r in rows if r["newer"]] == ["torch"]
    assert drift._key("2.13.0+cpu") == (2, 13, 0)


def test_junit_counts_and_failures(tmp_path):
    path = tmp_path / "r.xml"
    path.write_text(JUNIT)
    counts, failures = drift.read_junit(path)
    assert counts == dict(tests=5, failures=1, errors=1, skipped=1, passed=2)
    assert [f["test"] for f in failures] == ["tests/test_a.py::test_new_api", "tests/test_b.py::test_setup"]
    assert failures[0]["message"] == "TypeError: got an unexpected keyword"
    assert drift.implicated(failures[0]["traceback"], ["transformers", "accelerate"]) == ["transformers"]
    assert drift.implicated(failures[1]["traceback"], ["transformers"]) == []


def test_the_drift_page_summarises_the_recorded_run():
    """docs/drift.md's result line is docs/test_latest.json's counts and newer versions."""
    import json
    import re

    record = json.loads((ROOT / "docs" / "test_latest.json").read_text())
    line = next(x for x in (ROOT / "docs" / "drift.md").read_text().splitlines() if x.startswith("Result:"))
    c = record["counts"]
    assert line.startswith(
        f"Result: {c['passed']} passed, {c['failures'] + c['errors']} failed, {c['skipped']} skipped with "
    )
    newer = {r["package"]: r["latest_env"] for r in record["versions"] if r["newer"]}
    assert dict(re.findall(r"(torch|transformers|accelerate|peft|datasets) ([\d.]+)", line.split("(")[0])) == newer
    assert record["broken_by_newer_versions"] == [] and "Nothing is broken" in (ROOT / "docs" / "drift.md").read_text()

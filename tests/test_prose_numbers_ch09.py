"""Numbers in chapter 09's prose agree with the recorded run they quote (``benchmarks/records/ch09_quick.json``).

The record is written by ``python benchmarks/_notebook_record.py 09``: the notebook's quick profile run with
papermill under ``/usr/bin/time -v``, with its command, date, machine, threads, load average, time, memory and the
JSON that section 6's cell tagged ``findings`` prints; it is read through ``tests/_records.py``. These
tests fail when the prose quotes a number the record does not hold, when the record is of other settings than
the notebook's quick profile, when its numbers disagree with the course's statistics recomputed from its counts,
and (the guard) when a result number in 09's markdown is checked by nothing here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest
from _records import load_record
from test_prose_numbers import RESULT_NUMBER, _discordant, _flat, _markdown

from pt_helpers import chat
from pt_helpers.stats import Accuracy, PairedTest, accuracy_interval, paired_test

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "09_instruction_tuned_llms.ipynb"
BUDGET_S, BUDGET_MIB = 600, 3 * 1024  # a chapter's quick profile: ≤ 10 minutes and ≤ 3 GB (issue 27, item 5)


@pytest.fixture(scope="module")
def record() -> dict:
    return load_record("09")


def _quick_settings() -> dict:
    """The ``quick=dict(...)`` the notebook hands to ``profile_settings``, read from its code."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in (c for c in nb.cells if c.cell_type == "code" and "profile_settings(" in c.source):
        for node in ast.walk(ast.parse(cell.source)):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "profile_settings":
                (quick,) = [k.value for k in node.keywords if k.arg == "quick"]
                return {k.arg: ast.literal_eval(k.value) for k in quick.keywords}
    raise AssertionError("notebook 09 has no profile_settings call")


def _accuracy(arm: dict, n: int) -> Accuracy:
    return Accuracy(arm["accuracy"], n, arm["low"], arm["high"])


def _paired(findings: dict, a: str, b: str) -> PairedTest:
    t, n = findings["paired"][f"{a} vs {b}"], findings["n"]
    return PairedTest(
        findings["arms"][a]["accuracy"], findings["arms"][b]["accuracy"], n, t["only_a"], t["only_b"],
        t["p_value"], t["difference"], t["low"], t["high"], test="McNemar exact",
    )  # fmt: skip


def ch09_recorded_numbers(record: dict) -> list[str]:
    """The strings 09's prose quotes, written as the notebook's cells print them (``Accuracy`` and
    ``PairedTest``), from the record."""
    f = record["findings"]
    quoted = [f"n = {f['n']} problems"]
    quoted += [f"{arm} {_accuracy(f['arms'][arm], f['n'])}" for arm in chat.REASONING_ARMS]
    quoted += [f"{a} vs {b}: {_paired(f, a, b)}" for a, b in chat.REASONING_PAIRS]
    ranked = [f"{a} vs {b}" for a, b in chat.REASONING_PAIRS if f["paired"][f"{a} vs {b}"]["p_value"] < 0.05]
    quoted.append(f"ranked at p < 0.05: {ranked}" if ranked else "No pair is ranked")  # the sentence's verdict
    most = max(arm["right"] for arm in f["arms"].values())
    quoted.append(f"every arm solves at most {most} of the {f['n']} problems")
    return quoted


def test_the_record_says_how_it_was_measured(record):
    for key in ("command", "date", "machine", "threads", "load_average_start", "wall_s", "user_s", "max_rss_mib"):
        assert record[key] is not None, f"ch09_quick.json lacks {key!r}"
    assert "papermill" in record["command"] and "profile quick" in record["command"]
    assert f"OMP_NUM_THREADS={record['threads']}" in record["command"]
    assert record["findings"]["pretrained"] and record["findings"]["model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_the_record_is_of_the_notebooks_quick_profile(record):
    assert record["findings"]["settings"] == _quick_settings(), (
        "notebook 09's quick settings changed since the record: "
        "rerun `python benchmarks/_notebook_record.py 09 --replace`"
    )


def test_the_recorded_run_fits_the_chapter_budget(record):
    """The budget is for 2 threads on an idle 2-core machine; the record is taken on a shared one, so its wall time
    is not the budget figure. Its CPU seconds are: a run that needs at most BUDGET_S seconds of CPU finishes within
    BUDGET_S at one thread on an idle core, and sooner at two."""
    cpu = record["cpu_s"]
    assert cpu == pytest.approx(record["user_s"] + record["sys_s"], abs=0.005)  # both of GNU time's 2 decimals
    assert cpu <= BUDGET_S, f"quick profile needed {cpu:.0f} CPU s (budget {BUDGET_S} s)"
    assert record["max_rss_mib"] <= BUDGET_MIB, f"quick profile peaked at {record['max_rss_mib']} MiB"


def test_the_recorded_statistics_follow_from_the_recorded_counts(record):
    f = record["findings"]
    n = f["n"]
    for arm in chat.REASONING_ARMS:
        got = accuracy_interval([1] * f["arms"][arm]["right"] + [0] * (n - f["arms"][arm]["right"]))
        assert (got.value, got.low, got.high) == pytest.approx(
            (f["arms"][arm]["accuracy"], f["arms"][arm]["low"], f["arms"][arm]["high"]), abs=1e-12
        )
    for a, b in chat.REASONING_PAIRS:
        t = f["paired"][f"{a} vs {b}"]
        again = paired_test(*_discordant(t["only_a"], t["only_b"], n))
        assert (again.p_value, again.low, again.high, again.difference) == pytest.approx(
            (t["p_value"], t["low"], t["high"], t["difference"]), abs=1e-12
        )
        assert t["difference"] == pytest.approx(f["arms"][a]["accuracy"] - f["arms"][b]["accuracy"], abs=1e-12)


def test_chapter_09_quotes_the_recorded_run(record):
    prose = _flat(_markdown("09"))
    assert "benchmarks/records/ch09_quick.json" in prose
    for quoted in ch09_recorded_numbers(record):
        assert quoted in prose, f"09 should quote {quoted!r} (benchmarks/records/ch09_quick.json)"


def test_every_result_number_in_09s_prose_is_checked(record):
    """The guard of tests/test_prose_numbers.py, for chapter 09: print a number from a cell, or check it here."""
    checked = ch09_recorded_numbers(record)
    prose = _flat(_markdown("09"))
    unchecked = [
        f"{m.group(0)!r} in …{prose[max(0, m.start() - 60) : m.end() + 20]}…"
        for m in RESULT_NUMBER.finditer(prose)
        if not any(m.group(0) in quoted and quoted in prose for quoted in checked)
    ]
    assert not unchecked, f"chapter 09: numbers in prose that no record check covers: {unchecked}"

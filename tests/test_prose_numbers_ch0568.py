"""Chapters 05, 06 and 08 and ``benchmarks/README.md`` agree with the recorded comparison they print.

The record is ``benchmarks/records/ch06_recorded/<task>/``: one JSON file per finished training run
(``comparison.RunStore``), ``zero_shot.json`` and a log per recording call in ``sessions/``, written by
``benchmarks/_decision_record.py`` at ``comparison.RECORDED_BUDGET``. The notebooks print their recorded tables
from these files (``comparison.recorded_table``), so they quote no recorded number in their prose; the README's
last section is generated from the same files and must equal what ``--readme`` prints now. These tests fail when a
stored run is of another budget, data set or model than its neighbours, when its accuracy does not follow from
its per-example outcomes, when a notebook stops reading the record, and when the README drifts from the record.
"""

from __future__ import annotations

import json
import math

import nbformat
import numpy as np
import pytest
from _records import RECORDS, ROOT
from test_prose_numbers import _flat, _markdown

from pt_helpers import comparison
from pt_helpers.stats import accuracy_interval, paired_test

RECORDED = ROOT / comparison.RECORDED_DIR
TASKS = ("sst2", "trec")
N_EVAL = {"sst2": 872, "trec": 500}


def _script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("_decision_record", ROOT / "benchmarks" / "_decision_record.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _runs(task):
    return [json.loads(p.read_text()) for p in sorted((RECORDED / task).glob("*-seed*.json"))]


def test_the_record_folder_is_under_benchmarks_records():
    assert RECORDED.parent == RECORDS and (RECORDED / "sst2" / "zero_shot.json").is_file()


@pytest.mark.parametrize("task", TASKS)
def test_every_stored_run_is_of_the_budget_and_of_one_model_and_data_set(task):
    runs = _runs(task)
    budget = comparison.RECORDED_BUDGET
    for saved in runs:
        settings, row = saved["settings"], saved["row"]
        kwargs = settings["train_kwargs"]
        assert kwargs["max_steps"] == repr(budget["max_steps"]) and kwargs["batch_size"] == repr(budget["batch_size"])
        assert kwargs["eval_every"] == repr(budget["max_steps"] // budget["checks"])
        options = comparison.recorded_options(budget, settings["method"], "")
        assert settings["lr"] in options["sweep"] and settings["seed"] in options["seeds"]
        assert row["n"] == len(row["correct"]) == N_EVAL[task]
        assert row["accuracy"] == pytest.approx(np.mean(row["correct"]), abs=1e-12)
        assert settings["model"]["n_parameters"] == 22_713_216  # all-MiniLM-L6-v2, the real encoder
    assert len({json.dumps(s["settings"]["model"], sort_keys=True) for s in runs}) <= 1, "one model per task"
    assert len({s["settings"]["data_sha256"] for s in runs}) <= 1, "one train/select/eval split per task"


@pytest.mark.parametrize("task", TASKS)
def test_the_recorded_table_follows_from_the_stored_outcomes(task):
    rows, missing = comparison.recorded_rows(RECORDED / task)
    by = {}
    for r in rows:
        by.setdefault(r["method"], []).append(r)
    for method, runs in by.items():
        assert len({r["lr"] for r in runs if method != "zero-shot"}) <= 1, f"{method}: one chosen lr for every seed"
        if method == "zero-shot":
            continue
        scores = runs[0]["sweep"]
        assert runs[0]["lr"] == max(scores, key=scores.get) and runs[0]["seed"] == 0  # chosen on the selection split
        partner = comparison.COMPARED_WITH[method]
        if partner in by:  # the paired test the table prints is McNemar on the stored outcomes of seed 0
            test = paired_test(runs[0]["correct"], by[partner][0]["correct"], smoke=False)
            header, table, _ = comparison.recorded_table(RECORDED / task, 22_713_216)
            assert table.loc[method, "paired test (first seed)"] == str(test)
            assert table.loc[method, "n"] == accuracy_interval(runs[0]["correct"]).n
    for files in missing.values():  # a missing method is missing for a reason: its files are absent
        assert all(not (RECORDED / task / f).is_file() for f in files if "<chosen>" not in f)


@pytest.mark.parametrize("task", TASKS)
def test_every_recording_call_ran_at_one_thread_and_logged_its_load(task):
    for path in sorted((RECORDED / task / "sessions").glob("*.json")):
        s = json.loads(path.read_text())
        assert s["threads"] == "1" and s["budget"] == comparison.RECORDED_BUDGET
        assert len(s["load_average_start"]) == 3 and all(math.isfinite(x) for x in s["load_average_start"])


def test_the_readme_ends_with_the_section_generated_from_the_record():
    readme = (ROOT / "benchmarks" / "README.md").read_text(encoding="utf-8")
    section = _script().readme_section(RECORDED)
    assert readme.endswith(section), (
        "benchmarks/README.md's last section differs from the records: "
        "python benchmarks/_decision_record.py --readme, and paste it over the section"
    )


def test_the_chapters_print_the_recorded_tables():
    chapters = (
        ("05", "05_soft_prompt_tuning"),
        ("06", "06_deep_prompts_and_comparison"),
        ("08", "08_prompt_tuning_in_practice"),
    )
    for stem, name in chapters:
        nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
        code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
        assert "recorded_table(" in code and "RECORDED_DIR" in code, f"{name} should print the recorded table"
        prose = _flat(_markdown(stem))
        assert "benchmarks/_decision_record.py" in prose and "benchmarks/records/ch06_recorded/" in prose
    assert "plain soft prompt vs linear probe" in _flat(_markdown("05")).lower().replace("**", "")
    assert "330 M to 10 B" in _flat(_markdown("06")) and "22.7 M" in _flat(_markdown("06"))
    soft = comparison.RECORDED_BUDGET["soft_n_virtual_tokens"]
    assert f"both with {soft} virtual tokens" in _flat(_markdown("08")), "08 names the recorded prompts' length"

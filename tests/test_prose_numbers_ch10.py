"""Numbers in chapter 10's prose are either settings and constants checked here against the code, or cited.

Chapter 10 quotes no measured result yet (no recorded run ``benchmarks/records/ch10_quick.json``): the guard
fails when a result number appears in its markdown unchecked, so a number copied from one run's output cannot
slip into the prose; the settings the prose names (smoke budget, full profile, evaluation size, AdamW's bytes per
parameter) are read from the code and the notebook's own ``profile_settings`` call.
"""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
from test_prose_numbers import RESULT_NUMBER, _flat, _markdown

from pt_helpers import decision, stats
from pt_helpers.data import load_task

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "10_prompt_tuning_lora_instruction_tuning.ipynb"
CITED = {"0.127"}  # QLoRA's double quantisation: 0.127 bits per parameter (Dettmers et al. 2023, §3)


def _profile(which: str) -> dict:
    """The ``quick=dict(...)`` / ``full=dict(...)`` the notebook hands to ``profile_settings``, read from its code."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in (c for c in nb.cells if c.cell_type == "code" and "profile_settings(" in c.source):
        for node in ast.walk(ast.parse(cell.source)):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "profile_settings":
                (found,) = [k.value for k in node.keywords if k.arg == which]
                return {k.arg: ast.literal_eval(k.value) for k in found.keywords}
    raise AssertionError("notebook 10 has no profile_settings call")


def test_no_unchecked_result_number_in_the_prose():
    prose = _flat(_markdown("10"))
    found = {m.group(0).strip() for m in RESULT_NUMBER.finditer(prose)} - CITED
    assert not found, f"chapter 10's markdown quotes result numbers no test checks: {sorted(found)}"


def test_the_settings_the_prose_names_are_the_codes():
    prose = _flat(_markdown("10"))
    full = _profile("full")
    assert f"below `stats.smoke_budget` ({stats.SMOKE_STEPS} steps)" in prose
    assert f"below {stats.SMOKE_STEPS} steps" in prose
    n_dev = len(load_task("sst2", "dev"))
    assert f'`profile="full"` ({full["max_steps"]} steps, all {n_dev} SST-2 validation' in prose
    assert full["n_test"] == 0  # "all": the full profile scores the whole evaluation split
    assert decision.full_finetuning_bytes(1) == 16 and "(16 bytes per parameter, before activations)" in prose


def test_the_quick_profile_is_a_protocol_check():
    """The prose calls the quick table a protocol check: its steps must be below the smoke budget."""
    assert stats.smoke_budget(_profile("quick")["max_steps"])
    assert stats.smoke_budget(_profile("quick")["sft_max_steps"])
    assert "protocol check" in _flat(_markdown("10"))

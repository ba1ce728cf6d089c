"""Every script in benchmarks/ starts and finishes on a seconds-long setting (its ``SMOKE_ARGS``).

A benchmark is not run by anything else in CI, so without this a rename in the package breaks it silently
(as ``soft_prompt_step.py`` once broke on a renamed tokenizer helper). A new script must define
``SMOKE_ARGS`` and accept ``--out``; this test fails until it does.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p for p in (ROOT / "benchmarks").glob("*.py") if not p.name.startswith("_"))


def _smoke_args(script: Path) -> list[str]:
    for node in ast.parse(script.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "SMOKE_ARGS" for t in node.targets):
            return ast.literal_eval(node.value)
    pytest.fail(f"{script.name} defines no SMOKE_ARGS (a seconds-long setting for this test)")


def test_there_are_benchmarks():
    assert SCRIPTS, "benchmarks/ holds no scripts"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_benchmark_script_runs_on_a_tiny_setting(script, tmp_path):
    out = tmp_path / "record.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    done = subprocess.run(
        [sys.executable, str(script), *_smoke_args(script), "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert json.loads(out.read_text()), f"{script.name} wrote an empty record"

"""The one reader of the recorded notebook runs, ``benchmarks/records/chNN_quick.json``, for the prose tests.

Every record has the layout that ``benchmarks/_notebook_record.py`` writes (its ``RECORD_KEYS``); ``load_record``
refuses a file that does not, naming what is off, so a prose test never reads a key of some older layout.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ROOT / "benchmarks" / "records"
RECORDER = ROOT / "benchmarks" / "_notebook_record.py"


@functools.cache
def recorder():
    """``benchmarks/_notebook_record.py`` as a module: the layout lives there, beside the code that writes it."""
    spec = importlib.util.spec_from_file_location("_notebook_record", RECORDER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def record_path(chapter: str) -> Path:
    return RECORDS / f"ch{chapter}_quick.json"


def load_record(chapter: str) -> dict:
    """Chapter ``chapter``'s ("03") recorded quick run, checked to have the one layout."""
    path = record_path(chapter)
    rec = json.loads(path.read_text(encoding="utf-8"))
    problems = recorder().layout_problems(rec)
    assert not problems, f"{path.relative_to(ROOT)} breaks the record layout: {problems}"
    assert rec["notebook"].startswith(f"{chapter}_"), f"{path.name} records {rec['notebook']}"
    return rec


def gb(mib: float) -> float:
    """A peak memory in MiB (the records' unit) as decimal GB, the unit the prose quotes."""
    return mib * 2**20 / 1e9

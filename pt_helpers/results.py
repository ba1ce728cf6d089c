"""The course's shared results table: one row per method × task × model, appended by notebooks 03–06.

Rows are JSON files under ``build/results/`` (``$PT_RESULTS_DIR`` overrides), one file per chapter,
so rerunning a chapter replaces its own rows and keeps the others.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from .errors import CourseError
from .project import atomic_write_json, build_dir, renamed_keys  # noqa: F401  (build_dir: notebooks import it)

RESULTS_ENV_VAR = "PT_RESULTS_DIR"
COLUMNS = [
    "chapter",
    "method",
    "task",
    "model",
    "pretrained",
    "metric",
    "value",
    "std",
    "n_seeds",
    "n_trainable",
    "notes",
]


def results_dir() -> Path:
    """``$PT_RESULTS_DIR``, else ``build/results`` in the project that holds this package."""
    env = os.environ.get(RESULTS_ENV_VAR)
    if not env:
        return build_dir("results")
    path = Path(env)
    path.mkdir(parents=True, exist_ok=True)
    return path


def make_row(
    chapter: str,
    method: str,
    task: str,
    model: str,
    pretrained: bool,
    metric: str,
    value: float,
    std: float | None = None,
    n_seeds: int = 1,
    n_trainable: int | None = None,
    notes: str = "",
) -> dict:
    """A results row with every column of the table (missing numbers are None); ``n_trainable``: the number
    of trained numbers (0 for a method that trains nothing)."""
    return dict(
        chapter=chapter,
        method=method,
        task=task,
        model=model,
        pretrained=bool(pretrained),
        metric=metric,
        value=float(value),
        std=None if std is None else float(std),
        n_seeds=int(n_seeds),
        n_trainable=n_trainable,
        notes=notes,
    )


def save_rows(chapter: str, rows: list[dict]) -> Path:
    """Write a chapter's rows (replacing that chapter's earlier rows); returns the file written."""
    for row in rows:
        missing = set(COLUMNS) - set(row)
        if missing:
            raise ValueError(f"results row lacks columns {sorted(missing)}; build rows with make_row()")
    path = results_dir() / f"{chapter}.json"
    atomic_write_json(path, rows)
    return path


def load_results(pretrained_only: bool = False) -> pd.DataFrame:
    """All chapters' rows as one DataFrame (empty, with the columns, when nothing was saved yet). A rows file
    written before a column was renamed is read under the new names (``project.RETIRED_NAMES``)."""
    rows: list[dict] = []
    for path in sorted(results_dir().glob("*.json")):
        try:
            chapter_rows = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CourseError(
                f"results file {path} is not valid JSON ({exc}); delete it and rerun that chapter to write it again"
            ) from exc
        if not isinstance(chapter_rows, list) or not all(isinstance(r, dict) for r in chapter_rows):
            raise CourseError(f"results file {path} does not hold a list of rows; delete it and rerun that chapter")
        rows.extend(renamed_keys(r) for r in chapter_rows)  # a file of an older version: its old column names
    df = pd.DataFrame(rows, columns=COLUMNS)
    return df[df["pretrained"]] if pretrained_only and len(df) else df

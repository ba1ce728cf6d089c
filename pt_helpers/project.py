"""Where the course's files live, and how they are written: one home for paths, timings and atomic writes.

Every default path is anchored at the project folder that holds this package, never at the current
directory: notebooks run from ``notebooks/`` but write beside ``build/results`` and ``build/html``.
``run`` (executing notebooks) and ``site`` (rendering them) both read from here, so neither imports the other.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import warnings
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"
EXECUTED_DIR = PROJECT_ROOT / "build" / "executed"
TIMINGS_FILE = PROJECT_ROOT / "build" / "timings.json"
NOTEBOOK_PATTERN = re.compile(r"^(\d{2})_[\w\-]+\.ipynb$")
# the output type under which a notebook hands the site a loaded model's provenance as data (JSON), beside
# the text the reader sees; the site (pt_helpers.course.site) reads these records, not the printed text
PROVENANCE_MIME = "application/vnd.pt-helpers.model-provenance+json"

# One identifier per concept (notebooks/glossary.md, its "in code" column): the spellings earlier versions of the
# course wrote, and the identifier that replaced each. Files written before the rename (a results row, a saved
# prompt's adapter_config.json, a stored comparison run) are read through ``renamed_keys``; everywhere else
# tests/test_names.py fails on these spellings. A word whose meaning depends on where it stands (``steps``: the
# budget ``max_steps`` in settings, ``steps_run`` in a result) is mapped by its reader, never here.
RETIRED_NAMES = {
    "train_steps": "max_steps",  # the configured number of optimisation steps
    "trained_params": "n_trainable",  # a count of trained numbers
    "trained_parameters": "n_trainable",
    "trained_numbers": "n_trainable",
    "trained_with_reparameterization": "reparameterize",  # a deep prompt's saved settings
    "trained_with_encoder": "p_tuning_encoder",  # a P-tuning prompt's saved settings
    "n_deep_tokens": "deep_n_virtual_tokens",  # notebook 06's parameters
    "n_shallow_tokens": "soft_n_virtual_tokens",
}

# a key of a run's settings (a notebook's settings dict or overrides, a YAML config): ``steps`` there was the budget
RENAMED_SETTINGS = RETIRED_NAMES | {"steps": "max_steps"}
# a key of what a finished run reports (a comparison row, metrics.json): ``steps`` there was the steps it took
RENAMED_RESULTS = RETIRED_NAMES | {"steps": "steps_run"}


def renamed_keys(record: dict, renames: dict[str, str] | None = None) -> dict:
    """``record`` with every retired key replaced by its current name (``RETIRED_NAMES``, plus ``renames`` for
    a reader's own context-dependent ones); a key present in both spellings keeps the current one's value."""
    table = RETIRED_NAMES | dict(renames or {})
    out = {table.get(k, k): v for k, v in record.items() if k in table}
    return out | {k: v for k, v in record.items() if k not in table}


def build_dir(*parts: str) -> Path:
    """A folder under the project's ``build/`` (created if missing), whatever the working directory."""
    path = PROJECT_ROOT.joinpath("build", *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``.

    A reader (or a run killed half-way) sees the old file or the new one, never half of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """``atomic_write_bytes`` for UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj, **kwargs) -> Path:
    """``obj`` as indented JSON, written atomically."""
    kwargs.setdefault("indent", 1)
    kwargs.setdefault("ensure_ascii", False)
    return atomic_write_text(path, json.dumps(obj, **kwargs))


def load_timings(timings_file: str | Path = TIMINGS_FILE) -> dict[str, dict[str, dict]]:
    """``{notebook file name: {device type: record dict}}`` from ``timings_file`` ({} if absent).

    A damaged file (not JSON, or not such a mapping) must not break every later run: it is moved aside to
    ``<name>.corrupt`` with a warning that names both files, and the timings start afresh.
    """
    path = Path(timings_file)
    if not path.is_file():
        return {}
    try:
        timings = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(timings, dict) and all(isinstance(v, dict) for v in timings.values()):
            return timings
        problem = "it is not a mapping of notebook → device → record"
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        problem = f"it is not valid JSON ({exc})"
    aside = path.with_name(path.name + ".corrupt")
    os.replace(path, aside)
    warnings.warn(
        f"{path} was unreadable ({problem}); moved it to {aside} and started the timings afresh "
        "(rerun the chapters to measure them again).",
        stacklevel=2,
    )
    return {}


def format_seconds(seconds: float) -> str:
    """``75.3`` → ``"1 min 15 s"``; ``8.2`` → ``"8 s"``."""
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def publish_provenance(record: dict, text: str) -> None:
    """Show ``text`` to the reader and hand ``record`` (a JSON-able dict) to the course site as data.

    ``record`` describes one loaded model: at least ``name`` (str) and ``is_pretrained`` (bool); ``kind``,
    ``source``, ``location``, ``family`` and ``n_parameters`` when known. In a notebook both go into one
    ``display_data`` output (``text/plain`` for the reader, :data:`PROVENANCE_MIME` for the site), so a
    reworded message can never change what the course map reports; outside a notebook only the text prints.
    """
    missing = [k for k in ("name", "is_pretrained") if k not in record]
    if missing:
        raise ValueError(f"a provenance record needs {missing}; got {sorted(record)}")
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # no IPython: a script or the command line
        get_ipython = None
    if get_ipython is not None and get_ipython() is not None and getattr(get_ipython(), "kernel", None) is not None:
        display({PROVENANCE_MIME: json.loads(json.dumps(record)), "text/plain": text}, raw=True)
    else:
        print(text)

"""Run the course's notebooks with papermill, from the command line or from Python.

    python -m pt_helpers.run 03 -p k 8              # one notebook (by its number), with a parameter
    python -m pt_helpers.run 05_soft_prompt.ipynb   # by file name works too
    python -m pt_helpers.run all --html build/html  # every notebooks/NN_*.ipynb in order, then the site

Executed copies land in ``build/executed/`` (``--output-dir``). Each ``-p name value`` is injected
after the notebook's ``parameters`` cell, exactly like ``papermill -p``; the value is read as YAML,
so ``8`` is an int, ``0.5`` a float, ``true`` a bool, ``[1, 2]`` a list and ``gpt2`` a string.

Each run's wall time is stored in ``build/timings.json`` under the notebook and the *device type*
(``cpu`` or ``cuda``), so a CPU build and a GPU build of the same course both appear on the course
map that :mod:`pt_helpers.site` renders. A notebook that fails stops the run with a message naming
the notebook, the cell and the error (and the executed copy holding the full traceback); the CLI
then exits with status 1.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import yaml

from .errors import CourseError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"
EXECUTED_DIR = PROJECT_ROOT / "build" / "executed"
TIMINGS_FILE = PROJECT_ROOT / "build" / "timings.json"
NOTEBOOK_PATTERN = re.compile(r"^(\d{2})_[\w\-]+\.ipynb$")


class NotebookNotFoundError(CourseError, FileNotFoundError):
    """No course notebook matches the number or name that was asked for."""


class ParameterError(CourseError):
    """A ``-p name value`` pair that cannot be used (bad name or unreadable value)."""


class NotebookFailedError(CourseError, RuntimeError):
    """A cell of a notebook raised an error while papermill executed it."""

    def __init__(self, message: str, notebook: Path, output: Path, cell_index: int | None = None,
                 ename: str = "", evalue: str = ""):
        super().__init__(message)
        self.notebook, self.output = notebook, output
        self.cell_index, self.ename, self.evalue = cell_index, ename, evalue


@dataclass
class RunRecord:
    """What one execution produced: where, how long, on what device, with which parameters."""

    notebook: str          # file name, e.g. "03_in_context_learning.ipynb"
    output: str            # path of the executed copy
    seconds: float         # wall time of the execution, kernel start included
    device_type: str       # "cpu" or "cuda"
    device: str            # human-readable, e.g. "cpu (2 threads, torch 2.13.0)"
    parameters: dict[str, Any] = field(default_factory=dict)
    finished: str = ""     # UTC time stamp, ISO 8601


def list_notebooks(notebooks_dir: str | Path = NOTEBOOKS_DIR) -> list[Path]:
    """The course notebooks ``NN_name.ipynb`` in ``notebooks_dir``, sorted by their number."""
    folder = Path(notebooks_dir)
    if not folder.is_dir():
        raise NotebookNotFoundError(f"notebook folder {folder} does not exist; pass --notebooks DIR.")
    return sorted(p for p in folder.iterdir() if NOTEBOOK_PATTERN.match(p.name))


def find_notebook(key: str, notebooks_dir: str | Path = NOTEBOOKS_DIR) -> Path:
    """Resolve ``"03"``, ``"3"``, ``"03_in_context_learning"`` or a path to one notebook file."""
    as_path = Path(key)
    if as_path.suffix == ".ipynb" and as_path.is_file():
        return as_path
    available = list_notebooks(notebooks_dir)
    stem = as_path.name.removesuffix(".ipynb")
    if stem.isdigit():
        matches = [p for p in available if int(p.name[:2]) == int(stem)]
    else:
        matches = [p for p in available if p.stem == stem or p.stem.startswith(stem)]
    if len(matches) == 1:
        return matches[0]
    names = ", ".join(p.name for p in available) or "none"
    what = "several notebooks" if matches else "no notebook"
    raise NotebookNotFoundError(
        f"{what} in {notebooks_dir} match {key!r}; give the two-digit number or the file name. "
        f"Available: {names}.")


def parse_parameters(pairs: Sequence[Sequence[str]] | None) -> dict[str, Any]:
    """``[["k", "8"], ["model_name", "gpt2"]]`` → ``{"k": 8, "model_name": "gpt2"}`` (values read as YAML)."""
    params: dict[str, Any] = {}
    for pair in pairs or []:
        if len(pair) != 2:
            raise ParameterError(f"a parameter is '-p NAME VALUE', got {list(pair)}")
        name, raw = pair
        if not str(name).isidentifier():
            raise ParameterError(f"parameter name {name!r} is not a Python identifier; "
                                 "use the variable name from the notebook's parameters cell.")
        try:
            params[name] = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ParameterError(f"cannot read the value of -p {name} {raw!r} as YAML: {exc}. "
                                 "Quote strings that contain ':' or '#'.") from exc
    return params


def current_device() -> tuple[str, str]:
    """``(device_type, description)`` of the machine this build runs on: ``cpu`` or ``cuda``."""
    from .device import describe_device, get_device

    device = get_device()
    return device.type, describe_device(device)


def _kernel_env() -> None:
    """Let the kernel import ``pt_helpers`` from this project even when it is not pip-installed."""
    current = os.environ.get("PYTHONPATH", "")
    if str(PROJECT_ROOT) not in current.split(os.pathsep):
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), current) if p)


def _failure_message(exc: Exception, notebook: Path, output: Path) -> NotebookFailedError:
    cell_index = getattr(exc, "cell_index", None)
    exec_count = getattr(exc, "exec_count", None)
    ename, evalue = getattr(exc, "ename", type(exc).__name__), getattr(exc, "evalue", str(exc))
    source = (getattr(exc, "source", "") or "").strip().splitlines()
    shown = "\n".join("    " + line for line in source[:8]) + ("\n    ..." if len(source) > 8 else "")
    where = (f"cell {cell_index} of the executed notebook (In [{exec_count}])" if cell_index is not None
             else "before any cell ran")
    message = (f"notebook {notebook.name} failed in {where}: {ename}: {evalue}\n"
               + (f"  the cell:\n{shown}\n" if source else "")
               + f"  full traceback in the executed copy: {output}\n"
               f"  rerun just this one with: python -m pt_helpers.run {notebook.name[:2]}")
    return NotebookFailedError(message, notebook, output, cell_index, ename, evalue)


def execute(notebook: str | Path, output_dir: str | Path = EXECUTED_DIR,
            parameters: dict[str, Any] | None = None, *, progress: bool = True,
            kernel_name: str | None = None, timings_file: str | Path | None = TIMINGS_FILE,
            device: tuple[str, str] | None = None) -> RunRecord:
    """Execute one notebook with papermill into ``output_dir`` and record its wall time.

    The kernel runs in the notebook's folder (as under nbval). ``parameters`` are injected after the
    cell tagged ``parameters``. On success the time goes to ``timings_file`` (None: not recorded).
    Raises :class:`NotebookFailedError` naming the failing cell when a cell raises.
    """
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    notebook = Path(notebook).resolve()
    if not notebook.is_file():
        raise NotebookNotFoundError(f"notebook {notebook} does not exist.")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    output = output_dir / notebook.name
    parameters = dict(parameters or {})
    device_type, device_text = device or current_device()
    _kernel_env()
    start = time.perf_counter()
    try:
        pm.execute_notebook(str(notebook), str(output), parameters=parameters, progress_bar=progress,
                            kernel_name=kernel_name, cwd=str(notebook.parent))
    except PapermillExecutionError as exc:
        raise _failure_message(exc, notebook, output) from None
    except Exception as exc:  # kernel died, missing kernel, bad notebook JSON, …
        if isinstance(exc, CourseError):
            raise
        raise _failure_message(exc, notebook, output) from exc
    record = RunRecord(notebook.name, str(output), round(time.perf_counter() - start, 1), device_type,
                       device_text, parameters, datetime.now(timezone.utc).isoformat(timespec="seconds"))
    if timings_file is not None:
        record_timing(timings_file, record)
    return record


def load_timings(timings_file: str | Path = TIMINGS_FILE) -> dict[str, dict[str, dict]]:
    """``{notebook file name: {device type: record dict}}`` from ``timings_file`` ({} if absent)."""
    path = Path(timings_file)
    if not path.is_file():
        return {}
    return json.loads(path.read_text())


def record_timing(timings_file: str | Path, record: RunRecord) -> None:
    """Store ``record`` under its notebook and device type, keeping the other device types' entries."""
    path = Path(timings_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    timings = load_timings(path)
    entry = asdict(record)
    timings.setdefault(record.notebook, {})[record.device_type] = entry
    path.write_text(json.dumps(timings, indent=1, ensure_ascii=False, sort_keys=True))


def run_many(keys: Sequence[str], *, notebooks_dir: str | Path = NOTEBOOKS_DIR,
             output_dir: str | Path = EXECUTED_DIR, parameters: dict[str, Any] | None = None,
             progress: bool = True, kernel_name: str | None = None,
             timings_file: str | Path | None = TIMINGS_FILE) -> list[RunRecord]:
    """Execute ``keys`` (``["all"]`` = every course notebook, in order); stop at the first failure."""
    if list(keys) == ["all"]:
        paths = list_notebooks(notebooks_dir)
        if not paths:
            raise NotebookNotFoundError(f"no NN_name.ipynb notebooks in {notebooks_dir}.")
    else:
        paths = [find_notebook(k, notebooks_dir) for k in keys]
    device = current_device()
    records = []
    for i, path in enumerate(paths, 1):
        print(f"[{i}/{len(paths)}] {path.name} on {device[1]}"
              + (f" with {parameters}" if parameters else ""), flush=True)
        rec = execute(path, output_dir, parameters, progress=progress, kernel_name=kernel_name,
                      timings_file=timings_file, device=device)
        print(f"      done in {format_seconds(rec.seconds)} → {rec.output}", flush=True)
        records.append(rec)
    return records


def format_seconds(seconds: float) -> str:
    """``75.3`` → ``"1 min 15 s"``; ``8.2`` → ``"8 s"``."""
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m pt_helpers.run``."""
    p = argparse.ArgumentParser(
        prog="python -m pt_helpers.run",
        description="Execute course notebooks with papermill (progress bar, parameters, timings).",
        epilog="examples:  python -m pt_helpers.run 03 -p k 8   |   python -m pt_helpers.run all --html build/html")
    p.add_argument("notebooks", nargs="+", metavar="NOTEBOOK",
                   help="'all', a two-digit number (03), a name (03_in_context_learning) or a path")
    p.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"), default=[],
                   help="inject a parameter (value read as YAML); repeat for several")
    p.add_argument("--notebooks-dir", default=str(NOTEBOOKS_DIR), help="where the NN_*.ipynb live")
    p.add_argument("-o", "--output-dir", default=str(EXECUTED_DIR), help="where executed copies go")
    p.add_argument("--timings", default=str(TIMINGS_FILE), help="JSON file of measured run times")
    p.add_argument("--html", metavar="DIR", help="afterwards, build the static site (course map) in DIR")
    p.add_argument("--kernel", default=None, help="Jupyter kernel name (default: the notebook's own)")
    p.add_argument("--no-progress", action="store_true", help="no per-cell progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status (0 ok, 1 a notebook failed, 2 bad arguments)."""
    args = build_parser().parse_args(argv)
    try:
        params = parse_parameters(args.parameter)
        keys = ["all"] if "all" in args.notebooks else args.notebooks
        records = run_many(keys, notebooks_dir=args.notebooks_dir, output_dir=args.output_dir,
                           parameters=params, progress=not args.no_progress, kernel_name=args.kernel,
                           timings_file=args.timings)
        if args.html:
            from .site import build_site

            index = build_site(args.output_dir, args.html, timings_file=args.timings,
                               notebooks_dir=args.notebooks_dir)
            print(f"site: {index}")
    except NotebookFailedError as exc:
        print(f"\nERROR: {exc}", file=sys.stderr)
        return 1
    except CourseError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 2
    total = sum(r.seconds for r in records)
    print(f"{len(records)} notebook(s) executed in {format_seconds(total)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run the course's notebooks with papermill, from the command line or from Python.

    python -m pt_helpers.course.run 03 -p n_test 24        # one notebook (by its number), with a parameter
    python -m pt_helpers.course.run 05_soft_prompt.ipynb   # by file name works too
    python -m pt_helpers.course.run all --html build/html  # every notebooks/NN_*.ipynb in order, then the site

The notebooks check the same types themselves (:func:`pt_helpers.parameters.check_parameters`), so a plain
``papermill -p seed abc`` run stops with the same kind of message.

Executed copies land in ``build/executed/`` (``--output-dir``). Each ``-p NAME VALUE`` is injected after
the notebook's ``parameters`` cell, like ``papermill -p``, but typed by that cell (read with
``papermill.inspect_notebook``): a parameter whose default is a string gets the value exactly as typed
(``-p text "Verdict: a fine film"``), an int, float, bool, list or dict parameter gets the value read as a
Python literal (or YAML) and checked against that type, and a name the notebook does not declare is an
error that lists the parameters it has. All of this is checked before the first notebook starts.

A notebook runs into a temporary file beside its executed copy, which replaces the last good copy only
when every cell succeeded. On failure the last good copy stays; the failed run is kept as
``NN_name.failed.ipynb`` (full traceback) and described in ``NN_name.failed.json`` (error, failing cell,
time), which the course map (:mod:`pt_helpers.course.site`) shows. The next successful run removes both.

Each successful run's wall time is stored in ``build/timings.json`` under the notebook and the *device
type* (``cpu`` or ``cuda``), so a CPU build and a GPU build of the same course both appear on the course
map. A notebook that fails stops the run with a message naming the notebook, the cell and the error; the
CLI then exits with status 1 (2 for bad arguments, 130 when interrupted).

The executed edition (``make edition``, :func:`run_edition`) runs every chapter through this runner in a child
process measured with ``os.wait4`` (:func:`measure_run`); its record ``edition/edition.json`` is the one home
of each chapter's measured quick-profile time and peak memory (the course map and the doctor read it).
"""

from __future__ import annotations

import argparse
import ast
import difflib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from ..errors import CourseError, NotebookFailedError, NotebookNotFoundError, ParameterError
from ..parameters import NotebookParameter, assignments, make_parameter
from ..project import (
    EXECUTED_DIR,
    NOTEBOOK_PATTERN,
    NOTEBOOKS_DIR,
    PROJECT_ROOT,
    TIMINGS_FILE,
    atomic_write_json,
    format_seconds,
    load_timings,
)
from .site import FAILED_RECORD_SUFFIX

# NN_name.failed.json (FAILED_RECORD_SUFFIX, read by the site) says what went wrong in the last run;
# NN_name.failed.ipynb is the executed copy of that failed run
FAILED_COPY_SUFFIX = ".failed.ipynb"


@dataclass
class RunRecord:
    """What one execution produced: where, how long, on what device, with which parameters."""

    notebook: str  # file name, e.g. "03_in_context_learning.ipynb"
    output: str  # path of the executed copy
    seconds: float  # wall time of the execution, kernel start included
    device_type: str  # "cpu" or "cuda"
    device: str  # human-readable, e.g. "cpu (2 threads, torch 2.13.0)"
    parameters: dict[str, Any] = field(default_factory=dict)
    finished: str = ""  # UTC time stamp, ISO 8601


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
        f"{what} in {notebooks_dir} match {key!r}; give the two-digit number or the file name. Available: {names}."
    )


# ----------------------------------------------------------------------------------------------------------
# Parameters: typed by the notebook's own parameters cell
# ----------------------------------------------------------------------------------------------------------


@contextmanager
def _quiet_papermill():
    """papermill logs every notebook it opens and warns about lines it cannot parse; we report ourselves."""
    logger = logging.getLogger("papermill")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def notebook_parameters(notebook: str | Path) -> dict[str, NotebookParameter]:
    """The variables of ``notebook``'s ``parameters`` cell with their types, in the cell's order.

    Read with ``papermill.inspect_notebook``: the type is the annotation or ``# type:`` comment when the
    cell has one, else the type of the default value. papermill skips an assignment whose comment holds
    another ``=`` (``flag = False  # False = greedy``); such names are recovered from the cell's syntax tree.
    """
    import nbformat
    import papermill as pm

    path = Path(notebook)
    try:
        with _quiet_papermill():
            inspected = pm.inspect_notebook(str(path))
    except Exception as exc:  # unreadable JSON, missing file, …
        raise ParameterError(f"cannot read the parameters cell of {path}: {exc}") from exc
    params: dict[str, NotebookParameter] = {}
    for name, info in inspected.items():
        annotation = str(info.get("inferred_type_name") or "None")
        default = str(info.get("default", ""))
        typed_by = annotation if annotation != "None" else None
        params[name] = make_parameter(name, typed_by, default, info.get("help") or "")
    # names papermill's line-by-line pattern could not read
    nb = nbformat.read(path, as_version=4)
    cell = next((c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])), None)
    for name, annotation, default in assignments(cell.source if cell is not None else ""):
        if name not in params:
            params[name] = make_parameter(name, annotation, default)
    return params


def parse_parameters(pairs: Sequence[Sequence[str]] | None) -> dict[str, str]:
    """``[["seed", "8"], ["text", "a: b"]]`` → ``{"seed": "8", "text": "a: b"}``: names checked, values raw.

    The values stay strings here; :func:`type_parameters` types them by a notebook's parameters cell.
    """
    params: dict[str, str] = {}
    for pair in pairs or []:
        if len(pair) != 2:
            raise ParameterError(f"a parameter is '-p NAME VALUE', got {list(pair)}")
        name, raw = pair
        if not str(name).isidentifier():
            raise ParameterError(
                f"parameter name {name!r} is not a Python identifier; "
                "use the variable name from the notebook's parameters cell."
            )
        params[str(name)] = str(raw)
    return params


def _literal(raw: str) -> tuple[bool, Any]:
    """``raw`` read as a Python literal, else as YAML (``true``, ``[a, b]``, ``{max_steps: 10}``): (ok, value)."""
    try:
        return True, ast.literal_eval(raw.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    try:
        return True, yaml.safe_load(raw)
    except yaml.YAMLError:
        return False, None


_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}
_EXAMPLES = {"int": "8", "float": "0.5", "bool": "true", "list": '\'["a", "b"]\'', "dict": "'{\"max_steps\": 10}'"}
_ARTICLE = {
    "int": "an int",
    "float": "a float (an int will do)",
    "bool": "a bool (true or false)",
    "list": "a list",
    "dict": "a dict",
    "tuple": "a tuple or list",
}


def type_value(param: NotebookParameter, raw: str, notebook_name: str = "the notebook") -> Any:
    """The value of ``-p NAME raw`` for ``param``, typed like its default; :class:`ParameterError` if it is not."""
    kind = param.type_name
    if param.optional and raw.strip() in ("None", "none", "null", "~"):
        return None
    if kind == "str":
        return raw  # exactly as typed: "Verdict: a fine film" is text, not YAML
    if kind in ("None", "any"):  # no type to go by: a literal if it reads as one (a plain scalar), else the text
        ok, value = _literal(raw)
        if ok and (value is None or isinstance(value, (bool, int, float))):
            return value
        try:
            return ast.literal_eval(raw.strip())  # a list or dict written the Python way
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return raw
    value: Any = None
    ok = False
    if kind == "bool":
        low = raw.strip().lower()
        ok, value = (True, True) if low in _TRUE else (True, False) if low in _FALSE else (False, None)
    elif kind == "float":
        try:
            ok, value = True, float(raw.strip())
        except ValueError:
            ok = False
    else:
        ok, value = _literal(raw)
        if ok and kind == "int":
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif ok and kind in ("list", "tuple"):
            ok = isinstance(value, (list, tuple))
            value = (list if kind == "list" else tuple)(value) if ok else value
        elif ok and kind == "dict":
            ok = isinstance(value, dict)
    if not ok:
        example = _EXAMPLES.get(kind, "")
        raise ParameterError(
            f"-p {param.name} {raw!r}: parameter {param.name!r} of {notebook_name} expects "
            f"{_ARTICLE.get(kind, kind)} like its default {param.default}, and {raw!r} is not one"
            + (f"; e.g. -p {param.name} {example}" if example else "")
            + "."
        )
    return value


def _unknown_parameter(name: str, notebook_name: str, declared: Mapping[str, NotebookParameter]) -> ParameterError:
    if not declared:
        return ParameterError(
            f"-p {name}: {notebook_name} has no cell tagged 'parameters', so it takes no -p parameters."
        )
    close = difflib.get_close_matches(name, list(declared), n=1)
    listing = "\n".join(f"  {p.describe()}" + (f"  # {p.help}" if p.help else "") for p in declared.values())
    return ParameterError(
        f"-p {name}: {notebook_name} has no parameter {name!r}"
        + (f" (did you mean {close[0]!r}?)" if close else "")
        + f". Its parameters:\n{listing}"
    )


def type_parameters(raw: Mapping[str, str], notebook: str | Path) -> dict[str, Any]:
    """Type the raw ``-p`` values for one notebook by its parameters cell (see :func:`type_value`).

    A name the notebook does not declare raises :class:`ParameterError` listing the parameters it has.
    """
    path = Path(notebook)
    declared = notebook_parameters(path)
    typed = {}
    for name, value in raw.items():
        if name not in declared:
            raise _unknown_parameter(name, path.name, declared)
        typed[name] = type_value(declared[name], value, path.name)
    return typed


def resolve_parameters(
    notebooks: Sequence[Path], raw: Mapping[str, str] | None = None, typed: Mapping[str, Any] | None = None
) -> dict[Path, dict[str, Any]]:
    """Parameters for each notebook, all checked before any notebook runs.

    ``raw`` (strings from the command line) are typed per notebook by its parameters cell; ``typed``
    (Python values from a caller) are passed as they are. With one notebook every name must be one of its
    parameters; with several, each notebook gets the names it declares, and a name none declares is an error.
    """
    raw, typed = dict(raw or {}), dict(typed or {})
    if not raw and not typed:
        return {nb: {} for nb in notebooks}
    declared = {nb: notebook_parameters(nb) for nb in notebooks}
    for name in {**typed, **raw}:
        if not any(name in d for d in declared.values()):
            if len(notebooks) == 1:
                raise _unknown_parameter(name, notebooks[0].name, declared[notebooks[0]])
            listing = "\n".join(f"  {nb.name}: {', '.join(d) or '(no parameters cell)'}" for nb, d in declared.items())
            close = difflib.get_close_matches(name, sorted({k for d in declared.values() for k in d}), n=1)
            raise ParameterError(
                f"-p {name}: none of the {len(notebooks)} notebooks has a parameter {name!r}"
                + (f" (did you mean {close[0]!r}?)" if close else "")
                + f". Their parameters:\n{listing}"
            )
    resolved = {}
    for nb, params in declared.items():
        values = {k: v for k, v in typed.items() if k in params}
        values.update({k: type_value(params[k], v, nb.name) for k, v in raw.items() if k in params})
        resolved[nb] = values
    return resolved


# ----------------------------------------------------------------------------------------------------------
# Execution: into a temporary file, replacing the last good copy only on success
# ----------------------------------------------------------------------------------------------------------


def current_device() -> tuple[str, str]:
    """``(device_type, description)`` of the machine this build runs on: ``cpu`` or ``cuda``."""
    from ..device import describe_device, get_device

    device = get_device()
    return device.type, describe_device(device)


def _kernel_env() -> None:
    """Let the kernel import ``pt_helpers`` from this project even when it is not pip-installed."""
    current = os.environ.get("PYTHONPATH", "")
    if str(PROJECT_ROOT) not in current.split(os.pathsep):
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), current) if p)


def failure_paths(output_dir: str | Path, notebook_name: str) -> tuple[Path, Path]:
    """``(NN_name.failed.json, NN_name.failed.ipynb)`` in ``output_dir``: the record and copy of a failed run."""
    stem = Path(notebook_name).stem
    return Path(output_dir) / f"{stem}{FAILED_RECORD_SUFFIX}", Path(output_dir) / f"{stem}{FAILED_COPY_SUFFIX}"


def _failure_message(
    exc: BaseException, notebook: Path, failed_copy: Path | None, last_good: Path | None
) -> NotebookFailedError:
    cell_index = getattr(exc, "cell_index", None)
    exec_count = getattr(exc, "exec_count", None)
    ename, evalue = getattr(exc, "ename", type(exc).__name__), getattr(exc, "evalue", str(exc))
    source = (getattr(exc, "source", "") or "").strip().splitlines()
    shown = "\n".join("    " + line for line in source[:8]) + ("\n    ..." if len(source) > 8 else "")
    where = (
        f"cell {cell_index} of the executed notebook (In [{exec_count}])"
        if cell_index is not None
        else "before any cell ran"
    )
    kept = (
        f"  the last good executed copy is kept: {last_good}\n"
        if last_good is not None
        else "  there is no earlier good executed copy of it\n"
    )
    message = (
        f"notebook {notebook.name} failed in {where}: {ename}: {evalue}\n"
        + (f"  the cell:\n{shown}\n" if source else "")
        + (f"  full traceback in the executed copy: {failed_copy}\n" if failed_copy is not None else "")
        + kept
        + f"  rerun just this one with: python -m pt_helpers.course.run {notebook.name[:2]}"
    )
    return NotebookFailedError(message, notebook, failed_copy, cell_index, ename, evalue)


def _record_failure(
    error: NotebookFailedError, output: Path, parameters: dict[str, Any], device: tuple[str, str]
) -> Path:
    """Write ``NN_name.failed.json`` beside the executed copies; return its path."""
    record_path, _ = failure_paths(output.parent, output.name)
    record = {
        "notebook": output.name,
        "error": str(error),
        "cell_index": error.cell_index,
        "ename": error.ename,
        "evalue": error.evalue,
        "failed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "failed_copy": str(error.output) if error.output is not None else None,
        "last_good": str(output) if output.is_file() else None,
        "parameters": parameters,
        "device_type": device[0],
        "device": device[1],
    }
    try:
        atomic_write_json(record_path, record, default=repr)
    except OSError as exc:  # the failure itself is what matters; say the record could not be written
        print(f"warning: could not write the failure record {record_path}: {exc}", file=sys.stderr)
    return record_path


def _settle(tmp: Path, final: Path) -> None:
    """Rename the executed ``tmp`` over ``final``, first pointing papermill's ``output_path`` metadata at ``final``."""
    import nbformat

    try:
        nb = nbformat.read(tmp, as_version=4)
        if nb.metadata.get("papermill", {}).get("output_path") == str(tmp):
            nb.metadata["papermill"]["output_path"] = str(final)
            nbformat.write(nb, tmp)
    except Exception:  # cosmetic only: keep the notebook exactly as papermill wrote it
        pass
    os.replace(tmp, final)


def execute(
    notebook: str | Path,
    output_dir: str | Path = EXECUTED_DIR,
    parameters: dict[str, Any] | None = None,
    *,
    progress: bool = True,
    kernel_name: str | None = None,
    timings_file: str | Path | None = TIMINGS_FILE,
    device: tuple[str, str] | None = None,
) -> RunRecord:
    """Execute one notebook with papermill into ``output_dir`` and record its wall time.

    The kernel runs in the notebook's folder (as under nbval). ``parameters`` (already typed; see
    :func:`type_parameters`) are injected after the cell tagged ``parameters``. The notebook executes into
    a temporary file beside ``output_dir/NN_name.ipynb``, which is renamed over it only on success; then
    the time goes to ``timings_file`` (None: not recorded) and any earlier failure record is removed.
    On failure the last good copy is untouched, the failed copy is kept as ``NN_name.failed.ipynb``, the
    failure is described in ``NN_name.failed.json``, and :class:`NotebookFailedError` names the failing cell.
    """
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    notebook = Path(notebook).resolve()
    if not notebook.is_file():
        raise NotebookNotFoundError(f"notebook {notebook} does not exist.")
    output_dir = Path(output_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    output = output_dir / notebook.name
    record_path, failed_copy = failure_paths(output_dir, notebook.name)
    parameters = dict(parameters or {})
    device = device or current_device()
    _kernel_env()
    # not NN_name.ipynb, so neither the site nor a later run mistakes it for an executed chapter
    fd, tmp_name = tempfile.mkstemp(prefix=f".{notebook.stem}.", suffix=".running.ipynb", dir=output_dir)
    os.close(fd)
    tmp = Path(tmp_name)
    start = time.perf_counter()
    try:
        try:
            pm.execute_notebook(
                str(notebook),
                str(tmp),
                parameters=parameters,
                progress_bar=progress,
                kernel_name=kernel_name,
                cwd=str(notebook.parent),
            )
        except Exception as exc:  # a cell raised; or the kernel died, is missing, the notebook JSON is bad …
            if isinstance(exc, CourseError):
                raise
            kept = None
            if tmp.is_file() and tmp.stat().st_size > 0:
                _settle(tmp, failed_copy)
                kept = failed_copy
            error = _failure_message(exc, notebook, kept, output if output.is_file() else None)
            _record_failure(error, output, parameters, device)
            if isinstance(exc, PapermillExecutionError):
                raise error from None
            raise error from exc
        _settle(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)  # interrupted (Ctrl-C) or failed before any output: no debris
    record_path.unlink(missing_ok=True)
    failed_copy.unlink(missing_ok=True)
    record = RunRecord(
        notebook.name,
        str(output),
        round(time.perf_counter() - start, 1),
        device[0],
        device[1],
        parameters,
        datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    if timings_file is not None:
        record_timing(timings_file, record)
    return record


def record_timing(timings_file: str | Path, record: RunRecord) -> None:
    """Store ``record`` under its notebook and device type, keeping the other device types' entries."""
    path = Path(timings_file)
    timings = load_timings(path)
    entry = asdict(record)
    timings.setdefault(record.notebook, {})[record.device_type] = entry
    atomic_write_json(path, timings, sort_keys=True, default=repr)


def run_many(
    keys: Sequence[str],
    *,
    notebooks_dir: str | Path = NOTEBOOKS_DIR,
    output_dir: str | Path = EXECUTED_DIR,
    parameters: dict[str, Any] | None = None,
    raw_parameters: Mapping[str, str] | None = None,
    progress: bool = True,
    kernel_name: str | None = None,
    timings_file: str | Path | None = TIMINGS_FILE,
    keep_going: bool = False,
) -> list[RunRecord]:
    """Execute ``keys`` (``["all"]`` = every course notebook, in order); stop at the first failure, or with
    ``keep_going`` run the rest and raise one ``NotebookFailedError`` naming every failed notebook at the end.

    ``parameters`` are Python values, ``raw_parameters`` the strings of ``-p NAME VALUE``, typed per
    notebook by its parameters cell; both are checked for every notebook before the first one starts.
    """
    if list(keys) == ["all"]:
        paths = list_notebooks(notebooks_dir)
        if not paths:
            raise NotebookNotFoundError(f"no NN_name.ipynb notebooks in {notebooks_dir}.")
    else:
        paths = [find_notebook(k, notebooks_dir) for k in keys]
    per_notebook = resolve_parameters(paths, raw_parameters, parameters)
    device = current_device()
    records, failures = [], []
    for i, path in enumerate(paths, 1):
        params = per_notebook[path]
        print(f"[{i}/{len(paths)}] {path.name} on {device[1]}" + (f" with {params}" if params else ""), flush=True)
        try:
            rec = execute(
                path,
                output_dir,
                params,
                progress=progress,
                kernel_name=kernel_name,
                timings_file=timings_file,
                device=device,
            )
        except NotebookFailedError as exc:
            if not keep_going:
                raise
            print(f"\nERROR: {exc}\n(--keep-going: on to the next notebook)", file=sys.stderr, flush=True)
            failures.append(exc)
            continue
        print(f"      done in {format_seconds(rec.seconds)} → {rec.output}", flush=True)
        records.append(rec)
    if failures:
        names = ", ".join(f.notebook.name for f in failures)
        first = failures[0]
        raise NotebookFailedError(
            f"{len(failures)} of {len(paths)} notebooks failed: {names} (each error is printed above; "
            f"{len(records)} ran to the end)",
            first.notebook,
            first.output,
            first.cell_index,
            first.ename,
            first.evalue,
        )
    return records


# ----------------------------------------------------------------------------------------------------------
# The executed edition (pt_helpers.course.edition): every chapter through this runner, measured from outside
# ----------------------------------------------------------------------------------------------------------


def measure_run(command: Sequence[str], env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Run ``command`` as a child process and measure it with ``os.wait4``: wall and CPU seconds, peak RSS.

    The CPU time is user + system of the child and every descendant it waited for (papermill waits for its
    kernel); the peak is the resident set of the largest of them (the kernel), as ``/usr/bin/time -v`` reports
    it (``Maximum resident set size``), without needing GNU time. Also the 1-minute load average before and after.
    """
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    # its own process group, so that an interrupted build (Ctrl-C, a kill) ends the runner *and* its kernel
    proc = subprocess.Popen(list(command), env=dict(env) if env is not None else None, start_new_session=True)
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except BaseException:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
        raise
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    peak_mib = usage.ru_maxrss / (2**20 if sys.platform == "darwin" else 1024)  # bytes on macOS, KiB on Linux
    return dict(
        returncode=proc.returncode,
        seconds=round(wall, 1),
        cpu_seconds=round(usage.ru_utime + usage.ru_stime, 1),
        peak_rss_mib=round(peak_mib),
        load_before=round(load_before, 2),
        load_after=round(os.getloadavg()[0], 2),
    )


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def _versions() -> str:
    from importlib import metadata

    parts = [f"python {sys.version.split()[0]}"]
    for dist in ("torch", "transformers", "peft"):
        try:
            parts.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            pass
    return ", ".join(parts)


def run_edition(
    keys: Sequence[str] = ("all",),
    *,
    edition_dir: str | Path | None = None,
    notebooks_dir: str | Path = NOTEBOOKS_DIR,
    threads: int | None = None,
) -> dict:
    """Build the executed edition (:mod:`pt_helpers.course.edition`): each chapter at its quick profile on the
    default models, one at a time, through ``python -m pt_helpers.course.run NN`` (this module's runner),
    measured by :func:`measure_run`, then stored stripped under ``edition/`` with its record and index.

    A chapter that fails is recorded as failed (its earlier executed copy, if any, is kept) and the others
    still run. Returns the record.
    """
    from . import edition as ed

    edition_dir = Path(edition_dir or ed.EDITION_DIR)
    threads = threads or ed.EDITION_THREADS
    paths = list_notebooks(notebooks_dir) if list(keys) == ["all"] else [find_notebook(k, notebooks_dir) for k in keys]
    # each chapter that has a profile parameter runs its quick profile (checked before the first one starts)
    profiled = {p for p in paths if "profile" in notebook_parameters(p)}
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env.setdefault("PT_RANDOM_FALLBACK", "1")  # as `make run`: what no real model offline can do stays a stand-in
    _kernel_env()
    env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    device = current_device()
    meta = dict(
        label=f"quick profile, default models, {threads} threads",
        date=datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        commit=_git("rev-parse", "--short=12", "HEAD"),
        dirty=bool(_git("status", "--porcelain", "--untracked-files=no", "--", "notebooks", "pt_helpers")),
        device=f"{device[1]}; {os.cpu_count()} CPUs",
        device_type=device[0],
        threads=threads,
        profile=ed.EDITION_PROFILE,
        versions=_versions(),
        package_sha256=ed.package_sha256(),
        pt_random_fallback=env["PT_RANDOM_FALLBACK"],
        command="make edition  (python -m pt_helpers.course.edition build)",
        load_note="chapters ran one at a time; the machine was shared with other work when the load exceeds the "
        "threads, so wall times are inflated there (the CPU time is less so)",
    )
    work = Path(tempfile.mkdtemp(prefix="pt-edition-run."))
    record: dict = {}
    try:
        for i, path in enumerate(paths, 1):
            print(f"[{i}/{len(paths)}] edition: {path.name} ({threads} threads)", flush=True)
            command = [sys.executable, "-m", "pt_helpers.course.run", str(path), "--notebooks-dir", str(notebooks_dir)]
            command += ["-o", str(work), "--timings", str(work / "timings.json"), "--no-progress"]
            command += ["-p", "profile", ed.EDITION_PROFILE] if path in profiled else []
            measured = measure_run(command, env)
            code = measured.pop("returncode")
            measured["status"] = "completed" if code == 0 else f"exit status {code}"
            record = ed.store_chapter(edition_dir, work / path.name, path, measured, meta)
            ed.write_index(edition_dir, notebooks_dir)
            print(
                f"      {measured['status']}: {format_seconds(measured['seconds'])} wall, "
                f"{format_seconds(measured['cpu_seconds'])} CPU, peak {measured['peak_rss_mib']} MiB, "
                f"load {measured['load_before']} → {measured['load_after']}",
                flush=True,
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return record


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m pt_helpers.course.run``."""
    p = argparse.ArgumentParser(
        prog="python -m pt_helpers.course.run",
        description="Execute course notebooks with papermill (progress bar, parameters, timings).",
        epilog="examples:  python -m pt_helpers.course.run 03 -p n_test 24  |  "
        "python -m pt_helpers.course.run all --html build/html",
    )
    p.add_argument(
        "notebooks",
        nargs="+",
        metavar="NOTEBOOK",
        help="'all', a two-digit number (03), a name (03_in_context_learning) or a path",
    )
    p.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        metavar=("NAME", "VALUE"),
        default=[],
        help="set a variable of the notebook's parameters cell, typed like its default; repeat for several",
    )
    p.add_argument("--notebooks-dir", default=str(NOTEBOOKS_DIR), help="where the NN_*.ipynb live")
    p.add_argument("-o", "--output-dir", default=str(EXECUTED_DIR), help="where executed copies go")
    p.add_argument("--timings", default=str(TIMINGS_FILE), help="JSON file of measured run times")
    p.add_argument("--html", metavar="DIR", help="afterwards, build the static site (course map) in DIR")
    p.add_argument("--kernel", default=None, help="Jupyter kernel name (default: the notebook's own)")
    p.add_argument("--no-progress", action="store_true", help="no per-cell progress bar")
    p.add_argument(
        "--keep-going", action="store_true", help="after a failed notebook, run the rest (exit 1 at the end)"
    )
    return p


def _build_site(args: argparse.Namespace) -> None:
    from .site import build_site

    index = build_site(args.output_dir, args.html, timings_file=args.timings, notebooks_dir=args.notebooks_dir)
    print(f"site: {index}")


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status (0 ok, 1 a notebook failed, 2 bad arguments, 130 interrupted)."""
    args = build_parser().parse_args(argv)
    try:
        raw = parse_parameters(args.parameter)
        keys = ["all"] if "all" in args.notebooks else args.notebooks
        records = run_many(
            keys,
            notebooks_dir=args.notebooks_dir,
            output_dir=args.output_dir,
            raw_parameters=raw,
            progress=not args.no_progress,
            kernel_name=args.kernel,
            timings_file=args.timings,
            keep_going=args.keep_going,
        )
        if args.html:
            _build_site(args)
    except NotebookFailedError as exc:
        print(f"\nERROR: {exc}", file=sys.stderr)
        if args.html:  # the map shows the failure next to the last good pages
            try:
                _build_site(args)
            except CourseError as site_exc:
                print(f"(the site was not rebuilt: {site_exc})", file=sys.stderr)
        return 1
    except CourseError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "\ninterrupted: the notebook that was running left no partial copy; the last good executed "
            "copies are untouched.",
            file=sys.stderr,
        )
        return 130
    total = sum(r.seconds for r in records)
    print(f"{len(records)} notebook(s) executed in {format_seconds(total)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The executed edition: every chapter run once at its quick profile on the default models, committed.

    make edition                               # = python -m pt_helpers.course.edition build
    python -m pt_helpers.course.edition check  # which chapters changed since their executed copy was made
    python -m pt_helpers.course.edition index  # re-render edition/README.md (with today's stale marks)

``edition/`` holds one executed notebook per chapter (outputs kept, widget state stripped: readable on
GitHub and offline), ``edition/edition.json`` (the record) and ``edition/README.md`` (its index).

The run is :func:`pt_helpers.course.run.run_edition`: each chapter is executed by ``python -m
pt_helpers.course.run NN -p profile quick`` (papermill, the same runner as ``make run``) in a child process
with ``OMP_NUM_THREADS`` threads, and measured from the outside with ``os.wait4``: wall time, CPU time (user +
system of the runner and its kernel) and peak resident memory (the largest process of the two: the kernel).

The record holds, per chapter, the SHA-256 of the *source* notebook's cells (type and source only: clearing
outputs or metadata does not change it) at the time it ran. A chapter whose source notebook hashes otherwise
today is *stale*; a chapter in ``notebooks/`` with no executed copy is *missing* from the edition. Neither is
an error: :func:`edition_status` reports them (``check``, ``python -m pt_helpers.doctor``, the index and the
test ``tests/test_edition.py``), and ``make edition`` refreshes the edition. The hash of ``pt_helpers``'s own
sources is recorded too (``package_sha256``) and reported when it changed, but does not make a chapter stale:
almost every package change would otherwise mark every chapter, and the notebooks' own tests guard the package.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nbformat

from ..errors import CourseError, SiteError
from ..project import NOTEBOOK_PATTERN, NOTEBOOKS_DIR, PROJECT_ROOT, atomic_write_json, atomic_write_text

EDITION_DIR = PROJECT_ROOT / "edition"
EDITION_RECORD = "edition.json"
EDITION_INDEX = "README.md"
EDITION_THREADS = 2  # what a learner's 2-core laptop gives torch
EDITION_PROFILE = "quick"
# the budgets of issue 27 item 5: each chapter's quick profile at 2 threads on 2 cores
BUDGET_SECONDS = 10 * 60
BUDGET_PEAK_MIB = 3 * 1024
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
# what the committed edition may weigh (a test checks): readable on GitHub, a small part of a clone
EDITION_MAX_BYTES = 12 * 2**20


def source_sha256(notebook: str | Path | nbformat.NotebookNode) -> str:
    """SHA-256 of a notebook's cells as written: each cell's type and source, in order (outputs ignored)."""
    nb = notebook if isinstance(notebook, nbformat.NotebookNode) else nbformat.read(Path(notebook), as_version=4)
    cells = [[c.get("cell_type", ""), "".join(c.get("source", ""))] for c in nb.cells]
    return hashlib.sha256(json.dumps(cells, ensure_ascii=False).encode("utf-8")).hexdigest()


def package_sha256(package_dir: str | Path = PROJECT_ROOT / "pt_helpers") -> str:
    """SHA-256 over ``pt_helpers``'s ``*.py`` files (relative path and bytes, sorted by path), leaving out the
    course tooling (``pt_helpers/course/``: it runs the notebooks, and what they print does not depend on it)."""
    root = Path(package_dir)
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*.py") if p.relative_to(root).parts[0] != "course"):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def strip_for_edition(nb: nbformat.NotebookNode, *, root: str | Path = PROJECT_ROOT) -> nbformat.NotebookNode:
    """The executed notebook as committed: widget state and views dropped, per-cell timing metadata dropped,
    papermill's absolute paths made relative to the project (the outputs themselves are kept)."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        if cell.get("cell_type") != "code":
            continue
        kept = []
        for out in cell.get("outputs", []):
            data = out.get("data")
            if data is not None and WIDGET_MIME in data:
                data.pop(WIDGET_MIME)
                if not data:  # a widget with no text form (a progress bar): nothing a reader can see offline
                    continue
            kept.append(out)
        cell.outputs = kept
    meta = nb.metadata.get("papermill", {})
    for key in ("input_path", "output_path"):
        if meta.get(key):
            try:
                meta[key] = Path(meta[key]).resolve().relative_to(Path(root).resolve()).as_posix()
            except ValueError:
                meta[key] = Path(meta[key]).name
    return nb


def load_edition(edition_dir: str | Path = EDITION_DIR) -> dict:
    """The edition's record (``edition.json``): ``{}`` when there is none; a clear error when it is damaged."""
    path = Path(edition_dir) / EDITION_RECORD
    if not path.is_file():
        return {}
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SiteError(f"{path} is not valid JSON ({exc}); restore it from git or run `make edition`.") from exc
    if not isinstance(record, dict) or not isinstance(record.get("chapters"), dict):
        raise SiteError(f"{path} has no 'chapters' mapping; restore it from git or run `make edition`.")
    return record


def edition_status(edition_dir: str | Path = EDITION_DIR, notebooks_dir: str | Path = NOTEBOOKS_DIR) -> dict[str, str]:
    """``{notebook file: "current" | "stale" | "missing" | "failed" | "removed"}`` for the edition and the sources.

    *stale*: the source notebook's cells changed since its executed copy was made; *missing*: a chapter with
    no executed copy in the edition; *failed*: its edition run did not complete; *removed*: in the edition,
    no longer in ``notebooks/``.
    """
    record = load_edition(edition_dir)
    chapters = record.get("chapters", {})
    sources = {p.name: p for p in Path(notebooks_dir).glob("*.ipynb") if NOTEBOOK_PATTERN.match(p.name)}
    status = {}
    for name in sorted(set(sources) | set(chapters)):
        entry = chapters.get(name)
        if name not in sources:
            status[name] = "removed"
        elif entry is None:
            status[name] = "missing"
        elif entry.get("status") != "completed" or not (Path(edition_dir) / name).is_file():
            status[name] = "failed"
        elif entry.get("source_sha256") != source_sha256(sources[name]):
            status[name] = "stale"
        else:
            status[name] = "current"
    return status


def budget_checks(record: dict) -> dict[str, dict[str, bool | None]]:
    """Per chapter: whether its measured quick profile holds the time (≤ 10 min) and memory (≤ 3 GiB) budgets.

    ``time`` judges the wall time, which other work on a shared machine inflates; ``time_cpu`` judges the CPU
    time (runner and kernel), which contention barely changes: at 2 threads an idle machine's wall time lies
    between half of it (both threads busy throughout) and all of it (one thread busy), so ``time_cpu`` holding
    means the budget holds on an idle machine of the same speed. ``None``: not measured (the run failed).
    """
    checks = {}
    for name, entry in record.get("chapters", {}).items():
        done = entry.get("status") == "completed"
        checks[name] = {
            "time": entry["seconds"] <= BUDGET_SECONDS if done else None,
            "time_cpu": entry["cpu_seconds"] <= BUDGET_SECONDS if done and "cpu_seconds" in entry else None,
            "memory": entry["peak_rss_mib"] <= BUDGET_PEAK_MIB if done else None,
        }
    return checks


def _weights_words(entry: dict) -> str:
    w = entry.get("weights") or {}
    status = w.get("status", "?")
    if status == "pretrained":
        return "real: " + ", ".join(w.get("pretrained", []))
    if status == "no model":
        return "no model"
    parts = []
    if w.get("pretrained"):
        parts.append("real: " + ", ".join(w["pretrained"]))
    if w.get("random"):
        parts.append("**stand-in**: " + ", ".join(w["random"]))
    return "; ".join(parts) or status


def render_index(record: dict, status: dict[str, str] | None = None, notebooks_dir: str | Path = NOTEBOOKS_DIR) -> str:
    """``edition/README.md``: when, where and how the edition ran, and one row per chapter."""
    from ..project import format_seconds

    status = status or {}
    checks = budget_checks(record)
    lines = [
        "# The executed edition · 已执行版",
        "",
        "Every chapter executed once at its quick profile on the course's default models, outputs kept: read",
        "the results here without running anything. Rebuilt by `make edition`; a chapter marked **stale** has",
        "changed since its copy here was made (its numbers may differ from what the notebook prints today).",
        "",
        f"- date: {record.get('date', '?')} · commit: `{record.get('commit', '?')}`"
        + (" (with uncommitted changes)" if record.get("dirty") else ""),
        f"- device: {record.get('device', '?')}",
        f"- threads: {record.get('threads', '?')} (`OMP_NUM_THREADS`) · profile: `{record.get('profile', '?')}`",
        f"- versions: {record.get('versions', '?')}",
        f"- load average (1 min) before → after each chapter is in its row: {record.get('load_note', '')}",
        f"- command: `{record.get('command', 'make edition')}`",
        "",
        "| # | chapter | state | wall time | CPU time | peak RSS | load before → after | weights |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in record.get("chapters", {}).items():
        state = status.get(name, "current")
        if entry.get("status") != "completed":
            state = f"FAILED: {entry.get('status')}"
        c = checks.get(name, {})
        over = [what for what, ok in (("> 10 min", c.get("time")), ("> 3 GiB", c.get("memory"))) if ok is False]
        if c.get("time") is False and c.get("time_cpu"):
            over[0] = "> 10 min wall under load; CPU time within"
        lines.append(
            f"| {name[:2]} | [{name}]({name}) | {'**' + state + '**' if state != 'current' else state} "
            f"| {format_seconds(entry['seconds'])}{' (' + ', '.join(over) + ')' if over else ''} "
            f"| {format_seconds(entry.get('cpu_seconds', 0))} | {entry['peak_rss_mib'] / 1024:.2f} GiB "
            f"| {entry.get('load_before', '?')} → {entry.get('load_after', '?')} | {_weights_words(entry)} |"
        )
    for name, state in status.items():
        if state == "missing":
            lines.append(f"| {name[:2]} | {name} | **not in this edition** | | | | | |")
    lines += [
        "",
        "Times are measured from outside the runner (`os.wait4` on `python -m pt_helpers.course.run NN`): wall",
        "time, CPU time (user + system, runner and kernel) and peak resident memory of the largest process",
        "(the kernel). They were taken on a shared machine: compare the CPU time with the wall time and the load",
        "average before reading a wall time as what a learner's idle laptop would take. Budgets (issue 27): quick",
        "profile ≤ 10 min and ≤ 3 GiB per chapter at 2 threads on 2 cores.",
        "",
        "Which chapters are stale: `python -m pt_helpers.course.edition check` (or `python -m pt_helpers.doctor`).",
        "",
    ]
    return "\n".join(lines)


def write_index(edition_dir: str | Path = EDITION_DIR, notebooks_dir: str | Path = NOTEBOOKS_DIR) -> Path:
    """(Re)write ``edition/README.md`` from the record and today's stale marks; return its path."""
    record = load_edition(edition_dir)
    if not record:
        raise CourseError(f"no edition in {edition_dir}: run `make edition` first.")
    path = Path(edition_dir) / EDITION_INDEX
    atomic_write_text(path, render_index(record, edition_status(edition_dir, notebooks_dir), notebooks_dir))
    return path


def store_chapter(
    edition_dir: str | Path, executed: str | Path, source: str | Path, measurement: dict[str, Any], meta: dict
) -> dict:
    """Copy one executed chapter into the edition (stripped) and add its entry to ``edition.json``."""
    from .site import detect_weights

    edition_dir = Path(edition_dir)
    edition_dir.mkdir(parents=True, exist_ok=True)
    record = load_edition(edition_dir) or {"chapters": {}}
    record.update(meta)
    name = Path(source).name
    entry = dict(measurement, source_sha256=source_sha256(source))
    if executed is not None and Path(executed).is_file() and measurement.get("status") == "completed":
        nb = strip_for_edition(nbformat.read(Path(executed), as_version=4))
        entry["weights"] = detect_weights(nb).__dict__
        atomic_write_text(edition_dir / name, nbformat.writes(nb) + "\n")
    record["chapters"][name] = entry
    record["chapters"] = dict(sorted(record["chapters"].items()))
    record["size_bytes"] = sum(p.stat().st_size for p in edition_dir.glob("*.ipynb"))
    atomic_write_json(edition_dir / EDITION_RECORD, record, indent=2, ensure_ascii=False)
    return record


def package_changed(edition_dir: str | Path = EDITION_DIR) -> bool | None:
    """Whether ``pt_helpers``'s sources differ from those the edition ran with (None: no edition or no hash)."""
    recorded = load_edition(edition_dir).get("package_sha256")
    return None if not recorded else recorded != package_sha256()


def describe_status(status: dict[str, str]) -> str:
    """One line per chapter that is not current, or a line saying all are."""
    odd = {n: s for n, s in status.items() if s != "current"}
    if not status:
        return "no executed edition (run `make edition`)"
    if not odd:
        return f"all {len(status)} chapters current"
    return "; ".join(f"{n}: {s}" for n, s in odd.items())


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pt_helpers.course.edition build|check|index``."""
    p = argparse.ArgumentParser(prog="python -m pt_helpers.course.edition", description=__doc__.splitlines()[0])
    p.add_argument("command", choices=["build", "check", "index"])
    p.add_argument("chapters", nargs="*", default=["all"], help="build only these (default: all)")
    p.add_argument("--edition-dir", default=str(EDITION_DIR))
    p.add_argument("--notebooks-dir", default=str(NOTEBOOKS_DIR))
    p.add_argument("--threads", type=int, default=EDITION_THREADS)
    p.add_argument("--json", action="store_true", help="check: print the states as JSON (read by the doctor)")
    args = p.parse_args(argv)
    try:
        if args.command == "build":
            from .run import run_edition

            run_edition(
                args.chapters, edition_dir=args.edition_dir, notebooks_dir=args.notebooks_dir, threads=args.threads
            )
        elif args.command == "index":
            print(write_index(args.edition_dir, args.notebooks_dir))
        status = edition_status(args.edition_dir, args.notebooks_dir)
        changed = package_changed(args.edition_dir)
        summary = describe_status(status if any(s != "missing" for s in status.values()) else {})
        if changed:
            summary += "; pt_helpers changed since the edition ran (not counted as stale: rerun to refresh)"
        if args.json:
            print(json.dumps({"states": status, "summary": summary, "package_changed": changed}, ensure_ascii=False))
            return 0
        for name, state in status.items():
            print(f"{state:>8}  {name}")
        print(summary)
        record = load_edition(args.edition_dir)
        for name, c in budget_checks(record).items():
            words = {True: "holds", False: "EXCEEDED", None: "not measured"}
            print(
                f"budget {name}: ≤ 10 min wall {words[c['time']]}, ≤ 10 min CPU {words[c['time_cpu']]}, "
                f"≤ 3 GiB {words[c['memory']]}"
            )
    except CourseError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

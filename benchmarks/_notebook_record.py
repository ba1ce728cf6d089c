"""Record a chapter's quick-profile run: time, memory, load, and the numbers its ``findings`` cell printed.

    python benchmarks/_notebook_record.py 03 04                 # writes benchmarks/records/ch03_quick.json, ch04_…
    python benchmarks/_notebook_record.py 04 --replace          # an existing record is replaced only when asked
    python benchmarks/_notebook_record.py 02 --out /tmp/x.json  # one chapter, recorded elsewhere

Each notebook runs once with papermill (``-p profile quick``) under ``/usr/bin/time -v env
OMP_NUM_THREADS=<threads>``, its results written to a temporary folder. The convention for findings is one: the
notebook's code cell tagged ``findings`` prints one JSON object (the first ``{`` of its printed text starts it);
a notebook with no such cell records ``findings: null``. The record (layout: ``RECORD_KEYS`` below, checked by
``layout_problems``) holds the command, the date, the machine, the threads, the environment, the load average
before and after, wall seconds, CPU seconds (user + system, the kernel included: papermill reaps it), the peak
resident memory (GNU time's "Maximum resident set size", KiB, / 1024 = MiB) and the findings. A record is
written atomically and never replaces another unless ``--replace`` is given. Prose that quotes a number of a run
is checked against its record (``tests/_records.py`` reads them for the ``tests/test_prose_numbers*.py``).
The script starts with ``_`` so that ``python -m benchmarks`` does not take it for a benchmark; its records
have no ``device`` key, so the generated table of ``benchmarks/README.md`` leaves them out.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ROOT / "benchmarks" / "records"
sys.path.insert(0, str(ROOT))
from pt_helpers.project import atomic_write_json  # noqa: E402

ENV_KEYS = ("PT_RANDOM_FALLBACK", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "PT_MODELS_DIR")
# The one layout of a recorded notebook run, in order. A value the run did not measure is null, never guessed.
RECORD_KEYS = (
    "notebook",  # file name under notebooks/
    "profile",  # the -p profile the run used ("quick")
    "command",  # what ran, with python and the executed copy's path written generically
    "recorded_by",  # the command that wrote the record
    "date",  # ISO 8601, UTC
    "machine",  # MACHINE_KEYS
    "threads",  # OMP_NUM_THREADS
    "env",  # the ENV_KEYS that were set (null: not recorded)
    "load_average_start",  # os.getloadavg() just before and after the run: 1, 5, 15 min
    "load_average_end",
    "wall_s",  # GNU time's elapsed wall clock
    "cpu_s",  # user + system seconds
    "user_s",
    "sys_s",
    "max_rss_mib",  # GNU time's maximum resident set size (KiB) / 1024
    "findings",  # the JSON object the cell tagged `findings` printed (null: the notebook has none)
)
OPTIONAL_KEYS = ("layout_converted",)  # a record written by an older script, its keys renamed: what changed
MACHINE_KEYS = ("host", "platform", "cpu", "cores", "python", "torch")


def layout_problems(rec: dict) -> list[str]:
    """What keeps ``rec`` from the layout of ``RECORD_KEYS`` (empty: it has it)."""
    problems = []
    keys = [k for k in rec if k not in OPTIONAL_KEYS]
    if keys != list(RECORD_KEYS):
        problems.append(f"keys {keys} are not, in order, {list(RECORD_KEYS)} (+ optional {list(OPTIONAL_KEYS)})")
        return problems
    if not isinstance(rec["machine"], dict) or list(rec["machine"]) != list(MACHINE_KEYS):
        problems.append(f"machine must have the keys {list(MACHINE_KEYS)} (null where unknown)")
    if not re.fullmatch(r"\d\d_\w+\.ipynb", str(rec["notebook"])):
        problems.append(f"notebook {rec['notebook']!r} is not a notebook's file name")
    elif rec["notebook"] not in rec["command"] or "papermill" not in rec["command"]:
        problems.append("command does not run the notebook with papermill")
    if not isinstance(rec["threads"], int) or f"OMP_NUM_THREADS={rec['threads']}" not in rec["command"]:
        problems.append("threads is not the OMP_NUM_THREADS of the command")
    try:
        date = datetime.datetime.fromisoformat(rec["date"])
        if date.utcoffset() != datetime.timedelta(0):
            problems.append(f"date {rec['date']!r} is not in UTC")
    except (TypeError, ValueError):
        problems.append(f"date {rec['date']!r} is not ISO 8601")
    for key in ("load_average_start", "load_average_end"):
        if not (isinstance(rec[key], list) and len(rec[key]) == 3):
            problems.append(f"{key} is not the three load averages")
    for key in ("wall_s", "cpu_s", "max_rss_mib"):
        if not (isinstance(rec[key], (int, float)) and rec[key] > 0):
            problems.append(f"{key} is not a positive number")
    if rec["user_s"] is not None and abs(rec["user_s"] + rec["sys_s"] - rec["cpu_s"]) > 0.051:
        problems.append("cpu_s is not user_s + sys_s")
    if not (rec["findings"] is None or isinstance(rec["findings"], dict)):
        problems.append("findings is neither a JSON object nor null")
    return problems


def _time_v(report: str) -> dict:
    """Wall, CPU seconds and peak RSS from GNU time's ``-v`` report."""

    def field(name: str) -> str:
        match = re.search(rf"^\s*{re.escape(name)}: (.+)$", report, re.M)
        if not match:
            raise SystemExit(f"/usr/bin/time -v printed no {name!r}: is GNU time installed?")
        return match.group(1).strip()

    parts = [float(x) for x in field("Elapsed (wall clock) time (h:mm:ss or m:ss)").split(":")]
    user, system = float(field("User time (seconds)")), float(field("System time (seconds)"))
    return dict(
        wall_s=round(sum(x * 60**i for i, x in enumerate(reversed(parts))), 2),
        cpu_s=round(user + system, 2),
        user_s=user,
        sys_s=system,
        max_rss_mib=int(field("Maximum resident set size (kbytes)")) / 1024,  # exact: a KiB count / 1024
    )


def findings_cell(nb: nbformat.NotebookNode, name: str) -> nbformat.NotebookNode | None:
    """The notebook's one code cell tagged ``findings`` (None: it has none). Found by its tag, never by its
    index: papermill inserts a cell (the injected parameters) into the executed copy."""
    tagged = [c for c in nb.cells if "findings" in c.get("metadata", {}).get("tags", [])]
    if len(tagged) > 1 or any(c.cell_type != "code" for c in tagged):
        raise SystemExit(f"{name}: tag exactly one code cell 'findings' (found {len(tagged)} tagged cells)")
    return tagged[0] if tagged else None


def findings_of(executed: Path) -> dict | None:
    """The JSON object that the executed notebook's cell tagged ``findings`` printed (None: no such cell)."""
    cell = findings_cell(nbformat.read(executed, as_version=4), executed.name)
    if cell is None:
        return None
    text = "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")
    if "{" not in text:
        raise SystemExit(f"{executed.name}: the cell tagged 'findings' printed no JSON object")
    return json.JSONDecoder().raw_decode(text[text.index("{") :])[0]


def _machine() -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"^model name\s*: (.+)$", cpuinfo, re.M)
    try:
        torch = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        torch = None
    return dict(
        host=platform.node(),
        platform=platform.platform(),
        cpu=model.group(1).strip() if model else (platform.processor() or None),
        cores=os.cpu_count(),
        python=platform.python_version(),
        torch=torch,
    )


def record(stem: str, threads: int, target: Path, replace: bool = False) -> Path:
    """Run notebook ``stem``'s quick profile once and write its record to ``target`` (an existing one only when
    ``replace``)."""
    (notebook,) = (ROOT / "notebooks").glob(f"{stem}_*.ipynb")
    findings_cell(nbformat.read(notebook, as_version=4), notebook.name)  # one tagged cell at most, before the run
    with tempfile.TemporaryDirectory() as tmp:
        executed, time_log = Path(tmp) / notebook.name, Path(tmp) / "time.txt"
        env = dict(os.environ, PT_RESULTS_DIR=str(Path(tmp) / "results"))  # the run adds no rows to yours
        papermill = ["-m", "papermill", str(notebook.relative_to(ROOT)), str(executed)]
        papermill += ["-p", "profile", "quick", "--cwd", "notebooks"]
        timed = ["/usr/bin/time", "-v", "env", f"OMP_NUM_THREADS={threads}"]
        load_before = os.getloadavg()
        date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        proc = subprocess.run(
            [*timed[:2], "-o", str(time_log), *timed[2:], sys.executable, *papermill],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        load_after = os.getloadavg()
        if proc.returncode:
            raise SystemExit(
                f"{notebook.name} failed (exit {proc.returncode}); no record written:\n{proc.stderr[-4000:]}"
            )
        shown = [*timed, "python", *papermill[:3], "OUT.ipynb", *papermill[4:]]
        rec = dict(
            notebook=notebook.name,
            profile="quick",
            command=shlex.join(shown),
            recorded_by="python benchmarks/_notebook_record.py " + stem,
            date=date,
            machine=_machine(),
            threads=threads,
            env={k: os.environ[k] for k in ENV_KEYS if k in os.environ},
            load_average_start=[round(x, 2) for x in load_before],
            load_average_end=[round(x, 2) for x in load_after],
            **_time_v(time_log.read_text()),
            findings=findings_of(executed),
        )
    problems = layout_problems(rec)
    if problems:
        raise SystemExit(f"the record of {notebook.name} breaks the layout: {problems}")
    if target.exists() and not replace:  # written by someone else while this run took its minutes
        raise SystemExit(f"{target} appeared during the run: not replaced (pass --replace)")
    return atomic_write_json(target, rec, indent=1)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("chapters", nargs="+", help="two-digit chapter numbers, e.g. 03 04")
    ap.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the run (default 1)")
    ap.add_argument("--replace", action="store_true", help="replace an existing record")
    ap.add_argument("--out", type=Path, help="write the record here instead (one chapter only)")
    args = ap.parse_args(argv)
    bad = [c for c in args.chapters if len(list((ROOT / "notebooks").glob(f"{c}_*.ipynb"))) != 1]
    if bad:
        ap.error(f"no notebook notebooks/NN_*.ipynb for chapter(s) {bad}: give two-digit numbers such as 03")
    if args.out and len(args.chapters) != 1:
        ap.error("--out takes one chapter")
    targets = [args.out or RECORDS / f"ch{c}_quick.json" for c in args.chapters]
    existing = [str(t) for t in targets if t.exists()]
    if existing and not args.replace:  # checked before any run: minutes are not spent on a record not written
        ap.error(f"{existing} exist: pass --replace to replace a recorded run (or --out elsewhere)")
    for stem, target in zip(args.chapters, targets):
        path = record(stem, args.threads, target, args.replace)
        rec = json.loads(path.read_text())
        print(
            f"{path}: wall {rec['wall_s']} s, CPU {rec['cpu_s']} s, peak {rec['max_rss_mib']:.0f} MiB, "
            f"load {rec['load_average_start']} → {rec['load_average_end']}"
        )


if __name__ == "__main__":
    main()

"""Record one notebook run: its findings, the command, the machine, the threads, the load, time and memory.

    python benchmarks/_record_notebook.py notebooks/03_in_context_learning.ipynb benchmarks/records/ch03_quick.json

runs ``/usr/bin/time -v env OMP_NUM_THREADS=<threads> python -m papermill <notebook> <executed copy>
-p record_path <tmp.json>`` (the notebook writes its findings there: chapter 03's section 8), then writes the record:
the findings, the exact command, date, machine, threads, load average before and after, wall time, user + system
CPU seconds and the peak resident memory of the largest process (GNU time's "Maximum resident set size": the
notebook's kernel). A record is never overwritten unless ``--overwrite`` is given. Not a benchmark script (the
leading underscore keeps ``python -m benchmarks`` and ``tests/test_benchmarks.py`` from running it): it takes the
notebook's quick profile, minutes, not seconds. Defined for chapter 03's recorded run (issue 27 item 4).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pt_helpers.project import atomic_write_json  # noqa: E402

TIME_FIELDS = {  # GNU time -v label → record key
    "Elapsed (wall clock) time (h:mm:ss or m:ss)": "wall_s",
    "User time (seconds)": "user_s",
    "System time (seconds)": "sys_s",
    "Maximum resident set size (kbytes)": "max_rss_kb",
}


def parse_time_log(text: str) -> dict:
    """Wall, user and system seconds and the peak RSS from ``/usr/bin/time -v`` output."""
    out = {}
    for line in text.splitlines():
        label, _, value = line.strip().rpartition(": ")
        if label in TIME_FIELDS:
            if TIME_FIELDS[label] == "wall_s":  # h:mm:ss or m:ss(.ss)
                out["wall_s"] = sum(float(x) * 60**i for i, x in enumerate(reversed(value.split(":"))))
            else:
                out[TIME_FIELDS[label]] = float(value)
    missing = set(TIME_FIELDS.values()) - set(out)
    if missing:
        raise ValueError(f"/usr/bin/time -v output lacks {sorted(missing)}")
    out["cpu_s"] = out["user_s"] + out["sys_s"]
    out["max_rss_gb"] = out["max_rss_kb"] * 1024 / 1e9
    return out


def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    found = re.search(r"model name\s*:\s*(.+)", text)
    return found.group(1).strip() if found else "unknown"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebook")
    ap.add_argument("out")
    ap.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS for the run (default 1)")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing record")
    ap.add_argument("--executed", help="keep the executed notebook here (default: a temporary file, deleted)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        ap.error(f"{out} exists: pass --overwrite to replace it")
    with tempfile.TemporaryDirectory() as tmp:
        findings_file, executed, time_log = (Path(tmp) / n for n in ("findings.json", "run.ipynb", "time.txt"))
        executed = Path(args.executed).resolve() if args.executed else executed
        run = ["env", f"OMP_NUM_THREADS={args.threads}", sys.executable, "-m", "papermill", args.notebook]
        run += [str(executed), "-p", "record_path", str(findings_file)]
        load_before = os.getloadavg()
        started = dt.datetime.now(dt.timezone.utc)
        proc = subprocess.run(["/usr/bin/time", "-v", "-o", str(time_log), *run], cwd=ROOT)
        load_after = os.getloadavg()
        if proc.returncode != 0:
            print(f"the notebook run failed (exit {proc.returncode}); no record written", file=sys.stderr)
            return proc.returncode
        record = {
            "notebook": args.notebook,
            "command": shlex.join(["/usr/bin/time", "-v", *run[:-1], "<findings.json>"]),
            "date": started.strftime("%Y-%m-%d %H:%M UTC"),
            "machine": {"host_cpus": os.cpu_count(), "cpu": cpu_model(), "python": platform.python_version()},
            "threads": args.threads,
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in load_after],
            "resources": parse_time_log(time_log.read_text()),
            "findings": json.loads(findings_file.read_text()),
        }
    atomic_write_json(out, record, indent=1, ensure_ascii=False)
    res = record["resources"]
    print(f"wrote {out}: wall {res['wall_s']:.0f} s, CPU {res['cpu_s']:.0f} s, peak {res['max_rss_gb']:.2f} GB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Record one run of notebook 04 (its quick profile) as ``benchmarks/records/ch04_quick.json``.

Not a benchmark script (the leading underscore keeps ``python -m benchmarks`` and ``tests/test_benchmarks.py``
from running it, and the record has no ``device`` key, so the generated README table leaves it out). The
notebook prints one line ``FINDINGS {json}`` in its section 7; this script runs the notebook with papermill
under ``/usr/bin/time -v`` and keeps that line with how it was run: the command, date, machine, threads, load
average before and after, wall time, CPU time (user + sys) and peak resident memory. Chapter 04's prose quotes
this record, and ``tests/test_prose_numbers.py`` checks every quoted number against it.

    PYTHONPATH=. python benchmarks/_ch04_record.py            # writes benchmarks/records/ch04_quick.json
    PYTHONPATH=. python benchmarks/_ch04_record.py --out x.json --threads 2

The default is one thread (``OMP_NUM_THREADS=1``), the setting measured on the course's shared 2-core machine.
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
NOTEBOOK = ROOT / "notebooks" / "04_discrete_prompts.ipynb"
RECORD = ROOT / "benchmarks" / "records" / "ch04_quick.json"


def findings_of(executed: Path) -> dict:
    """The ``FINDINGS {json}`` line the executed notebook printed (its section 7)."""
    import nbformat

    nb = nbformat.read(executed, as_version=4)
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            for line in str(out.get("text", "")).splitlines():
                if line.startswith("FINDINGS "):
                    return json.loads(line[len("FINDINGS ") :])
    raise SystemExit(f"{executed}: no 'FINDINGS' line in the outputs (did section 7 run?)")


def time_v(stderr: str) -> dict:
    """Wall, CPU (user + sys) seconds and peak RSS from GNU time's ``-v`` report."""

    def field(name: str) -> str:
        m = re.search(rf"^\s*{re.escape(name)}: (.+)$", stderr, re.M)
        if not m:
            raise SystemExit(f"/usr/bin/time -v printed no {name!r}")
        return m.group(1).strip()

    parts = [float(p) for p in field("Elapsed (wall clock) time (h:mm:ss or m:ss)").split(":")]
    wall = sum(p * 60**i for i, p in enumerate(reversed(parts)))
    cpu = float(field("User time (seconds)")) + float(field("System time (seconds)"))
    return dict(
        wall_s=round(wall, 1),
        cpu_s=round(cpu, 1),
        max_rss_mib=round(int(field("Maximum resident set size (kbytes)")) / 1024),
    )


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(RECORD))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--keep", default=None, help="also keep the executed notebook here (to read its outputs)")
    args = p.parse_args(argv)
    out = Path(args.out)
    with tempfile.TemporaryDirectory() as tmp:
        executed = Path(tmp) / "04_executed.ipynb"
        cmd = ["/usr/bin/time", "-v", "env", f"OMP_NUM_THREADS={args.threads}", sys.executable, "-m", "papermill"]
        cmd += [str(NOTEBOOK.relative_to(ROOT)), str(executed), "-p", "profile", "quick"]
        load_start = list(os.getloadavg())
        date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        load_end = list(os.getloadavg())
        if args.keep and executed.exists():
            Path(args.keep).write_bytes(executed.read_bytes())
        if run.returncode != 0:
            sys.stderr.write(run.stderr[-4000:])
            raise SystemExit(f"the notebook run failed (exit {run.returncode})")
        findings = findings_of(executed)
    import torch

    record = dict(
        notebook="notebooks/04_discrete_prompts.ipynb",
        profile="quick",
        command=shlex.join([*cmd[:4], "python", *cmd[5:8], "OUT.ipynb", *cmd[9:]]),
        env={k: os.environ.get(k) for k in ("PT_RANDOM_FALLBACK", "HF_HUB_OFFLINE", "PT_MODELS_DIR")},
        date=date,
        machine=dict(
            host=platform.node(), cpus=os.cpu_count(), python=platform.python_version(), torch=torch.__version__
        ),
        threads=args.threads,
        load_average_start=[round(x, 2) for x in load_start],
        load_average_end=[round(x, 2) for x in load_end],
        **time_v(run.stderr),
        findings=findings,
    )
    tmp_out = out.with_suffix(".tmp")
    tmp_out.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp_out.replace(out)  # atomic: a reader never sees half a record
    print(f"wrote {out}: wall {record['wall_s']} s, CPU {record['cpu_s']} s, peak RSS {record['max_rss_mib']} MiB")


if __name__ == "__main__":
    main()

"""Record a chapter's quick-profile run: time, memory, load, and the numbers its ``findings`` cell printed.

    python benchmarks/_notebook_record.py 01 02            # writes benchmarks/records/ch01_quick.json, ch02_quick.json
    python benchmarks/_notebook_record.py 01 --replace     # an existing record is replaced only when asked

Each notebook runs once with papermill (``-p profile quick``) under ``/usr/bin/time -v`` at ``--threads``
threads (``OMP_NUM_THREADS``), with results written to a temporary folder. The record holds the command, the
date, the machine, the threads, the load average before and after, wall and CPU seconds (user + system, the
kernel included: papermill reaps it), the peak resident memory, and the JSON that the notebook's cell tagged
``findings`` printed (none for a chapter without one). Prose that quotes a number of the run is checked
against this file (``tests/test_prose_numbers_ch0102.py``). The script starts with ``_`` so that
``python -m benchmarks`` does not take it for a benchmark.
"""

from __future__ import annotations

import argparse
import datetime
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


def _time_v(stderr: str) -> dict:
    """wall, CPU seconds and peak RSS from GNU time's ``-v`` report."""

    def field(name: str) -> str:
        match = re.search(rf"^\s*{re.escape(name)}: (.+)$", stderr, re.M)
        if not match:
            raise SystemExit(f"/usr/bin/time -v printed no {name!r}: is GNU time installed?")
        return match.group(1).strip()

    parts = [float(x) for x in field("Elapsed (wall clock) time (h:mm:ss or m:ss)").split(":")]
    wall = sum(x * 60**i for i, x in enumerate(reversed(parts)))
    cpu = float(field("User time (seconds)")) + float(field("System time (seconds)"))
    return dict(
        wall_s=round(wall, 1),
        cpu_s=round(cpu, 1),
        max_rss_mb=round(int(field("Maximum resident set size (kbytes)")) / 1024),
    )


def _findings(executed: Path) -> dict | None:
    nb = nbformat.read(executed, as_version=4)
    cells = [c for c in nb.cells if "findings" in c.get("metadata", {}).get("tags", [])]
    if not cells:
        return None
    text = "".join(o.get("text", "") for o in cells[0].outputs if o.get("output_type") == "stream")
    start = text.index("{")
    return json.JSONDecoder().raw_decode(text[start:])[0]  # the JSON object the cell printed first


def _machine() -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"^model name\s*: (.+)$", cpuinfo, re.M)
    return dict(
        platform=platform.platform(), cpu=model.group(1) if model else platform.processor(), cores=os.cpu_count()
    )


def record(stem: str, threads: int, replace: bool) -> Path:
    (notebook,) = (ROOT / "notebooks").glob(f"{stem}_*.ipynb")
    target = RECORDS / f"ch{stem}_quick.json"
    if target.exists() and not replace:
        raise SystemExit(f"{target} exists: pass --replace to replace the recorded run")
    with tempfile.TemporaryDirectory() as tmp:
        executed = Path(tmp) / notebook.name
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), PT_RESULTS_DIR=str(Path(tmp) / "results"))
        cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "papermill", str(notebook.relative_to(ROOT)), str(executed)]
        cmd += ["-p", "profile", "quick", "--cwd", "notebooks"]
        load_before = os.getloadavg()
        proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
        load_after = os.getloadavg()
        if proc.returncode:
            raise SystemExit(f"{notebook.name} failed:\n{proc.stderr[-4000:]}")
        rec = dict(
            notebook=notebook.name,
            command=f"OMP_NUM_THREADS={threads} " + shlex.join(["papermill", cmd[5], "OUT.ipynb", *cmd[7:]]),
            recorded_by="python benchmarks/_notebook_record.py " + stem,
            date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            machine=_machine(),
            threads=threads,
            env={k: os.environ[k] for k in ENV_KEYS if k in os.environ},
            load_average_before=[round(x, 2) for x in load_before],
            load_average_after=[round(x, 2) for x in load_after],
            **_time_v(proc.stderr),
            findings=_findings(executed),
        )
    return atomic_write_json(target, rec, indent=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("chapters", nargs="+", help="two-digit chapter numbers, e.g. 01 02")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--replace", action="store_true", help="replace an existing record")
    args = ap.parse_args()
    for stem in args.chapters:
        path = record(stem, args.threads, args.replace)
        rec = json.loads(path.read_text())
        print(
            f"{path}: wall {rec['wall_s']} s, CPU {rec['cpu_s']} s, peak {rec['max_rss_mb']} MB, "
            f"load {rec['load_average_after']}"
        )


if __name__ == "__main__":
    main()

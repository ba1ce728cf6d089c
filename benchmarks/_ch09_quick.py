"""Record chapter 09's quick profile: its time and memory, and its chain-of-thought findings.

    python benchmarks/_ch09_quick.py --threads 1            # writes benchmarks/records/ch09_quick.json
    python benchmarks/_ch09_quick.py --threads 2 --overwrite

Runs ``notebooks/09_instruction_tuned_llms.ipynb`` with papermill (``-p profile quick``) under
``/usr/bin/time -v env OMP_NUM_THREADS=<threads>``, with one cell appended that prints
``chat.ReasoningRun.summary()`` of section 6, and records: the command, date, machine, threads, load average
before and after, wall time, user + system CPU seconds, maximum resident set size (of the largest process:
the notebook's kernel) and the findings. ``tests/test_prose_numbers_ch09.py`` checks that notebook 09's prose
quotes this record exactly. Not a ``python -m benchmarks`` script (its name starts with ``_``): it runs a whole
notebook, minutes, not a seconds-long smoke setting. The record has no ``device`` key, so the benchmark table
of ``benchmarks/README.md`` does not read it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "09_instruction_tuned_llms.ipynb"
RECORD = ROOT / "benchmarks" / "records" / "ch09_quick.json"
MARK = "CH09_FINDINGS "
FINDINGS_CELL = (
    "import json\n"
    f"print({MARK!r} + json.dumps(reasoning.summary() | dict(settings=settings, model=loaded.name, "
    "pretrained=loaded.is_pretrained, storage=loaded.storage)))"
)
TIME_FIELDS = {
    "wall": r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)",
    "user": r"User time \(seconds\): ([\d.]+)",
    "sys": r"System time \(seconds\): ([\d.]+)",
    "max_rss_kb": r"Maximum resident set size \(kbytes\): (\d+)",
}


def _seconds(clock: str) -> float:
    """``h:mm:ss`` or ``m:ss.ss`` as seconds."""
    total = 0.0
    for part in clock.split(":"):
        total = total * 60 + float(part)
    return total


def parse_time_v(stderr: str) -> dict[str, float]:
    """Wall, user and system seconds and max RSS (MB) from ``/usr/bin/time -v``'s report."""
    found = {}
    for key, pattern in TIME_FIELDS.items():
        m = re.search(pattern, stderr)
        if m is None:
            raise RuntimeError(f"/usr/bin/time -v printed no {key!r} line; its stderr ends: {stderr[-2000:]}")
        found[key] = m.group(1)
    return dict(
        wall_s=round(_seconds(found["wall"]), 1),
        cpu_user_s=float(found["user"]),
        cpu_sys_s=float(found["sys"]),
        max_rss_mb=round(int(found["max_rss_kb"]) / 1024, 1),
    )


def findings(executed: Path) -> dict:
    """The summary the appended cell printed."""
    nb = nbformat.read(executed, as_version=4)
    for out in nb.cells[-1].get("outputs", []):
        for line in out.get("text", "").splitlines():
            if line.startswith(MARK):
                return json.loads(line[len(MARK) :])
    raise RuntimeError(f"the appended cell printed no line starting with {MARK!r}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS for the notebook's kernel")
    ap.add_argument("--out", type=Path, default=RECORD)
    ap.add_argument("--overwrite", action="store_true", help="replace an existing record")
    args = ap.parse_args(argv)
    if args.out.exists() and not args.overwrite:
        print(f"{args.out} exists: pass --overwrite to replace it (or --out elsewhere)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        nb = nbformat.read(NOTEBOOK, as_version=4)
        nb.cells.append(nbformat.v4.new_code_cell(FINDINGS_CELL))
        src, dst = Path(tmp) / "in.ipynb", Path(tmp) / "out.ipynb"
        nbformat.write(nb, src)
        papermill = [sys.executable, "-m", "papermill", str(src), str(dst), "-p", "profile", "quick", "-k", "python3"]
        cmd = ["/usr/bin/time", "-v", "env", f"OMP_NUM_THREADS={args.threads}", *papermill]
        load_start, date = os.getloadavg(), time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        done = subprocess.run(cmd, cwd=ROOT / "notebooks", capture_output=True, text=True)
        load_end = os.getloadavg()
        if done.returncode != 0:
            print(done.stderr[-4000:], file=sys.stderr)
            return done.returncode
        record = dict(
            notebook=NOTEBOOK.name,
            command=" ".join(
                [
                    "/usr/bin/time",
                    "-v",
                    "env",
                    f"OMP_NUM_THREADS={args.threads}",
                    "python",
                    "-m",
                    "papermill",
                    NOTEBOOK.name,
                    "out.ipynb",
                    "-p",
                    "profile",
                    "quick",
                ]
            ),  # fmt: skip
            date=date,
            machine=dict(host=platform.node(), cpus=os.cpu_count(), platform=platform.platform()),
            threads=args.threads,
            load_average_start=[round(x, 2) for x in load_start],
            load_average_end=[round(x, 2) for x in load_end],
            **parse_time_v(done.stderr),
            findings=findings(dst),
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    part = args.out.with_suffix(".json.part")
    part.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    os.replace(part, args.out)  # atomic: a reader sees the old record or the new one
    print(json.dumps({k: v for k, v in record.items() if k != "findings"}, indent=1))
    print(json.dumps(record["findings"]["arms"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

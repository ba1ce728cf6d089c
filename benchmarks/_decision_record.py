"""Record chapter 06's comparison at the recorded profile (``comparison.RECORDED_BUDGET``), a piece at a time.

    OMP_NUM_THREADS=1 python benchmarks/_decision_record.py --task sst2                  # every method, in order
    OMP_NUM_THREADS=1 python benchmarks/_decision_record.py --task sst2 --methods "linear probe" LoRA
    python benchmarks/_decision_record.py --readme   # prints benchmarks/README.md's last section from the records

Each finished training run is kept as one small JSON file in ``benchmarks/records/ch06_recorded/<task>/``
(``comparison.RunStore``): a later call with the same budget reads the finished runs back and trains only the
rest, so the runs can be spread over several sessions (commit the folder after each). The zero-shot row is
``zero_shot.json``; ``sessions/`` logs every call, one file each (date, threads, load average before and after,
what was trained and what was read back). Chapters 05, 06 and 08 print their recorded tables from these files
(``comparison.recorded_rows``); the tests in ``tests/test_prose_numbers_ch0568.py`` check the prose against them.
The script starts with ``_`` so that ``python -m benchmarks`` does not take it for a benchmark.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from pt_helpers import comparison  # noqa: E402
from pt_helpers.data import task_info, task_splits  # noqa: E402
from pt_helpers.project import atomic_write_json  # noqa: E402

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
TASKS = ("sst2", "trec")
TITLES = {"sst2": "SST-2 dev", "trec": "TREC test"}
# The README's columns of comparison_table (time and memory were measured on a shared machine: the notebook shows them)
COLUMNS = ("chosen on the selection split", "trained params", "best step / steps", "n", "accuracy, seed 0 [95% Wilson]",
           "mean over seeds", "compared with", "paired test (first seed)", "Δ over seeds")  # fmt: skip


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=TASKS)
    parser.add_argument("--readme", action="store_true", help="print the README section from the records and stop")
    parser.add_argument("--methods", nargs="+", default=list(comparison.RECORDED_ORDER),
                        help="rows of comparison.COMPARED, trained in this order")  # fmt: skip
    parser.add_argument("--out", default=str(ROOT / comparison.RECORDED_DIR), help="the record folder")
    args = parser.parse_args(argv)
    if args.readme:
        print(readme_section(Path(args.out)), end="")
        return 0
    if args.task is None:
        parser.error("--task is required (sst2 or trec), or --readme")
    unknown = [m for m in args.methods if m not in comparison.COMPARED]
    if unknown:
        parser.error(f"--methods {unknown}: choose from {list(comparison.COMPARED)}")
    import torch

    from pt_helpers.models import load_model

    threads = os.environ.get("OMP_NUM_THREADS")
    torch.set_num_threads(int(threads) if threads else torch.get_num_threads())
    budget, info = comparison.RECORDED_BUDGET, task_info(args.task)
    folder = Path(args.out) / args.task
    folder.mkdir(parents=True, exist_ok=True)
    encoder = load_model(MODEL, "encoder", device="cpu")
    splits = task_splits(args.task, budget["select_size"], budget["train_size"])
    train, select, evaluation = (splits.texts_labels(part) for part in ("train", "select", "eval"))
    data = (encoder.model, encoder.tokenizer, info.label_sentences, train, select, evaluation)
    session = dict(task=args.task, methods=args.methods, threads=threads, budget=budget,
                   command="OMP_NUM_THREADS=1 python benchmarks/_decision_record.py " + shlex.join(sys.argv[1:]),
                   start=_now(), load_average_start=list(os.getloadavg()), done={})  # fmt: skip
    zero = folder / "zero_shot.json"
    if not zero.is_file():
        (row,) = comparison.zero_shot_rows(encoder.model, encoder.tokenizer, info.label_sentences, evaluation)
        atomic_write_json(zero, dict(model=comparison.model_label(encoder), row=row), default=comparison._plain)
    for method in args.methods:
        start, cpu = time.perf_counter(), time.process_time()
        options = comparison.recorded_options(budget, method, info.init_text)
        rows = comparison.run_method(method, *data, run_dir=folder, progress=False, **options)
        session["done"][method] = dict(
            trained=sum(not r["resumed"] for r in rows), read_back=sum(r["resumed"] for r in rows),
            wall_s=round(time.perf_counter() - start, 1), cpu_s=round(time.process_time() - cpu, 1),
        )  # fmt: skip
        print(method, session["done"][method], flush=True)
        _log(folder, session | dict(end=_now(), load_average_end=list(os.getloadavg())))
    return 0


def readme_section(out: Path) -> str:
    """The last section of benchmarks/README.md, generated from the records in ``out`` (a test compares them)."""
    budget = comparison.RECORDED_BUDGET
    lines = [
        "## Recorded decision results",
        "",
        "Chapter 06's comparison (and the rows chapter 05 reads from it) at the recorded profile, on the real frozen",
        "all-MiniLM-L6-v2 (22.7 M parameters) with the label-sentence head. Generated from",
        f"`{comparison.RECORDED_DIR}/` by `python benchmarks/_decision_record.py --readme`;",
        "`tests/test_prose_numbers_ch0568.py` fails when this section differs from the records. The notebooks print",
        "the same tables from the same files (`comparison.recorded_table`). To reproduce or continue (each call trains",
        "only the runs not recorded yet; commit the folder after each):",
        "",
        "```bash",
        *(f"OMP_NUM_THREADS=1 python benchmarks/_decision_record.py --task {t}" for t in TASKS),
        "```",
        "",
        f"Budget (`comparison.RECORDED_BUDGET`): {comparison.budget_words(budget)}.",
        "Each row: the lr (probe: C) chosen on the selection split with seed 0, Wilson's 95 % interval for seed 0,",
        "the mean over the seeds recorded with its 95 % t-interval, McNemar's exact paired test against the partner",
        "(seed 0, same examples) and the t-interval of the per-seed differences (Δ over seeds). The ranking rule",
        "is the paired test: Δ over seeds measures only the training noise on these fixed examples (it says nothing",
        "about other examples), so where it excludes 0 and the paired test does not, the two are not ranked.",
    ]
    for task in TASKS:
        folder = out / task
        n_params = _n_parameters(folder)
        header, table, missing = comparison.recorded_table(folder, n_params or 1)
        lines += ["", f"### {TITLES[task]}", "", header.replace("\n", "  \n"), ""]
        if table is None:
            lines.append("Nothing trained is recorded yet for this task.")
            continue
        lines += ["| method | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
        for method, row in table.iterrows():
            lines.append(f"| {method} | " + " | ".join(_cell(row[c]) for c in COLUMNS) + " |")
        lines += ["", "The questions, paired on the same examples (seed 0; Δ over the seeds recorded):", ""]
        lines += ["| question | asked in | paired test (seed 0) | Δ over seeds |", "|---|---|---|---|"]
        for (a, b), where in QUESTIONS.items():
            trained = tuple(m for m in (a, b) if m != "zero-shot")  # zero-shot's row is always read
            _, pair, _ = comparison.recorded_table(folder, n_params or 1, trained, compared_with={a: b})
            done = pair is not None and a in pair.index and pair.loc[a, "compared with"] == b
            test = (_cell(pair.loc[a, "paired test (first seed)"]), _cell(pair.loc[a, "Δ over seeds"])) if done else (
                "not run yet", "—")  # fmt: skip
            lines.append(f"| {a} − {b} | {where} | {test[0]} | {test[1]} |")
        lines += ["", "Calls so far: " + "; ".join(_sessions(folder))]
    return "\n".join(lines + ["", *CLOSING]) + "\n"


# The paired questions the chapters ask of the record: (A, B) → where; the README prints A − B for each.
QUESTIONS = {
    ("soft prompt", "zero-shot"): "05 (does the plain prompt learn anything?)",
    ("soft prompt", "linear probe"): "05 (the prompt's numbers at the input vs the probe's on the output)",
    ("soft prompt + pooled states", "soft prompt"): "05, 06 (what pooling the prompt's states adds)",
    ("full fine-tuning", "soft prompt"): "05 (the upper reference)",
    ("P-tuning", "soft prompt"): "08 §1, 06 (what the prompt encoder adds)",
    ("deep prompt", "full fine-tuning"): "06 (P-Tuning v2's claim, at 22.7 M)",
    ("soft prompt", "deep prompt"): "06 (what prompts at every layer add)",
    ("deep prompt + MLP", "deep prompt"): "06 (the reparameterisation)",
    ("LoRA", "full fine-tuning"): "06",
}

CLOSING = (
    "**Cost.** 60 training runs (per task: 7 methods × (2 sweep values + 2 more seeds), the probe's 2 values) plus",
    "zero-shot. Estimated at about 2.5 hours of one-thread CPU: ≈ 150 s per run (100 steps at 0.75 s per step for",
    "the deep prompt to 3 s for LoRA, measured at one thread on this 2-core machine at load average 1.3 rising to",
    "12.9, plus four 200-example selection checks and the evaluation); an estimate, not a measured total — the",
    "calls above say what each call actually trained and under which load (a call stopped before a method finished",
    "keeps that method's finished runs but logs nothing of them).",
    "",
    "**What it cannot show.** P-Tuning v2's finding that a deep prompt comes close to fine-tuning is made for",
    "models of 330 M to 10 B parameters (Liu et al. 2022, §4.2 and Fig. 1) trained far longer; MiniLM has 22.7 M,",
    "below that whole range, at 100 steps. Lester et al. (2021, §3.1 and Fig. 1) find prompt tuning trailing model",
    "tuning at small sizes. These tables say what the methods do on a 22.7 M encoder at this budget, nothing more.",
    "",
    "**Not run yet** (besides the runs listed above as missing): chapter 05's MLP probe at this budget; chapter 08's",
    "questions at a recorded budget — P-tuning vs the plain prompt is the P-tuning row above (SST-2 and TREC), but",
    "the ensemble vs its best member, the transfer RTE → CB and the depth curve have no recorded run; chapter 07's",
    "per-example short → long interaction.",
)


def _cell(value) -> str:
    return (f"{value:,}" if isinstance(value, int) else str(value)).replace("|", "\\|")


def _n_parameters(folder: Path) -> int | None:
    for path in sorted(folder.glob("*-seed*.json")):
        return json.loads(path.read_text())["settings"]["model"].get("n_parameters")
    return None


def _sessions(folder: Path) -> list[str]:
    """One phrase per recording call: date, threads, load average at its start and end, what it trained."""
    out = []
    for path in sorted((folder / "sessions").glob("*.json")):
        s = json.loads(path.read_text())
        done = ", ".join(f"{m} ({d['trained']} table rows trained, {d['read_back']} read back)"
                         for m, d in s["done"].items()) or "nothing finished yet"  # fmt: skip
        start, end = (
            "/".join(f"{x:.1f}" for x in s.get(key) or []) or "—" for key in ("load_average_start", "load_average_end")
        )
        out.append(f"{s['start']} (OMP_NUM_THREADS={s['threads']}, load average {start} → {end}): {done}")
    return out or ["none logged"]


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _log(folder: Path, session: dict) -> None:
    """This call's log, ``sessions/<start>-<pid>.json`` (one file per call: two calls may run side by side)."""
    stamp = session["start"].replace(":", "").replace("+0000", "Z")
    atomic_write_json(folder / "sessions" / f"{stamp}-{os.getpid()}.json", session)


if __name__ == "__main__":
    raise SystemExit(main())

"""Record chapter 06's comparison at the recorded profile (``comparison.RECORDED_BUDGET``), a piece at a time.

    OMP_NUM_THREADS=1 python benchmarks/_decision_record.py --task sst2                  # every method, in order
    OMP_NUM_THREADS=1 python benchmarks/_decision_record.py --task sst2 --methods "linear probe" LoRA

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
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from pt_helpers import comparison  # noqa: E402
from pt_helpers.data import task_info, task_splits  # noqa: E402
from pt_helpers.project import atomic_write_json  # noqa: E402

MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=("sst2", "trec"), required=True)
    parser.add_argument("--methods", nargs="+", default=list(comparison.RECORDED_ORDER),
                        help="rows of comparison.COMPARED, trained in this order")  # fmt: skip
    parser.add_argument("--out", default=str(ROOT / comparison.RECORDED_DIR), help="the record folder")
    args = parser.parse_args(argv)
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
                   command="OMP_NUM_THREADS=1 python benchmarks/_decision_record.py " + " ".join(sys.argv[1:]),
                   start=_now(), load_average_start=list(os.getloadavg()), done={})  # fmt: skip
    zero = folder / "zero_shot.json"
    if not zero.is_file():
        (row,) = comparison.zero_shot_rows(encoder.model, encoder.tokenizer, info.label_sentences, evaluation)
        atomic_write_json(zero, dict(model=comparison.model_label(encoder), row=row), default=comparison._plain)
    for method in args.methods:
        start = time.perf_counter()
        options = comparison.recorded_options(budget, method, info.init_text)
        rows = comparison.run_method(method, *data, run_dir=folder, progress=False, **options)
        session["done"][method] = dict(
            trained=sum(not r["resumed"] for r in rows), read_back=sum(r["resumed"] for r in rows),
            wall_s=round(time.perf_counter() - start, 1),
        )  # fmt: skip
        print(method, session["done"][method], flush=True)
        _log(folder, session | dict(end=_now(), load_average_end=list(os.getloadavg())))
    return 0


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _log(folder: Path, session: dict) -> None:
    """This call's log, ``sessions/<start>-<pid>.json`` (one file per call: two calls may run side by side)."""
    stamp = session["start"].replace(":", "").replace("+0000", "Z")
    atomic_write_json(folder / "sessions" / f"{stamp}-{os.getpid()}.json", session)


if __name__ == "__main__":
    raise SystemExit(main())

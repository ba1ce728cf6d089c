"""Benchmark: mixed-task serving — one batch whose rows read different tasks' prompts vs one pass per task.

``pt_helpers.serving.MultiTaskServer`` serves three tasks (SST-2, TREC, AG News) on ONE frozen model; each
task has its own input-layer soft prompt (n virtual tokens) and its own label-word head, built as
``tests/test_serving.py`` builds a GPT-2 server (``classifiers.classifier_for``: each task's label words and
template from ``TaskInfo``). A seeded
stream of ``--rows`` requests, the three tasks in equal parts in shuffled order, arrives in windows of
``--batch-size`` rows (the requests a server holds at once). Three ways to serve it:

- ``mixed``: ``server.predict`` — the window's rows in any task order; the K task prompts run once as a
  batch-K key/value cache and row b attends to its own task's cached prompt (``MixedPrompts`` with
  ``share_prompt_cache=True``), the rows cut by length (not by task) into as many sub-batches as tasks
  present (``serving.length_chunks``: K·n + Σ b·t positions per window).
- ``mixed_concat``: the same server built with ``share_prompt_cache=False`` — each row carries its own
  task's prompt, concatenated as PEFT does, no length sort: ONE model call of B·(n+T) positions per window
  (the design measured at 0.41× per-task serving before the row cache existed).
- ``per_task``: ``server.predict_alone`` on each window — one pass per task present in the window (each
  task's own ``PromptClassifier``, its prompt run once as a shared key/value cache: n + b·T positions,
  plus that batch-1 prompt call).
- ``regrouped``: ``server.predict_alone`` on the whole stream at once — every task's rows regrouped into
  its own batches of ``--batch-size`` (possible only when the whole backlog is there before serving).

The predictions of all three must be identical (checked; float32 on the CPU) and the class logits of the
first window agree within round-off (checked); rows per second, forward passes, model calls and token
positions of each are recorded. Model: GPT-2-small-sized (12 layers × 768), RANDOM weights — speed does
not depend on the weights, and the predictions are meaningless as answers (no accuracy is reported); the
tokenizer (GPT-2's) and the texts (SST-2 dev, TREC test, AG News test) are real. ``--model NAME`` serves a
real model instead (e.g. HuggingFaceTB/SmolLM2-135M-Instruct: grouped-query attention, 30 × 576), with
its own tokenizer. Interleaved (mixed,
per_task, regrouped, …) after one warm-up of each on the first window; medians of ``--repeats``.

What to expect: concatenation makes fewer passes but runs more positions — B·n prompt positions per
window where each task's own classifier runs its prompt once per batch as a cache (n), and every row padded
to the window's longest (often an AG News article). The row cache runs K·n prompt positions per window (all
K prompts, once), and its length cut pads no more than the task cut does (the task cut is one of the
groupings the length cut minimises over), so its positions are at most per-task serving's plus
(K − tasks present)·n, in one model call fewer per window. The record counts positions and padded slots
(``input_slots``); where time follows positions (a CPU) they decide the ratio.

    python benchmarks/mixed_serving.py --threads 1                 # 192 rows, windows of 32, n = 20
    python benchmarks/mixed_serving.py --threads 1 --model HuggingFaceTB/SmolLM2-135M-Instruct

Writes benchmarks/records/mixed_serving.json (``--out``): one record per (device, threads, setting).
"""

from __future__ import annotations

import argparse

import _common as C
import numpy as np
import torch

from pt_helpers.classifiers import autocast_for, classifier_for
from pt_helpers.data import load_task, subsample, task_info
from pt_helpers.device import get_device, seed_everything
from pt_helpers.frozen import freeze
from pt_helpers.serving import MultiTaskServer, length_chunks
from pt_helpers.soft_prompt import make_prompt

# A seconds-long setting that tests/test_benchmarks.py runs, so a rename in the package can never break this script.
SMOKE_ARGS = ["--rows", "9", "--batch-size", "4", "--n", "2", "--repeats", "1"]
SMOKE_ARGS += ["--n-layer", "1", "--n-embd", "32", "--n-head", "2", "--device", "cpu", "--threads", "1"]

TASKS = ("sst2", "trec", "agnews")
MAX_LENGTH = 128  # classifier_for's default; AG News articles are cut there (the same cut on every side)


def build_server(model, tokenizer, n: int, share_prompt_cache: bool = True, sort_by_length: bool = True):
    """Each task: its own soft prompt (vocabulary init, its own seed) and its own label-word head, one model."""
    clfs = {}
    for seed, task in enumerate(TASKS):
        prompt = make_prompt(model, tokenizer, n, "vocab", seed=seed)
        clfs[task] = classifier_for(model, tokenizer, task, prompt, max_length=MAX_LENGTH)
    return MultiTaskServer(clfs, share_prompt_cache=share_prompt_cache, sort_by_length=sort_by_length)


def request_stream(rows: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """``rows`` real texts, the tasks in equal parts (remainder to the first), in a seeded shuffled order."""
    counts = [rows // len(TASKS) + (k < rows % len(TASKS)) for k in range(len(TASKS))]
    texts, tasks = [], []
    for task, count in zip(TASKS, counts):
        ds = subsample(load_task(task, task_info(task).eval_split), count, seed=seed)
        texts += list(ds["text"])
        tasks += [task] * len(ds)
    order = np.random.default_rng(seed).permutation(len(texts))
    return [texts[i] for i in order], [tasks[i] for i in order]


def windows(texts, tasks, batch_size: int) -> list[tuple[list[str], list[str]]]:
    return [(texts[i : i + batch_size], tasks[i : i + batch_size]) for i in range(0, len(texts), batch_size)]


def counts(server: MultiTaskServer, texts, tasks, batch_size: int) -> dict[str, dict]:
    """Forward passes over real rows, model calls and token positions each side runs through the model,
    from the actual tokenization (the engines' rules: the row cache, one batch-K call of K·n positions +
    B·T, for the mixed batch; concatenation B·(n+T) for ``mixed_concat``; a shared prompt cache, one batch-1
    call of n positions + b·T, for each task's own classifier). ``input_slots``: B·T of the padded inputs,
    real tokens and padding (the real tokens are the same on every side)."""
    n, K = server.mixed.n_virtual_tokens, len(server.tasks)
    sides = ("mixed", "mixed_concat", "per_task", "regrouped")
    out = {s: dict(passes=0, model_calls=0, positions=0, input_slots=0) for s in sides}

    def alone(side: str, sub_texts, sub_tasks) -> None:
        for task in server.tasks:
            rows = [x for x, t in zip(sub_texts, sub_tasks) if t == task]
            clf = server.classifiers[task]
            for i in range(0, len(rows), batch_size):
                ids, _ = clf.tokenize(rows[i : i + batch_size])
                b, t = ids.shape
                shared = clf.prompted.share_prompt_cache
                c = out[side]
                c["passes"] += 1
                c["model_calls"] += 2 if shared else 1
                c["positions"] += (n + b * t) if shared else b * (n + t)
                c["input_slots"] += b * t

    for w_texts, w_tasks in windows(texts, tasks, batch_size):
        ids, _ = server.tokenize(w_texts, w_tasks)
        b, t = ids.shape
        c = out["mixed_concat"]
        c["passes"] += 1
        c["model_calls"] += 1
        c["positions"] += b * (n + t)
        c["input_slots"] += b * t
        lengths = [len(x) for x in server._encode(w_texts, w_tasks)]
        chunks = length_chunks(lengths, len(set(w_tasks))) if server.sort_by_length else [list(range(b))]
        slots = sum(len(g) * max(lengths[i] for i in g) for g in chunks)
        c = out["mixed"]
        c["passes"] += len(chunks)
        c["model_calls"] += 1 + len(chunks)  # the K prompts once, then each length chunk
        c["positions"] += K * n + slots
        c["input_slots"] += slots
        alone("per_task", w_texts, w_tasks)
    alone("regrouped", texts, tasks)
    return out


@torch.no_grad()
def logits_agreement(server: MultiTaskServer, texts, tasks, device) -> dict:
    """Class logits of one window: mixed (one pass) vs each task's classifier on its own rows."""
    mixed = server.logits(texts, tasks)
    worst, scale = 0.0, 1.0
    for task, clf in server.classifiers.items():
        idx = [i for i, t in enumerate(tasks) if t == task]
        if not idx:
            continue
        with autocast_for(device):
            alone = clf(*clf.tokenize([texts[i] for i in idx])).float().cpu()
        got = torch.stack([mixed[i] for i in idx])
        worst = max(worst, (got - alone).abs().max().item())
        scale = max(scale, alone.abs().max().item())
    # The same function, two paddings and two engines (prompt concatenated vs shared cache): float32
    # round-off relative to the logits' magnitude; bf16 autocast (CUDA) keeps about 3 significant digits.
    rel = 1e-4 if device.type == "cpu" else 3e-2
    return dict(max_abs_diff=worst, tolerance=rel * scale, within=worst <= rel * scale)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=192, help="requests in the stream (tasks in equal parts)")
    parser.add_argument("--batch-size", type=int, default=32, help="rows a server holds at once (a window)")
    parser.add_argument("--n", type=int, default=20, help="virtual tokens of every task's prompt")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each side, interleaved; medians")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if present)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (set OMP_NUM_THREADS the same)")
    C.add_model_args(parser)
    parser.add_argument("--out", default=None, help="JSON file (default: benchmarks/records/mixed_serving.json)")
    args = parser.parse_args(argv)
    if args.rows < 1 or args.batch_size < 1 or args.n < 1:
        parser.error("--rows, --batch-size and --n must be ≥ 1")
    C.set_threads(args.threads)
    seed_everything(0)
    device = get_device(args.device)
    env = C.environment(device)  # before the work: its load average is the one at the start
    model, tokenizer, label = C.build_model(args, device)
    model = freeze(model)
    if args.model:
        label += "; speed only, no accuracy reported"
    else:
        label += (
            " (speed does not depend on the weights; real GPT-2 tokenizer, real SST-2 / TREC / AG News texts; "
            "predictions meaningless as answers, no accuracy)"
        )
    server = build_server(model, tokenizer, args.n)
    # the design before the row cache: one pass per window, the prompt concatenated to every row (same prompts)
    concat = build_server(model, tokenizer, args.n, share_prompt_cache=False, sort_by_length=False)
    texts, tasks = request_stream(args.rows)
    B = args.batch_size
    wins = windows(texts, tasks, B)

    agreement = logits_agreement(server, *wins[0], device)
    if not agreement["within"]:
        raise RuntimeError(f"mixed and per-task logits differ: {agreement}")
    sides = {
        "mixed": lambda: server.predict(texts, tasks, B),
        "mixed_concat": lambda: concat.predict(texts, tasks, B),
        "per_task": lambda: np.concatenate([server.predict_alone(x, t, B) for x, t in wins]),
        "regrouped": lambda: server.predict_alone(texts, tasks, B),
    }
    first = {
        "mixed": lambda: server.predict(*wins[0], B),
        "mixed_concat": lambda: concat.predict(*wins[0], B),
        "per_task": lambda: server.predict_alone(*wins[0], B),
        "regrouped": lambda: server.predict_alone(*wins[0], B),
    }
    times, preds = C.interleaved(sides, args.repeats, device, warmups=first)
    differ = {s: int((preds[s] != preds["mixed"]).sum()) for s in ("mixed_concat", "per_task", "regrouped")}
    identical = not any(differ.values())
    if not identical and device.type == "cpu":  # float32: any flip is a bug, not round-off
        raise RuntimeError(f"predictions differ from the mixed batch's in {differ} rows (of {len(texts)})")

    work = counts(server, texts, tasks, B)
    per_s = {s: len(texts) / times[s]["wall_s"] for s in sides}
    rec = dict(
        script="benchmarks/mixed_serving.py",
        comparison="mixed-task serving: one batch, each row its own task's prompt (MultiTaskServer.predict, "
        "row cache; and concatenated per row) vs one pass per task (predict_alone)",
        **env,
        model=label,
        settings=dict(
            rows=len(texts),
            batch_size=B,
            n=args.n,
            tasks=list(TASKS),
            rows_per_task={t: tasks.count(t) for t in TASKS},
            windows=len(wins),
            max_length=MAX_LENGTH,
            amp=device.type == "cuda",
            per_task_engine="PromptClassifier, share_prompt_cache=True (prompt run once per batch as a cache)",
            mixed_engine="MixedPrompts in PromptedModel, share_prompt_cache=True (K prompts once, row cache)",
            mixed_concat_engine="MixedPrompts in PromptedModel, share_prompt_cache=False (prompt concatenated per row)",
        ),
        settings_repeats=args.repeats,
        variant=C.model_variant(f"rows={len(texts)}, B={B}, n={args.n}", args),
        times=times,
        rows_per_s=per_s,
        speedup=dict(
            vs_per_task=times["per_task"]["wall_s"] / times["mixed"]["wall_s"],
            vs_concat=times["mixed_concat"]["wall_s"] / times["mixed"]["wall_s"],
            vs_regrouped=times["regrouped"]["wall_s"] / times["mixed"]["wall_s"],
        ),
        work=work,
        agreement=dict(logits_first_window=agreement, rows_differing=differ, predictions_identical=identical),
        complete=True,
    )
    C.write_record(C.out_path(args.out, "mixed_serving"), rec)
    for s in sides:
        w = work[s]
        print(
            f"{s:12s}: {times[s]['wall_s']:8.3f} s wall ({times[s]['cpu_s']:.3f} s CPU) = {per_s[s]:8.2f} rows/s"
            f" · passes {w['passes']:3d}, model calls {w['model_calls']:3d}, positions {w['positions']:7d}"
            f" (input slots B·T {w['input_slots']})",
            flush=True,
        )
    print(
        f"rows {len(texts)} in {len(wins)} windows of ≤{B}, n={args.n}: mixed is "
        f"{rec['speedup']['vs_per_task']:.2f}× per_task, {rec['speedup']['vs_regrouped']:.2f}× regrouped and "
        f"{rec['speedup']['vs_concat']:.2f}× mixed_concat (wall)"
        f" · predictions identical: {identical} (rows differing {differ}) · first-window logits max |Δ| "
        f"{agreement['max_abs_diff']:.1e} (tolerance {agreement['tolerance']:.1e})"
    )
    print(f"load average {rec['load_average_start']} → {rec['load_average_end']}")
    return rec


if __name__ == "__main__":
    main()

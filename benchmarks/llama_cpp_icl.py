"""Benchmark: k-shot label scoring on SmolLM2's GGUF file — the course's cached scorer vs llama.cpp (CPU peer).

The same SST-2 requests as ``icl_scoring.py`` (k = 8 demonstrations as one shared context, ``--n-inputs``
test inputs, the two label words; the same token ids, start token included), scored two ways:

* **ours**: ``pt_helpers.icl.score_label_words_cached`` on SmolLM2-135M-Instruct as the course loads it
  (``pt_helpers.models.load_model``: the package's GGUF file, its Q4_1 weights dequantised to float32, run by
  torch);
* **llama.cpp**: ``llama_cpp.Llama`` (llama-cpp-python) on the SAME GGUF file, its own kernels on the
  quantised weights, with its own prefix reuse: the context is evaluated once into its key/value cache; for
  each input, ``n_tokens`` is set back to the context's length and ``Llama.eval`` drops the cache cells after
  it (``kv_cache_seq_rm``, what ``Llama.generate`` does on a prompt-prefix match) before evaluating the input.
  ``logits_all=False``: only the last position's logits are computed, read with ``llama_get_logits_ith``
  (labels of several tokens evaluate their tokens one at a time on the input's cache).

Their log-probabilities are NOT expected to be equal (llama.cpp multiplies Q4_1 weights by 8-bit-quantised
activations, ours float32 by float32): the record states the agreement measured — max and mean |Δ log-prob|
and the predictions that flip — instead of checking a tolerance. Speed: interleaved (ours, llama.cpp, …) after
one warm-up each on 2 inputs, medians of ``--repeats`` of wall and process CPU time. Token positions: both run
the context once and then each input (ours re-runs the context's last token with every input), so the
position ratio is ≈ 1: what differs is the kernels (quantised llama.cpp matmuls vs torch float32) and the
batching (ours packs ``--batch-size`` inputs into one sequence; this llama.cpp loop evaluates one input at a
time). When ours is slower, ``torch.profiler`` profiles one call of ours on 32 of the inputs and the
record keeps where its time goes (``profile_ours``).

llama-cpp-python is a C++ build: ``make bench`` tries to install it (never ``make install`` or CI). Without
it, this script says so, writes a record of why (with the end of the build log ``--build-log``, if there is
one) and exits 0, so the other benchmarks still run.

    python benchmarks/llama_cpp_icl.py --threads 1                   # 200 inputs, k = 8
    OMP_NUM_THREADS=2 python benchmarks/llama_cpp_icl.py --threads 2

Writes benchmarks/records/llama_cpp_icl.json (``--out``): one record per (device, threads, setting).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import _common as C
import numpy as np
import torch
from icl_scoring import positions, requests

from pt_helpers import icl
from pt_helpers.device import get_device
from pt_helpers.models import SMOLLM2_NAME, SMOLLM2_PACKAGE, check_smollm2_gguf, local_candidates

# A seconds-long setting that tests/test_benchmarks.py runs (without llama-cpp-python in CI: the record of why).
SMOKE_ARGS = ["--n-inputs", "2", "--k", "1", "--repeats", "1", "--threads", "1"]
SIDES = ("ours", "llama_cpp")
INSTALL = (
    "make bench (it tries `CMAKE_BUILD_PARALLEL_LEVEL=1 pip install llama-cpp-python`, a C++ build of many "
    "minutes), or that pip command yourself"
)
BUILD_LOG = C.ROOT / "build" / "llama-cpp-python-build.log"  # where `make bench` writes the build's output


def import_llama_cpp():
    """The ``llama_cpp`` module, or None when llama-cpp-python is not installed (or its library does not load)."""
    try:
        import llama_cpp
    except (ImportError, OSError):  # OSError: the package is there but its compiled library is not loadable
        return None
    return llama_cpp


def gguf_path() -> Path:
    """The GGUF file of the package the course loads SmolLM2 from, checked against its published SHA-256."""
    candidates, tried = local_candidates(SMOLLM2_NAME)
    folder = next((f for source, f in candidates if source == "package"), None)
    if folder is None:
        raise SystemExit(f"{SMOLLM2_NAME}'s GGUF file was not found ({'; '.join(tried)}): install {SMOLLM2_PACKAGE}")
    return check_smollm2_gguf(folder)


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    x = x - x.max()
    return x - np.log(np.exp(x).sum())


def llama_scorer(llama_cpp, llm, req: dict):
    """A function scoring ``req``'s (input, label) pairs with llama.cpp's own prefix reuse → (n, C) tensor."""
    n_vocab = llm.n_vocab()

    def last_log_probs() -> np.ndarray:
        ptr = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
        return log_softmax(np.ctypeslib.as_array(ptr, shape=(n_vocab,)))

    def score() -> torch.Tensor:
        llm.reset()
        llm.eval(req["prefix_ids"])  # the shared context, once, into llama.cpp's key/value cache
        context = llm.n_tokens
        out = np.empty((len(req["input_ids"]), len(req["label_ids"])))
        for i, ids in enumerate(req["input_ids"]):
            llm.n_tokens = context  # eval() now drops the cache cells after the context, then runs the input
            llm.eval(ids)
            first, end = last_log_probs(), llm.n_tokens
            for c, label in enumerate(req["label_ids"]):
                lp = first[label[0]]
                llm.n_tokens = end
                for j in range(1, len(label)):  # a label of several tokens: its tokens on the input's cache
                    llm.eval([label[j - 1]])
                    lp += last_log_probs()[label[j]]
                out[i, c] = lp
        return torch.tensor(out, dtype=torch.float32)

    return score


def same_tokenization(llm, tokenizer, req: dict) -> dict:
    """Does llama.cpp's own tokenizer (from the GGUF) give the course's ids for every piece? (Both sides are fed
    the course's ids anyway; this says whether a llama.cpp user with the same texts would score the same.)"""
    pieces = [(req["prefix"], req["prefix_ids"][1:])] + list(zip(req["queries"], req["input_ids"]))
    pieces += list(zip(req["label_words"], req["label_ids"]))
    differ = sum(llm.tokenize(text.encode(), add_bos=False, special=True) != list(ids) for text, ids in pieces)
    return dict(pieces=len(pieces), differing=differ)


def profile_ours(fn, top: int = 12) -> dict:
    """Where one call of ours spends its time: the operators with the most self CPU time (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    wall = time.perf_counter() - t0
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    return dict(
        wall_s=wall,
        self_cpu_s_total=total / 1e6,
        top=[
            dict(op=e.key, calls=e.count, self_cpu_s=e.self_cpu_time_total / 1e6, share=e.self_cpu_time_total / total)
            for e in events[:top]
        ],
    )


def not_installed(args, device: torch.device, env: dict) -> dict:
    """The record of a run without llama-cpp-python: what is missing, how to get it, the build's error."""
    log = Path(args.build_log)
    build_error = log.read_text(errors="replace")[-3000:] if log.is_file() else None
    note = f"llama-cpp-python is not installed, so nothing was compared; to install it: {INSTALL}"
    print(f"llama.cpp comparison skipped: {note}")
    if build_error:
        print(f"the last build's output ends with:\n{build_error[-800:]}")
    return dict(
        script="benchmarks/llama_cpp_icl.py",
        comparison="ICL label scoring on the same GGUF: ours (cached, float32 torch) vs llama.cpp (llama-cpp-python)",
        **env,
        model=f"{SMOLLM2_NAME} (GGUF of {SMOLLM2_PACKAGE}; not loaded)",
        settings=dict(task="sst2", k=args.k, n_inputs=args.n_inputs),
        settings_repeats=args.repeats,
        variant=f"k={args.k}, n={args.n_inputs}, llama-cpp-python not installed",
        status="not installed",
        note=note,
        build_log=(str(log.relative_to(C.ROOT)) if log.is_relative_to(C.ROOT) else str(log)) if build_error else None,
        build_error=build_error,
    )


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n-inputs", type=int, default=200, help="test inputs (icl_scoring.py's setting: 200)")
    p.add_argument("--k", type=int, default=8, help="demonstrations in the shared context")
    p.add_argument("--batch-size", type=int, default=16, help="inputs per packed pass (ours)")
    p.add_argument("--repeats", type=int, default=3, help="timed calls of each side, interleaved; medians")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch's and llama.cpp's threads (and OMP_NUM_THREADS)")
    p.add_argument("--profile", action="store_true", help="profile ours even when it is not the slower side")
    p.add_argument("--build-log", default=str(BUILD_LOG), help="llama-cpp-python's build output, kept when missing")
    p.add_argument("--out", default=None, help="JSON file (default: benchmarks/records/llama_cpp_icl.json)")
    a = p.parse_args(argv)
    if a.n_inputs < 1 or a.k < 0 or a.repeats < 1:
        p.error("--n-inputs and --repeats must be ≥ 1, --k ≥ 0")
    C.set_threads(a.threads)
    device = get_device("cpu")  # llama.cpp here is its CPU build: the comparison is on the CPU
    out = C.out_path(a.out, "llama_cpp_icl")
    llama_cpp = import_llama_cpp()
    if llama_cpp is None:
        rec = not_installed(a, device, C.environment(device))
        C.write_record(out, rec)
        return rec

    a.model = SMOLLM2_NAME
    model, tokenizer, label = C.build_model(a, device)
    gguf = gguf_path()
    req, small = requests(tokenizer, a.n_inputs, a.k, a.seed), requests(tokenizer, min(a.n_inputs, 2), a.k, a.seed)
    longest = len(req["prefix_ids"]) + max(map(len, req["input_ids"])) + max(map(len, req["label_ids"]))
    threads = a.threads or torch.get_num_threads()
    llm = llama_cpp.Llama(
        model_path=str(gguf), n_ctx=longest + 16, n_threads=threads, n_threads_batch=threads, logits_all=False,
        seed=a.seed, verbose=False,
    )  # fmt: skip

    def ours(r: dict):
        args = (model, tokenizer, r["prefix"], r["queries"], r["label_words"])
        return lambda: icl.score_label_words_cached(*args, batch_size=a.batch_size)

    fns = {"ours": ours(req), "llama_cpp": llama_scorer(llama_cpp, llm, req)}
    warmups = {"ours": ours(small), "llama_cpp": llama_scorer(llama_cpp, llm, small)}
    env = C.environment(device)  # before timing: the load average at the start of the run
    stats, results = C.interleaved(fns, a.repeats, device, warmups=warmups)
    diff = (results["llama_cpp"] - results["ours"]).abs()
    flips = results["llama_cpp"].argmax(-1) != results["ours"].argmax(-1)
    pos = positions(req)
    P = len(req["prefix_ids"])
    pos_llama = P + sum(len(q) + sum(len(t) - 1 for t in req["label_ids"]) for q in req["input_ids"])
    speedup = stats["llama_cpp"]["wall_s"] / stats["ours"]["wall_s"]
    rec = dict(
        script="benchmarks/llama_cpp_icl.py",
        comparison="ICL label scoring on the same GGUF: ours (cached, float32 torch) vs llama.cpp (llama-cpp-python)",
        **env,
        model=f"{label}; llama.cpp runs the same file's Q4_1 weights",
        gguf=str(gguf),
        llama_cpp_python=getattr(llama_cpp, "__version__", None),
        llama_cpp_system_info=llama_cpp.llama_print_system_info().decode(errors="replace").strip(),
        settings=dict(task="sst2", k=a.k, n_inputs=a.n_inputs, n_labels=len(req["label_ids"]), batch_size=a.batch_size),
        settings_repeats=a.repeats,
        variant=f"k={a.k}, n={a.n_inputs}, ours+llama_cpp",
        status="measured",
        seed=a.seed,
        prefix_tokens=P,
        mean_input_tokens=round(sum(map(len, req["input_ids"])) / a.n_inputs, 1),
        label_tokens=[len(t) for t in req["label_ids"]],
        tokenization=same_tokenization(llm, tokenizer, req),
        times=stats,
        positions=dict(ours=pos["ours"], llama_cpp=pos_llama),
        position_ratio=pos_llama / pos["ours"],
        speedup_vs_llama_cpp=speedup,
        cpu_speedup_vs_llama_cpp=stats["llama_cpp"]["cpu_s"] / max(stats["ours"]["cpu_s"], 1e-9),
        agreement=dict(
            max_abs_diff=float(diff.max()),
            mean_abs_diff=float(diff.mean()),
            prediction_flips=int(flips.sum()),
            n_inputs=a.n_inputs,
        ),
    )
    if speedup < 1 or a.profile:  # ours slower (or asked): where does its time go?
        some = requests(tokenizer, min(a.n_inputs, 32), a.k, a.seed)
        rec["profile_ours"] = dict(n_inputs=len(some["input_ids"]), **profile_ours(ours(some)))
    print(f"{rec['device']}; prefix {P} tokens, inputs {rec['mean_input_tokens']} on average; GGUF {gguf}")
    for side, st in stats.items():
        print(f"{side:9s} {st['wall_s']:8.2f} s wall  {st['cpu_s']:8.2f} s CPU   {rec['positions'][side]:8d} positions")
    ag = rec["agreement"]
    print(
        f"llama.cpp/ours: {speedup:.2f}× wall, {rec['cpu_speedup_vs_llama_cpp']:.2f}× CPU time, positions "
        f"{rec['position_ratio']:.2f}×; max |Δ log-prob| {ag['max_abs_diff']:.3f}, mean {ag['mean_abs_diff']:.3f}, "
        f"prediction flips {ag['prediction_flips']}/{a.n_inputs}; tokenization {rec['tokenization']}"
    )
    print(f"load average {rec['load_average_start']}")
    C.write_record(out, rec)
    return rec


if __name__ == "__main__":
    main()

"""Benchmark: how the cost of k-shot label scoring grows with the work — test inputs n, then demonstrations k.

Each point is a full ``icl_scoring.run`` (ours, lm-eval's ``HFLM.loglikelihood`` when installed, the naive
per-pair loop; the same requests; log-probs checked equal to 1e-4; interleaved, medians of ``--repeats``),
on one GPT-2-small-sized model with RANDOM weights (``--model NAME``: a real one). Besides the times,
every point records the token positions each scorer runs through the model, counted from the actual
tokens — the "limit" of the speed ratio if time were proportional to positions:

    naive  Σ_i Σ_c (P + S_i + ℓ_c)  ≈ n·C·(P+S)
    peer   n·(P+S) when the continuations are one token (it shares one pass per context)
    ours   P + Σ_i (1 + S_i + Σ_c (ℓ_c − 1))  ≈ P + n·(S + C·(ℓ−1))

(P prefix tokens with BOS, S_i input i's tokens, C labels of ℓ_c tokens.) ``pt_helpers.plots.show_cost_growth``
draws time vs work and the measured ratio against the position ratio on one figure (notebook 03).

    python benchmarks/icl_growth.py --threads 1                         # n: 10 → 400 at k = 8; k: 0 → 16 at n = 50
    python benchmarks/icl_growth.py --n-sweep 10 50 --k-sweep 0 8 --sides ours peer

Writes benchmarks/records/icl_growth.json (``--out``): one record per (device, threads), the latest run.
"""

from __future__ import annotations

import argparse

import _common as C
from icl_scoring import SIDES
from icl_scoring import run as score_point

from pt_helpers.device import get_device, release_memory

# A seconds-long setting that tests/test_benchmarks.py runs, so a rename in the package can never break this script.
SMOKE_ARGS = ["--n-sweep", "2", "4", "--k", "1", "--k-sweep", "0", "1", "--n-for-k", "2", "--repeats", "1"]
SMOKE_ARGS += ["--n-layer", "1", "--n-embd", "32", "--n-head", "2", "--threads", "1"]


def point(rec: dict, work: str) -> dict:
    """The compact row of one ``icl_scoring.run`` record."""
    s = rec["settings"]
    return dict(
        work=work,
        n_inputs=s["n_inputs"],
        k=s["k"],
        prefix_tokens=rec["prefix_tokens"],
        mean_input_tokens=rec["mean_input_tokens"],
        wall_s={side: t["wall_s"] for side, t in rec["times"].items()},
        cpu_s={side: t["cpu_s"] for side, t in rec["times"].items()},
        positions=rec["positions"],
        max_abs_diff={side: a["max_abs_diff"] for side, a in rec["agreement"].items()},
    )


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n-sweep", type=int, nargs="+", default=[10, 25, 50, 100, 200, 400], help="test inputs")
    p.add_argument("--k", type=int, default=8, help="demonstrations during the n sweep")
    p.add_argument("--k-sweep", type=int, nargs="+", default=[0, 1, 2, 4, 8, 16], help="demonstrations")
    p.add_argument("--n-for-k", type=int, default=50, help="test inputs during the k sweep")
    p.add_argument("--sides", nargs="+", default=list(SIDES), choices=SIDES)
    p.add_argument(
        "--naive-max-n", type=int, default=None, help="leave the naive loop out of points with more test inputs"
    )
    p.add_argument("--repeats", type=int, default=3, help="timed calls per side and point, interleaved; medians")
    C.add_model_args(p)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=None, help="torch threads (set OMP_NUM_THREADS the same)")
    p.add_argument("--out", default=None, help="JSON file (default: benchmarks/records/icl_growth.json)")
    a = p.parse_args(argv)
    C.set_threads(a.threads)
    dev = get_device(a.device)
    model, tokenizer, label = C.build_model(a, dev, a.seed)
    rec = dict(
        script="benchmarks/icl_growth.py",
        comparison="ICL scoring cost vs work: test inputs n and demonstrations k (ours, lm-eval, naive)",
        **C.environment(dev),
        model=label,
        settings=dict(task="sst2", k_for_n=a.k, n_for_k=a.n_for_k, batch_size=a.batch_size, sides=a.sides),
        settings_repeats=a.repeats,
        variant=C.model_variant(f"n {a.n_sweep} at k={a.k}; k {a.k_sweep} at n={a.n_for_k}; {'+'.join(a.sides)}", a),
        sweeps={"n_inputs": [], "k": []},
    )
    out = C.out_path(a.out, "icl_growth")
    plan = [("n_inputs", n, a.k) for n in a.n_sweep] + [("k", a.n_for_k, k) for k in a.k_sweep]
    for work, n, k in plan:
        release_memory()  # the last point's activations go back to the system first (glibc pools them)
        sides = tuple(s for s in a.sides if s != "naive" or a.naive_max_n is None or n <= a.naive_max_n)
        r = score_point(
            n, k, a.n_layer, a.n_embd, a.n_head, a.batch_size, a.seed, a.device, a.repeats, sides,
            model, tokenizer, label, a.model,
        )  # fmt: skip
        row = point(r, work)
        rec["sweeps"][work].append(row)
        rec["complete"] = sum(map(len, rec["sweeps"].values())) == len(plan)
        C.write_record(out, rec)  # after every point: a run stopped half-way keeps what it measured
        times = "  ".join(f"{s} {t:.2f} s" for s, t in row["wall_s"].items())
        print(f"{work}: n={n:4d} k={k:2d}  {times}  positions {row['positions']}", flush=True)
    print(f"load average {rec['load_average_start']} → {C.load_average()}")
    return rec


if __name__ == "__main__":
    main()

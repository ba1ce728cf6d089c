"""Benchmark: how the cost of a soft-prompt training step grows — virtual tokens n, then batch size B.

Each point is ``soft_prompt_step.run_one`` (ours = shared prompt cache vs PEFT ``PromptTuningConfig``;
equal losses checked; forward + backward + AdamW step, interleaved, medians of ``--repeats``; memory the
tensors autograd keeps for backward) on one GPT-2-small-sized model with RANDOM weights (``--model NAME``: a
real one) and real SST-2 sentences. Every point records the token positions each side runs through the
model per step — the "limit" of the speed ratio if time were proportional to positions:

    PEFT  B·(n + T)        ours  n + B·T

``pt_helpers.plots.show_cost_growth`` draws time vs work and the measured ratio against the position ratio
on one figure (notebook 05).

    python benchmarks/soft_prompt_growth.py --threads 1        # n: 1 → 200 at B = 16; B: 1 → 64 at n = 20

Writes benchmarks/records/soft_prompt_growth.json (``--out``): one record per (device, threads), the latest run.
"""

from __future__ import annotations

import argparse

import _common as C
from soft_prompt_step import run_one

from pt_helpers.device import get_device, release_memory
from pt_helpers.frozen import freeze

# A seconds-long setting that tests/test_benchmarks.py runs, so a rename in the package can never break this script.
SMOKE_ARGS = ["--n-sweep", "1", "3", "--batch", "2", "--batch-sweep", "1", "2", "--n-for-batch", "2"]
SMOKE_ARGS += [
    "--repeats",
    "1",
    "--n-layer",
    "1",
    "--n-embd",
    "32",
    "--n-head",
    "2",
    "--device",
    "cpu",
    "--threads",
    "1",
]


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n-sweep", type=int, nargs="+", default=[1, 5, 20, 50, 100, 200], help="virtual tokens")
    p.add_argument("--batch", type=int, default=16, help="batch size during the n sweep")
    p.add_argument("--batch-sweep", type=int, nargs="+", default=[1, 4, 16, 64], help="batch sizes")
    p.add_argument("--n-for-batch", type=int, default=20, help="virtual tokens during the batch sweep")
    p.add_argument("--repeats", type=int, default=3, help="timed steps per side and point, interleaved; medians")
    C.add_model_args(p)
    p.add_argument("--device", default=None)
    p.add_argument("--no-amp", action="store_true", help="fp32 on CUDA too (default: bf16 autocast)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (set OMP_NUM_THREADS the same)")
    p.add_argument("--out", default=None, help="JSON file (default: benchmarks/records/soft_prompt_growth.json)")
    a = p.parse_args(argv)
    C.set_threads(a.threads)
    dev = get_device(a.device)
    model, tokenizer, label = C.build_model(a, dev)
    model = freeze(model)
    rec = dict(
        script="benchmarks/soft_prompt_growth.py",
        comparison="soft-prompt step cost vs work: virtual tokens n and batch B (ours vs PEFT PromptTuningConfig)",
        **C.environment(dev),
        model=label,
        settings=dict(batch_for_n=a.batch, n_for_batch=a.n_for_batch),
        settings_repeats=a.repeats,
        variant=C.model_variant(f"n {a.n_sweep} at B={a.batch}; B {a.batch_sweep} at n={a.n_for_batch}", a),
        sweeps={"n_virtual": [], "batch": []},
    )
    out = C.out_path(a.out, "soft_prompt_growth")
    plan = [("n_virtual", n, a.batch) for n in a.n_sweep] + [("batch", a.n_for_batch, b) for b in a.batch_sweep]
    for work, n, b in plan:
        release_memory()  # the last point's PEFT copy and activations go back to the system first
        r = run_one(model, tokenizer, n, b, dev, a.repeats, amp=not a.no_amp)
        row = dict(
            work=work,
            n=n,
            B=b,
            T=r["T"],
            wall_s={"ours": r["ours_s"], "peft": r["peft_s"]},
            cpu_s={"ours": r["cpu_ours_s"], "peft": r["cpu_peft_s"]},
            positions={"ours": r["positions_ours"], "peft": r["positions_peft"]},
            saved_mib={"ours": r["saved_mib_ours"], "peft": r["saved_mib_peft"]},
            loss={"ours": r["loss_ours"], "peft": r["loss_peft"]},
        )
        rec["sweeps"][work].append(row)
        rec["complete"] = sum(map(len, rec["sweeps"].values())) == len(plan)
        C.write_record(out, rec)  # after every point: a run stopped half-way keeps what it measured
        print(
            f"{work}: n={n:4d} B={b:3d} T={r['T']}  ours {r['ours_s']:.3f} s  PEFT {r['peft_s']:.3f} s  "
            f"positions {row['positions']}  saved MiB {r['saved_mib_ours']:.0f}/{r['saved_mib_peft']:.0f}",
            flush=True,
        )
    print(f"load average {rec['load_average_start']} → {C.load_average()}")
    return rec


if __name__ == "__main__":
    main()

"""Benchmark: one P-tuning training step (prompt = a small encoder's output), ours vs PEFT ``PromptEncoderConfig``.

Ours: ``pt_helpers.p_tuning.PTuningEncoder`` (E → MLP or BiLSTM → P) in a ``PromptedModel`` with
``share_prompt_cache=True``: the encoder runs once, then P runs through the frozen GPT-2 once per batch and its
keys/values are shared over the batch. PEFT: ``PromptEncoderConfig`` with the same E and encoder weights
(``pt_helpers.p_tuning.peft_twin``), which concatenates P in front of every example: B·(n+T) token positions
per step instead of n + B·T, as for a plain soft prompt.

Model: GPT-2-small-sized, RANDOM weights; batch 16 real SST-2 dev sentences, right-padded. Forward + backward +
AdamW step, equal initial losses checked, interleaved (ours, PEFT, …) after one warm-up each, medians of
``--repeats``; memory as in ``soft_prompt_step.py``.

    python benchmarks/p_tuning_step.py --threads 1                  # MLP encoder, n = 20 and 100
    python benchmarks/p_tuning_step.py --encoder lstm --threads 1

Writes build/benchmarks/p_tuning_step.json (``--out``): one record per (device, threads, setting), the latest run.
"""

from __future__ import annotations

import argparse
import copy

import _common as C
import torch
from soft_prompt_step import measure_steps, sst2_batch

from pt_helpers.adapters import PromptedModel
from pt_helpers.device import get_device
from pt_helpers.frozen import freeze
from pt_helpers.models import load_tokenizer
from pt_helpers.p_tuning import PTuningEncoder, peft_twin

# A seconds-long setting that tests/test_benchmarks.py runs, so a rename in the package can never break this script.
SMOKE_ARGS = ["--n", "2", "--batch-size", "2", "--repeats", "1", "--n-layer", "1", "--n-embd", "32", "--n-head", "2"]
SMOKE_ARGS += ["--device", "cpu", "--threads", "1"]


def run_one(model, tokenizer, n: int, batch_size: int, device, repeats: int, encoder: str, amp: bool) -> dict:
    batch = sst2_batch(tokenizer, batch_size, device)
    d = model.config.n_embd
    torch.manual_seed(n)
    adapter = PTuningEncoder(n, d, encoder_type=encoder, init_embedding=torch.randn(n, d) * 0.02).to(device)
    ours = PromptedModel(model, adapter, share_prompt_cache=True)
    twin = peft_twin(copy.deepcopy(model), adapter)
    twin.eval()  # no dropout: the same function as ours
    twin_params = [p for p in twin.parameters() if p.requires_grad]
    T = batch[0].shape[1]
    row = dict(n=n, B=batch_size, T=T, positions_ours=n + batch_size * T, positions_peft=batch_size * (n + T))
    row.update(measure_steps(ours, twin, list(adapter.parameters()), twin_params, batch, device, repeats, amp))
    row["position_ratio"] = row["positions_peft"] / row["positions_ours"]
    return row


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[20, 100], help="virtual tokens (one row each)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--encoder", default="mlp", choices=["mlp", "lstm"], help="the prompt encoder")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps of each side, interleaved; medians")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if present)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (set OMP_NUM_THREADS the same)")
    parser.add_argument("--no-amp", action="store_true", help="fp32 on CUDA too (default: bf16 autocast)")
    parser.add_argument("--n-layer", type=int, default=12)
    parser.add_argument("--n-embd", type=int, default=768)
    parser.add_argument("--n-head", type=int, default=12)
    parser.add_argument("--out", default=None, help="JSON file (default: build/benchmarks/p_tuning_step.json)")
    args = parser.parse_args(argv)
    C.set_threads(args.threads)
    device = get_device(args.device)
    model = freeze(C.gpt2(args.n_layer, args.n_embd, args.n_head).to(device))
    tokenizer = load_tokenizer()
    rec = dict(
        script="benchmarks/p_tuning_step.py",
        comparison="P-tuning training step: ours (encoder once, shared prompt cache) vs PEFT PromptEncoderConfig",
        **C.environment(device),
        model=C.model_label(args.n_layer, args.n_embd),
        settings=dict(n=args.n, batch_size=args.batch_size, encoder=args.encoder),
        settings_repeats=args.repeats,
        variant=f"n={','.join(map(str, args.n))}, B={args.batch_size}, {args.encoder}",
        rows=[],
    )
    out = C.out_path(args.out, "p_tuning_step")
    for n in args.n:
        r = run_one(model, tokenizer, n, args.batch_size, device, args.repeats, args.encoder, not args.no_amp)
        rec["rows"].append(r)
        rec["complete"] = len(rec["rows"]) == len(args.n)
        C.write_record(out, rec)  # after every row: a run stopped half-way keeps what it measured
        print(
            f"n={n:4d} T={r['T']} B={r['B']}: ours {r['ours_s'] * 1e3:8.1f} ms · PEFT {r['peft_s'] * 1e3:8.1f} ms"
            f" · {r['speedup']:.2f}× wall, {r['cpu_speedup']:.2f}× CPU time (positions {r['position_ratio']:.2f}×)"
            f" · saved for backward ours {r['saved_mib_ours']:.0f} MiB, PEFT {r['saved_mib_peft']:.0f} MiB"
            f" · loss ours {r['loss_ours']:.6f} PEFT {r['loss_peft']:.6f}",
            flush=True,
        )
    print(f"load average {rec['load_average_start']}")
    return rec


if __name__ == "__main__":
    main()

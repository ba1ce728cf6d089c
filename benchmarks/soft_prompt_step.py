"""Benchmark: one soft-prompt training step (forward + backward + AdamW step), ours vs PEFT.

Ours (``pt_helpers.adapters.PromptedModel`` with a ``SoftPrompt``, ``share_prompt_cache=True``) runs the n
virtual tokens through the frozen GPT-2 ONCE per batch (batch size 1, gradients flowing) and shares their
per-layer keys/values across the batch through a ``DynamicCache``; PEFT's ``PromptTuningConfig``
concatenates the prompt in front of every example, so each step processes B·(n+T) tokens instead of n + B·T.

Model: GPT-2-small-sized (12 layers, 768 dims, 50,257-token vocabulary), RANDOM weights (speed does
not depend on them). Inputs: real SST-2 dev sentences tokenized with the real GPT-2 tokenizer (their
median length is about SST-2's), batch 16. Checks that both losses agree within 1e-4, prints ratios.

    python benchmarks/soft_prompt_step.py                      # CPU (and CUDA if present)
    python benchmarks/soft_prompt_step.py --n 20 100 --repeats 3 --device cpu --threads 1
    python benchmarks/soft_prompt_step.py --n-layer 24 --n-embd 1024 --n-head 16 --device cuda   # a larger size

Writes the rows to build/benchmarks/soft_prompt_step.json (``--out``), the latest run per device.

Times are interleaved (ours, PEFT, ours, …) and medians reported, as wall-clock time and as process CPU
time. On a machine shared with other jobs, wall time is noisy and, with several threads, CPU time counts
OpenMP spin-waiting too: there ``--threads 1`` and the CPU-time ratio are the fair comparison.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import statistics
import time
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from pt_helpers.adapters import PromptedModel
from pt_helpers.classifiers import autocast_for
from pt_helpers.data import load_task
from pt_helpers.device import describe_device
from pt_helpers.frozen import freeze
from pt_helpers.models import load_tokenizer
from pt_helpers.project import atomic_write_json, build_dir
from pt_helpers.soft_prompt import SoftPrompt

# A seconds-long setting that tests/test_benchmarks.py runs, so a rename in the package can never break this script.
SMOKE_ARGS = [
    "--n",
    "2",
    "--batch-size",
    "2",
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


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def run(
    n: int,
    device: torch.device,
    batch_size: int,
    repeats: int,
    amp: bool,
    n_layer: int = 12,
    n_embd: int = 768,
    n_head: int = 12,
) -> dict:
    from peft import PromptTuningConfig, get_peft_model

    torch.manual_seed(0)
    model = freeze(GPT2LMHeadModel(GPT2Config(n_layer=n_layer, n_embd=n_embd, n_head=n_head)).to(device))
    tok = load_tokenizer()
    texts = load_task("sst2", "dev")["text"][:batch_size]
    enc = tok(texts, return_tensors="pt", padding=True)  # right padding: PEFT's own position ids agree
    ids, mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
    labels = ids.masked_fill(mask == 0, -100)
    init = torch.randn(n, model.config.n_embd) * 0.02

    ours = PromptedModel(model, SoftPrompt(n, model.config.n_embd, init).to(device), share_prompt_cache=True)
    opt_ours = torch.optim.AdamW(ours.adapter.parameters(), lr=1e-3)
    peft = get_peft_model(copy.deepcopy(model), PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=n))
    peft.eval()
    peft_weight = peft.prompt_encoder["default"].embedding.weight
    with torch.no_grad():
        peft_weight.copy_(init.to(device))
    opt_peft = torch.optim.AdamW([peft_weight], lr=1e-3)

    def autocast():
        return autocast_for(device, amp)

    # losses of the same initial prompt must agree before anything is timed
    with torch.no_grad():
        l_ours = ours(ids, mask, labels).loss.item()
        l_peft = peft(input_ids=ids, attention_mask=mask, labels=labels).loss.item()
    # the same function computed two ways: float32 round-off relative to the loss (~11 for random weights)
    assert abs(l_ours - l_peft) <= 1e-5 * max(1.0, abs(l_peft)), f"losses differ: ours {l_ours} vs PEFT {l_peft}"

    def step_ours():
        opt_ours.zero_grad(set_to_none=True)
        with autocast():
            loss = ours(ids, mask, labels).loss
        loss.backward()
        opt_ours.step()
        return loss.item()

    def step_peft():
        opt_peft.zero_grad(set_to_none=True)
        with autocast():
            loss = peft(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        opt_peft.step()
        return loss.item()

    # interleave the two (warm-up, then ours, PEFT, ours, PEFT, …) so that a shared machine's changing load
    # hits both alike; report medians
    step_ours(), step_peft()
    times = {"ours": [], "peft": []}
    cpu_times = {"ours": [], "peft": []}
    mem = {"ours": float("nan"), "peft": float("nan")}
    for _ in range(repeats):
        for name, step in (("ours", step_ours), ("peft", step_peft)):
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            _sync(device)
            t, c = time.perf_counter(), time.process_time()
            step()
            _sync(device)
            times[name].append(time.perf_counter() - t)
            cpu_times[name].append(time.process_time() - c)
            if device.type == "cuda":
                mem[name] = torch.cuda.max_memory_allocated() / 2**20
    t_ours, t_peft = statistics.median(times["ours"]), statistics.median(times["peft"])
    mem_ours, mem_peft = mem["ours"], mem["peft"]
    cpu_ours, cpu_peft = statistics.median(cpu_times["ours"]), statistics.median(cpu_times["peft"])
    return dict(
        n=n,
        T=ids.shape[1],
        B=batch_size,
        model=f"GPT-2 config, random weights, {n_layer} layers × {n_embd}",
        ours_s=t_ours,
        peft_s=t_peft,
        speedup=t_peft / t_ours,
        cpu_ours_s=cpu_ours,
        cpu_peft_s=cpu_peft,
        cpu_speedup=cpu_peft / cpu_ours,
        loss_ours=l_ours,
        loss_peft=l_peft,
        mem_ours_mib=mem_ours,
        mem_peft_mib=mem_peft,
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[20, 100])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", nargs="+", default=None, help="cpu and/or cuda (default: cpu, + cuda if present)")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads; on a shared machine use 1 and read the CPU-time ratio",
    )
    parser.add_argument("--no-amp", action="store_true", help="fp32 on CUDA too (default: bf16 autocast)")
    parser.add_argument("--n-layer", type=int, default=12)
    parser.add_argument("--n-embd", type=int, default=768)
    parser.add_argument("--n-head", type=int, default=12)
    parser.add_argument("--out", default=None, help="JSON file (default: build/benchmarks/soft_prompt_step.json)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.device or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    rows = []
    for dev in devices:
        device = torch.device(dev)
        print(f"# {describe_device(device)} · {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
        for n in args.n:
            r = run(
                n,
                device,
                args.batch_size,
                args.repeats,
                amp=not args.no_amp,
                n_layer=args.n_layer,
                n_embd=args.n_embd,
                n_head=args.n_head,
            )
            r.update(
                device=describe_device(device),
                torch=torch.__version__,
                date=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            )
            rows.append(r)
            print(
                f"n={n:4d} T={r['T']} B={r['B']}: ours {r['ours_s'] * 1e3:8.1f} ms/step · PEFT "
                f"{r['peft_s'] * 1e3:8.1f} ms/step · speed-up {r['speedup']:.2f}× (wall) · CPU time ours "
                f"{r['cpu_ours_s']:.2f} s, PEFT {r['cpu_peft_s']:.2f} s: {r['cpu_speedup']:.2f}× · loss ours "
                f"{r['loss_ours']:.6f} PEFT {r['loss_peft']:.6f}"
                + (
                    f" · peak mem ours {r['mem_ours_mib']:.0f} MiB, PEFT {r['mem_peft_mib']:.0f} MiB"
                    if device.type == "cuda"
                    else ""
                ),
                flush=True,
            )
    out = Path(args.out) if args.out else build_dir("benchmarks") / "soft_prompt_step.json"
    old = json.loads(out.read_text()) if out.is_file() else []
    done = {r["device"] for r in rows}
    atomic_write_json(out, [r for r in old if r.get("device") not in done] + rows)  # the latest run per device
    print(f"wrote {out}")
    return rows


if __name__ == "__main__":
    main()

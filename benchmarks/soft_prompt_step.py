"""Benchmark: one soft-prompt training step (forward + backward + AdamW step), ours vs PEFT ``PromptTuningConfig``.

Ours (``pt_helpers.adapters.PromptedModel`` with a ``SoftPrompt``, ``share_prompt_cache=True``) runs the n
virtual tokens through the frozen GPT-2 ONCE per batch (batch size 1, gradients flowing) and shares their
per-layer keys/values across the batch through a ``DynamicCache``; PEFT's ``PromptTuningConfig``
concatenates the prompt in front of every example, so each step processes B·(n+T) token positions
instead of n + B·T.

Model: GPT-2-small-sized (12 layers, 768 dims, 50,257-token vocabulary), RANDOM weights (speed does
not depend on them), or with ``--model NAME`` a real model (e.g. SmolLM2-135M-Instruct: GQA Llama, 30 × 576)
and its own tokenizer. Inputs: real SST-2 dev sentences tokenized with the model's tokenizer, batch 16.
Both start from the same prompt; their losses must agree (checked) before anything is timed. Steps are
interleaved (ours, PEFT, ours, …) after one warm-up each; medians of ``--repeats``. Memory: the tensors
autograd keeps for backward in one step (``_common.saved_for_backward_mib``; every device) and, on CUDA,
the allocator's peak.

    python benchmarks/soft_prompt_step.py --threads 1                # n = 20 and 100, batch 16
    python benchmarks/soft_prompt_step.py --n-layer 24 --n-embd 1024 --n-head 16 --device cuda   # a larger size

Writes benchmarks/records/soft_prompt_step.json (``--out``): one record per (device, threads), the latest run.
"""

from __future__ import annotations

import copy

import _common as C
import torch

from pt_helpers.adapters import PromptedModel
from pt_helpers.classifiers import autocast_for
from pt_helpers.data import load_task
from pt_helpers.device import get_device
from pt_helpers.frozen import freeze
from pt_helpers.soft_prompt import SoftPrompt

# A seconds-long setting that tests/test_benchmarks.py runs, so a rename in the package can never break this script.
SMOKE_ARGS = ["--n", "2", "--batch-size", "2", "--repeats", "1", "--n-layer", "1", "--n-embd", "32", "--n-head", "2"]
SMOKE_ARGS += ["--device", "cpu", "--threads", "1"]


def sst2_batch(tokenizer, batch_size: int, device: torch.device, offset: int = 0):
    """``batch_size`` SST-2 dev sentences (cycled if more are asked for), right-padded: ids, mask, labels."""
    texts = load_task("sst2", "dev")["text"]
    picked = [texts[(offset + i) % len(texts)] for i in range(batch_size)]
    enc = tokenizer(picked, return_tensors="pt", padding=True)  # right padding: PEFT's own position ids agree
    ids, mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
    return ids, mask, ids.masked_fill(mask == 0, -100)


def measure_steps(ours, peft, ours_params, peft_params, batch, device, repeats: int, amp: bool) -> dict:
    """Equal initial losses (checked), then interleaved timed steps and the memory of one step of each."""
    ids, mask, labels = batch
    opt = {"ours": torch.optim.AdamW(ours_params, lr=1e-3), "peft": torch.optim.AdamW(peft_params, lr=1e-3)}
    losses = {
        "ours": lambda: ours(ids, mask, labels).loss,
        "peft": lambda: peft(input_ids=ids, attention_mask=mask, labels=labels).loss,
    }
    with torch.no_grad():
        l0 = {k: f().item() for k, f in losses.items()}
    # the same function computed two ways: float32 round-off relative to the loss (≈ 11 for random weights)
    tol = 1e-5 * max(1.0, abs(l0["peft"]))
    if abs(l0["ours"] - l0["peft"]) > tol:
        raise RuntimeError(f"losses differ: ours {l0['ours']} vs PEFT {l0['peft']} (tolerance {tol:.1e})")
    mem = {k: C.saved_for_backward_mib(f, ours, peft) for k, f in losses.items()}

    def step(name):
        def fn():
            opt[name].zero_grad(set_to_none=True)
            with autocast_for(device, amp):
                loss = losses[name]()
            loss.backward()
            opt[name].step()
            return loss.item()

        return fn

    steps = {k: step(k) for k in losses}
    cuda_peak = {k: C.cuda_peak_mib(f, device) for k, f in steps.items()}
    stats, _ = C.interleaved(steps, repeats, device)
    return dict(
        loss_ours=l0["ours"],
        loss_peft=l0["peft"],
        loss_tolerance=tol,
        ours_s=stats["ours"]["wall_s"],
        peft_s=stats["peft"]["wall_s"],
        cpu_ours_s=stats["ours"]["cpu_s"],
        cpu_peft_s=stats["peft"]["cpu_s"],
        times=stats,
        speedup=stats["peft"]["wall_s"] / stats["ours"]["wall_s"],
        cpu_speedup=stats["peft"]["cpu_s"] / max(stats["ours"]["cpu_s"], 1e-9),
        saved_mib_ours=mem["ours"],
        saved_mib_peft=mem["peft"],
        cuda_peak_mib_ours=cuda_peak["ours"],
        cuda_peak_mib_peft=cuda_peak["peft"],
    )


def run_one(model, tokenizer, n: int, batch_size: int, device, repeats: int, amp: bool = True) -> dict:
    """One setting (n virtual tokens, batch size) on ``model`` (frozen; left unchanged)."""
    from peft import PromptTuningConfig, get_peft_model

    batch = sst2_batch(tokenizer, batch_size, device)
    d = C.hidden_size(model)
    init = torch.randn(n, d, generator=torch.Generator().manual_seed(n)) * 0.02
    ours = PromptedModel(model, SoftPrompt(n, d, init).to(device), share_prompt_cache=True)
    peft = get_peft_model(copy.deepcopy(model), PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=n))
    peft.eval()  # no dropout: the same function as ours
    weight = peft.prompt_encoder["default"].embedding.weight
    with torch.no_grad():
        weight.copy_(init.to(device))
    T = batch[0].shape[1]
    row = dict(n=n, B=batch_size, T=T, positions_ours=n + batch_size * T, positions_peft=batch_size * (n + T))
    row.update(measure_steps(ours, peft, list(ours.adapter.parameters()), [weight], batch, device, repeats, amp))
    row["position_ratio"] = row["positions_peft"] / row["positions_ours"]
    return row


def main(argv=None) -> dict:
    parser = C.step_parser(__doc__, "soft_prompt_step")
    args = parser.parse_args(argv)
    C.set_threads(args.threads)
    device = get_device(args.device)
    model, tokenizer, label = C.build_model(args, device)
    model = freeze(model)
    rec = dict(
        script="benchmarks/soft_prompt_step.py",
        comparison="soft-prompt training step: ours (shared prompt cache) vs PEFT PromptTuningConfig",
        **C.environment(device),
        model=label,
        settings=dict(n=args.n, batch_size=args.batch_size, amp=not args.no_amp and device.type == "cuda"),
        settings_repeats=args.repeats,
        variant=C.model_variant(f"n={','.join(map(str, args.n))}, B={args.batch_size}", args),
        rows=[],
    )
    return C.run_step_rows(
        args,
        rec,
        "soft_prompt_step",
        lambda n: run_one(model, tokenizer, n, args.batch_size, device, args.repeats, amp=not args.no_amp),
    )


if __name__ == "__main__":
    main()

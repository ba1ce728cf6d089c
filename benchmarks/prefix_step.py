"""Benchmark: one deep-prompt (prefix tuning / P-Tuning v2) training step, ours vs PEFT ``PrefixTuningConfig``.

Ours: ``pt_helpers.prefix.PrefixEncoder`` in a ``PromptedModel`` — the trainable keys/values of the n
virtual tokens go into every layer as a key/value cache expanded (viewed, not copied) over the batch.
PEFT: ``PrefixTuningConfig`` with the same prefix (``pt_helpers.prefix.peft_twin``), which builds its
``past_key_values`` from an embedding of the n prompt ids repeated over the batch. Both run the model on the
B·T real tokens only (the prefix is n extra keys in every attention), so the issue's target is "ours no
slower" with equal losses, and memory of both.

Model: GPT-2-small-sized, RANDOM weights (``--model NAME``: a real one, e.g. SmolLM2); batch 16 real SST-2
dev sentences, right-padded. Forward +
backward + AdamW step, interleaved (ours, PEFT, …) after one warm-up each, medians of ``--repeats``.
``--reparameterize`` trains Li & Liang's MLP (PEFT: ``prefix_projection=True``) instead of P directly.

    python benchmarks/prefix_step.py --threads 1

Writes benchmarks/records/prefix_step.json (``--out``): one record per (device, threads), the latest run.
"""

from __future__ import annotations

import copy

import _common as C
import torch
from soft_prompt_step import measure_steps, sst2_batch

from pt_helpers.adapters import PromptedModel
from pt_helpers.device import get_device
from pt_helpers.frozen import attention_geometry, freeze
from pt_helpers.prefix import PrefixEncoder, peft_twin

# A seconds-long setting that tests/test_benchmarks.py runs, so a rename in the package can never break this script.
SMOKE_ARGS = ["--n", "2", "--batch-size", "2", "--repeats", "1", "--n-layer", "1", "--n-embd", "32", "--n-head", "2"]
SMOKE_ARGS += ["--device", "cpu", "--threads", "1"]


def run_one(model, tokenizer, n: int, batch_size: int, device, repeats: int, reparameterize: bool, amp: bool) -> dict:
    batch = sst2_batch(tokenizer, batch_size, device)
    torch.manual_seed(n)
    encoder = PrefixEncoder(attention_geometry(model), n, reparameterize=reparameterize, init_std=0.5).to(device)
    ours = PromptedModel(model, encoder)
    twin = peft_twin(copy.deepcopy(model), encoder)
    twin.eval()  # no dropout: the same function as ours
    twin_params = [p for p in twin.parameters() if p.requires_grad]
    T = batch[0].shape[1]
    row = dict(n=n, B=batch_size, T=T, positions_ours=batch_size * T, positions_peft=batch_size * T)
    row.update(measure_steps(ours, twin, list(encoder.parameters()), twin_params, batch, device, repeats, amp))
    row["position_ratio"] = 1.0
    return row


def main(argv=None) -> dict:
    parser = C.step_parser(__doc__, "prefix_step")
    parser.add_argument("--reparameterize", action="store_true", help="train P = MLP(E) (Li & Liang)")
    args = parser.parse_args(argv)
    C.set_threads(args.threads)
    device = get_device(args.device)
    model, tokenizer, label = C.build_model(args, device)
    model = freeze(model)
    rec = dict(
        script="benchmarks/prefix_step.py",
        comparison="deep-prompt (prefix) training step: ours (PrefixEncoder cache) vs PEFT PrefixTuningConfig",
        **C.environment(device),
        model=label,
        settings=dict(
            n=args.n,
            batch_size=args.batch_size,
            reparameterize=args.reparameterize,
            amp=not args.no_amp and device.type == "cuda",
        ),
        settings_repeats=args.repeats,
        variant=C.model_variant(
            f"n={','.join(map(str, args.n))}, B={args.batch_size}" + (", MLP" if args.reparameterize else ""), args
        ),
        rows=[],
    )
    return C.run_step_rows(
        args,
        rec,
        "prefix_step",
        lambda n: run_one(
            model, tokenizer, n, args.batch_size, device, args.repeats, args.reparameterize, not args.no_amp
        ),
    )


if __name__ == "__main__":
    main()

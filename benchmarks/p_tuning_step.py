"""Benchmark: one P-tuning training step (prompt = a small encoder's output), ours vs PEFT ``PromptEncoderConfig``.

Ours: ``pt_helpers.p_tuning.PTuningEncoder`` (E → MLP or BiLSTM → P) in a ``PromptedModel`` with
``share_prompt_cache=True``: the encoder runs once, then P runs through the frozen GPT-2 once per batch and its
keys/values are shared over the batch. PEFT: ``PromptEncoderConfig`` with the same E and encoder weights
(``pt_helpers.p_tuning.peft_twin``), which concatenates P in front of every example: B·(n+T) token positions
per step instead of n + B·T, as for a plain soft prompt.

Model: GPT-2-small-sized, RANDOM weights (``--model NAME``: a real one, e.g. SmolLM2); batch 16 real SST-2 dev
sentences, right-padded. Forward + backward +
AdamW step, equal initial losses checked, interleaved (ours, PEFT, …) after one warm-up each, medians of
``--repeats``; memory as in ``soft_prompt_step.py``.

    python benchmarks/p_tuning_step.py --threads 1                  # MLP encoder, n = 20 and 100
    python benchmarks/p_tuning_step.py --encoder lstm --threads 1

Writes benchmarks/records/p_tuning_step.json (``--out``): one record per (device, threads, setting), the latest run.
"""

from __future__ import annotations

import copy

import _common as C
import torch
from soft_prompt_step import measure_steps, sst2_batch

from pt_helpers.adapters import PromptedModel
from pt_helpers.device import get_device
from pt_helpers.frozen import freeze
from pt_helpers.p_tuning import PTuningEncoder, peft_twin

# A seconds-long setting that tests/test_benchmarks.py runs, so a rename in the package can never break this script.
SMOKE_ARGS = ["--n", "2", "--batch-size", "2", "--repeats", "1", "--n-layer", "1", "--n-embd", "32", "--n-head", "2"]
SMOKE_ARGS += ["--device", "cpu", "--threads", "1"]


def run_one(model, tokenizer, n: int, batch_size: int, device, repeats: int, encoder: str, amp: bool) -> dict:
    batch = sst2_batch(tokenizer, batch_size, device)
    d = C.hidden_size(model)
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
    parser = C.step_parser(__doc__, "p_tuning_step")
    parser.add_argument("--encoder", default="mlp", choices=["mlp", "lstm"], help="the prompt encoder")
    args = parser.parse_args(argv)
    C.set_threads(args.threads)
    device = get_device(args.device)
    model, tokenizer, label = C.build_model(args, device)
    model = freeze(model)
    rec = dict(
        script="benchmarks/p_tuning_step.py",
        comparison="P-tuning training step: ours (encoder once, shared prompt cache) vs PEFT PromptEncoderConfig",
        **C.environment(device),
        model=label,
        settings=dict(n=args.n, batch_size=args.batch_size, encoder=args.encoder),
        settings_repeats=args.repeats,
        variant=C.model_variant(f"n={','.join(map(str, args.n))}, B={args.batch_size}, {args.encoder}", args),
        rows=[],
    )
    return C.run_step_rows(
        args,
        rec,
        "p_tuning_step",
        lambda n: run_one(model, tokenizer, n, args.batch_size, device, args.repeats, args.encoder, not args.no_amp),
    )


if __name__ == "__main__":
    main()

"""Benchmark: k-shot label scoring — the course's cached scorer vs lm-evaluation-harness vs the naive loop.

Three scorers of the same requests — log P(label word | BOS + k-shot prefix + test input), SST-2 in
Zhao et al.'s format, every (input, label) pair:

* **ours**: ``pt_helpers.icl.score_label_words_cached`` — the shared prefix runs once; each batch of inputs
  is packed into one sequence on its key/value cache (≈ P + n·S token positions, plus C·(ℓ−1) per input for
  labels of ℓ > 1 tokens);
* **peer**: lm-evaluation-harness's ``HFLM.loglikelihood`` (the field's standard scorer; ``pip install
  -e ".[bench]"``), given the same tokens (the context string starts with GPT-2's BOS text, which its
  tokenizer turns into the BOS id; the script checks every request's token ids equal ours). It runs every
  context in full, once per distinct context when continuations are one token (≈ n·(P+S) positions);
* **naive**: ``pt_helpers.icl.score_label_words_naive`` — one full pass per (input, label) pair
  (≈ n·C·(P+S) positions), as Zhao et al.'s evaluation loop does.

The model is GPT-2-small-sized with RANDOM weights (speed does not depend on them; the log-probabilities
are meaningless as language, but must agree between the scorers to 1e-4), or with ``--model NAME`` a real
model and its own tokenizer (``_common.build_model``; e.g. SmolLM2-135M-Instruct, whose start token is
``<|endoftext|>``, not its tokenizer's BOS: lm-eval is given the course's, ``lm.bos_token_id``). The calls are
interleaved (ours, peer, naive, ours, …) after one warm-up each; medians of ``--repeats``.

    python benchmarks/icl_scoring.py --threads 1                      # the issue's setting: 200 inputs, k = 8
    python benchmarks/icl_scoring.py --threads 1 --repeats 1 --model HuggingFaceTB/SmolLM2-135M-Instruct
    OMP_NUM_THREADS=2 python benchmarks/icl_scoring.py --threads 2

Writes benchmarks/records/icl_scoring.json (``--out``): one record per (device, threads), the latest run.
"""

from __future__ import annotations

import argparse
import warnings

import _common as C
import torch

from pt_helpers import icl
from pt_helpers.data import load_task, subsample
from pt_helpers.device import get_device
from pt_helpers.lm import bos_token_id
from pt_helpers.models import load_tokenizer

# A seconds-long setting that tests/test_benchmarks.py runs, so a rename in the package can never break this script.
SMOKE_ARGS = ["--n-inputs", "3", "--k", "1", "--n-layer", "1", "--n-embd", "32", "--n-head", "2", "--threads", "1"]
SMOKE_ARGS += ["--repeats", "1"]
SIDES = ("ours", "peer", "naive")
TOLERANCE = 1e-4  # the agreement: log-probs (magnitude ≈ 11 here) equal to 1e-4, absolute


def requests(tokenizer, n_inputs: int, k: int, seed: int) -> dict:
    """The SST-2 k-shot requests: the shared context (key "prefix"), queries, label words, and every piece's
    token ids."""
    fmt = icl.prompt_format("sst2")
    test = subsample(load_task("sst2", "dev"), n_inputs, seed=seed)
    demos = icl.sample_demonstrations(load_task("sst2", "train"), k, seed=seed, exclude_texts=test["text"])
    context, queries = icl.build_context_and_queries(demos, test["text"], fmt)
    return dict(
        prefix=context,  # request keys keep their recorded spelling (records/, icl_growth.py)
        queries=queries,
        label_words=list(fmt.label_words),
        prefix_ids=icl.encode_context(tokenizer, context),
        input_ids=icl.encode_inputs(tokenizer, queries),
        label_ids=icl.label_word_ids(tokenizer, fmt.label_words),
    )


def positions(req: dict) -> dict[str, int]:
    """Token positions each scorer runs through the model, counted from the actual tokens.

    naive: every (input, label) sequence in full, Σ_i Σ_c (P + S_i + ℓ_c) ≈ n·C·(P+S);
    peer: once per distinct context + continuation[:-1], Σ (P + S_i + ℓ_c − 1), = n·(P+S) for one-token labels;
    ours: the prefix once (P − 1) and per input 1 + S_i + Σ_c (ℓ_c − 1) ≈ P + n·S for one-token labels.
    """
    P, labels = len(req["prefix_ids"]), req["label_ids"]
    naive = sum(P + len(q) + len(t) for q in req["input_ids"] for t in labels)
    peer_keys = {(i, tuple(t[:-1])) for i in range(len(req["input_ids"])) for t in labels}
    peer = sum(P + len(req["input_ids"][i]) + len(rest) for i, rest in peer_keys)
    ours = P - 1 + sum(1 + len(q) + sum(len(t) - 1 for t in labels) for q in req["input_ids"])
    return dict(naive=naive, peer=peer, ours=ours)


def peer_scorer(model, tokenizer, req: dict, batch_size: int, device: torch.device):
    """A function scoring ``req`` with lm-evaluation-harness's ``HFLM.loglikelihood`` → (n, C) tensor.

    Raises ImportError when lm-eval is not installed. Checks first that the harness tokenizes every request
    into exactly our token ids (BOS + prefix + input, then the label word).
    """
    import logging

    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    for name in ("lm-eval", "lm_eval", "lm_eval.models.huggingface"):
        logging.getLogger(name).setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device=str(device))
    # the text of the course's start token (``lm.bos_token_id``: GPT-2's BOS, but ``<|endoftext|>`` for SmolLM2,
    # whose tokenizer names the chat-turn marker ``<|im_start|>`` as BOS): the harness's tokenizer maps that text
    # to the same id we prepend, which the check below confirms id by id
    bos = tokenizer.convert_ids_to_tokens(bos_token_id(tokenizer))
    contexts = [bos + req["prefix"] + q for q in req["queries"]]
    for i, ctx in enumerate(contexts):
        for c, word in enumerate(req["label_words"]):
            ctx_ids, cont_ids = lm._encode_pair(ctx, word)  # what loglikelihood() will feed the model
            ours = (req["prefix_ids"] + req["input_ids"][i], req["label_ids"][c])
            if (list(ctx_ids), list(cont_ids)) != (list(ours[0]), list(ours[1])):
                raise RuntimeError(f"lm-eval tokenizes request ({i}, {word!r}) differently from the course")
    instances = [
        Instance(request_type="loglikelihood", doc={}, arguments=(ctx, word), idx=c)
        for ctx in contexts
        for c, word in enumerate(req["label_words"])
    ]
    n, n_labels = len(contexts), len(req["label_words"])

    def score() -> torch.Tensor:
        out = lm.loglikelihood(instances, disable_tqdm=True)
        return torch.tensor([lp for lp, _ in out], dtype=torch.float32).view(n, n_labels)

    return score


def run(
    n_inputs: int = 200,
    k: int = 8,
    n_layer: int = 12,
    n_embd: int = 768,
    n_head: int = 12,
    batch_size: int = 16,
    seed: int = 0,
    device: str | None = None,
    repeats: int = 3,
    sides: tuple[str, ...] = SIDES,
    model=None,
    tokenizer=None,
    label: str | None = None,
    model_name: str | None = None,
) -> dict:
    """Time the scorers on the same requests; returns a record with times, ratios, positions and agreement.

    ``model``/``tokenizer``: a model already built (``_common.build_model``), with its record ``label`` and, for
    a real model, its ``model_name`` (in the record's variant); else a random GPT-2 of the given size.
    """
    dev = get_device(device)
    tokenizer = tokenizer or load_tokenizer()
    model = (model or C.gpt2(n_layer, n_embd, n_head, seed)).to(dev)
    label = label or C.model_label(n_layer, n_embd)
    req = requests(tokenizer, n_inputs, k, seed)
    small = requests(tokenizer, min(n_inputs, 2), k, seed)  # the warm-up: the same code on 2 inputs

    def scorers(r: dict) -> dict:
        args = (model, tokenizer, r["prefix"], r["queries"], r["label_words"])
        fns = {
            "ours": lambda: icl.score_label_words_cached(*args, batch_size=batch_size),
            "naive": lambda: icl.score_label_words_naive(*args, batch_size=batch_size),
        }
        if "peer" in sides:
            fns["peer"] = peer_scorer(model, tokenizer, r, batch_size, dev)
        return {s: fns[s] for s in SIDES if s in sides}

    peer_note = None
    try:
        fns, warmups = scorers(req), scorers(small)
    except ImportError as exc:
        peer_note = f"lm-eval not installed ({exc}); pip install -e '.[bench]'"
        print(f"peer skipped: {peer_note}")
        sides = tuple(s for s in sides if s != "peer")
        fns, warmups = scorers(req), scorers(small)
    env = C.environment(dev)  # before timing: the load average at the start of the run
    stats, results = C.interleaved(fns, repeats, dev, warmups=warmups)
    ref = results["ours"]
    agreement = {}
    for side, res in results.items():
        if side == "ours":
            continue
        diff = float((res - ref).abs().max())
        agreement[side] = dict(
            max_abs_diff=diff, predictions_identical=bool(torch.equal(res.argmax(-1), ref.argmax(-1)))
        )
        if diff > TOLERANCE:  # not the same numbers: no speed comparison is meaningful
            raise RuntimeError(f"{side} log-probs differ from ours by {diff:.2e} > {TOLERANCE}")
    pos = positions(req)
    rec = dict(
        script="benchmarks/icl_scoring.py",
        comparison="ICL label scoring: ours (cached) vs lm-eval HFLM.loglikelihood vs naive per-pair loop",
        **env,
        model=label,
        model_name=model_name,
        n_parameters=sum(p.numel() for p in model.parameters()),
        settings=dict(task="sst2", k=k, n_inputs=n_inputs, n_labels=len(req["label_words"]), batch_size=batch_size),
        settings_repeats=repeats,
        variant=f"k={k}, n={n_inputs}, {'+'.join(stats)}" + (f", model={model_name}" if model_name else ""),
        seed=seed,
        prefix_tokens=len(req["prefix_ids"]),
        mean_input_tokens=round(sum(map(len, req["input_ids"])) / max(1, n_inputs), 1),
        label_tokens=[len(t) for t in req["label_ids"]],
        times=stats,
        positions=pos,
        agreement=agreement,
        tolerance=TOLERANCE,
        peer_note=peer_note,
    )
    for side in stats:
        if side != "ours":
            rec[f"speedup_vs_{side}"] = stats[side]["wall_s"] / stats["ours"]["wall_s"]
            rec[f"cpu_speedup_vs_{side}"] = stats[side]["cpu_s"] / max(stats["ours"]["cpu_s"], 1e-9)
            rec[f"position_ratio_{side}"] = pos[side] / pos["ours"]
    return rec


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n-inputs", type=int, default=200, help="test inputs (the issue's setting: 200)")
    p.add_argument("--k", type=int, default=8, help="demonstrations in the shared prefix")
    C.add_model_args(p)
    p.add_argument("--batch-size", type=int, default=16, help="inputs per pass (ours); requests per pass (others)")
    p.add_argument("--repeats", type=int, default=3, help="timed calls of each scorer, interleaved; medians")
    p.add_argument("--sides", nargs="+", default=list(SIDES), choices=SIDES)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if present)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (set OMP_NUM_THREADS to the same)")
    p.add_argument("--out", default=None, help="JSON file (default: benchmarks/records/icl_scoring.json)")
    a = p.parse_args(argv)
    C.set_threads(a.threads)
    model, tokenizer, label = C.build_model(a, get_device(a.device), a.seed)
    print(f"setting: k={a.k}, {a.n_inputs} SST-2 inputs × 2 labels, {label}")
    rec = run(
        a.n_inputs, a.k, a.n_layer, a.n_embd, a.n_head, a.batch_size, a.seed, a.device, a.repeats, a.sides,
        model, tokenizer, label, a.model,
    )  # fmt: skip
    print(f"{rec['device']}; prefix {rec['prefix_tokens']} tokens, inputs {rec['mean_input_tokens']} on average")
    for side, st in rec["times"].items():
        print(f"{side:6s} {st['wall_s']:8.2f} s wall  {st['cpu_s']:8.2f} s CPU   {rec['positions'][side]:8d} positions")
    for side, ag in rec["agreement"].items():
        print(
            f"vs {side}: {rec[f'speedup_vs_{side}']:.1f}× wall, {rec[f'cpu_speedup_vs_{side}']:.1f}× CPU time, "
            f"positions {rec[f'position_ratio_{side}']:.1f}×; max |Δ log-prob| {ag['max_abs_diff']:.1e}, "
            f"predictions identical {ag['predictions_identical']}"
        )
    print(f"load average {rec['load_average_start']}")
    C.write_record(C.out_path(a.out, "icl_scoring"), rec)
    return rec


if __name__ == "__main__":
    main()

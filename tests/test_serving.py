"""Tests of pt_helpers.serving: mixed-task batches equal per-task serving; bytes; ensembles; readings."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from _helpers import CAUSAL_NAMES
from torch.testing import assert_close

from pt_helpers.classifiers import classifier_for
from pt_helpers.errors import CourseError, PromptError, PromptShapeError
from pt_helpers.p_tuning import make_p_tuning
from pt_helpers.prefix import make_prefix
from pt_helpers.serving import (
    MixedPrompts,
    MultiTaskServer,
    adapter_bytes,
    ensemble_logits,
    length_chunks,
    model_bytes,
    prompt_from,
    pull_toward_text,
    reading,
    reading_match,
    target_token_ids,
    time_serving,
    truncated_encoder,
    vote,
)
from pt_helpers.soft_prompt import make_prompt

warnings.filterwarnings("ignore", message=".*[Tt]oken type ids.*")
TEXTS = [
    "a gripping, beautifully acted film",
    "What is the capital of France ?",
    "Stocks fell sharply after the central bank raised rates.",
    "dull",
    "Who wrote Hamlet ?",
    "The team won the championship in overtime.",
    "the plot goes nowhere and the jokes fall flat",
]
TASKS = ["sst2", "trec", "agnews", "sst2", "trec", "agnews", "sst2"]


def _server(loaded, n=3, pool_prompt=False, share_prompt_cache=True):
    model, tok = loaded
    clfs = {}
    for s, task in enumerate(("sst2", "trec", "agnews")):
        adapter = make_prompt(model, tok, n, "vocab", seed=s) if s != 1 else make_p_tuning(model, tok, n, seed=s)
        # the course's classifier of each task: label words on a causal LM, label sentences on an encoder
        clfs[task] = classifier_for(model, tok, task, adapter, pool_prompt=pool_prompt, max_length=32)
    return MultiTaskServer(clfs, share_prompt_cache=share_prompt_cache)


@pytest.mark.parametrize("family, pool_prompt", [("minilm", False), ("minilm", True), ("gpt2", False)])
def test_mixed_batch_equals_each_task_alone(family, pool_prompt, minilm, random_gpt2):
    loaded = {"minilm": minilm, "gpt2": random_gpt2}[family]
    server = _server(loaded, pool_prompt=pool_prompt)
    mixed = server.logits(TEXTS, TASKS)
    assert [len(r) for r in mixed] == [{"sst2": 2, "trec": 6, "agnews": 4}[t] for t in TASKS]
    for task, clf in server.classifiers.items():
        idx = [i for i, t in enumerate(TASKS) if t == task]
        with torch.no_grad():
            alone = clf(*clf.tokenize([TEXTS[i] for i in idx])).float().cpu()  # (rows, C), own padding
        got = torch.stack([mixed[i] for i in idx])
        # logits are cos/0.05 (up to 20) or an LM's logits: an atol relative to their magnitude absorbs the
        # float32 round-off of a different padding length; a wrong prompt per row changes them by far more
        assert_close(got, alone, rtol=1e-4, atol=1e-4 * max(1.0, alone.abs().max().item()))
    assert np.array_equal(server.predict(TEXTS, TASKS, batch_size=4), server.predict_alone(TEXTS, TASKS))


@pytest.mark.parametrize("family", ["gpt2", "llama", "gemma2"])
def test_mixed_causal_batch_reads_each_tasks_cached_prompt_as_concatenation_does(family):
    """The row cache (K prompts run once, row b gathers its own) gives concatenation's logits, per row.

    llama: grouped-query attention (fewer key/value heads than query heads) and rotary positions; gemma2:
    sliding-window layers. A row given another task's prompt would differ far beyond the tolerance."""
    from pt_helpers.models import random_model

    loaded = random_model(CAUSAL_NAMES[family], "causal", seed=0)
    cached, concatenated = _server(loaded), _server(loaded, share_prompt_cache=False)
    for clf_a, clf_b in zip(cached.classifiers.values(), concatenated.classifiers.values()):
        clf_b.adapter.load_state_dict(clf_a.adapter.state_dict())  # the same prompts on both sides
    got, want = cached.logits(TEXTS, TASKS), concatenated.logits(TEXTS, TASKS)
    scale = max(r.abs().max().item() for r in want)
    for g, w in zip(got, want):
        # float32 round-off of different summation orders, relative to the logits' magnitude
        assert_close(g, w, rtol=1e-4, atol=1e-4 * max(1.0, scale))
    assert np.array_equal(cached.predict(TEXTS, TASKS, batch_size=4), cached.predict_alone(TEXTS, TASKS))
    # what makes it cheaper: the cache holds K = 3 prompts, not one per row
    ids, mask = cached.tokenize(TEXTS, TASKS)
    cached.mixed.rows = cached._task_ids(TASKS)
    prompts, rows = cached.mixed.distinct_prompts()
    cached.mixed.rows = None
    assert prompts.shape[0] == 3 and rows.tolist() == [0, 1, 2, 0, 1, 2, 0]


def test_mixed_rows_train_through_the_row_cache():
    """Gradients reach each task's prompt only from its own rows (the row cache keeps the graph)."""
    from pt_helpers.models import random_model

    model, tok = random_model(CAUSAL_NAMES["llama"], "causal", seed=0)
    prompts = [make_prompt(model, tok, 3, "random", seed=s) for s in range(3)]
    mixed = MixedPrompts(prompts)
    from pt_helpers.adapters import PromptedModel

    engine = PromptedModel(model, mixed)
    enc = tok(["a b c", "d e", "f g h i"], return_tensors="pt", padding=True)
    mixed.rows = torch.tensor([0, 2, 0])
    out = engine(enc["input_ids"], enc["attention_mask"], labels=enc["input_ids"])
    out.loss.backward()
    grads = [p.weight.grad for p in prompts]
    assert grads[0] is not None and grads[0].abs().sum() > 0 and grads[2].abs().sum() > 0
    assert grads[1] is None or grads[1].abs().sum() == 0


def test_rows_really_read_their_own_prompt(minilm):
    server = _server(minilm)
    own = server.logits(TEXTS[:1], ["sst2"])[0]
    torch.manual_seed(0)  # change only the SST-2 prompt (not by a constant: the embeddings' LayerNorm removes that)
    server.classifiers["sst2"].adapter.weight.data += torch.randn_like(server.classifiers["sst2"].adapter.weight)
    assert not torch.allclose(server.logits(TEXTS[:1], ["sst2"])[0], own)
    trec = server.logits(TEXTS[1:2], ["trec"])[0]
    assert_close(trec, server.classifiers["trec"](*server.classifiers["trec"].tokenize(TEXTS[1:2]))[0].detach())


def test_bad_servers_are_clear_errors(minilm, random_bert):
    model, tok = minilm
    a = classifier_for(model, tok, "sst2", make_prompt(model, tok, 3, "vocab"))
    b = classifier_for(model, tok, "trec", make_prompt(model, tok, 4, "vocab"))
    with pytest.raises(PromptShapeError, match="same length"):
        MultiTaskServer({"sst2": a, "trec": b})
    other = classifier_for(random_bert.model, random_bert.tokenizer, "trec", make_prompt(*random_bert, 3, "vocab"))
    with pytest.raises(CourseError, match="ONE frozen model"):
        MultiTaskServer({"sst2": a, "trec": other})
    with pytest.raises(PromptError, match="input-layer"):
        MixedPrompts([make_prefix(model, tok, 3)])
    with pytest.raises(CourseError, match="unknown task"):
        MultiTaskServer({"sst2": a}).logits(["x"], ["rte"])
    with pytest.raises(CourseError):
        MultiTaskServer({})


def test_bytes_per_task(minilm):
    model, tok = minilm
    prompt = make_prompt(model, tok, 20, "vocab")
    assert adapter_bytes(prompt) == 20 * 384 * 4
    n_params = sum(p.numel() for p in model.parameters())
    assert model_bytes(model) >= 4 * n_params  # float32 weights (and buffers)
    assert adapter_bytes(make_p_tuning(model, tok, 20)) == adapter_bytes(prompt)  # only P is kept


def test_ensemble_scores_k_prompts_in_one_batch_and_votes(minilm):
    model, tok = minilm
    members = {
        f"seed{s}": classifier_for(model, tok, "sst2", make_prompt(model, tok, 3, "vocab", seed=s), max_length=32)
        for s in range(3)
    }
    server = MultiTaskServer(members)
    logits = ensemble_logits(server, TEXTS[:4], batch_size=6)
    assert logits.shape == (4, 3, 2)
    for k, clf in enumerate(members.values()):
        with torch.no_grad():
            alone = clf(*clf.tokenize(TEXTS[:4])).float().cpu()
        assert_close(logits[:, k], alone, rtol=1e-4, atol=1e-4 * max(1.0, alone.abs().max().item()))
    votes = torch.tensor([[[2.0, 0.0], [0.0, 1.0], [0.0, 3.0]], [[5.0, 0.0], [1.0, 0.0], [0.0, 9.0]]])
    assert vote(votes).tolist() == [1, 0]  # majority, not the largest logit
    assert vote(torch.tensor([[[1.0, 0.0], [0.0, 4.0]]])).tolist() == [1]  # a tie: summed probability decides


def test_timing_reports_both(minilm):
    res = time_serving(_server(minilm), TEXTS, TASKS, batch_size=4)
    assert res["n"] == len(TEXTS) and res["mixed_examples_per_s"] > 0 and res["per_task_examples_per_s"] > 0


def test_prompt_transfer_and_reading(minilm):
    model, tok = minilm
    source = make_p_tuning(model, tok, 4, seed=0)
    init = prompt_from(source)
    assert init.weight.requires_grad
    assert_close(init.weight.detach(), source().detach())
    ids = target_token_ids(tok, "the cat sat", 4)
    assert len(ids) == 4 and ids[3] == ids[0]  # repeated to length n
    target = model.get_input_embeddings().weight[torch.tensor(ids)].detach().clone()
    assert reading(target, model).tolist() == ids
    assert reading_match(target, model, ids) == 1.0
    pull = pull_toward_text(init, model, ids, gamma=1.0)
    assert pull().item() > 0
    init.weight.data.copy_(target)
    assert_close(pull(), torch.tensor(0.0), atol=1e-5, rtol=0)  # cosine 1 at every position (unit-scale terms)
    with pytest.raises(PromptError):
        target_token_ids(tok, "", 4)


def test_truncated_encoder(minilm):
    model, _ = minilm
    cut = truncated_encoder(model, 2)
    assert len(cut.encoder.layer) == 2 and len(model.encoder.layer) == 6
    with pytest.raises(CourseError, match="n_layers"):
        truncated_encoder(model, 7)


def test_fit_adds_the_extra_loss_and_the_pull_moves_the_reading(minilm):
    from pt_helpers.training import TrainSettings, fit

    model, tok = minilm
    ids = target_token_ids(tok, "the cat sat on the mat", 4)
    data = (["great film", "awful film", "loved it", "hated it"], [1, 0, 1, 0])
    run = TrainSettings(max_steps=4, batch_size=4, eval_every=4, progress=False, lr=0.05)
    results = {}
    for gamma in (0.0, 50.0):
        prompt = make_prompt(model, tok, 4, "vocab", seed=0)
        pull = pull_toward_text(prompt, model, ids, gamma)
        res = fit(classifier_for(model, tok, "sst2", prompt), data, data, run, extra_loss=pull)
        results[gamma] = (res.history["loss"], pull_toward_text(prompt, model, ids, 1.0)().item())
    assert results[50.0][0][0] > results[0.0][0][0]  # the same first batch, plus the pull term
    assert results[50.0][1] < results[0.0][1]  # the pulled prompt ends closer to the target tokens


def _brute_force_slots(lengths, k):
    """Fewest padded slots over EVERY grouping of the rows into at most k batches (small inputs only)."""
    import itertools

    best = float("inf")
    for labels in itertools.product(range(k), repeat=len(lengths)):
        groups = [[x for x, g in zip(lengths, labels) if g == j] for j in range(k)]
        best = min(best, sum(len(g) * max(g) for g in groups if g))
    return best


@pytest.mark.parametrize("seed", range(6))
def test_length_chunks_pads_least_of_all_groupings(seed):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 40, size=7).tolist()
    for k in (1, 2, 3):
        groups = length_chunks(lengths, k)
        assert sorted(i for g in groups for i in g) == list(range(7)) and len(groups) <= k
        slots = sum(len(g) * max(lengths[i] for i in g) for g in groups)
        assert slots == _brute_force_slots(lengths, k)


def test_length_chunks_bad_k_is_a_clear_error():
    with pytest.raises(CourseError, match="k must be"):
        length_chunks([3, 4], 0)

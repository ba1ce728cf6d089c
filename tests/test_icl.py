"""Tests for pt_helpers.icl: exact cached scoring, prompt building, calibration, demonstration choice."""

from __future__ import annotations

import warnings

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from pt_helpers import icl, packed
from pt_helpers.data import TASKS
from pt_helpers.errors import ContextWindowError, LabelWordError
from pt_helpers.lm import conditional_logprob

DEMOS = [
    ("what is the capital of peru ?", 4),
    ("who wrote hamlet ?", 3),
    ("how many feet in a mile ?", 5),
    ("what does nasa stand for ?", 0),
]
TESTS = ["what is a galaxy ?", "who invented the telephone ?", "x", "how far is it from denver to aspen ?"]
# Label log-probs through two code paths (cached/packed vs padded, other batch shapes): ≈ −11 per token here,
# sums to −35; measured |Δ| ≤ 2e-6. atol 1e-4 also covers a real GPT-2, whose logits sit ~100 below zero
# (~3e-5 there); rtol adds 1e-5 of a multi-token sum. Not looser: on this 2×64 model a padding leak moves a
# log-prob by only ~7e-4, an off-by-one position by > 0.1.
LP = dict(rtol=1e-5, atol=1e-4)


# ------------------------------------------------------------------ the engine: cached == naive
@pytest.mark.parametrize(
    "k, reduction, side", [(0, "sum", "left"), (1, "mean", "right"), (4, "sum", "right"), (4, "mean", "left")]
)
def test_cached_equals_naive(tiny_gpt2, gpt2_tokenizer, k, reduction, side):
    fmt = icl.prompt_format("trec")  # " Abbreviation" is 3 tokens: multi-token labels are exercised
    assert max(len(t) for t in icl.label_word_ids(gpt2_tokenizer, fmt.label_words)) > 1
    context, queries = icl.build_context_and_queries(DEMOS[:k], TESTS, fmt)
    cached = icl.score_label_words_cached(
        tiny_gpt2, gpt2_tokenizer, context, queries, fmt.label_words, reduction=reduction, batch_size=3
    )  # 3 then 1: padding differs
    naive = icl.score_label_words_naive(
        tiny_gpt2,
        gpt2_tokenizer,
        context,
        queries,
        fmt.label_words,
        reduction=reduction,
        batch_size=7,
        padding_side=side,
    )
    assert cached.shape == (len(TESTS), len(fmt.label_words))
    torch.testing.assert_close(cached, naive, **LP)


def test_cached_equals_naive_with_eager_attention(gpt2_tokenizer):
    """The packed block mask is additive, so it also works with the eager (non-SDPA) attention code."""
    torch.manual_seed(1)
    cfg = GPT2Config(n_layer=2, n_head=2, n_embd=32, n_positions=256, vocab_size=50257)
    cfg._attn_implementation = "eager"
    model = GPT2LMHeadModel(cfg).eval()
    fmt = icl.prompt_format("trec")
    context, queries = icl.build_context_and_queries(DEMOS[:2], TESTS, fmt)
    cached = icl.score_label_words_cached(model, gpt2_tokenizer, context, queries, fmt.label_words, batch_size=3)
    naive = icl.score_label_words_naive(model, gpt2_tokenizer, context, queries, fmt.label_words)
    torch.testing.assert_close(cached, naive, **LP)


def test_cached_handles_empty_inputs_and_large_batches(tiny_gpt2, gpt2_tokenizer):
    """An input with no tokens is scored from the context's last position; one batch bigger than n is fine."""
    words = [" yes", " no thanks"]
    cached = icl.score_label_words_cached(
        tiny_gpt2, gpt2_tokenizer, "Question: ok?\nAnswer:", ["", " maybe"], words, batch_size=64
    )
    naive = icl.score_label_words_naive(tiny_gpt2, gpt2_tokenizer, "Question: ok?\nAnswer:", ["", " maybe"], words)
    torch.testing.assert_close(cached, naive, **LP)


def test_cached_equals_unbatched_conditional_logprob(tiny_gpt2, gpt2_tokenizer):
    fmt = icl.prompt_format("sst2")
    context, queries = icl.build_context_and_queries([("a gem .", 1), ("dull .", 0)], ["pretty good", "bad"], fmt)
    cached = icl.score_label_words_cached(tiny_gpt2, gpt2_tokenizer, context, queries, [" Negative", " great movie"])
    for i, q in enumerate(queries):
        for c, word in enumerate([" Negative", " great movie"]):
            assert cached[i, c].item() == pytest.approx(
                conditional_logprob(tiny_gpt2, gpt2_tokenizer, context + q, word), rel=LP["rtol"], abs=LP["atol"]
            )


def test_mean_reduction_divides_by_label_length(tiny_gpt2, gpt2_tokenizer):
    words = [" Positive", " not at all good"]
    s = icl.score_label_words_cached(tiny_gpt2, gpt2_tokenizer, "", ["Review: ok\nSentiment:"], words, reduction="sum")
    m = icl.score_label_words_cached(tiny_gpt2, gpt2_tokenizer, "", ["Review: ok\nSentiment:"], words, reduction="mean")
    n = torch.tensor([len(t) for t in icl.label_word_ids(gpt2_tokenizer, words)], dtype=s.dtype)
    torch.testing.assert_close(m, s / n, rtol=1e-5, atol=1e-6)  # same forward pass, only the division differs
    with pytest.raises(ValueError, match="reduction"):
        icl.score_label_words_cached(tiny_gpt2, gpt2_tokenizer, "", ["x"], words, reduction="first")


def test_separate_tokenization_equals_joint_for_course_formats(gpt2_tokenizer):
    for task in [t for t, info in TASKS.items() if info.icl_label_words]:
        fmt = icl.prompt_format(task)
        for k in (0, 2):
            demos = [(t, y % len(fmt.label_words)) for t, y in DEMOS[:k]]
            context, (query,) = icl.build_context_and_queries(demos, [TESTS[1]], fmt)
            joint = icl.encode_context(gpt2_tokenizer, context + query)
            assert joint == icl.encode_context(gpt2_tokenizer, context) + icl.encode_inputs(gpt2_tokenizer, [query])[0]


# ------------------------------------------------------------------ prompt building
def test_build_prompt_separators():
    fmt = icl.prompt_format("sst2")
    prompt = icl.build_prompt([("a gem .", 1), ("dull .", 0)], "pretty good", fmt)
    assert prompt == (
        "Review: a gem .\nSentiment: Positive\n\nReview: dull .\nSentiment: Negative\n\nReview: pretty good\nSentiment:"
    )
    assert icl.build_prompt([], "pretty good", fmt) == "Review: pretty good\nSentiment:"
    fmt_i = icl.prompt_format("agnews")
    assert icl.build_prompt([], "x", fmt_i).startswith(fmt_i.instruction + "\n\nArticle: x\nAnswer:")


def test_prompt_never_contains_test_label():
    fmt = icl.prompt_format("sst2")
    demos = [("a gem .", 1)]
    as_neg = icl.build_prompt(demos, {"text": "pretty good", "label": 0}, fmt)
    as_pos = icl.build_prompt(demos, {"text": "pretty good", "label": 1}, fmt)
    assert as_neg == as_pos and as_neg.endswith("Review: pretty good\nSentiment:")


def test_demonstrations_never_include_the_test_example():
    fmt = icl.prompt_format("sst2")
    with pytest.raises(icl.DemonstrationLeakError, match="also demonstrations"):
        icl.build_prompt([("a gem .", 1), ("pretty good", 1)], "pretty good", fmt)
    pool = [(f"sentence {i}", i % 2) for i in range(20)]
    test = [f"sentence {i}" for i in range(15)]
    for seed in range(10):
        demos = icl.sample_demonstrations(pool, 5, seed, exclude_texts=test)
        assert {d["text"] for d in demos} == {f"sentence {i}" for i in range(15, 20)}
    with pytest.raises(Exception, match="cannot draw 6"):
        icl.sample_demonstrations(pool, 6, 0, exclude_texts=test)


def test_seeds_give_identical_demonstration_sets():
    pool = [(f"s{i}", i % 3) for i in range(100)]
    a, b = icl.sample_demonstrations(pool, 8, seed=7), icl.sample_demonstrations(pool, 8, seed=7)
    assert a == b
    assert a != icl.sample_demonstrations(pool, 8, seed=8)
    bal = icl.sample_demonstrations(pool, 6, seed=3, balanced=True)
    assert sorted(d["label"] for d in bal) == [0, 0, 1, 1, 2, 2]
    assert icl.shuffle_demonstrations(a, 1) == icl.shuffle_demonstrations(a, 1)
    assert sorted(map(str, icl.shuffle_demonstrations(a, 1))) == sorted(map(str, a))


def test_randomize_labels_keeps_texts_and_is_seeded():
    demos = [(f"s{i}", 0) for i in range(40)]
    r = icl.randomize_labels(demos, 4, seed=0)
    assert [d["text"] for d in r] == [t for t, _ in demos]
    assert {d["label"] for d in r} == {0, 1, 2, 3}
    assert r == icl.randomize_labels(demos, 4, seed=0)


# ------------------------------------------------------------------ errors
def test_prompt_longer_than_context_window(gpt2_tokenizer):
    torch.manual_seed(0)
    small = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=32, n_positions=40, vocab_size=50257)).eval()
    fmt = icl.prompt_format("sst2")
    demos = [(f"this is demonstration number {i} , fairly long .", i % 2) for i in range(4)]
    with pytest.raises(ContextWindowError, match=r"context window is 40 tokens") as err:
        icl.score_icl(small, gpt2_tokenizer, demos, ["short"], fmt, content_free_inputs=())
    assert "context with 4 demonstrations" in str(err.value)
    context, queries = icl.build_context_and_queries(demos, ["short"], fmt)
    with pytest.raises(ContextWindowError, match=r"tokens but the model's context window is 40"):
        icl.score_label_words_cached(small, gpt2_tokenizer, context, queries, fmt.label_words)
    with pytest.warns(UserWarning, match=r"dropped \d of 4 demonstrations"):
        sc = icl.score_icl(small, gpt2_tokenizer, demos, ["short"], fmt, content_free_inputs=(), on_overflow="drop")
    assert 0 < sc.n_demonstrations < 4 and sc.context.endswith(icl.format_example(demos[-1][0], fmt, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # fits: no warning, nothing dropped
        assert (
            icl.score_icl(
                small, gpt2_tokenizer, demos[:1], ["short"], fmt, content_free_inputs=(), on_overflow="drop"
            ).n_demonstrations
            == 1
        )


def test_label_words_empty_or_colliding(gpt2_tokenizer, tiny_gpt2):
    with pytest.raises(LabelWordError, match="tokenizes to nothing"):
        icl.label_word_ids(gpt2_tokenizer, [" Positive", ""])
    with pytest.raises(LabelWordError, match="collide"):
        icl.label_word_ids(gpt2_tokenizer, [" Positive", " Positive"])
    with pytest.raises(LabelWordError, match="at least two"):
        icl.label_word_ids(gpt2_tokenizer, [" Positive"])
    with pytest.raises(LabelWordError, match="collide"):
        icl.score_label_words_cached(tiny_gpt2, gpt2_tokenizer, "", ["x"], [" good", " good"])


# ------------------------------------------------------------------ calibration
def test_contextual_calibration_hand_example():
    # p̂ = [0.7, 0.3], p_cf = [0.8, 0.2]:  W p̂ = [0.7/0.8, 0.3/0.2] = [0.875, 1.5] → [0.368.., 0.631..]
    lp = torch.log(torch.tensor([[0.7, 0.3]])) + 5.0  # any shift: p̂ is renormalised first
    cf = torch.log(torch.tensor([[0.8, 0.2]]))
    q = icl.contextual_calibration(lp, cf)
    # float64 output from float32 logs (≈6e-8 relative rounding; measured 6e-8); any wrong formula is off by > 1e-2
    torch.testing.assert_close(q, torch.tensor([[0.875 / 2.375, 1.5 / 2.375]], dtype=q.dtype), rtol=1e-5, atol=1e-7)
    assert q.argmax().item() == 1  # the label bias toward class 0 is undone


def test_content_free_distribution_averages_raw_probabilities():
    cf = torch.log(torch.tensor([[0.6, 0.2], [0.2, 0.2]]))  # raw (unnormalised) probs, as in Zhao et al.
    p = icl.content_free_distribution(cf)
    torch.testing.assert_close(p, torch.tensor([0.4 / 0.6, 0.2 / 0.6], dtype=p.dtype), rtol=1e-5, atol=1e-7)  # as above
    tiny = torch.tensor([[-2000.0, -2001.0]])  # would underflow as exp(); log space does not
    assert torch.isfinite(icl.content_free_distribution(tiny)).all()


def test_calibration_with_uniform_content_free_changes_nothing():
    lp = torch.randn(5, 3)
    q = icl.contextual_calibration(lp, torch.zeros(3))
    torch.testing.assert_close(q, torch.softmax(lp.double(), -1), rtol=1e-7, atol=1e-9)  # float64 throughout: ~1e-16


# ------------------------------------------------------------------ demonstration choice and metrics
def test_nearest_neighbours_order_and_exclusion():
    pool = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.7, 0.7]]), dim=-1)
    query = torch.nn.functional.normalize(torch.tensor([[1.0, 0.05]]), dim=-1)
    idx = icl.nearest_neighbour_indices(pool, query, 2)
    assert idx.tolist() == [[0, 1]] or idx.tolist() == [[1, 0]]
    assert idx[0, -1].item() in (0, 1) and idx[0, -1].item() == (query @ pool.T).argmax().item()
    ex = icl.nearest_neighbour_indices(pool, query, 2, pool_texts=["q", "b", "c", "d"], query_texts=["q"])
    assert 0 not in ex[0].tolist() and ex[0, -1].item() == 1


def test_accuracy_and_majority_baseline():
    # fractions k/n computed in float32 (≈6e-8 relative); a miscount moves them by ≥ 1/n
    assert icl.accuracy(torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]]), [1, 0, 0]) == pytest.approx(
        2 / 3, rel=1e-6, abs=1e-9
    )
    assert icl.majority_baseline([0, 1, 1, 1], [1, 0, 1, 1, 0]) == pytest.approx(0.6, rel=1e-6, abs=1e-9)


def test_score_icl_shapes(tiny_gpt2, gpt2_tokenizer):
    fmt = icl.prompt_format("sst2")
    sc = icl.score_icl(tiny_gpt2, gpt2_tokenizer, [("a gem .", 1)], ["good", "bad", "meh"], fmt)
    assert sc.logprobs.shape == (3, 2) and sc.content_free_logprobs.shape == (3, 2)
    assert sc.predictions().shape == (3,) and sc.predictions(calibrate=True).shape == (3,)


def test_minilm_nearest_neighbour_is_the_paraphrase():
    """Behaviour on a real pretrained encoder: KATE picks the semantically closest demonstration."""
    from pt_helpers.models import load_model

    enc = load_model("sentence-transformers/all-MiniLM-L6-v2", "encoder", verbose=False)
    assert enc.is_pretrained
    pool = [
        "the film was a delight from start to finish",
        "interest rates rose again this quarter",
        "the team won the championship game",
        "how many moons does jupiter have ?",
    ]
    queries = ["an utterly delightful movie", "the central bank raised rates", "how many moons orbit saturn ?"]
    e_pool = icl.embed_sentences(enc.model, enc.tokenizer, pool)
    e_q = icl.embed_sentences(enc.model, enc.tokenizer, queries)
    torch.testing.assert_close(
        e_pool.norm(dim=-1), torch.ones(len(pool)), rtol=1e-5, atol=1e-6
    )  # norms of 384-d float32 unit vectors
    assert icl.nearest_neighbour_indices(e_pool, e_q, 1)[:, 0].tolist() == [0, 1, 3]


# ------------------------------------------------------------------ paired comparisons (every ranking in 03)
def test_compare_paired_labels_identical_arms_degenerate():
    same = [1, 0, 1, 1, 0, 1, 0, 1]
    row = icl.compare_paired(
        "gold vs random", same, same, names=("gold", "random"), predictions_a=[1] * 8, predictions_b=[1] * 8
    )
    assert row["degenerate"] and row["verdict"].startswith("degenerate") and row["n"] == 8
    assert row["identical predictions"] is True
    import pandas as pd

    table = pd.DataFrame([row])
    assert icl.comparison_verdict(table, ("gold", "random")).startswith("DEGENERATE")


def test_compare_paired_identical_predictions_are_degenerate_even_if_outcomes_were_not_compared():
    a, b = [1, 0, 1, 0], [0, 1, 1, 0]
    row = icl.compare_paired("x", a, b, predictions_a=[2, 1, 0, 3], predictions_b=[2, 1, 0, 3])
    assert row["degenerate"] and "identical predictions" in row["verdict"]


def test_compare_paired_detects_a_real_difference_and_its_direction():
    a = [1] * 30 + [0] * 10
    b = [0] * 30 + [0] * 10  # A right on 30 examples where B is wrong, never the reverse
    row = icl.compare_paired("a vs b", a, b, names=("A", "B"))
    assert not row["degenerate"] and row["verdict"].startswith("A higher") and row["McNemar p"] < 1e-6
    row = icl.compare_paired("b vs a", b, a, names=("A", "B"))
    assert row["verdict"].startswith("B higher")
    noisy = icl.compare_paired("tie", [1, 0] * 10, [0, 1] * 10)
    assert noisy["verdict"].startswith("no detectable difference")


def test_compare_runs_pairs_runs_by_demonstration_set():
    import pandas as pd

    base = dict(k=4, ordering=0, predictions=[1, 0, 1, 1], calibrated_predictions=[0, 0, 1, 1])
    runs = pd.DataFrame(
        [
            dict(base, demo_set=0, correct=[1, 0, 1, 1], calibrated_correct=[0, 0, 1, 1]),
            dict(base, demo_set=1, correct=[1, 1, 1, 1], calibrated_correct=[1, 1, 1, 1]),
        ]
    )
    table = icl.compare_runs(runs, runs, "correct", "calibrated_correct", names=("raw", "calibrated"))
    assert list(table["degenerate"]) == [False, True]  # set 1: identical outcomes (and identical predictions)
    verdict = icl.comparison_verdict(table, ("raw", "calibrated"))
    assert "degenerate in 1" in verdict and "by chance" in verdict
    with pytest.raises(icl.CourseError, match="match"):
        icl.compare_runs(runs, runs.assign(k=8))
    with pytest.raises(icl.CourseError, match="same examples"):
        icl.correct_outcomes([1, 0], [1, 0, 1])


def test_accuracy_vs_k_keeps_per_example_outcomes(tiny_gpt2, gpt2_tokenizer):
    train = [(t, y % 2) for t, y in DEMOS] * 3
    test = [{"text": t, "label": i % 2} for i, t in enumerate(TESTS)]
    fmt = icl.prompt_format("sst2")
    runs = icl.accuracy_vs_k(tiny_gpt2, gpt2_tokenizer, train, test, fmt, ks=[0, 2], n_demo_sets=2, progress=False)
    for _, r in runs.iterrows():
        assert len(r.correct) == len(TESTS) and r.accuracy == pytest.approx(sum(r.correct) / len(TESTS))
        assert r.correct == icl.correct_outcomes(r.predictions, [x["label"] for x in test]).tolist()
    rand = icl.accuracy_vs_k(
        tiny_gpt2, gpt2_tokenizer, train, test, fmt, ks=[2], n_demo_sets=2, random_labels=True, progress=False
    )
    assert len(icl.compare_runs(runs, rand)) == 2  # same (k, set) keys: the same demonstration texts


def test_scorers_build_no_graph_even_when_the_model_has_trainable_weights(tiny_gpt2, gpt2_tokenizer):
    """Every scorer that needs no gradient runs under no_grad: its output has no autograd history, so the
    activations of a long scoring run are freed as it goes (issue 27: 13.9 GB without it on SmolLM2)."""
    assert any(p.requires_grad for p in tiny_gpt2.parameters())
    fmt = icl.prompt_format("sst2")
    context, queries = icl.build_context_and_queries([("great fun", 1)], ["dull", "fine"], fmt)
    labels = icl.label_word_ids(gpt2_tokenizer, fmt.label_words)
    outputs = {
        "score_token_continuations": packed.score_token_continuations(
            tiny_gpt2, icl.encode_context(gpt2_tokenizer, context), icl.encode_inputs(gpt2_tokenizer, queries), labels
        ),
        "score_label_words_cached": icl.score_label_words_cached(
            tiny_gpt2, gpt2_tokenizer, context, queries, fmt.label_words
        ),
        "score_label_words_naive": icl.score_label_words_naive(
            tiny_gpt2, gpt2_tokenizer, context, queries, fmt.label_words
        ),
        "score_icl": icl.score_icl(tiny_gpt2, gpt2_tokenizer, [("great fun", 1)], ["dull"], fmt).logprobs,
    }
    for name, out in outputs.items():
        assert out.grad_fn is None and not out.requires_grad, name


# ------------------------------------------------------------------ chapter 03's findings helpers
def _two_runs():
    import pandas as pd

    base = dict(k=4, ordering=0)
    return pd.DataFrame(
        [
            dict(base, demo_set=0, correct=[1, 0, 1, 1], calibrated_correct=[1, 1, 1, 1]),
            dict(base, demo_set=1, correct=[0, 0, 1, 1], calibrated_correct=[1, 0, 1, 1]),
        ]
    )


def test_runs_with_intervals_gives_each_run_n_and_its_wilson_interval():
    from pt_helpers.stats import accuracy_interval

    table = icl.runs_with_intervals(_two_runs())
    a = accuracy_interval([1, 0, 1, 1])
    assert list(table["n"]) == [4, 4]
    assert table["accuracy [95% CI]"].iloc[0] == f"{a.value:.3f} [{a.low:.3f}, {a.high:.3f}]"
    assert table["calibrated [95% CI]"].iloc[0].startswith("1.000")


def test_compare_pooled_pairs_run_r_with_run_r():
    runs = _two_runs()
    row = icl.compare_pooled("cal vs raw", runs.calibrated_correct, runs.correct, names=("calibrated", "raw"))
    test = row["test"]
    # A only: set 0 example 1, set 1 example 0; B only: none → Δ = 2 / (2 runs × 4 examples)
    assert (test.only_a, test.only_b, test.n, test.n_runs) == (2, 0, 4, 2)
    assert test.difference == pytest.approx(0.25) and row["discordant (A only / B only)"] == "2 / 0"
    assert row["verdict"].startswith("too few separating examples")  # 2 examples carry evidence
    with pytest.raises(icl.CourseError, match="SAME runs"):
        icl.compare_pooled("x", runs.correct, runs.correct.iloc[:1])


def test_label_word_variants_and_their_tokens(gpt2_tokenizer):
    fmt = icl.prompt_format("sst2")
    variants = icl.label_word_variants(fmt.label_words)
    assert list(variants.values())[0] == fmt.label_words
    assert set(variants.values()) == {
        (" Negative", " Positive"),
        ("Negative", "Positive"),
        (" negative", " positive"),
        ("negative", "positive"),
    }
    table = icl.label_word_tokens(gpt2_tokenizer, fmt, (" positive", "positive"))
    ids = gpt2_tokenizer(" positive", add_special_tokens=False)["input_ids"]
    assert table["ids (as scored)"].iloc[0] == ids and table["tokens"].iloc[0][0].startswith("Ġ")
    assert table["ids (as scored)"].iloc[0] != table["ids (as scored)"].iloc[1]  # the space is part of the token
    assert bool(table["same ids in running text"].all())  # after "Sentiment:" GPT-2 cuts both the same way


def test_findings_json_and_table_carry_the_numbers():
    import json

    from pt_helpers.stats import accuracy_interval, pooled_paired_test

    runs = _two_runs()
    test = pooled_paired_test(list(runs.calibrated_correct), list(runs.correct), names=("calibrated", "raw"))
    findings = {"n_test": 4, "acc": accuracy_interval([1, 0, 1, 1]), "sets": [test], "words": {"x": test}}
    plain = json.loads(json.dumps(icl.findings_json(findings)))  # JSON-serialisable
    assert plain["acc"]["kind"] == "Accuracy" and plain["acc"]["value"] == 0.75 and plain["acc"]["n"] == 4
    assert plain["sets"][0]["kind"] == "PooledPairedTest" and plain["sets"][0]["only_a"] == 2
    table = icl.findings_table(findings)
    assert list(table["finding"]) == ["n_test", "acc", "sets [0]", "words: x"]
    assert table["value [95% CI]"].iloc[2] == f"Δ {test.difference:+.3f} [{test.low:+.3f}, {test.high:+.3f}]"

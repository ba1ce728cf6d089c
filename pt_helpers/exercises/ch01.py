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
    # your float32 path (token by token, other shapes) differs by ~1e-5–1e-4 per token on a real GPT-2, whose
    # logits sit ~100 below zero, and the sum grows with the sentence: 1e-3 plus 1e-4 of |log P|. A missing or
    # extra token is off by whole nats.
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
    """Exercise 3: the id of the label word ' negative' as it follows 'Sentiment:' in GPT-2's BPE."""
    expected = tokenizer(" negative", add_special_tokens=False)["input_ids"]
    without_space = tokenizer("negative", add_special_tokens=False)["input_ids"]
    if [token_id] == expected:
        return correct(f"' negative' is the single token {token_id}; the space belongs to the token.")
    if [token_id] == without_space or token_id in without_space:
        return wrong(
            "that is 'negative' without its leading space — a different token from the one that follows 'Sentiment:'."
        )
    return wrong("tokenize ' negative' (with the space) with add_special_tokens=False and read its id.")

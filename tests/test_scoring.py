"""Tests of pt_helpers.scoring: label words as continuations, reductions of token log-probs, accuracy, and the
mean pooling that makes a sentence embedding."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from pt_helpers.scoring import accuracy, as_continuation, mean_pool, reduce_logprobs


def test_a_label_word_continues_the_prompt_after_one_space():
    assert as_continuation("positive") == as_continuation("  positive ") == " positive"


def test_reductions_of_zero_padded_token_logprobs():
    token_lp = torch.tensor([[-1.0, -2.0, 0.0], [-3.0, 0.0, 0.0]])  # a 2-token and a 1-token word, zero-padded
    n_tokens = torch.tensor([2, 1])
    assert reduce_logprobs(token_lp, n_tokens, "sum").tolist() == [-3.0, -3.0]
    assert reduce_logprobs(token_lp, n_tokens, "mean").tolist() == [-1.5, -3.0]
    with pytest.raises(ValueError, match="reduction must be one of"):
        reduce_logprobs(token_lp, n_tokens, "max")


def test_accuracy_from_scores_or_predictions():
    assert accuracy([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]], [1, 0, 0]) == pytest.approx(2 / 3)
    assert accuracy([1, 0, 0], [1, 0, 0]) == 1.0
    with pytest.raises(ValueError, match="3 score rows but 2 labels"):
        accuracy([1, 0, 0], [1, 0])


def test_mean_pool_ignores_padding():
    hidden = torch.randn(2, 4, 3, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    pooled = mean_pool(hidden, mask)
    # float64 means of 2 and 4 vectors: equal to the direct mean up to round-off (rtol 1e-12)
    assert_close(pooled[0], hidden[0, :2].mean(0), rtol=1e-12, atol=1e-12)
    assert_close(pooled[1], hidden[1].mean(0), rtol=1e-12, atol=1e-12)
    hidden[0, 2:] = 1e6  # what padding positions hold does not matter
    assert_close(mean_pool(hidden, mask)[0], pooled[0], rtol=0, atol=0)

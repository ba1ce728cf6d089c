"""Tests of pt_helpers.frozen: freezing and counting, positions and masks under padding, the one cache expander,
the one context check. Adapters built on them are tested in their own modules (test_soft_prompt, test_prefix)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pt_helpers.errors import ContextWindowError
from pt_helpers.frozen import (
    cache_layers,
    check_context,
    count_trainable,
    expand_cache,
    extend_mask,
    freeze,
    real_position_ids,
)


def test_freeze_and_count_trainable_count_a_shared_tensor_once():
    shared = nn.Linear(3, 3)
    model = nn.Sequential(shared, nn.ReLU(), shared, nn.Linear(3, 2))  # the first layer twice, one tensor
    assert count_trainable(model) == (9 + 3) + (6 + 2)
    freeze(model)
    assert count_trainable(model) == 0 and not model.training
    model[3].weight.requires_grad_(True)
    assert count_trainable(model) == 6


def test_real_positions_are_the_same_under_left_right_and_no_padding():
    right = torch.tensor([[1, 1, 1, 0, 0]])
    left = torch.tensor([[0, 0, 1, 1, 1]])
    for offset in (0, 4):  # 4 virtual tokens in front: the real tokens start at position 4
        r, lp = real_position_ids(right, offset), real_position_ids(left, offset)
        assert r[right.bool()].tolist() == lp[left.bool()].tolist() == [offset, offset + 1, offset + 2]
        assert real_position_ids(torch.ones(1, 3, dtype=torch.long), offset).tolist() == [
            [offset, offset + 1, offset + 2]
        ]
    assert extend_mask(left, 2).tolist() == [[1, 1, 0, 0, 1, 1, 1]]


def test_expand_cache_shares_one_row_and_sums_its_gradient_over_the_batch():
    k = torch.randn(1, 2, 3, 4, requires_grad=True)  # (1, n_kv_heads, n, head_dim)
    v = torch.randn(1, 2, 3, 4, requires_grad=True)
    cache = expand_cache([(k, v), (k, v)], batch_size=5)
    layers = cache_layers(cache)
    assert len(layers) == 2 and layers[0][0].shape == (5, 2, 3, 4)
    assert torch.equal(layers[1][1][4], v[0])
    layers[0][0].sum().backward()
    assert torch.equal(k.grad, torch.full_like(k, 5.0))  # five views of one row: the gradient is summed


def test_check_context_names_both_lengths_and_the_fix():
    config = type("Config", (), {"n_positions": 8})()
    check_context(config, 8)  # exactly the window fits
    with pytest.raises(
        ContextWindowError, match=r"9 tokens .* window is 8 tokens; shorten it by at least 1 .*\(use k=2\)"
    ):
        check_context(config, 9, fix="use k=2")

"""Checkers for the exercises of notebook 06 (deep prompts and the method comparison)."""

from __future__ import annotations

import torch

from . import Feedback, close, correct, wrong


def deep_prompt_parameters(n_virtual_tokens: int, n_layers: int, kv_width: int) -> int:
    """Reference: a deep prompt holds a key and a value vector per virtual token per layer, each
    ``kv_width`` = n_kv_heads · head_dim wide (= the hidden size d without grouped-query attention)."""
    return 2 * n_layers * kv_width * n_virtual_tokens


def check_1(answer, n_virtual_tokens: int = 10, n_layers: int = 6, kv_width: int = 384) -> Feedback:
    """Exercise 1: the number of trained parameters of a deep prompt (no MLP) on all-MiniLM-L6-v2."""
    expected = deep_prompt_parameters(n_virtual_tokens, n_layers, kv_width)
    try:
        value = int(answer)
    except (TypeError, ValueError):
        return wrong(f"give a whole number of parameters, got {answer!r}.")
    if value == expected:
        return correct(
            f"{expected:,} = 2 (key and value) × {n_layers} layers × {kv_width} × {n_virtual_tokens} "
            f"virtual tokens — {2 * n_layers}× a soft prompt (input layer only) of the same length."
        )
    if value == n_virtual_tokens * kv_width:
        return wrong("that is a soft prompt (input layer only): a deep prompt has keys AND values at EVERY layer.")
    if value == n_layers * kv_width * n_virtual_tokens:
        return wrong("every layer needs keys and values: two vectors per virtual token per layer.")
    return wrong(f"{value:,} is not it: count vectors per virtual token per layer, times their width.")


def check_2(layer_values_fn) -> Feedback:
    """Exercise 2: ``layer_values_fn(flat, n_layers, n_kv_heads, layer) -> (n_kv_heads, n, head_dim)`` reads the
    values of one layer out of PEFT's flat layout (n, [K_0, V_0, K_1, V_1, …]).

    Checked on a grouped-query geometry (4 query heads sharing 2 key/value heads): a prefix holds keys and
    values for the key/value heads only.
    """
    from ..frozen import AttentionGeometry
    from ..prefix import PrefixEncoder

    geometry = AttentionGeometry(n_layers=3, n_kv_heads=2, head_dim=4, n_heads=4)
    torch.manual_seed(0)
    encoder = PrefixEncoder(geometry, 5)
    flat = encoder().detach()
    layers = [(k[0].detach(), v[0].detach()) for k, v in encoder.virtual_key_values()]  # (n_kv_heads, n, head_dim)
    try:
        for layer, (keys, expected) in enumerate(layers):
            got = torch.as_tensor(layer_values_fn(flat, geometry.n_layers, geometry.n_kv_heads, layer))
            if tuple(got.shape) != tuple(expected.shape):
                return wrong(
                    f"layer {layer}: shape {tuple(got.shape)}, expected (n_kv_heads, n, head_dim) = "
                    f"{tuple(expected.shape)}."
                )
            if torch.allclose(got, keys):
                return wrong(f"layer {layer}: those are the KEYS; the values come right after them.")
            if not torch.allclose(got, expected):
                return wrong(
                    f"layer {layer}: wrong numbers — layer ℓ's values are columns "
                    "[(2ℓ+1)·w, (2ℓ+2)·w) of each row (w = n_kv_heads · head_dim), then split into heads."
                )
    except Exception as exc:  # a learner's function may fail in any way; say how
        return wrong(f"your function raised {type(exc).__name__}: {exc}")
    return correct("you can read a prefix in PEFT's layout, layer by layer and key/value head by key/value head.")


def check_3(answer_mib, n_parameters: int) -> Feedback:
    """Exercise 3: MiB of gradients + AdamW state (fp32) when every one of ``n_parameters`` is trained."""
    expected = n_parameters * 4 * 3 / 2**20
    try:
        value = float(answer_mib)
    except (TypeError, ValueError):
        return wrong(f"give a number of MiB, got {answer_mib!r}.")
    if abs(value - n_parameters * 4 * 2 / 2**20) < 0.5:
        return wrong("AdamW keeps TWO numbers per parameter (first and second moment) — plus the gradient.")
    if abs(value - n_parameters * 3 / 2**20) < 0.5:
        return wrong("each fp32 number is 4 bytes.")
    return close(value, expected, atol=0.5, what="your memory estimate (MiB)")


def lora_parameters(n_layers: int, d_in: int, d_out: int, rank: int, matrices_per_layer: int = 2) -> int:
    """Reference: LoRA trains A (r × d_in) and B (d_out × r) for each adapted matrix."""
    return n_layers * matrices_per_layer * rank * (d_in + d_out)


def check_4(predicted, measured=None, n_layers: int = 6, d: int = 384, rank: int = 4) -> Feedback:
    """Exercise 4 (predict, then run): LoRA of rank ``rank`` on the query and value projections (d × d) of
    every layer. ``predicted``: your number before running; ``measured``: what ``count_trainable`` printed."""
    expected = lora_parameters(n_layers, d, d, rank)
    try:
        value = int(predicted)
    except (TypeError, ValueError):
        return wrong(f"give a whole number of parameters, got {predicted!r}.")
    if measured is not None and int(measured) != expected:
        return wrong(
            f"the measured count {int(measured):,} is not LoRA rank {rank} on query and value of {n_layers} layers "
            f"({expected:,}): inject with r={rank} and target_modules=['query', 'value']."
        )
    if value == expected:
        return correct(
            f"{expected:,} = {n_layers} layers × 2 matrices × r·(d_in + d_out) = {rank}·({d} + {d}) each — "
            f"{expected / (2 * n_layers * d * d):.1%} of the {2 * n_layers * d * d:,} weights it adapts."
        )
    if value == expected // 2:
        return wrong("count both factors: A is r × d_in AND B is d_out × r (or: both query and value).")
    if value == n_layers * 2 * d * d:
        return wrong("that is the size of the full query and value matrices; LoRA trains only the low-rank factors.")
    if value == 2 * rank * (d + d):
        return wrong("that is one layer: the adapters sit in every one of the layers.")
    return wrong(f"{value:,} is not it: per adapted d × d matrix, r·(d + d) numbers; how many matrices are there?")

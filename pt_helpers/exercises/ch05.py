"""Checkers for the exercises of notebook 05 (soft prompt tuning 提示微调)."""

from __future__ import annotations

import torch

from . import Feedback, close, correct, wrong


def check_1(tokens_per_step) -> Feedback:
    """Exercise 1: ``tokens_per_step(n, T, B, shared)`` — token positions the frozen model processes in
    one forward pass: B·(n+T) when the prompt is concatenated to every example, n + B·T when it is shared."""
    if not callable(tokens_per_step):
        return wrong("pass the function itself, tokens_per_step, not its result.")
    for n, T, B in [(20, 30, 16), (100, 30, 16), (1, 5, 1), (7, 11, 3)]:
        for shared, expected in [(False, B * (n + T)), (True, n + B * T)]:
            try:
                got = tokens_per_step(n, T, B, shared)
            except Exception as exc:  # noqa: BLE001 — show the learner what went wrong
                return wrong(f"tokens_per_step({n}, {T}, {B}, shared={shared}) raised {exc!r}.")
            if got != expected:
                how = "once for the whole batch" if shared else "once per example"
                return wrong(
                    f"tokens_per_step({n}, {T}, {B}, shared={shared}) = {got}, expected {expected}: "
                    f"the n virtual tokens are processed {how}, the T real tokens once per example."
                )
    return correct("the shared prompt saves (B − 1)·n token positions per step — 1,500 of 2,080 at n=100, T=30, B=16.")


def check_2(positions) -> Feedback:
    """Exercise 2: ``positions(attention_mask, n)`` — position ids of the real tokens after n virtual
    tokens, counted over non-padding tokens (padding may take any position ≥ n)."""
    if not callable(positions):
        return wrong("pass the function itself, positions, not its result.")
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 1]])
    for n in (0, 3):
        try:
            got = torch.as_tensor(positions(mask, n))
        except Exception as exc:  # noqa: BLE001
            return wrong(f"positions(mask, {n}) raised {exc!r}.")
        expected = n + mask.cumsum(-1) - 1
        if got.shape != mask.shape:
            return wrong(f"positions(mask, {n}) has shape {tuple(got.shape)}, expected {tuple(mask.shape)}.")
        real = mask.bool()
        if not torch.equal(got[real].long(), expected[real]):
            return wrong(
                f"with n={n}, the first real token of every row must get position {n}, the next "
                f"{n + 1}, … whatever padding sits on its left; got {got.tolist()}."
            )
    return correct(
        "left padding no longer shifts the positions: each example sees the prompt at 0..n-1 "
        "and its own first token at n."
    )


def check_3(fraction, n_virtual_tokens: int = 20, hidden_size: int = 384, n_base: int = 22_713_216) -> Feedback:
    """Exercise 3: the fraction of trained parameters, n·d / (n·d + base parameters)."""
    expected = n_virtual_tokens * hidden_size / (n_virtual_tokens * hidden_size + n_base)
    fb = close(fraction, expected, atol=expected * 0.01, what="the trained fraction")
    if not fb and abs(float(fraction) - 100 * expected) < expected:
        return wrong("that looks like a percentage; give the fraction (between 0 and 1).")
    return correct(f"{expected:.2e}: about one parameter in {round(1 / expected):,}.") if fb else fb


def check_4(prediction, *, n: int, T: int, B: int, measured) -> Feedback:
    """Exercise 4 (predict, then run): token positions the frozen model processes for one batch of B inputs
    (padded to T tokens) behind n virtual tokens — ``prediction`` and ``measured`` are pairs
    (shared prompt cache, per-example concatenation)."""
    expected = (n + B * T, B * (n + T))
    try:
        got = tuple(int(v) for v in prediction)
        seen = tuple(int(v) for v in measured)
    except (TypeError, ValueError):
        return wrong("give two whole numbers: (positions with the shared cache, positions with concatenation).")
    if len(got) != 2:
        return wrong("give a pair: (positions with the shared cache, positions with concatenation).")
    if seen != expected:
        return wrong(
            f"the measurement {seen} differs from n + B·T, B·(n + T) = {expected}: the hook must count every "
            "call of the first block (the prompt's pass and the batch's pass)."
        )
    if got == expected:
        return correct(
            f"{expected[0]:,} vs {expected[1]:,} positions: the shared cache skips (B − 1)·n = {(B - 1) * n:,} of "
            f"them, a ratio of {expected[1] / expected[0]:.2f} — a first-order estimate of the speed-up "
            "(attention's cost grows faster than the positions)."
        )
    if got == expected[::-1]:
        return wrong("swapped: the shared cache is the SMALLER count (the prompt runs once, not once per example).")
    return wrong(
        f"measured {seen}: with sharing the n virtual tokens run once and the T real tokens once per example; "
        "without it every example carries its own copy of the prompt."
    )

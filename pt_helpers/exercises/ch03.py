"""Checkers for the exercises of notebook 03 (in-context learning, 上下文学习).

1. ``check_1(calibrate)`` — your contextual calibration ``calibrate(label_logprobs, content_free_logprobs)``.
2. ``check_2(kate)`` — your nearest-neighbour demonstration choice ``kate(pool_emb, query_emb, k)``.
3. ``check_3(token_ratio)`` — your cost model ``token_ratio(n, C, P, Q)`` of naive vs cached scoring.
4. ``check_4(q_positive)`` — predict, then run: the calibrated P(Positive) for p̂ = (0.3, 0.7), p_cf = (0.2, 0.8).
"""

from __future__ import annotations

import torch

from ..icl import contextual_calibration, nearest_neighbour_indices
from . import Feedback, close, correct, wrong


def _call(fn, *args):
    try:
        return fn(*args), None
    except Exception as exc:  # a learner's bug: report it, do not crash the notebook
        return None, wrong(f"your function raised {type(exc).__name__}: {exc}")


def check_1(calibrate) -> Feedback:
    """``calibrate(label_logprobs (n, C), content_free_logprobs (m, C)) -> (n, C)`` calibrated probabilities."""
    if not callable(calibrate):
        return wrong("pass your function itself, e.g. check_1(calibrate).")
    gen = torch.Generator().manual_seed(3)
    cases = [(torch.log(torch.tensor([[0.7, 0.3]])), torch.log(torch.tensor([[0.8, 0.2]])))]
    cases += [(torch.randn(6, c, generator=gen) * 3, torch.randn(3, c, generator=gen) * 3) for c in (2, 4)]
    for lp, cf in cases:
        got, err = _call(calibrate, lp.clone(), cf.clone())
        if err is not None:
            return err
        expected = contextual_calibration(lp, cf)
        try:
            # on the CPU before float64: a learner's tensor may live on an MPS device, which has no float64
            got_arr = torch.as_tensor(got.detach().cpu() if torch.is_tensor(got) else got, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError):
            return wrong(f"return a tensor of probabilities, got {type(got).__name__}.")
        fb = close(got_arr.numpy(), expected.numpy(), atol=1e-4, what="the calibrated probabilities")
        if fb:
            continue
        if got_arr.shape == expected.shape:
            # probabilities ≤ 1: float32 code is off by ~1e-6, an unnormalised row by far more than 1e-4
            if not torch.allclose(got_arr.sum(-1), torch.ones(len(lp), dtype=torch.float64), rtol=1e-5, atol=1e-4):
                return wrong("each row of the result should sum to 1: renormalise W p̂.")
            alt = torch.softmax(lp.double(), -1) / torch.softmax(cf.double(), -1).mean(0)
            alt = alt / alt.sum(-1, keepdim=True)
            if torch.allclose(got_arr, alt, rtol=1e-5, atol=1e-4):
                return wrong(
                    "close: Zhao et al. average the *raw* probabilities exp(log p) of the content-free "
                    "inputs and then normalise, rather than averaging normalised ones."
                )
        return fb
    return correct("q ∝ diag(p_cf)⁻¹ p̂, renormalised — contextual calibration.")


def check_2(kate) -> Feedback:
    """``kate(pool_emb (N, d), query_emb (n, d), k) -> (n, k)`` indices, least → most similar."""
    if not callable(kate):
        return wrong("pass your function itself, e.g. check_2(kate).")
    gen = torch.Generator().manual_seed(5)
    pool = torch.nn.functional.normalize(torch.randn(30, 8, generator=gen), dim=-1)
    query = torch.nn.functional.normalize(torch.randn(4, 8, generator=gen), dim=-1)
    got, err = _call(kate, pool, query, 3)
    if err is not None:
        return err
    got = torch.as_tensor(got)
    expected = nearest_neighbour_indices(pool, query, 3)
    if tuple(got.shape) != tuple(expected.shape):
        return wrong(f"expected indices of shape {tuple(expected.shape)}, got {tuple(got.shape)}.")
    if torch.equal(got, expected):
        return correct("the most similar demonstration sits right before the test input.")
    if torch.equal(got, expected.flip(-1)):
        return wrong("right neighbours, wrong order: put the MOST similar one last (closest to the test input).")
    if torch.equal(got.sort(-1).values, expected.sort(-1).values):
        return wrong("right neighbours, but order each row from least to most similar.")
    return wrong("these are not the k rows with the highest cosine similarity (query_emb @ pool_emb.T).")


def check_3(token_ratio) -> Feedback:
    """``token_ratio(n, C, P, Q)``: tokens through the model, naive ÷ cached, for one-token labels."""
    if not callable(token_ratio):
        return wrong("pass your function itself, e.g. check_3(token_ratio).")
    for n, C, P, Q in [(200, 2, 275, 28), (50, 4, 600, 60), (1, 2, 10, 5)]:
        got, err = _call(token_ratio, n, C, P, Q)
        if err is not None:
            return err
        expected = n * C * (P + Q + 1) / (P + n * Q)
        fb = close(got, expected, atol=1e-6 * expected, what=f"token_ratio({n}, {C}, {P}, {Q})")
        if not fb:
            if abs(float(got) - n * C * (P + Q) / (P + n * Q)) < 1e-6 * expected:
                return wrong("nearly: each naive pass also runs the label token (P + Q + 1 tokens).")
            return fb
    return correct("the ratio grows with C and with P/Q: long shared contexts, short inputs.")


P_HAT_4 = (0.3, 0.7)  # p̂ of one test input (Negative, Positive), exercise 4
P_CF_4 = (0.2, 0.8)  # p_cf of its prompt: a model that leans to Positive, e.g. after all-Positive demonstrations


def check_4(q_positive) -> Feedback:
    """Exercise 4 (predict, then run): the calibrated probability of Positive for p̂ = (0.3, 0.7) under
    p_cf = (0.2, 0.8): q ∝ (0.3/0.2, 0.7/0.8) = (1.5, 0.875), so q_Positive = 0.875 / 2.375 ≈ 0.368."""
    try:
        q = float(q_positive)
    except (TypeError, ValueError):
        return wrong("give one number: the calibrated probability of Positive.")
    expected = torch.tensor(P_HAT_4, dtype=torch.float64)
    expected = float(contextual_calibration(torch.log(expected)[None], torch.log(torch.tensor(P_CF_4))[None])[0, 1])
    # a hand computation rounded to two or three digits: 0.005 separates it from every near miss below
    if abs(q - expected) <= 0.005:
        return correct(
            f"q_Positive = {expected:.3f}: calibration turns a 0.7 Positive into a Negative prediction, because "
            "the prompt alone already gives Positive 0.8 — the input moved the model *towards* Negative."
        )
    near_misses = {
        0.7: "that is p̂ itself: calibration divides by p_cf before renormalising.",
        0.875: "0.875 = 0.7 / 0.8 is W p̂ before renormalising: divide by the sum of both entries.",
        1 - expected: "that is the calibrated probability of Negative.",
        0.5: "calibration gives exactly ½ only when p̂ equals p_cf.",
    }
    for value, hint in near_misses.items():
        if abs(q - value) <= 0.005:
            return wrong(hint)
    return wrong("compute W p̂ = (0.3/0.2, 0.7/0.8), then divide by its sum.")

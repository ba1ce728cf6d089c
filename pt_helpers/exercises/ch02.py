"""Checkers for the exercises of notebook 02 (scaled dot-product attention · 缩放点积注意力)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from . import Feedback, correct, wrong

# Outputs are averages of N(0, 1) value vectors (|x| ≲ 3): your float32 matmul + softmax and torch's fused
# kernel differ by ~1e-6; a missing √d_k, an ignored or inverted mask changes them by > 1e-2.
_TOL = dict(rtol=1e-5, atol=1e-5)


def _reference(q, k, v, mask):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def _first(result):
    return result[0] if isinstance(result, (tuple, list)) else result


def check_1(my_attention) -> Feedback:
    """Exercise 1: ``my_attention(q, k, v, mask)`` → output (..., T_q, d_v); mask is bool (True = may
    attend) or None. Compared with ``torch.nn.functional.scaled_dot_product_attention`` on several
    shapes, with and without a causal mask."""
    gen = torch.Generator().manual_seed(2)
    cases = []
    for shape_q, shape_k, d_v, causal in [
        ((5, 8), (5, 8), 8, False),
        ((2, 3, 6, 16), (2, 3, 6, 16), 4, True),
        ((1, 4, 3, 32), (1, 4, 7, 32), 32, False),
    ]:
        q = torch.randn(*shape_q, generator=gen) * 2
        k = torch.randn(*shape_k, generator=gen) * 2
        v = torch.randn(*shape_k[:-1], d_v, generator=gen)
        mask = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).tril() if causal else None
        cases.append((q, k, v, mask))
    for q, k, v, mask in cases:
        what = f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}, " + (
            "causal mask" if mask is not None else "no mask"
        )
        try:
            got = _first(my_attention(q.clone(), k.clone(), v.clone(), None if mask is None else mask.clone()))
        except Exception as exc:  # the learner's code failed: say how
            return wrong(f"on {what} your function raised {type(exc).__name__}: {exc}")
        if not isinstance(got, torch.Tensor):
            return wrong(f"return a torch.Tensor (the output), got {type(got).__name__}.")
        expected = _reference(q, k, v, mask)
        if got.shape != expected.shape:
            hint = " — did you forget the product with V?" if got.shape[-1] == k.shape[-2] else ""
            return wrong(f"on {what} your output has shape {tuple(got.shape)}, expected {tuple(expected.shape)}{hint}.")
        if torch.allclose(got, expected, **_TOL):
            continue
        d_k = q.shape[-1]
        unscaled = _reference(q * math.sqrt(d_k), k, v, mask)
        no_mask = _reference(q, k, v, None)
        flipped = _reference(q, k, v, ~mask) if mask is not None else None
        if torch.allclose(got, unscaled, **_TOL):
            return wrong(f"on {what} your output is what you get without dividing by √d_k (= {math.sqrt(d_k):g}).")
        if mask is not None and torch.allclose(got, no_mask, **_TOL):
            return wrong(f"on {what} your output ignores the mask: positions where mask is False must get weight 0.")
        if flipped is not None and torch.allclose(got, flipped, equal_nan=True, **_TOL):
            return wrong("the mask is inverted: True means 'may attend' (as in torch), False means 'hide'.")
        err = (got - expected).abs().max().item()
        return wrong(
            f"on {what} your output differs from softmax(QKᵀ/√d_k + mask)·V by up to {err:.3g}; "
            "is the softmax taken over the last (key) axis?"
        )
    return correct("your attention equals torch.nn.functional.scaled_dot_product_attention on every case.")


def check_2(var_unscaled, var_scaled, d_k: int = 64) -> Feedback:
    """Exercise 2: q, k with i.i.d. N(0, 1) entries in d_k dims: Var(q·k) and Var(q·k/√d_k)."""
    try:
        var_unscaled, var_scaled = float(var_unscaled), float(var_scaled)
    except (TypeError, ValueError):
        return wrong("give two numbers: the variance without and with the 1/√d_k scaling.")
    if math.isclose(var_unscaled, math.sqrt(d_k), rel_tol=0.02):
        return wrong(f"{var_unscaled:g} is the standard deviation √d_k; the variance is its square.")
    if not math.isclose(var_unscaled, d_k, rel_tol=0.02):
        return wrong(
            f"q·k = Σ_i q_i k_i is a sum of d_k={d_k} independent terms, each of mean 0 and "
            "variance E[q_i²]E[k_i²] = 1: what is the variance of the sum?"
        )
    if not math.isclose(var_scaled, 1.0, rel_tol=0.02):
        return wrong("dividing a random variable by c divides its variance by c²: with c = √d_k …")
    return correct(
        f"Var(q·k) = d_k = {d_k} and Var(q·k/√d_k) = 1: the scaling keeps the scores' spread "
        "independent of the head size."
    )


def check_3(my_additive_mask) -> Feedback:
    """Exercise 3: ``my_additive_mask(attention_mask)``: tokenizer mask (batch, T) of 0/1 → additive
    float mask (batch, 1, 1, T): 0.0 for real tokens, a large negative number for padding."""
    att = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1], [1, 1, 0, 0, 0, 0]])
    try:
        got = my_additive_mask(att.clone())
    except Exception as exc:  # the learner's code failed: say how
        return wrong(f"your function raised {type(exc).__name__}: {exc}")
    if not isinstance(got, torch.Tensor):
        return wrong(f"return a torch.Tensor, got {type(got).__name__}.")
    if tuple(got.shape) != (3, 1, 1, 6):
        return wrong(
            f"for a (3, 6) attention_mask the result should have shape (3, 1, 1, 6) so that it "
            f"broadcasts over heads and queries; got {tuple(got.shape)}."
        )
    if not got.is_floating_point():
        return wrong(f"an additive mask is added to float scores: return a float tensor, not {got.dtype}.")
    keep, hide = got[att[:, None, None, :] == 1], got[att[:, None, None, :] == 0]
    if not bool((keep == 0).all()):
        return wrong("real tokens must get 0.0 (adding 0 leaves their scores unchanged).")
    if bool(torch.isinf(hide).any()):
        return wrong(
            "-inf works until a row is all padding: then softmax gives NaN. Use a large finite "
            "negative number such as torch.finfo(torch.float32).min."
        )
    if not bool((hide <= -1e4).all()):
        return wrong("padding must get a large negative number (≤ −1e4) so that exp(score + mask) ≈ 0.")
    scores = torch.randn(3, 2, 6, 6, generator=torch.Generator().manual_seed(0))
    weights = torch.softmax(scores + got, dim=-1)
    if weights[att[:, None, None, :].expand_as(weights) == 0].max() > 1e-6:
        return wrong("after softmax, padding still gets weight: make the negative number larger.")
    return correct(
        "0 for tokens, a large negative number for padding, shaped (batch, 1, 1, T) — exactly "
        "what Hugging Face's BERT adds to its scores."
    )


def check_4(predicted_ratio) -> Feedback:
    """Exercise 4 (predict, then run): with rotary position embeddings, the score of a query at position 10
    and a key at position 8, divided by the score of the same two vectors at positions 3 and 1.

    RoPE rotates the query by 10·θ and the key by 8·θ (per coordinate pair); a dot product of two rotated
    vectors sees only the difference of the angles, (10 − 8)·θ = (3 − 1)·θ: the ratio is exactly 1.
    """
    try:
        ratio = float(predicted_ratio)
    except (TypeError, ValueError):
        return wrong("give one number: score(10, 8) / score(3, 1).")
    if math.isclose(ratio, 1.0, rel_tol=0, abs_tol=1e-3):  # an exact answer; 1e-3 allows a rounded 0.9995
        return correct(
            "exactly 1: RoPE scores depend on the positions only through m − n, so the same two tokens two "
            "positions apart score the same anywhere in the text."
        )
    for value, hint in [(10 / 3, "10/3"), (3 / 10, "3/10"), (80 / 3, "(10·8)/(3·1)"), (3 / 80, "(3·1)/(10·8)")]:
        if math.isclose(ratio, value, rel_tol=1e-2):
            return wrong(
                f"that is {hint}: it treats the positions as absolute. What do two rotations leave in a dot product?"
            )
    return wrong(
        "rotate q by m·θ and k by n·θ: qᵀR(m·θ)ᵀR(n·θ)k = qᵀR((n − m)·θ)k. What changes from (3, 1) to (10, 8)?"
    )

"""Checkers for chapter 07 (common misconceptions · 常见误区).

* ``check_1(predicted_ratio, measured_ratio)`` — predict, then run: the gradient norm after three
  ``backward()`` calls on one batch without ``zero_grad``, over that of one call (the T5 loop of section 5);
  the feedback recognises "1" (gradients overwritten) and k² / √k.
* ``check_2(loss_fn)``       — ``loss_fn(logits, labels)`` must return the mean cross-entropy
  −(1/B) Σ_b log softmax(logits_b)[labels_b] (the *supervised* loss of prompt tuning); the feedback
  recognises a flipped sign (a "reward"), a missing log-softmax and a sum instead of a mean.
* ``check_3(span_fn)``       — ``span_fn(start_logits, end_logits, max_answer_len)`` must return the
  positions ``(start, end)`` with start ≤ end < start + max_answer_len maximising
  start_logits[start] + end_logits[end]; the feedback recognises an end before the start and a
  token id returned instead of a position.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from . import Feedback, correct, wrong


def check_1(predicted_ratio, measured_ratio=None, iterations: int = 3) -> Feedback:
    """Exercise 1 (predict, then run): a loop calls ``loss.backward()`` ``iterations`` times on the same batch
    with no ``zero_grad`` (and no optimiser step). What is ‖grad after the loop‖ / ‖grad of one backward‖?

    ``predicted_ratio``: your number before running; ``measured_ratio``: what the cell then measured.
    """
    try:
        value = float(predicted_ratio)
    except (TypeError, ValueError):
        return wrong(f"give one number (a ratio), got {predicted_ratio!r}.")
    if measured_ratio is not None and not math.isclose(float(measured_ratio), iterations, rel_tol=1e-4):
        return wrong(
            f"the measured ratio {float(measured_ratio):.6g} is not {iterations}: run backward {iterations} times on "
            "the SAME batch, without zero_grad and without an optimiser step, and compare gradient norms."
        )
    if math.isclose(value, iterations, rel_tol=1e-3):
        return correct(
            f"{iterations}: backward ADDS into .grad. Without zero_grad each step uses the sum of every gradient "
            "so far — call optimizer.zero_grad() (or set_to_none) once per step."
        )
    if math.isclose(value, 1.0, rel_tol=1e-3):
        return wrong("backward does not overwrite .grad, it adds to it: that is what zero_grad is for.")
    if math.isclose(value, iterations**2, rel_tol=1e-3) or math.isclose(value, math.sqrt(iterations), rel_tol=1e-3):
        return wrong("the same gradient g added k times is k·g, and ‖k·g‖ = k‖g‖.")
    return wrong(f"{value:g} is not it: what does .grad hold after adding the same gradient {iterations} times?")


def check_2(loss_fn: Callable) -> Feedback:
    """Is ``loss_fn(logits (B, C), labels (B,))`` the mean cross-entropy (a scalar)?"""
    if not callable(loss_fn):
        return wrong("pass your function itself, e.g. check_2(my_loss).")
    gen = torch.Generator().manual_seed(11)
    for batch, classes in ((4, 2), (6, 3), (1, 5)):
        logits = torch.randn(batch, classes, generator=gen) * 2
        labels = torch.randint(0, classes, (batch,), generator=gen)
        try:
            value = torch.as_tensor(loss_fn(logits.clone(), labels.clone()), dtype=torch.float32)
        except Exception as exc:  # noqa: BLE001
            return wrong(f"your function raised {type(exc).__name__}: {exc}")
        if value.numel() != 1:
            return wrong(
                f"the loss must be one number (a scalar), got shape {tuple(value.shape)}: average over the batch."
            )
        value = value.reshape(())
        expected = F.cross_entropy(logits, labels)
        picked = logits[torch.arange(batch), labels]
        if torch.isclose(value, -expected, atol=1e-4):
            return wrong(
                "the sign is flipped: you are *maximising* the loss (like a reward). Prompt tuning "
                "minimises −log p(y|x), a positive number."
            )
        if torch.isclose(value, -picked.mean(), atol=1e-4):
            return wrong("you used the raw logit of the label; take log_softmax over the classes first.")
        if batch > 1 and torch.isclose(value, expected * batch, atol=1e-4):
            return wrong("this is the sum over the batch; use the mean (as F.cross_entropy does).")
        if not torch.isclose(value, expected, atol=1e-4):
            return wrong(f"got {value.item():.4f}, expected {expected.item():.4f} for a batch of {batch}.")
    return correct("mean −log softmax(logits)[label]: labels and a loss, no reward, no policy.")


def reference_best_span(
    start_logits: torch.Tensor, end_logits: torch.Tensor, max_answer_len: int = 30
) -> tuple[int, int]:
    """Positions (start, end), start ≤ end < start + max_answer_len, maximising start + end logits."""
    start_logits, end_logits = torch.as_tensor(start_logits).flatten(), torch.as_tensor(end_logits).flatten()
    T = start_logits.shape[0]
    scores = start_logits[:, None] + end_logits[None, :]  # (T, T): [start, end]
    offsets = torch.arange(T)[None, :] - torch.arange(T)[:, None]  # end − start
    valid = (offsets >= 0) & (offsets < max_answer_len)
    flat = scores.masked_fill(~valid, float("-inf")).argmax().item()
    return divmod(flat, T)


def _span_cases():
    gen = torch.Generator().manual_seed(3)
    cases = []
    # 1: the independent argmaxes give end < start
    s, e = torch.randn(12, generator=gen), torch.randn(12, generator=gen)
    s[8], e[2], s[3], e[5] = 6.0, 6.5, 5.0, 5.0
    cases.append((s, e, 30))
    # 2: the longest span is over the length limit
    s, e = torch.randn(20, generator=gen), torch.randn(20, generator=gen)
    s[1], e[15], s[10], e[12] = 7.0, 7.0, 5.5, 5.5
    cases.append((s, e, 5))
    # 3: an easy one
    s, e = torch.randn(9, generator=gen), torch.randn(9, generator=gen)
    s[4], e[6] = 9.0, 9.0
    cases.append((s, e, 30))
    return cases


def check_3(span_fn: Callable) -> Feedback:
    """Does ``span_fn(start_logits (T,), end_logits (T,), max_answer_len)`` return the best valid span?"""
    if not callable(span_fn):
        return wrong("pass your function itself, e.g. check_3(best_span).")
    for i, (s, e, max_len) in enumerate(_span_cases(), 1):
        try:
            got = span_fn(s.clone(), e.clone(), max_len)
            start, end = (int(x) for x in got)
        except Exception as exc:  # noqa: BLE001
            return wrong(
                f"case {i}: your function should return two positions (start, end); it gave {type(exc).__name__}: {exc}"
            )
        expected = reference_best_span(s, e, max_len)
        T = s.shape[0]
        if not (0 <= start < T and 0 <= end < T):
            return wrong(
                f"case {i}: ({start}, {end}) is not a pair of positions in 0..{T - 1}. Start/end "
                "logits score *positions*; the answer's token ids are input_ids[start:end + 1]."
            )
        if end < start:
            return wrong(
                f"case {i}: your span ({start}, {end}) ends before it starts. Taking the two argmaxes "
                "separately is not enough: maximise start_logits[s] + end_logits[e] over s ≤ e."
            )
        if end - start + 1 > max_len:
            return wrong(f"case {i}: your span is {end - start + 1} tokens long, over max_answer_len={max_len}.")
        if (start, end) != expected:
            best = (s[expected[0]] + e[expected[1]]).item()
            return wrong(
                f"case {i}: ({start}, {end}) scores {(s[start] + e[end]).item():.2f}, but a valid span "
                f"scores {best:.2f}."
            )
    return correct("the best valid span: start ≤ end, within the length limit, positions not token ids.")

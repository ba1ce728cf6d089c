"""Checkers for the exercises of notebook 08 (prompt tuning in practice 提示微调的工程实践)."""

from __future__ import annotations

import torch

from . import Feedback, correct, wrong


def check_1(bytes_per_task, n_virtual_tokens: int = 20, hidden_size: int = 384, bytes_per_number: int = 4) -> Feedback:
    """Exercise 1 (predict, then run): the bytes one task's soft prompt keeps, n · d · 4 (float32)."""
    expected = n_virtual_tokens * hidden_size * bytes_per_number
    try:
        value = int(bytes_per_task)
    except (TypeError, ValueError):
        return wrong(f"give a whole number of bytes, got {bytes_per_task!r}.")
    if value == expected:
        return correct(
            f"{n_virtual_tokens} × {hidden_size} numbers × {bytes_per_number} bytes = {expected:,} bytes per task; "
            "the frozen model is stored once for all tasks."
        )
    if value == n_virtual_tokens * hidden_size:
        return wrong("that is the number of numbers; each float32 number takes 4 bytes.")
    return wrong(f"{value:,} bytes is not it: count the prompt's numbers (n × d), then their size.")


def check_2(count) -> Feedback:
    """Exercise 2: ``count(n, d, h)`` — trained parameters of P-tuning's MLP encoder (PEFT's layout):
    E (n·d) + Linear(d→h) + Linear(h→h) + Linear(h→d), biases included."""
    if not callable(count):
        return wrong("pass the function itself, count, not its result.")
    from ..p_tuning import PTuningEncoder

    for n, d, h in [(20, 384, 384), (4, 16, 8), (1, 10, 3)]:
        expected = sum(p.numel() for p in PTuningEncoder(n, d, encoder_hidden_size=h).parameters())
        try:
            got = count(n, d, h)
        except Exception as exc:  # noqa: BLE001 — show the learner what went wrong
            return wrong(f"count({n}, {d}, {h}) raised {exc!r}.")
        if got != expected:
            hint = " Did you forget the biases?" if got == n * d + d * h + h * h + h * d else ""
            return wrong(f"count({n}, {d}, {h}) = {got}, expected {expected}.{hint}")
    return correct("after training only P (n·d) is kept: the encoder is a training device, not a stored part.")


def check_3(vote) -> Feedback:
    """Exercise 3: ``vote(logits)`` — majority vote of k prompts, logits (N, k, C) → (N,) class ids."""
    if not callable(vote):
        return wrong("pass the function itself, vote, not its result.")
    cases = [
        (torch.tensor([[[2.0, 0.0], [0.0, 1.0], [0.0, 3.0]]]), [1]),  # 2 of 3 vote 1; the largest logit says 0
        (torch.tensor([[[9.0, 0.0, 0.0], [0.0, 0.1, 0.0], [0.0, 0.2, 0.0]]]), [1]),
        (torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [0.0, 2.0], [3.0, 0.0]]]), [0, 1]),
    ]
    for x, expected in cases:
        try:
            got = [int(v) for v in torch.as_tensor(vote(x)).flatten()]
        except Exception as exc:  # noqa: BLE001
            return wrong(f"vote raised {exc!r} on logits of shape {tuple(x.shape)}.")
        if got != expected:
            return wrong(
                f"on logits {x.tolist()} you predict {got}, expected {expected}: count each prompt's argmax "
                "as one vote; the largest logit or the mean logit is not a majority vote."
            )
    return correct("each prompt gets one vote, however confident it is (Lester et al. 2021, §6).")

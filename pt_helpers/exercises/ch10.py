"""Checkers for the exercises of notebook 10 (prompt tuning beside LoRA and instruction tuning;
提示微调、LoRA 与指令微调)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import Feedback, close, correct, wrong


def check_1(n_trainable, model, r: int = 8) -> Feedback:
    """Exercise 1 (predict, then run): LoRA's trained numbers on ``model`` at rank r, Σ r (d_in + d_out) over the
    query and value projections of every layer."""
    from ..lora import lora_parameter_count, lora_targets

    expected = lora_parameter_count(model, r)
    try:
        value = int(n_trainable)
    except (TypeError, ValueError):
        return wrong(f"give a whole number, got {n_trainable!r}.")
    if value == expected:
        share = expected / sum(p.numel() for p in model.parameters())
        return correct(f"{expected:,} numbers on {' and '.join(lora_targets(model))}, {share:.2%} of the model.")
    attn = next(m for n, m in model.named_modules() if n.endswith("self_attn"))
    square = model.config.num_hidden_layers * 2 * r * 2 * attn.q_proj.in_features
    if value == square:
        return wrong("the value projection is narrower than the query's here (grouped-query attention): "
                     "look at v_proj's out_features.")  # fmt: skip
    return wrong(f"{value:,} is not it: per adapted layer A is r × d_in and B is d_out × r; sum over the layers.")


def check_2(merge) -> Feedback:
    """Exercise 2: ``merge(W, A, B, alpha, r)`` → W + (α / r) B A (W (d_out, d_in), A (r, d_in), B (d_out, r))."""
    if not callable(merge):
        return wrong("pass the function itself, merge, not its result.")
    gen = torch.Generator().manual_seed(0)
    W, A, B = (torch.randn(s, generator=gen) for s in ((5, 7), (3, 7), (5, 3)))
    x = torch.randn(4, 7, generator=gen)
    try:
        merged = torch.as_tensor(merge(W.clone(), A, B, 6.0, 3))
    except Exception as exc:  # noqa: BLE001 — show the learner what went wrong
        return wrong(f"merge raised {exc!r}.")
    if merged.shape != W.shape:
        return wrong(f"the merged weight has shape {tuple(merged.shape)}, expected {tuple(W.shape)} (d_out, d_in).")
    if torch.allclose(merged, W + B @ A, atol=1e-5):
        return wrong("the update is scaled by α / r before it is added.")
    # the merged layer must compute what the unmerged one does: x Wᵀ + (α/r) (x Aᵀ) Bᵀ
    feedback = close(x @ merged.T, x @ W.T + 2.0 * (x @ A.T) @ B.T, atol=1e-4, what="the merged layer's output")
    if feedback:
        return correct("one matrix again: the adapted layer costs nothing extra at inference (Hu et al. 2022, §4.1).")
    return feedback


def check_3(dpo_loss) -> Feedback:
    """Exercise 3: ``dpo_loss(pi_chosen, pi_rejected, ref_chosen, ref_rejected, beta)`` — Rafailov et al. (2023,
    eq. 7): −log σ(β [(log π(y_w) − log π_ref(y_w)) − (log π(y_l) − log π_ref(y_l))]), averaged over pairs."""
    if not callable(dpo_loss):
        return wrong("pass the function itself, dpo_loss, not its result.")
    gen = torch.Generator().manual_seed(0)
    pc, pr, rc, rr = (-10 * torch.rand(6, generator=gen) for _ in range(4))
    for beta in (0.1, 0.5):
        expected = -F.logsigmoid(beta * ((pc - rc) - (pr - rr))).mean()
        try:
            got = float(dpo_loss(pc, pr, rc, rr, beta))
        except Exception as exc:  # noqa: BLE001
            return wrong(f"dpo_loss raised {exc!r}.")
        if abs(got - float(-F.logsigmoid(beta * (pc - pr)).mean())) < 1e-6 and abs(got - float(expected)) > 1e-6:
            return wrong("the reference model's log-probabilities are missing: DPO compares log-RATIOS to π_ref.")
        feedback = close(got, float(expected), atol=1e-5, what=f"the loss at β = {beta}")
        if not feedback:
            return feedback
    return correct("a classification loss on preference pairs: no reward model, no sampling (Rafailov et al. 2023 §4).")

"""Checkers of chapter 07: correct on the reference solutions, "not yet" on the typical wrong answers."""

import torch
import torch.nn.functional as F

from pt_helpers.exercises import ch07


def test_check_1_predict_then_run():
    assert ch07.check_1(3) and ch07.check_1(3.0, measured_ratio=3.0000001)
    assert not ch07.check_1(3, measured_ratio=1.0)  # the measurement zeroed the gradients in between
    overwritten = ch07.check_1(1)
    assert not overwritten and "adds" in overwritten.message
    assert not ch07.check_1(9) and not ch07.check_1(3**0.5)
    assert not ch07.check_1(2)
    assert not ch07.check_1("three")


def test_check_1_agrees_with_autograd():
    w = torch.randn(4, requires_grad=True)
    x = torch.randn(4)
    (w @ x).backward()
    one = w.grad.norm().item()
    for _ in range(2):
        (w @ x).backward()
    assert ch07.check_1(3, measured_ratio=w.grad.norm().item() / one)


def test_check_2_supervised_loss():
    assert ch07.check_2(lambda logits, y: F.cross_entropy(logits, y))
    assert ch07.check_2(lambda logits, y: -logits.log_softmax(-1)[torch.arange(len(y)), y].mean())
    reward = ch07.check_2(lambda logits, y: -F.cross_entropy(logits, y))
    assert not reward and "sign" in reward.message
    raw = ch07.check_2(lambda logits, y: -logits[torch.arange(len(y)), y].mean())
    assert not raw and "log_softmax" in raw.message
    summed = ch07.check_2(lambda logits, y: F.cross_entropy(logits, y, reduction="sum"))
    assert not summed and "mean" in summed.message
    per_example = ch07.check_2(lambda logits, y: F.cross_entropy(logits, y, reduction="none"))
    assert not per_example and "scalar" in per_example.message


def test_check_3_best_span():
    assert ch07.check_3(ch07.reference_best_span)
    naive = ch07.check_3(lambda s, e, m: (int(s.argmax()), int(e.argmax())))
    assert not naive and "ends before it starts" in naive.message
    no_limit = ch07.check_3(lambda s, e, m: ch07.reference_best_span(s, e, 10_000))
    assert not no_limit and "max_answer_len" in no_limit.message
    ids_not_positions = ch07.check_3(lambda s, e, m: (2000, 2003))
    assert not ids_not_positions and "positions" in ids_not_positions.message
    assert not ch07.check_3(lambda s, e, m: "lester")


def test_reference_best_span_respects_order_and_length():
    s = torch.tensor([-5.0, 5.0, 0.0, 0.0])
    e = torch.tensor([9.0, 0.0, 0.0, 4.0])
    assert ch07.reference_best_span(s, e, 30) == (1, 3)  # end 0 is before start 1: not allowed
    assert ch07.reference_best_span(s, e, 2) in ((1, 1), (1, 2))  # (1, 3) is 3 tokens long

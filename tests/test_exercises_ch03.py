"""The chapter-3 checkers accept the reference solutions and reject typical wrong answers."""

import torch

from pt_helpers import icl
from pt_helpers.exercises import ch03


def reference_calibrate(label_logprobs, content_free_logprobs):
    p_hat = torch.softmax(label_logprobs.double(), -1)
    p_cf = torch.logsumexp(content_free_logprobs.double(), 0).exp()
    p_cf = p_cf / p_cf.sum()
    q = p_hat / p_cf
    return q / q.sum(-1, keepdim=True)


def test_check_1():
    assert ch03.check_1(reference_calibrate).correct
    assert ch03.check_1(icl.contextual_calibration).correct
    assert not ch03.check_1(lambda lp, cf: torch.softmax(lp, -1)).correct  # no calibration
    unnormalised = lambda lp, cf: torch.softmax(lp.double(), -1) / icl.content_free_distribution(cf)  # noqa: E731
    fb = ch03.check_1(unnormalised)
    assert not fb.correct and "sum to 1" in fb.message
    fb = ch03.check_1(lambda lp, cf: 1 / 0)
    assert not fb.correct and "ZeroDivisionError" in fb.message
    assert not ch03.check_1("not a function").correct


def test_check_2():
    def kate(pool, query, k):
        return (query @ pool.T).topk(k, dim=-1).indices.flip(-1)

    assert ch03.check_2(kate).correct
    fb = ch03.check_2(lambda p, q, k: (q @ p.T).topk(k, dim=-1).indices)  # most similar first
    assert not fb.correct and "order" in fb.message
    assert not ch03.check_2(lambda p, q, k: (-(q @ p.T)).topk(k, dim=-1).indices).correct


def test_check_3():
    assert ch03.check_3(lambda n, C, P, Q: n * C * (P + Q + 1) / (P + n * Q)).correct
    fb = ch03.check_3(lambda n, C, P, Q: n * C * (P + Q) / (P + n * Q))
    assert not fb.correct and "label token" in fb.message
    assert not ch03.check_3(lambda n, C, P, Q: C * (P + Q + 1) / Q).correct


def test_check_4_predict_then_run():
    assert ch03.check_4(0.368).correct
    assert ch03.check_4(0.37).correct
    fb = ch03.check_4(0.875)
    assert not fb.correct and "renormalising" in fb.message
    assert not ch03.check_4(0.7).correct
    assert not ch03.check_4(0.632).correct
    assert not ch03.check_4(0.5).correct
    assert not ch03.check_4("Negative").correct

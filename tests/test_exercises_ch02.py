import math

import torch

from pt_helpers.attention import padding_mask, scaled_dot_product_attention, to_additive_mask
from pt_helpers.exercises import ch02


def reference_attention(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def test_check_1_accepts_the_reference_and_the_module_function():
    assert ch02.check_1(reference_attention)
    assert ch02.check_1(scaled_dot_product_attention)  # returns (output, weights): the output is used


def test_check_1_names_each_mistake():
    no_scale = lambda q, k, v, m=None: reference_attention(q * math.sqrt(q.shape[-1]), k, v, m)
    fb = ch02.check_1(no_scale)
    assert not fb and "√d_k" in fb.message
    fb = ch02.check_1(lambda q, k, v, m=None: reference_attention(q, k, v, None))
    assert not fb and "ignores the mask" in fb.message
    fb = ch02.check_1(lambda q, k, v, m=None: torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), -1))
    assert not fb and "product with V" in fb.message
    fb = ch02.check_1(lambda q, k, v, m=None: torch.softmax(q @ k.transpose(-2, -1), -2) @ v)
    assert not fb
    fb = ch02.check_1(lambda q, k, v, m=None: 1 / 0)
    assert not fb and "ZeroDivisionError" in fb.message


def test_check_2():
    assert ch02.check_2(64, 1.0, d_k=64)
    assert ch02.check_2(16, 1, d_k=16)
    fb = ch02.check_2(8, 1, d_k=64)
    assert not fb and "standard deviation" in fb.message
    assert not ch02.check_2(64, 0.125, d_k=64)
    assert not ch02.check_2("a lot", 1)


def test_check_3_accepts_the_reference_and_rejects_wrong_masks():
    reference = lambda att: to_additive_mask(padding_mask(att))
    assert ch02.check_3(reference)
    fb = ch02.check_3(lambda att: att.float())  # wrong shape
    assert not fb and "(3, 1, 1, 6)" in fb.message
    fb = ch02.check_3(lambda att: (1 - att.float())[:, None, None, :] * float("-inf"))
    assert not fb  # -inf (and 0*inf = nan)
    fb = ch02.check_3(lambda att: (1 - att.float())[:, None, None, :] * -10.0)
    assert not fb and "large negative" in fb.message
    fb = ch02.check_3(lambda att: att[:, None, None, :].bool())
    assert not fb and "float" in fb.message


def test_check_4_predict_then_run():
    assert ch02.check_4(1.0).correct
    assert ch02.check_4(1).correct
    fb = ch02.check_4(10 / 3)
    assert not fb.correct and "absolute" in fb.message
    assert not ch02.check_4(0.0).correct
    assert not ch02.check_4("the same").correct

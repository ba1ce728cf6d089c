"""The chapter-05 checkers accept the reference solutions and reject typical wrong answers."""

import torch

from pt_helpers.exercises import ch05
from pt_helpers.frozen import real_position_ids


def test_check_1():
    assert ch05.check_1(lambda n, T, B, shared: n + B * T if shared else B * (n + T))
    assert not ch05.check_1(lambda n, T, B, shared: B * (n + T))  # forgot the sharing
    assert not ch05.check_1(lambda n, T, B, shared: B * n + T if shared else B * (n + T))
    assert not ch05.check_1(42)


def test_check_2():
    assert ch05.check_2(real_position_ids)
    assert ch05.check_2(lambda m, n: n + m.cumsum(-1) - 1)
    assert not ch05.check_2(lambda m, n: n + torch.arange(m.shape[1]).expand_as(m))  # ignores left padding
    assert not ch05.check_2(lambda m, n: m.cumsum(-1) - 1)  # forgot the prompt


def test_check_3():
    assert ch05.check_3(20 * 384 / (20 * 384 + 22_713_216))
    assert not ch05.check_3(100 * 20 * 384 / (20 * 384 + 22_713_216))
    assert not ch05.check_3(0.5)
    assert ch05.check_3(5 * 384 / (5 * 384 + 1000), n_virtual_tokens=5, n_base=1000)


def test_check_4_positions_at_b64():
    n, T, B = 20, 31, 64
    right = (n + B * T, B * (n + T))
    assert ch05.check_4(right, n=n, T=T, B=B, measured=right)
    assert not ch05.check_4(right[::-1], n=n, T=T, B=B, measured=right)  # swapped
    assert not ch05.check_4((B * T, B * (n + T)), n=n, T=T, B=B, measured=right)  # forgot the prompt's pass
    assert not ch05.check_4(right, n=n, T=T, B=B, measured=(1, 2))  # a broken measurement is not accepted
    assert not ch05.check_4("many", n=n, T=T, B=B, measured=right)

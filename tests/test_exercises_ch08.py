"""The chapter-08 checkers accept the reference solutions and reject typical wrong answers."""

import torch

from pt_helpers.exercises import ch08
from pt_helpers.serving import vote


def test_check_1():
    assert ch08.check_1(20 * 384 * 4)
    assert not ch08.check_1(20 * 384)  # numbers, not bytes
    assert not ch08.check_1(22_713_216 * 4)  # a copy of the model
    assert not ch08.check_1("lots")
    assert ch08.check_1(5 * 10 * 2, n_virtual_tokens=5, hidden_size=10, bytes_per_number=2)


def test_check_2():
    assert ch08.check_2(lambda n, d, h: n * d + (d * h + h) + (h * h + h) + (h * d + d))
    assert not ch08.check_2(lambda n, d, h: n * d + d * h + h * h + h * d)  # forgot the biases
    assert not ch08.check_2(lambda n, d, h: n * d)  # only the kept prompt
    assert not ch08.check_2(3)


def test_check_3():
    assert ch08.check_3(vote)
    assert ch08.check_3(lambda x: torch.mode(x.argmax(-1), dim=1).values)
    assert not ch08.check_3(lambda x: x.mean(1).argmax(-1))  # mean logit, not a vote
    assert not ch08.check_3(lambda x: x.max(1).values.argmax(-1))  # the most confident prompt
    assert not ch08.check_3(None)

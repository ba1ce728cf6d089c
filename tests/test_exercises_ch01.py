import math

import numpy as np
import torch

from pt_helpers.exercises import ch01
from pt_helpers.lm import encode, token_logprobs


def test_check_1(random_gpt2):
    model, tok = random_gpt2
    s = "I love this movie."
    with torch.no_grad():
        reference = token_logprobs(model, torch.tensor([encode(tok, s)])).sum().item()
    assert ch01.check_1(reference, model, tok, s).correct
    assert not ch01.check_1(reference - 1.0, model, tok, s).correct
    assert not ch01.check_1(-reference, model, tok, s).correct


def test_check_2():
    assert ch01.check_2(lambda lp: math.exp(-np.mean(lp))).correct
    fb = ch01.check_2(lambda lp: math.exp(-np.sum(lp)))
    assert not fb.correct and "sum" in fb.message
    assert not ch01.check_2(lambda lp: 1 / 0).correct


def test_check_3(random_gpt2):
    _, tok = random_gpt2
    assert ch01.check_3(4633, tok).correct
    fb = ch01.check_3(tok("negative", add_special_tokens=False)["input_ids"][0], tok)
    assert not fb.correct and "space" in fb.message


def test_check_4():
    V = 50257
    assert ch01.check_4(V, V).correct
    assert ch01.check_4(50257.2, V).correct
    fb = ch01.check_4(math.log(V), V)
    assert not fb.correct and "nats" in fb.message
    fb = ch01.check_4(math.log2(V), V)
    assert not fb.correct and "bits" in fb.message
    assert not ch01.check_4(1.0, V).correct
    assert not ch01.check_4(25000, V).correct
    assert not ch01.check_4("many", V).correct

import math

import numpy as np

from pt_helpers.exercises import ch01
from pt_helpers.lm import sequence_logprob, token_logprobs, encode
import torch


def test_check_1(gpt2_random):
    model, tok = gpt2_random
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


def test_check_3(gpt2_random):
    _, tok = gpt2_random
    assert ch01.check_3(4633, tok).correct
    fb = ch01.check_3(tok("negative", add_special_tokens=False)["input_ids"][0], tok)
    assert not fb.correct and "space" in fb.message

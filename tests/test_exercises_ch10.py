"""The chapter-10 checkers accept the reference solutions and reject typical wrong answers."""

import copy

import torch
import torch.nn.functional as F

from pt_helpers import lora
from pt_helpers.exercises import ch10
from pt_helpers.models import random_model


def test_check_1_counts_on_a_gqa_llama():
    model = copy.deepcopy(random_model("meta-llama/Llama-3.2-1B", "causal", seed=0).model)
    expected = lora.lora_parameter_count(model, 8)
    assert ch10.check_1(expected, model)
    layers = model.config.num_hidden_layers
    d = model.model.layers[0].self_attn.q_proj.in_features
    assert not ch10.check_1(layers * 2 * 8 * 2 * d, model)  # v_proj taken as square: GQA missed
    assert not ch10.check_1(expected + 1, model)
    assert not ch10.check_1("many", model)
    lora.add_lora(model, r=8)
    assert ch10.check_1(lora.trainable_count(model), model)  # what the notebook's run prints


def test_check_2():
    assert ch10.check_2(lambda W, A, B, alpha, r: W + (alpha / r) * B @ A)
    assert not ch10.check_2(lambda W, A, B, alpha, r: W + B @ A)  # no scaling
    assert not ch10.check_2(lambda W, A, B, alpha, r: W + (alpha / r) * (A.T @ B.T).T.T)  # wrong shape
    assert not ch10.check_2(lambda W, A, B, alpha, r: W + (r / alpha) * B @ A)
    assert not ch10.check_2(None)


def test_check_3():
    def ref(pc, pr, rc, rr, beta):
        return -F.logsigmoid(beta * ((pc - rc) - (pr - rr))).mean()

    assert ch10.check_3(ref)
    assert not ch10.check_3(lambda pc, pr, rc, rr, beta: -F.logsigmoid(beta * (pc - pr)).mean())  # no reference
    assert not ch10.check_3(lambda pc, pr, rc, rr, beta: F.logsigmoid(beta * ((pc - rc) - (pr - rr))).mean())
    assert not ch10.check_3(lambda pc, pr, rc, rr, beta: ref(pc, pr, rc, rr, 1.0))  # β ignored
    assert not ch10.check_3(lambda *a: torch.tensor([1.0, 2.0]))

"""LoRA and IA³ from their equations (pt_helpers.lora, chapter 10) equal PEFT's on the same weights; the merge
equals the unmerged forward; a prefix layer is a gated adapter (He et al. 2022) on a real layer."""

import copy

import pytest
import torch
from _smollm2 import needs_smollm2, smollm2
from torch import nn
from torch.testing import assert_close

from pt_helpers import lora
from pt_helpers.errors import CourseError
from pt_helpers.models import random_model
from pt_helpers.prefix import PrefixEncoder

TEXTS = ["a gripping, beautifully acted film", "dull and far too long"]


def _ids(tok):
    tok.padding_side = "right"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok(TEXTS, return_tensors="pt", padding=True)


def _logits(model, enc):
    with torch.no_grad():
        return model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits


def _perturb(model, seed=1):
    """Non-zero B (and IA³ vectors away from 1): at initialisation both adapters are the identity, so a
    comparison there could not tell a wrong update from a right one."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, lora.LoraLinear):
                m.B.copy_(torch.randn(m.B.shape, generator=gen) * 0.05)
            if isinstance(m, lora.IA3Linear):
                m.scale.copy_(1 + 0.3 * torch.randn(m.scale.shape, generator=gen))


def _assert_logits_close(ours, theirs, what):
    # float32 through two code paths: round-off grows with the logits' size (|logit| up to ~30 on SmolLM2),
    # so rtol 1e-5 and an atol of 1e-5 × the largest |logit|; a wrong scaling or a missed layer moves them by ≫ 1e-3
    size = float(theirs.abs().max())
    assert_close(ours, theirs, rtol=1e-5, atol=1e-5 * max(size, 1.0), msg=what)


def _llama():
    loaded = random_model("meta-llama/Llama-3.2-1B", "causal", seed=0)
    return copy.deepcopy(loaded.model).eval(), loaded.tokenizer


def test_lora_linear_is_the_equation_and_starts_at_the_base():
    torch.manual_seed(0)
    base = nn.Linear(6, 4)
    layer = lora.LoraLinear(copy.deepcopy(base), r=2, alpha=8)
    x = torch.randn(3, 6)
    assert_close(layer(x), base(x))  # B = 0: the update starts at zero
    with torch.no_grad():
        layer.B.normal_()
    expected = x @ (base.weight + (8 / 2) * layer.B @ layer.A).T + base.bias  # W + (α/r) B A
    assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)
    assert not layer.base.weight.requires_grad and layer.A.requires_grad and layer.B.requires_grad


def test_targets_come_from_the_config_and_count_r_times_din_plus_dout():
    model, _ = _llama()
    assert lora.lora_targets(model) == ("q_proj", "v_proj")
    assert lora.ia3_targets(model) == (("k_proj", "v_proj", "down_proj"), ("down_proj",))
    expected = lora.lora_parameter_count(model, 4)
    names = lora.add_lora(model, r=4)
    assert len(names) == 2 * model.config.num_hidden_layers
    assert lora.trainable_count(model) == expected > 0
    attn = model.model.layers[0].self_attn
    per_layer = 4 * (attn.q_proj.base.in_features + attn.q_proj.base.out_features)
    per_layer += 4 * (attn.v_proj.base.in_features + attn.v_proj.base.out_features)
    assert expected == model.config.num_hidden_layers * per_layer


def test_bad_inputs_are_named():
    model, _ = _llama()
    with pytest.raises(CourseError, match="q_projection"):
        lora.add_lora(model, targets=["q_projection"])
    with pytest.raises(CourseError, match="rank"):
        lora.add_lora(model, r=0)
    with pytest.raises(CourseError, match="add_lora"):
        lora.peft_lora_twin(model)
    with pytest.raises(CourseError, match="model_type"):
        lora.lora_targets(nn.Linear(2, 2))


@pytest.mark.parametrize("init", lora.LORA_INITS)
def test_lora_equals_peft_and_merge_on_a_random_llama(init):
    model, tok = _llama()
    lora.add_lora(model, r=4, alpha=16, init=init, seed=0)
    _perturb(model)
    enc = _ids(tok)
    ours = _logits(model, enc)
    _assert_logits_close(ours, _logits(lora.peft_lora_twin(model), enc), "ours vs PEFT")
    _assert_logits_close(_logits(lora.merge(model), enc), ours, "merged vs unmerged")
    assert (ours - _logits(lora.unwrap(model), enc)).abs().max() > 1e-3  # the update changes the logits


def test_ia3_equals_peft_on_a_random_llama():
    model, tok = _llama()
    names = lora.add_ia3(model)
    ff = [n for n in names if model.get_submodule(n).feedforward]
    assert ff and all(n.endswith("down_proj") for n in ff)
    _perturb(model)
    enc = _ids(tok)
    ours = _logits(model, enc)
    _assert_logits_close(ours, _logits(lora.peft_ia3_twin(model), enc), "IA³: ours vs PEFT")
    assert (ours - _logits(lora.unwrap(model), enc)).abs().max() > 1e-3


def test_a_wrong_scaling_is_caught_by_the_peft_comparison():
    """The comparison can fail: PEFT with α/r = 1 instead of 4 gives other logits."""
    model, tok = _llama()
    lora.add_lora(model, r=4, alpha=16)
    _perturb(model)
    for m in model.modules():
        if isinstance(m, lora.LoraLinear):
            m.alpha = 4.0  # the twin reads α from here; our forward still scales by 16/4
    enc = _ids(tok)
    with pytest.raises(AssertionError):
        _assert_logits_close(_logits(model, enc), _logits(lora.peft_lora_twin(model), enc), "wrong α")


@needs_smollm2
def test_lora_ia3_and_merge_equal_peft_on_real_smollm2():
    loaded = smollm2()
    enc = _ids(loaded.tokenizer)
    model = copy.deepcopy(loaded.model).eval()
    lora.add_lora(model, r=8, seed=0)
    _perturb(model)
    ours = _logits(model, enc)
    _assert_logits_close(ours, _logits(lora.peft_lora_twin(model), enc), "SmolLM2 LoRA: ours vs PEFT")
    _assert_logits_close(_logits(lora.merge(model), enc), ours, "SmolLM2 LoRA: merged vs unmerged")
    model = copy.deepcopy(loaded.model).eval()
    lora.add_ia3(model)
    _perturb(model)
    _assert_logits_close(_logits(model, enc), _logits(lora.peft_ia3_twin(model), enc), "SmolLM2 IA³ vs PEFT")


def _gated_view(model, tok):
    from pt_helpers.adapters import PromptedModel
    from pt_helpers.frozen import attention_geometry

    torch.manual_seed(0)
    pm = PromptedModel(model, PrefixEncoder(attention_geometry(model), 3, init_std=1.0))
    ids = tok(TEXTS[0], return_tensors="pt")["input_ids"]
    return [lora.prefix_as_gated_adapter(pm, ids, layer) for layer in (0, attention_geometry(model).n_layers - 1)]


def _check_view(view):
    # float32 softmax-weighted sums recomputed outside the model: round-off relative to the outputs' size
    assert view.max_error <= 1e-4 * max(view.scale, 1.0), view.max_error
    assert ((view.gate > 0) & (view.gate < 1)).all()
    assert (view.adapter - view.own).abs().max() > 1e-3  # the prefix adds something: not a vacuous identity


def test_prefix_is_a_gated_adapter_on_a_random_llama():
    model, tok = _llama()
    for view in _gated_view(model, tok):
        _check_view(view)


@needs_smollm2
def test_prefix_is_a_gated_adapter_on_real_smollm2():
    loaded = smollm2()
    for view in _gated_view(copy.deepcopy(loaded.model).eval(), loaded.tokenizer):
        _check_view(view)


def test_a_second_injection_is_refused_and_counting_works_after_one():
    model, _ = _llama()
    before = lora.lora_parameter_count(model, 4)
    lora.add_lora(model, r=4)
    assert lora.lora_parameter_count(model, 4) == before == lora.trainable_count(model)
    with pytest.raises(CourseError, match="already has"):
        lora.add_lora(model, r=4)


def test_merge_in_place_holds_no_copy_and_equals_the_copying_merge():
    model, tok = _llama()
    lora.add_lora(model, r=4)
    _perturb(model)
    enc = _ids(tok)
    copied = _logits(lora.merge(model), enc)
    weight = model.model.layers[0].self_attn.q_proj.base.weight
    merged = lora.merge(model, in_place=True)
    assert merged is model and model.model.layers[0].self_attn.q_proj.weight is weight  # the same storage
    assert not any(isinstance(m, lora.LoraLinear) for m in model.modules())
    _assert_logits_close(_logits(model, enc), copied, "in place vs copy")


def test_twins_built_in_place_equal_the_copying_ones():
    model, tok = _llama()
    lora.add_lora(model, r=4)
    _perturb(model)
    enc = _ids(tok)
    copied = _logits(lora.peft_lora_twin(model), enc)
    _assert_logits_close(_logits(lora.peft_lora_twin(model, in_place=True), enc), copied, "LoRA twin in place")
    assert not any(isinstance(m, lora.LoraLinear) for m in model.modules())  # consumed
    model, _ = _llama()
    lora.add_ia3(model)
    _perturb(model)
    copied = _logits(lora.peft_ia3_twin(model), enc)
    _assert_logits_close(_logits(lora.peft_ia3_twin(model, in_place=True), enc), copied, "IA³ twin in place")

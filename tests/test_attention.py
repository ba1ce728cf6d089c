import math

import pytest
import torch
import torch.nn.functional as F
from _smollm2 import NOT_INSTALLED, installed, smollm2

from pt_helpers.attention import (
    AttentionShapeError,
    attention_scores,
    attention_without_softmax,
    attention_without_values,
    causal_mask,
    eager_attention,
    merge_heads,
    padding_mask,
    recompute_bert_self_attention,
    recompute_gpt2_attention,
    scaled_dot_product_attention,
    scaling_experiment,
    softmax_entropy,
    softmax_jacobian_norm,
    split_heads,
    to_additive_mask,
)
from pt_helpers.errors import CourseError

SENTENCES = ["one long string of cliches .", "a gorgeous , witty , seductive movie that leaves you wanting more ."]


def qkv(*batch, T_q=5, T_k=5, d_k=8, d_v=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(*batch, T_q, d_k, generator=g),
        torch.randn(*batch, T_k, d_k, generator=g),
        torch.randn(*batch, T_k, d_v, generator=g),
    )


# Outputs here are averages of N(0, 1) values (|x| ≲ 3) and weights lie in [0, 1]: float32 ulps are ~1e-7
# and fused vs unfused kernels differ by a few; a wrong scale or mask moves them by > 1e-2.
O1 = dict(rtol=1e-5, atol=1e-5)


# --- attention from scratch --------------------------------------------------------------------


@pytest.mark.parametrize("batch", [(), (3,), (2, 4)])
def test_equals_torch_sdpa_without_mask(batch):
    q, k, v = qkv(*batch, T_q=4, T_k=7)
    out, w = scaled_dot_product_attention(q, k, v)
    assert out.shape == (*batch, 4, 6) and w.shape == (*batch, 4, 7)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v), **O1)
    torch.testing.assert_close(w.sum(-1), torch.ones(*batch, 4), rtol=1e-5, atol=1e-6)  # 7 weights summed: ~4e-7


def test_equals_torch_sdpa_with_causal_and_padding_masks():
    q, k, v = qkv(2, 3, T_q=6, T_k=6)
    att = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    mask = causal_mask(6) & padding_mask(att)  # (2, 1, 6, 6)
    out, w = scaled_dot_product_attention(q, k, v, mask)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), **O1)
    assert (w.masked_select(~mask.expand_as(w)) == 0).all()  # hidden keys get exactly 0
    out_add, w_add = scaled_dot_product_attention(q, k, v, to_additive_mask(mask))
    torch.testing.assert_close(out_add, out, **O1)
    torch.testing.assert_close(w_add, w, **O1)


def test_causal_equals_torch_is_causal():
    q, k, v = qkv(2, T_q=5, T_k=5)
    out, w = scaled_dot_product_attention(q, k, v, causal_mask(5))
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, is_causal=True), **O1)
    assert torch.equal(w.triu(1), torch.zeros_like(w))  # no look-ahead


def test_scale_argument_and_scores():
    q, k, v = qkv(T_q=3, T_k=4, d_k=16)
    torch.testing.assert_close(attention_scores(q, k), q @ k.T / 4.0, **O1)  # scores |s| ≲ 3; a wrong scale is ×2+
    _, w1 = scaled_dot_product_attention(q, k, v, scale=1.0)
    torch.testing.assert_close(w1, torch.softmax(q @ k.T, -1), **O1)


def test_fully_masked_row_is_uniform_not_nan():
    q, k, v = qkv(T_q=2, T_k=3)
    mask = torch.tensor([[True, True, False], [False, False, False]])
    out, w = scaled_dot_product_attention(q, k, v, mask)
    assert not torch.isnan(out).any()
    torch.testing.assert_close(w[1], torch.full((3,), 1 / 3), rtol=1e-5, atol=1e-6)  # weights of 1/3: ulp 3e-8


def test_gradients_flow_to_q_k_v():
    q, k, v = (t.requires_grad_() for t in qkv(2, T_q=3, T_k=4))
    out, _ = scaled_dot_product_attention(q, k, v, causal_mask(4)[:3])
    out.sum().backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in (q, k, v))


# --- masks, heads -------------------------------------------------------------------------------


def test_mask_shapes_and_values():
    cm = causal_mask(4)
    assert cm.shape == (4, 4) and cm.dtype == torch.bool and cm.sum() == 10 and cm[0, 1].item() is False
    pm = padding_mask(torch.tensor([[1, 1, 0], [1, 1, 1]]))
    assert pm.shape == (2, 1, 1, 3) and pm[0, 0, 0].tolist() == [True, True, False]
    add = to_additive_mask(pm)
    assert add.dtype == torch.float32 and add[0, 0, 0, 2] == torch.finfo(torch.float32).min and add[1].eq(0).all()
    assert (causal_mask(3) & padding_mask(torch.tensor([[1, 1, 0]]))).shape == (1, 1, 3, 3)


def test_split_merge_round_trip_and_layout():
    x = torch.arange(2 * 3 * 12, dtype=torch.float32).view(2, 3, 12)
    h = split_heads(x, 4)
    assert h.shape == (2, 4, 3, 3)
    assert torch.equal(h[1, 2, 0], x[1, 0, 6:9])  # head 2 owns features 6..8
    assert torch.equal(merge_heads(h), x)


def test_attention_errors_are_clear():
    q, k, v = qkv(T_q=3, T_k=4, d_k=8)
    with pytest.raises(AttentionShapeError, match="d_k"):
        scaled_dot_product_attention(q, k[:, :6], v)  # mismatched head dims
    with pytest.raises(AttentionShapeError, match="one vector per key"):
        scaled_dot_product_attention(q, k, v[:3])
    with pytest.raises(AttentionShapeError, match="does not broadcast"):
        scaled_dot_product_attention(q, k, v, causal_mask(5))
    with pytest.raises(AttentionShapeError, match="at least 2 dims"):
        scaled_dot_product_attention(q[0], k, v)
    with pytest.raises(AttentionShapeError, match="do not broadcast"):
        scaled_dot_product_attention(*qkv(2, T_q=3, T_k=4)[:1], *qkv(3, T_q=3, T_k=4)[1:])
    with pytest.raises(TypeError):
        scaled_dot_product_attention(q.tolist(), k, v)
    assert issubclass(AttentionShapeError, CourseError)


def test_mask_and_head_errors_are_clear():
    with pytest.raises(AttentionShapeError, match="divisor"):
        split_heads(torch.zeros(1, 3, 10), 4)
    with pytest.raises(AttentionShapeError, match=r"\(batch, T, d_model\)"):
        split_heads(torch.zeros(3, 10), 2)
    with pytest.raises(AttentionShapeError, match="merge_heads"):
        merge_heads(torch.zeros(3, 10, 2))
    with pytest.raises(AttentionShapeError, match=r"\(batch, T\)"):
        padding_mask(torch.ones(5))
    with pytest.raises(AttentionShapeError, match="only 0"):
        padding_mask(torch.tensor([[1, 2]]))
    with pytest.raises(AttentionShapeError, match="T >= 1"):
        causal_mask(0)


# --- the two broken formulas --------------------------------------------------------------------


def test_without_softmax_is_not_an_average_and_without_v_has_the_wrong_shape():
    q, k, v = qkv(T_q=4, T_k=6, d_k=8, d_v=5)
    out, scores = attention_without_softmax(q, k, v)
    assert out.shape == (4, 5)
    assert not torch.allclose(scores.sum(-1), torch.ones(4), **O1) and (scores < 0).any()  # row sums are O(1) off
    # doubling the context (same keys twice) doubles the output — an average would not change
    out2, _ = attention_without_softmax(q, torch.cat([k, k]), torch.cat([v, v]))
    torch.testing.assert_close(out2, 2 * out, **O1)  # sums of scores·v, |x| up to ~10: rtol carries it
    right, _ = scaled_dot_product_attention(q, torch.cat([k, k]), torch.cat([v, v]))
    torch.testing.assert_close(right, scaled_dot_product_attention(q, k, v)[0], **O1)
    w = attention_without_values(q, k)
    assert w.shape == (4, 6)
    torch.testing.assert_close(w.sum(-1), torch.ones(4), rtol=1e-5, atol=1e-6)  # 6 weights summed: ~4e-7
    with pytest.raises(AttentionShapeError):
        attention_without_values(q, k[:, :3])


# --- √d_k -------------------------------------------------------------------------------------


def test_entropy_and_jacobian_limits():
    uniform, onehot = torch.full((8,), 1 / 8), torch.eye(8)[0]
    # float32 entropies are O(log 8 ≈ 2) and Jacobian norms O(0.1–1): rel 1e-5 is ~100 ulps of them;
    # abs 1e-6 (for the exact zeros of a one-hot row) is still far below any wrong formula (> 1e-2)
    assert softmax_entropy(uniform).item() == pytest.approx(math.log(8), rel=1e-5, abs=1e-6)
    assert softmax_entropy(onehot).item() == pytest.approx(0.0, rel=1e-5, abs=1e-6)
    assert softmax_jacobian_norm(onehot).item() == pytest.approx(0.0, rel=1e-5, abs=1e-6)
    p = torch.softmax(torch.randn(7), -1).requires_grad_()
    jac = torch.diag(p) - torch.outer(p, p)
    # the closed form Σp² − 2Σp³ + (Σp²)² cancels for peaked rows, and √ turns its ~1e-7 error into
    # ~6e-8/‖J‖: up to 3e-6 over 1e6 random p (abs 1e-6 failed 6 in 1e5 runs); a wrong formula is off by > 1e-2
    assert softmax_jacobian_norm(p).item() == pytest.approx(jac.norm().item(), rel=1e-5, abs=1e-5)


def test_scaling_experiment_shows_saturation_without_scaling():
    df = scaling_experiment((4, 64, 1024), n_queries=64, n_keys=32, seed=0)
    assert len(df) == 6
    scaled, raw = df[df.scaled].set_index("d_k"), df[~df.scaled].set_index("d_k")
    assert scaled.score_std.between(0.8, 1.2).all()  # theory: 1
    assert raw.loc[1024, "score_std"] == pytest.approx(32, rel=0.15)  # theory: √1024
    assert raw.loc[1024, "max_weight"] > 0.9 > scaled.loc[1024, "max_weight"]
    assert raw.entropy.is_monotonic_decreasing and raw.loc[1024, "entropy"] < 0.3
    assert scaled.entropy.max() - scaled.entropy.min() < 0.3  # stays put
    assert raw.loc[1024, "saturated"] > 0.5 and (scaled.saturated == 0).all()
    assert raw.loc[1024, "jacobian_norm"] < 0.5 * scaled.loc[1024, "jacobian_norm"]  # gradients vanish
    assert scaling_experiment((8,), seed=1).equals(scaling_experiment((8,), seed=1))
    with pytest.raises(ValueError):
        scaling_experiment((0,))


# --- real layers ----------------------------------------------------------------------------------


def assert_recomputed(rec):
    """Each recomputed tensor equals the model's own, element by element (float32, other kernels).

    rtol covers large hidden states (MiniLM's attention_output reaches ~30, real GPT-2's residual
    stream ~3000, where one ulp is already 2e-4); atol covers entries near 0 (probabilities, context).
    Measured here: ≤ 2e-6. A wrong scale, mask or head split moves probabilities by > 1e-2.
    """
    for name in rec.ours:
        torch.testing.assert_close(
            rec.ours[name], rec.model[name], rtol=1e-5, atol=1e-4, msg=lambda m, name=name: f"{name}: {m}"
        )


def test_recompute_real_minilm_layer0(minilm):
    model, tok = minilm
    enc = tok(SENTENCES, return_tensors="pt", padding=True)
    before = model.config._attn_implementation
    rec = recompute_bert_self_attention(model, 0, enc["input_ids"], enc["attention_mask"])
    assert model.config._attn_implementation == before  # restored
    T = enc["input_ids"].shape[1]
    assert rec.ours["probs"].shape == (2, 12, T, T) and rec.ours["attention_output"].shape == (2, T, 384)
    assert_recomputed(rec)
    assert set(rec.table().tensor) == {"probs", "context", "attention_output", "layer_output"}
    with torch.no_grad():  # layer output = hidden_states[1]
        hs = model(**enc, output_hidden_states=True).hidden_states
    torch.testing.assert_close(rec.ours["layer_output"], hs[1], rtol=1e-5, atol=1e-4)  # eager vs SDPA; |x| ≲ 10
    # padding gets no attention from any real token
    assert enc["attention_mask"][0].min() == 0
    assert rec.ours["probs"][0, :, :, enc["attention_mask"][0] == 0].abs().max() == 0


def test_recompute_detects_a_wrong_scale(minilm):
    model, tok = minilm
    enc = tok(SENTENCES[:1], return_tensors="pt")
    rec = recompute_bert_self_attention(model, 3, enc["input_ids"])
    assert_recomputed(rec)
    _, unscaled = scaled_dot_product_attention(rec.q, rec.k, rec.v, rec.mask, scale=1.0)
    rec.ours["probs"] = unscaled
    with pytest.raises(AssertionError, match="probs"):
        rec.assert_close(1e-4)
    with pytest.raises(AssertionError, match="probs"):  # the rtol + atol check catches it too
        assert_recomputed(rec)


def test_recompute_gpt2_random_all_layers_and_padding(random_gpt2):
    model, tok = random_gpt2
    enc = tok(["Hello world, this is a test", "Short"], return_tensors="pt", padding=True)
    for layer in range(model.config.n_layer):
        rec = recompute_gpt2_attention(model, layer, enc["input_ids"], enc["attention_mask"])
        assert_recomputed(rec)
    probs = rec.ours["probs"]
    assert probs.shape == (2, model.config.n_head, 7, 7)
    assert torch.equal(probs[0].triu(1), torch.zeros_like(probs[0]))  # causal: nothing from the future


def test_recompute_gpt2_single_sequence_1d(random_gpt2):
    model, tok = random_gpt2
    ids = torch.tensor(tok("The movie was good.")["input_ids"])
    assert_recomputed(recompute_gpt2_attention(model, 0, ids))


def test_recompute_bad_layer_and_mask(random_gpt2, minilm):
    model, tok = random_gpt2
    ids = torch.tensor([tok("a b c")["input_ids"]])
    with pytest.raises(IndexError, match="0..3"):
        recompute_gpt2_attention(model, 9, ids)
    with pytest.raises(AttentionShapeError, match="shape of input_ids"):
        recompute_gpt2_attention(model, 0, ids, torch.ones(1, 2, dtype=torch.long))
    with pytest.raises(IndexError):
        recompute_bert_self_attention(minilm.model, 6, ids)


def test_eager_attention_restores_implementation(random_gpt2):
    model, _ = random_gpt2
    before = model.config._attn_implementation
    with eager_attention(model):
        assert model.config._attn_implementation == "eager"
    assert model.config._attn_implementation == before


# ------------------------------------------------------------------ the rest of a block (chapter 02, §10)
@pytest.fixture(scope="module")
def random_llama():
    from pt_helpers.models import random_model

    return random_model("TinyLlama/TinyLlama-1.1B-Chat-v1.0", "causal", seed=0)


def test_llama_layer_recomputed_from_its_weights(random_llama):
    from pt_helpers.attention import recompute_llama_layer, scaled_tolerance

    model, tok = random_llama
    ids = tok(SENTENCES, return_tensors="pt", padding=True)["input_ids"][:1]
    for layer in range(model.config.num_hidden_layers):
        rec = recompute_llama_layer(model, layer, ids)
        assert set(rec.ours) == {"cos", "sin", "probs", "context", "attn_output", "mlp_output", "layer_output"}
        for name in rec.ours:  # float32 through other kernels; tolerance scaled to each tensor's magnitude
            torch.testing.assert_close(rec.ours[name], rec.model[name], **scaled_tolerance(rec.model[name]))
    assert torch.equal(rec.ours["probs"].triu(1), torch.zeros_like(rec.ours["probs"]))


def test_rope_is_a_rotation_that_sees_only_relative_positions():
    from pt_helpers.attention import apply_rope, rope_cos_sin

    gen = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 1, 1, 16, generator=gen), torch.randn(1, 1, 1, 16, generator=gen)

    def score(m, n):
        cq, sq = rope_cos_sin(torch.tensor([[m]]), 16, 10_000.0)
        ck, sk = rope_cos_sin(torch.tensor([[n]]), 16, 10_000.0)
        return (apply_rope(q, cq, sq) * apply_rope(k, ck, sk)).sum().item()

    # scores of N(0, 1) vectors in 16 dims are O(4); float32 trig of angles up to ~100 rad: ~1e-5
    assert score(3, 1) == pytest.approx(score(10, 8), abs=1e-4)
    assert score(3, 1) == pytest.approx(score(102, 100), abs=1e-4)
    assert abs(score(3, 1) - score(3, 2)) > 1e-2  # but the offset matters
    cos, sin = rope_cos_sin(torch.tensor([[0, 5, 17]]), 16, 10_000.0)
    x = torch.randn(1, 2, 3, 16, generator=gen)
    torch.testing.assert_close(apply_rope(x, cos, sin).norm(dim=-1), x.norm(dim=-1), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(apply_rope(x, cos, sin)[:, :, 0], x[:, :, 0])  # position 0: no rotation


def test_norms_mlp_and_positions_match_the_modules(random_gpt2, random_llama):
    from pt_helpers.attention import gpt2_input_embeddings, gpt2_mlp, layer_norm, rms_norm, scaled_tolerance

    model, tok = random_gpt2
    ids = tok(SENTENCES[:1], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        h0 = model(ids, output_hidden_states=True).hidden_states[0]
        blk = model.transformer.h[0]
        torch.testing.assert_close(gpt2_input_embeddings(model, ids), h0, **scaled_tolerance(h0))
        ln = blk.ln_1(h0)
        torch.testing.assert_close(
            layer_norm(h0, blk.ln_1.weight, blk.ln_1.bias, blk.ln_1.eps), ln, **scaled_tolerance(ln)
        )
        torch.testing.assert_close(gpt2_mlp(blk.mlp, ln), blk.mlp(ln), **scaled_tolerance(blk.mlp(ln)))
        assert not torch.allclose(gpt2_input_embeddings(model, ids.flip(-1)).flip(1), h0)  # positions matter
        llama, _ = random_llama
        norm = llama.model.layers[0].input_layernorm
        x = torch.randn(2, 3, norm.weight.shape[0]) * 50
        torch.testing.assert_close(
            rms_norm(x, norm.weight, norm.variance_epsilon), norm(x), **scaled_tolerance(norm(x))
        )


def test_recompute_llama_layer_refuses_other_families(random_gpt2):
    from pt_helpers.attention import recompute_llama_layer

    gpt2, _ = random_gpt2
    with pytest.raises(CourseError, match="Llama"):
        recompute_llama_layer(gpt2, 0, torch.tensor([[1, 2, 3]]))


def test_scaled_tolerance_follows_the_magnitudes():
    from pt_helpers.attention import scaled_tolerance

    tol = scaled_tolerance(torch.tensor([[-200.0, 1.0], [0.0, 3.0]]))
    assert tol["rtol"] == 1e-5 and tol["atol"] == pytest.approx(2e-3)
    assert scaled_tolerance(torch.zeros(3))["atol"] > 0  # an all-zero reference still gets a (tiny) tolerance
    ref = torch.tensor([100.0, 1e-3])
    torch.testing.assert_close(ref + torch.tensor([5e-4, 5e-4]), ref, **scaled_tolerance(ref))  # rounding-sized
    with pytest.raises(AssertionError):
        torch.testing.assert_close(ref + torch.tensor([0.0, 0.05]), ref, **scaled_tolerance(ref))  # a real error


# ------------------------------------------------------------------ the real Llama-family default (chapter 02, §10)
@pytest.mark.skipif(not installed(), reason=NOT_INSTALLED)
def test_every_layer_of_the_real_smollm2_recomputed_and_its_gqa_cache():
    """SmolLM2-135M-Instruct: rope_theta from its config (1e5, not the default 1e4), 9 query heads on 3 key/value
    heads, RMSNorm, SwiGLU. Every layer's tensors match at tolerances scaled to the real magnitudes (the residual
    stream reaches thousands at the first position); the cache holds 2·L·g·d_head numbers per token."""
    from pt_helpers.attention import recompute_llama_layer, scaled_tolerance
    from pt_helpers.lm import encode

    model, tok = smollm2()
    cfg = model.config
    assert cfg.rope_parameters["rope_theta"] != 10_000 and cfg.num_key_value_heads < cfg.num_attention_heads
    ids = torch.tensor([encode(tok, SENTENCES[0])])
    peak = 0.0
    for layer in range(cfg.num_hidden_layers):
        rec = recompute_llama_layer(model, layer, ids)
        for name in rec.ours:
            torch.testing.assert_close(rec.ours[name], rec.model[name], **scaled_tolerance(rec.model[name]))
        peak = max(peak, rec.model["layer_output"].abs().max().item())
    assert peak > 100  # real weights: the unscaled atol 1e-4 of a random model would not do here
    group = cfg.num_attention_heads // cfg.num_key_value_heads
    for j in range(cfg.num_attention_heads):
        assert torch.equal(rec.k[:, j], rec.k[:, (j // group) * group])
    with torch.no_grad():
        cache = model(ids, use_cache=True).cache
    per_token = sum(lay.keys.numel() + lay.values.numel() for lay in cache.layers) / ids.shape[1]
    assert per_token == 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * cfg.head_dim

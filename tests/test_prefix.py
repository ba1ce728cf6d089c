"""Tests of pt_helpers.prefix: deep prompts through the KV cache, checked against PEFT's PrefixTuningConfig."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
from _helpers import TEXTS, batch, close

from pt_helpers.adapters import PromptedModel
from pt_helpers.checkpoint import load_prompt, save_prompt
from pt_helpers.classifiers import label_sentence_classifier, label_word_classifier
from pt_helpers.data import task_info
from pt_helpers.errors import BaseModelMismatchError, CheckpointError, ContextWindowError, PromptError, PromptShapeError
from pt_helpers.frozen import AttentionGeometry, attention_geometry, count_trainable, expand_cache
from pt_helpers.models import random_model
from pt_helpers.prefix import (
    PrefixEncoder,
    make_prefix,
    make_prefix_model,
    peft_twin,
    prefix_attention_forms,
    prefix_forms_on_layer,
    text_key_values,
)

SST2_LABEL_SENTENCES = task_info("sst2").label_sentences

warnings.filterwarnings("ignore", message=".*[Tt]oken type ids.*")


def _output(out):
    return (
        out.logits
        if getattr(out, "logits", None) is not None
        else (out.hidden if hasattr(out, "hidden") else out.last_hidden_state)
    )


def _prefixed(model, n, keep_input_positions=None, **kwargs) -> PromptedModel:
    """A frozen model with a new PrefixEncoder (the deep-prompt adapter)."""
    return PromptedModel(
        model, PrefixEncoder(attention_geometry(model), n, **kwargs), keep_input_positions=keep_input_positions
    )


@pytest.mark.parametrize(
    "family, reparameterize", [("gpt2", False), ("gpt2", True), ("bert", False), ("minilm", False), ("minilm", True)]
)
def test_same_outputs_and_gradients_as_peft(family, reparameterize, random_gpt2, random_bert, minilm):
    loaded = {"gpt2": random_gpt2, "bert": random_bert, "minilm": minilm}[family]
    model, tok = copy.deepcopy(loaded.model), loaded.tokenizer
    ids, mask, _ = batch(tok)
    torch.manual_seed(0)
    ours = _prefixed(
        model, 4, reparameterize=reparameterize, mlp_hidden=32, init_std=0.5, keep_input_positions=False
    )  # PEFT lets the input's positions follow the prefix
    twin = peft_twin(model, ours.adapter)
    a, b = _output(ours(ids, mask)), _output(twin(input_ids=ids, attention_mask=mask))
    assert a.shape == b.shape == (*ids.shape, a.shape[-1])  # the input's length: prefix is in the cache
    real = mask.bool()
    close(a[real], b[real], what="outputs vs PEFT")
    probe = torch.randn_like(a)  # a random linear read-out of the outputs
    ((a * probe)[real]).sum().backward()
    ((b * probe)[real]).sum().backward()
    pe = twin.prompt_encoder["default"]
    ours_grad = ours.adapter.embedding.grad if reparameterize else ours.adapter.prefix.grad
    assert ours_grad.abs().max() > 0
    close(ours_grad, pe.embedding.weight.grad, rtol=1e-4, what="prefix gradient vs PEFT")  # sums over B·T terms
    if reparameterize:
        close(ours.adapter.mlp[2].weight.grad, pe.transform[2].weight.grad, rtol=1e-4, what="MLP gradient vs PEFT")


def test_prefix_changes_the_output_and_the_layout_is_per_layer(random_bert):
    model, tok = random_bert
    ids, mask, _ = batch(tok)
    pm = _prefixed(copy.deepcopy(model), 3, init_std=1.0)
    with torch.no_grad():
        plain = model(input_ids=ids, attention_mask=mask).last_hidden_state
        prefixed = pm(ids, mask).hidden
    assert (plain - prefixed).abs().max() > 1e-3
    g = attention_geometry(model)
    kv = pm.adapter.virtual_key_values()
    assert len(kv) == g.n_layers and kv[0][0].shape == (1, g.n_kv_heads, 3, g.head_dim)
    flat = pm.adapter()
    # layer 1's values are columns [3w, 4w) of the flat row (w = n_kv_heads · head_dim), split into heads
    w = g.kv_width
    assert torch.equal(kv[1][1][0, :, 2], flat[2, 3 * w : 4 * w].view(g.n_kv_heads, g.head_dim))
    cache = expand_cache(pm.adapter.virtual_key_values(), batch_size=5)
    assert cache.get_seq_length() == 3 and cache.layers[0].keys.shape[0] == 5


def test_masking_the_prefix_gives_the_plain_model(random_bert):
    """With the prefix's attention-mask entries set to 0 the model must ignore it: a check of the mask path."""
    model, tok = random_bert
    ids, mask, _ = batch(tok)
    pm = _prefixed(copy.deepcopy(model), 3, init_std=1.0)
    with torch.no_grad():
        plain = model(input_ids=ids, attention_mask=mask).last_hidden_state
        full_mask = torch.cat([torch.zeros(len(ids), 3, dtype=mask.dtype), mask], 1)
        ignored = pm.model(
            input_ids=ids,
            attention_mask=full_mask,
            cache=expand_cache(pm.adapter.virtual_key_values(), len(ids)),
            position_ids=torch.arange(ids.shape[1]).expand_as(ids),
        ).last_hidden_state
    close(ignored[mask.bool()], plain[mask.bool()], what="masked prefix vs plain model")


def test_only_the_prefix_is_trained_and_causal_labels_align(random_gpt2):
    model, tok = copy.deepcopy(random_gpt2.model), random_gpt2.tokenizer
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ids, mask, _ = batch(tok)
    labels = ids.masked_fill(mask == 0, -100)
    pm = _prefixed(model, 5, init_std=0.5)
    assert count_trainable(pm) == count_trainable(pm.adapter) == 5 * attention_geometry(model).flat_width
    out = pm(ids, mask, labels=labels)
    manual = F.cross_entropy(out.logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100)
    close(out.loss, manual, what="loss vs shifted cross-entropy")  # no label padding for virtual positions
    opt = torch.optim.AdamW(pm.parameters(), lr=1e-2)
    out.loss.backward()
    assert all(p.grad is None for p in model.parameters())
    opt.step()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_reparameterised_prefix_collapses_to_the_same_direct_prefix(random_bert):
    model, tok = random_bert
    ids, mask, _ = batch(tok)
    pm = _prefixed(copy.deepcopy(model), 4, reparameterize=True, mlp_hidden=16)
    n_mlp = count_trainable(pm.adapter)
    direct = PromptedModel(pm.model, pm.adapter.to_direct())
    with torch.no_grad():
        before = pm(ids, mask).hidden
        after = direct(ids, mask).hidden
    close(after, before, what="direct vs reparameterised prefix")  # the same P, computed once
    assert count_trainable(direct.adapter) == 4 * attention_geometry(model).flat_width != n_mlp


def test_encoder_keeps_input_positions_by_default(random_bert):
    model, tok = random_bert
    ids, mask, _ = batch(tok)
    pm = _prefixed(copy.deepcopy(model), 3)
    assert pm.keep_input_positions
    shifted = PromptedModel(pm.model, pm.adapter, keep_input_positions=False)
    with torch.no_grad():
        a = pm(ids, mask).hidden
        b = shifted(ids, mask).hidden
        full_mask = torch.cat([torch.ones(len(ids), 3, dtype=mask.dtype), mask], 1)
        c = pm.model(
            input_ids=ids,
            attention_mask=full_mask,
            cache=expand_cache(pm.adapter.virtual_key_values(), len(ids)),
            position_ids=torch.arange(ids.shape[1]).expand_as(ids),
        ).last_hidden_state
    assert (a - b).abs().max() > 1e-4
    close(a, c, what="kept positions vs explicit positions 0..T-1")


def test_text_init_is_the_models_own_keys_and_values(random_bert):
    model, tok = random_bert
    flat = text_key_values(model, tok, "hello world", 5)  # 2 tokens repeated to 5
    g = attention_geometry(model)
    assert flat.shape == (5, g.flat_width)
    ids = torch.tensor([tok("hello world", add_special_tokens=False)["input_ids"] * 3])[:, :5]
    with torch.no_grad():  # layer 0's keys: the key projection of the embedding output
        keys0 = model.encoder.layer[0].attention.self.key(model.embeddings(input_ids=ids))[0]
    close(flat[:, : g.kv_width], keys0, what="text init vs layer-0 keys")
    pm = make_prefix_model(copy.deepcopy(model), tok, 5, init="text", init_text="hello world")
    assert torch.equal(pm.adapter.prefix.detach(), flat)


def test_save_load_round_trip_and_wrong_model(tmp_path, random_bert, random_gpt2):
    model, tok = random_bert
    ids, mask, _ = batch(tok)
    pm = _prefixed(copy.deepcopy(model), 4, reparameterize=True, mlp_hidden=8)
    folder = save_prompt(pm.adapter, tmp_path / "deep", pm.model, tok, base_model="bert-base-uncased", task="sst2")
    back = PromptedModel(copy.deepcopy(model), load_prompt(folder, model, tok))
    assert not back.adapter.reparameterize  # the checkpoint stores P, the MLP applied
    with torch.no_grad():
        close(back(ids, mask).hidden, pm(ids, mask).hidden, what="reloaded prefix")
    with pytest.raises(BaseModelMismatchError, match="base model"):
        load_prompt(folder, random_gpt2.model, random_gpt2.tokenizer)
    with pytest.raises(PromptShapeError, match="encoder"):  # a GPT-2 of the same shapes: another kind
        load_prompt(folder, random_gpt2.model, random_gpt2.tokenizer, check_identity=False)
    other_weights = random_model("bert-base-uncased", "encoder", seed=1).model
    with pytest.raises(BaseModelMismatchError, match="fingerprint"):
        load_prompt(folder, other_weights, tok)
    with pytest.raises(CheckpointError, match="save_prompt"):
        load_prompt(tmp_path / "nothing_here", model, tok)


def test_bad_inputs_raise_clear_errors(random_bert):
    model, tok = random_bert
    g = attention_geometry(model)
    with pytest.raises(PromptError, match="positive"):
        PrefixEncoder(g, 0)
    with pytest.raises(PromptError, match="expected"):
        PrefixEncoder(g, 2, init_prefix=torch.zeros(3, g.flat_width))
    with pytest.raises(PromptError, match="reparameterize"):
        PrefixEncoder(g, 2, reparameterize=True, init_prefix=torch.zeros(2, g.flat_width))
    pm = _prefixed(copy.deepcopy(model), 20)
    with pytest.raises(ContextWindowError, match="context window"):
        pm(torch.ones(1, 500, dtype=torch.long))
    with pytest.raises(PromptError, match="init"):
        make_prefix_model(model, tok, 2, init="vocab")

    class GroupedQuery:  # a Llama-style config: 8 query heads share 2 key/value heads of size 16
        model_type, num_hidden_layers, num_attention_heads, hidden_size = "llama", 2, 8, 128
        num_key_value_heads, head_dim = 2, 16

    assert attention_geometry(GroupedQuery()) == AttentionGeometry(2, 2, 16, 8)
    assert AttentionGeometry(2, 4, 8).flat_width == 2 * 2 * 32

    class NoHeads:
        model_type = "mystery"

    with pytest.raises(PromptError, match="layers"):
        attention_geometry(NoHeads())


def test_causal_classifier_with_deep_prompt_trains_prefix_only(random_gpt2):
    model, tok = copy.deepcopy(random_gpt2.model), random_gpt2.tokenizer
    clf = label_word_classifier(model, tok, ("negative", "positive"), prompt=make_prefix(model, tok, 3, init="random"))
    ids, mask = clf.tokenize(TEXTS)
    logits = clf(ids, mask)
    assert logits.shape == (3, 2)
    F.cross_entropy(logits, torch.tensor([1, 0, 0])).backward()
    assert clf.adapter.prefix.grad.abs().sum() > 0
    assert count_trainable(clf) == 3 * attention_geometry(model).flat_width


def test_deep_prompt_on_real_minilm_learns(minilm):
    """Behaviour on the real frozen encoder: a few steps on 8 SST-2-like sentences lower the loss."""
    model = copy.deepcopy(minilm.model)
    clf = label_sentence_classifier(
        model, minilm.tokenizer, SST2_LABEL_SENTENCES, prompt=make_prefix(model, minilm.tokenizer, 4)
    )
    texts = TEXTS + ["great fun", "awful", "a masterpiece", "boring and long", "a joy to watch"]
    labels = torch.tensor([1, 0, 0, 1, 0, 1, 0, 1])
    ids, mask = clf.tokenize(texts)
    opt = torch.optim.AdamW([p for p in clf.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(4):
        loss = F.cross_entropy(clf(ids, mask), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.05


# ---- He et al. (2022, §3): a prefix head is an interpolation between two attentions ---------------------------


def test_he_interpolation_equals_the_concatenated_prefix_head_on_a_gqa_rope_layer():
    """On a random Llama stand-in (RoPE, 4 query heads sharing 2 key/value heads), both forms agree with each
    other and with the layer's own merged heads; the gate is a share (0 < λ < 1)."""
    loaded = random_model("meta-llama/Llama-3.2-1B", "causal", seed=0)
    model, tok = copy.deepcopy(loaded.model), loaded.tokenizer
    torch.manual_seed(0)
    pm = PromptedModel(model, PrefixEncoder(attention_geometry(model), 3, init_std=1.0))
    ids = tok("a gripping, beautifully acted film", return_tensors="pt")["input_ids"]
    for layer in range(attention_geometry(model).n_layers):
        forms = prefix_forms_on_layer(pm, ids, layer)
        assert forms.concatenated.shape == (1, model.config.num_attention_heads, ids.shape[1], model.config.head_dim)
        close(forms.interpolated, forms.concatenated, what=f"He et al.'s form vs concatenation, layer {layer}")
        close(forms.concatenated, forms.model_context, what=f"concatenation vs the layer's own heads, layer {layer}")
        assert ((forms.gate > 0) & (forms.gate < 1)).all()


def test_he_forms_against_direct_formulas_and_gqa_grouping():
    torch.manual_seed(0)
    q, k, v = torch.randn(1, 4, 5, 8), torch.randn(1, 2, 5, 8), torch.randn(1, 2, 5, 8)
    pk, pv = torch.randn(1, 2, 3, 8), torch.randn(1, 2, 3, 8)
    forms = prefix_attention_forms(q, k, v, pk, pv)
    # the concatenated head, independently: torch's attention over [P_K; K] with the prefix always visible
    allowed = torch.cat([torch.ones(5, 3, dtype=torch.bool), torch.ones(5, 5, dtype=torch.bool).tril()], dim=1)
    keys, values = (torch.cat([a, b], 2).repeat_interleave(2, 1) for a, b in ((pk, k), (pv, v)))
    close(forms.concatenated, F.scaled_dot_product_attention(q, keys, values, attn_mask=allowed), what="concat")
    close(forms.interpolated, forms.concatenated, what="the two forms")
    # the gate, as He et al. write it (small scores here, so exp does not overflow)
    s_p = (q @ pk.repeat_interleave(2, 1).transpose(-1, -2) / 8**0.5).exp().sum(-1)
    s_x = ((q @ k.repeat_interleave(2, 1).transpose(-1, -2) / 8**0.5).exp() * allowed[:, 3:]).sum(-1)
    close(forms.gate, s_p / (s_p + s_x), what="gate λ(x)")
    # query head h reads key/value head h // 2 (repeat, not tile): pairing the heads the other way differs
    wrong = prefix_attention_forms(q[:, [0, 2, 1, 3]], k, v, pk, pv).concatenated[:, [0, 2, 1, 3]]
    assert (wrong - forms.concatenated).abs().max() > 1e-2
    with pytest.raises(PromptShapeError, match="key/value heads"):
        prefix_attention_forms(q[:, :3], k, v, pk, pv)
    with pytest.raises(PromptError, match="PrefixEncoder"):
        prefix_forms_on_layer(
            PromptedModel(random_model("meta-llama/Llama-3.2-1B", "causal").model, None), torch.ones(1, 2).long(), 0
        )

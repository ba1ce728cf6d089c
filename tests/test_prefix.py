"""Tests of pt_helpers.prefix: deep prompts through the KV cache, checked against PEFT's PrefixTuningConfig."""
from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F

from pt_helpers.models import random_model
from pt_helpers.prefix import (PrefixEncoder, PrefixError, PrefixGeometry, PrefixLabelWordClassifier,
                               PrefixSentenceClassifier, PrefixTunedModel, attention_geometry, load_prefix,
                               make_prefix_model, peft_twin, prefix_cache, save_prefix, text_key_values)
from pt_helpers.soft_prompt import SST2_LABEL_SENTENCES, count_trainable

TEXTS = ["a gripping, beautifully acted film", "dull", "the plot goes nowhere and the jokes fall flat"]
warnings.filterwarnings("ignore", message=".*[Tt]oken type ids.*")


def _batch(tok, texts=TEXTS):
    enc = tok(texts, return_tensors="pt", padding=True)  # right padding
    return enc["input_ids"], enc["attention_mask"]


def _output(out):
    return out.logits if hasattr(out, "logits") and out.logits is not None else out.last_hidden_state


@pytest.mark.parametrize("family, reparameterize", [("gpt2", False), ("gpt2", True), ("bert", False),
                                                    ("minilm", False), ("minilm", True)])
def test_same_outputs_and_gradients_as_peft(family, reparameterize, gpt2, bert, minilm):
    loaded = {"gpt2": gpt2, "bert": bert, "minilm": minilm}[family]
    model, tok = copy.deepcopy(loaded.model), loaded.tokenizer
    ids, mask = _batch(tok)
    torch.manual_seed(0)
    ours = PrefixTunedModel(model, 4, reparameterize=reparameterize, mlp_hidden=32, init_std=0.5,
                            keep_input_positions=False)  # PEFT lets the input's positions follow the prefix
    twin = peft_twin(model, ours.prefix_encoder)
    a, b = _output(ours(ids, mask)), _output(twin(input_ids=ids, attention_mask=mask))
    assert a.shape == b.shape == (*ids.shape, a.shape[-1])       # the input's length: prefix is in the cache
    real = mask.bool()
    assert (a - b)[real].abs().max().item() <= 1e-5
    probe = torch.randn_like(a)                                   # a random linear read-out of the outputs
    ((a * probe)[real]).sum().backward()
    ((b * probe)[real]).sum().backward()
    pe = twin.prompt_encoder["default"]
    ours_grad = ours.prefix_encoder.embedding.grad if reparameterize else ours.prefix_encoder.prefix.grad
    assert ours_grad.abs().max() > 0
    assert torch.allclose(ours_grad, pe.embedding.weight.grad, atol=1e-5, rtol=1e-4)
    if reparameterize:
        assert torch.allclose(ours.prefix_encoder.mlp[2].weight.grad, pe.transform[2].weight.grad, atol=1e-5, rtol=1e-4)


def test_prefix_changes_the_output_and_the_layout_is_per_layer(bert):
    model, tok = bert
    ids, mask = _batch(tok)
    pm = PrefixTunedModel(copy.deepcopy(model), 3, init_std=1.0)
    with torch.no_grad():
        plain = model(input_ids=ids, attention_mask=mask).last_hidden_state
        prefixed = pm(ids, mask).last_hidden_state
    assert (plain - prefixed).abs().max() > 1e-3
    g = attention_geometry(model)
    kv = pm.prefix_encoder.key_values()
    assert len(kv) == g.n_layers and kv[0][0].shape == (1, g.n_heads, 3, g.head_dim)
    flat = pm.prefix_encoder()
    # layer 1's values are columns [3d, 4d) of the flat row, split into heads
    assert torch.equal(kv[1][1][0, :, 2], flat[2, 3 * g.d_model:4 * g.d_model].view(g.n_heads, g.head_dim))
    cache = prefix_cache(pm.prefix_encoder, batch_size=5)
    assert cache.get_seq_length() == 3 and cache.layers[0].keys.shape[0] == 5


def test_masking_the_prefix_gives_the_plain_model(bert):
    """With the prefix's attention-mask entries set to 0 the model must ignore it: a check of the mask path."""
    model, tok = bert
    ids, mask = _batch(tok)
    pm = PrefixTunedModel(copy.deepcopy(model), 3, init_std=1.0)
    with torch.no_grad():
        plain = model(input_ids=ids, attention_mask=mask).last_hidden_state
        full_mask = torch.cat([torch.zeros(len(ids), 3, dtype=mask.dtype), mask], 1)
        ignored = pm.base_model(input_ids=ids, attention_mask=full_mask, cache=prefix_cache(pm.prefix_encoder, len(ids)),
                                position_ids=torch.arange(ids.shape[1]).expand_as(ids)).last_hidden_state
    assert (plain - ignored)[mask.bool()].abs().max() < 1e-5


def test_only_the_prefix_is_trained_and_causal_labels_align(gpt2):
    model, tok = copy.deepcopy(gpt2.model), gpt2.tokenizer
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ids, mask = _batch(tok)
    labels = ids.masked_fill(mask == 0, -100)
    pm = PrefixTunedModel(model, 5, init_std=0.5)
    assert count_trainable(pm) == pm.trainable_parameters() == 5 * attention_geometry(model).flat_width
    out = pm(ids, mask, labels=labels)
    manual = F.cross_entropy(out.logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100)
    assert torch.allclose(out.loss, manual, atol=1e-5)          # no label padding for virtual positions
    opt = torch.optim.AdamW(pm.parameters(), lr=1e-2)
    out.loss.backward()
    assert all(p.grad is None for p in model.parameters())
    opt.step()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_reparameterised_prefix_collapses_to_the_same_direct_prefix(bert):
    model, tok = bert
    ids, mask = _batch(tok)
    pm = PrefixTunedModel(copy.deepcopy(model), 4, reparameterize=True, mlp_hidden=16)
    n_mlp = pm.trainable_parameters()
    with torch.no_grad():
        before = pm(ids, mask).last_hidden_state
        after = pm.to_direct()(ids, mask).last_hidden_state
    assert torch.allclose(before, after, atol=1e-6)
    assert pm.trainable_parameters() == 4 * attention_geometry(model).flat_width != n_mlp


def test_encoder_keeps_input_positions_by_default(bert):
    model, tok = bert
    ids, mask = _batch(tok)
    pm = PrefixTunedModel(copy.deepcopy(model), 3)
    assert pm.keep_input_positions
    shifted = PrefixTunedModel(copy.deepcopy(model), 3, init_prefix=pm.prefix_encoder().detach(),
                               keep_input_positions=False)
    with torch.no_grad():
        a = pm(ids, mask).last_hidden_state
        b = shifted(ids, mask).last_hidden_state
        c = shifted(ids, mask, position_ids=torch.arange(ids.shape[1]).expand_as(ids)).last_hidden_state
    assert (a - b).abs().max() > 1e-4 and torch.allclose(a, c, atol=1e-6)


def test_text_init_is_the_models_own_keys_and_values(bert):
    model, tok = bert
    flat = text_key_values(model, tok, "hello world", 5)   # 2 tokens repeated to 5
    g = attention_geometry(model)
    assert flat.shape == (5, g.flat_width)
    ids = torch.tensor([tok("hello world", add_special_tokens=False)["input_ids"] * 3])[:, :5]
    with torch.no_grad():  # layer 0's keys: the key projection of the embedding output
        keys0 = model.encoder.layer[0].attention.self.key(model.embeddings(input_ids=ids))[0]
    assert torch.allclose(flat[:, :g.d_model], keys0, atol=1e-5)
    pm = make_prefix_model(copy.deepcopy(model), tok, 5, init="text", init_text="hello world")
    assert torch.equal(pm.prefix_encoder.prefix.detach(), flat)


def test_save_load_round_trip_and_wrong_model(tmp_path, bert, gpt2):
    model, tok = bert
    ids, mask = _batch(tok)
    pm = PrefixTunedModel(copy.deepcopy(model), 4, reparameterize=True, mlp_hidden=8)
    save_prefix(pm, tmp_path, "bert-base-uncased", task="sst2")
    back = load_prefix(copy.deepcopy(model), tmp_path, "bert-base-uncased")
    with torch.no_grad():
        assert torch.allclose(pm(ids, mask).last_hidden_state, back(ids, mask).last_hidden_state, atol=1e-6)
    with pytest.raises(PrefixError, match="trained for"):
        load_prefix(gpt2.model, tmp_path)
    with pytest.raises(PrefixError, match="not 'gpt2'"):
        load_prefix(copy.deepcopy(model), tmp_path, "gpt2")
    other_weights = random_model("bert-base-uncased", "encoder", seed=1).model
    with pytest.raises(PrefixError, match="other weights"):
        load_prefix(other_weights, tmp_path)
    with pytest.raises(PrefixError, match="save_prefix"):
        load_prefix(model, tmp_path / "nothing_here")


def test_bad_inputs_raise_clear_errors(bert):
    model, tok = bert
    g = attention_geometry(model)
    with pytest.raises(PrefixError, match="positive"):
        PrefixEncoder(g, 0)
    with pytest.raises(PrefixError, match="expected"):
        PrefixEncoder(g, 2, init_prefix=torch.zeros(3, g.flat_width))
    with pytest.raises(PrefixError, match="reparameterize"):
        PrefixEncoder(g, 2, reparameterize=True, init_prefix=torch.zeros(2, g.flat_width))
    pm = PrefixTunedModel(copy.deepcopy(model), 20)
    with pytest.raises(PrefixError, match="context window"):
        pm(torch.ones(1, 500, dtype=torch.long))
    with pytest.raises(PrefixError, match="init"):
        make_prefix_model(model, tok, 2, init="vocab")

    class Other:
        model_type, num_hidden_layers, num_attention_heads, hidden_size = "llama", 2, 2, 8
    with pytest.raises(PrefixError, match="GPT-2 or BERT"):
        attention_geometry(Other())
    assert PrefixGeometry(2, 4, 8).flat_width == 2 * 2 * 32


def test_causal_classifier_with_deep_prompt_trains_prefix_only(gpt2):
    model, tok = copy.deepcopy(gpt2.model), gpt2.tokenizer
    clf = PrefixLabelWordClassifier(model, tok, (" negative", " positive"), n_virtual_tokens=3, init="random")
    ids, mask = clf._tokenize(TEXTS)
    logits = clf(ids, mask)
    assert logits.shape == (3, 2)
    F.cross_entropy(logits, torch.tensor([1, 0, 0])).backward()
    assert clf.prefixed.prefix_encoder.prefix.grad.abs().sum() > 0
    assert count_trainable(clf) == 3 * attention_geometry(model).flat_width


def test_deep_prompt_on_real_minilm_learns(minilm):
    """Behaviour on the real frozen encoder: a few steps on 8 SST-2-like sentences lower the loss."""
    clf = PrefixSentenceClassifier(copy.deepcopy(minilm.model), minilm.tokenizer, SST2_LABEL_SENTENCES,
                                   n_virtual_tokens=4)
    texts = TEXTS + ["great fun", "awful", "a masterpiece", "boring and long", "a joy to watch"]
    labels = torch.tensor([1, 0, 0, 1, 0, 1, 0, 1])
    ids, mask = clf._tokenize(texts)
    opt = torch.optim.AdamW([p for p in clf.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(4):
        loss = F.cross_entropy(clf(ids, mask), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.05

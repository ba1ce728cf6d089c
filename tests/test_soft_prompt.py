"""Tests of pt_helpers.soft_prompt: mechanics on small random models, behaviour on real MiniLM."""

from __future__ import annotations

import copy

import pytest
import torch
from _helpers import TEXTS, batch, close
from torch.testing import assert_close

from pt_helpers.adapters import PromptedModel
from pt_helpers.classifiers import evaluate_classifier, label_sentence_classifier, label_word_classifier
from pt_helpers.data import load_task, subsample, task_info
from pt_helpers.errors import ContextWindowError, CourseError, PromptError, PromptShapeError
from pt_helpers.frozen import count_trainable
from pt_helpers.models import load_model, random_model
from pt_helpers.soft_prompt import (
    INITS,
    SoftPrompt,
    add_soft_prompt,
    init_prompt_embedding,
    make_prompt,
    nearest_tokens,
    peft_twin,
    prompt_drift,
)
from pt_helpers.training import TrainSettings, fit, make_optimizer

# Tolerances: tests/_helpers.py's ``close`` (rtol plus an atol scaled to the magnitudes compared: float32
# round-off grows with them). An off-by-one position changes values by ~1e-1.


def _peft(model, prompt):
    """``soft_prompt.peft_twin`` on a copy of ``model`` (PEFT wraps what it is given), in eval mode, and its P."""
    twin = peft_twin(copy.deepcopy(model), prompt).eval()
    return twin, twin.prompt_encoder["default"].embedding.weight


# --- equality with PEFT -----------------------------------------------------------------------


@pytest.mark.parametrize("share", [True, False])
def test_causal_logits_loss_and_gradient_equal_peft(random_gpt2, share):
    model, tok = random_gpt2
    sp = PromptedModel(model, make_prompt(model, tok, 6, "vocab", seed=1), share_prompt_cache=share)
    ids, mask, labels = batch(tok, TEXTS)
    out = sp(ids, mask, labels)
    assert out.logits.shape == (*ids.shape, model.config.vocab_size)  # real tokens only, not n + T
    out.loss.backward()
    pm, peft_weight = _peft(model, sp.adapter)
    ref = pm(input_ids=ids, attention_mask=mask, labels=labels)
    ref.loss.backward()
    real = mask.bool()
    close(out.logits[real], ref.logits[:, 6:][real], what="logits vs PEFT")
    close(out.loss, ref.loss, what="loss vs PEFT")
    close(sp.adapter.weight.grad, peft_weight.grad, rtol=1e-4, what="prompt gradient vs PEFT")  # sums over B·T terms
    assert sp.adapter.weight.grad.abs().max() > 0


def test_encoder_hidden_and_gradient_equal_peft(random_bert):
    model, tok = random_bert
    sp = PromptedModel(model, make_prompt(model, tok, 4, "text", init_text="great movie"))
    ids, mask, _ = batch(tok, TEXTS)
    out = sp(ids, mask)
    assert out.hidden.shape == (*ids.shape, model.config.hidden_size)
    pm, peft_weight = _peft(model, sp.adapter)
    ref = pm(input_ids=ids, attention_mask=mask).last_hidden_state[:, 4:]
    real = mask.bool()
    close(out.hidden[real], ref[real], what="hidden states vs PEFT")
    w = torch.randn_like(out.hidden)  # any scalar function of the real states
    (out.hidden * w * mask.unsqueeze(-1)).sum().backward()
    (ref * w * mask.unsqueeze(-1)).sum().backward()
    close(sp.adapter.weight.grad, peft_weight.grad, rtol=1e-4, what="prompt gradient vs PEFT")


# --- layout: padding, labels, generation ----------------------------------------------------


def test_left_and_right_padding_and_no_padding_agree(random_gpt2):
    model, tok = random_gpt2
    sp = add_soft_prompt(model, tok, 5, "random")
    ids_r, mask_r, lab_r = batch(tok, TEXTS, "right")
    ids_l, mask_l, lab_l = batch(tok, TEXTS, "left")
    out_r, out_l = sp(ids_r, mask_r, lab_r), sp(ids_l, mask_l, lab_l)
    close(out_r.loss, out_l.loss, what="loss, right vs left padding")
    for b, text in enumerate(TEXTS):
        single = sp(tok([text], return_tensors="pt")["input_ids"]).logits[0]  # (T_b, V)
        length = int(mask_r[b].sum())
        close(out_r.logits[b, :length], single, rtol=1e-4, what="right-padded vs alone")  # padding changes kernels
        close(out_l.logits[b, -length:], single, rtol=1e-4, what="left-padded vs alone")


def test_labels_cover_real_tokens_and_first_token_is_predicted_by_the_prompt(random_gpt2):
    model, tok = random_gpt2
    sp = add_soft_prompt(model, tok, 3, "vocab")
    ids = tok(["one two three"], return_tensors="pt")["input_ids"]
    out = sp(ids, labels=ids)
    virtual_last = sp.prompt_cache(1)[1]  # (1, V)
    prev = torch.cat([virtual_last.unsqueeze(1), out.logits[:, :-1]], 1)
    manual = torch.nn.functional.cross_entropy(prev[0], ids[0])
    close(out.loss, manual, what="loss vs manual cross-entropy")
    only_last = ids.clone()
    only_last[:, :-1] = -100
    manual_last = torch.nn.functional.cross_entropy(out.logits[0, -2:-1], ids[0, -1:])
    close(sp(ids, labels=only_last).loss, manual_last, what="last-token loss")


def test_generation_with_prompt_equals_recomputation(random_gpt2):
    model, tok = random_gpt2
    sp = add_soft_prompt(model, tok, 4, "vocab", seed=3)
    ids, mask, _ = batch(tok, TEXTS[:2], "left")
    generated = sp.generate(ids, mask, max_new_tokens=4)
    for b, text in enumerate(TEXTS[:2]):
        cur = tok([text], return_tensors="pt")["input_ids"]
        for _ in range(4):
            cur = torch.cat([cur, sp(cur).logits[:, -1].argmax(-1, keepdim=True)], 1)
        assert generated[b].tolist() == cur[0, -4:].tolist()


def test_shared_cache_and_concatenation_give_same_gradient(random_gpt2):
    model, tok = random_gpt2
    prompt = make_prompt(model, tok, 8, "random", seed=2)
    ids, mask, labels = batch(tok, TEXTS, "left")
    grads = []
    for share in (True, False):
        prompt.weight.grad = None
        PromptedModel(model, prompt, share_prompt_cache=share)(ids, mask, labels).loss.backward()
        grads.append(prompt.weight.grad.clone())
    # gradients of size ~0.1 summed over the batch in two orders: float32 round-off is ~1e-6 absolute
    close(grads[0], grads[1], rtol=1e-4, what="shared cache vs concatenation gradient")


# --- training: only the prompt moves ---------------------------------------------------------


def test_only_prompt_gets_gradients_and_base_is_bit_identical(random_gpt2):
    model, tok = random_gpt2
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sp = add_soft_prompt(model, tok, 4, "vocab")
    start = sp.adapter.weight.detach().clone()
    assert count_trainable(sp) == 4 * model.config.n_embd
    opt = make_optimizer(sp.parameters(), "adafactor", lr=0.3)
    ids, mask, labels = batch(tok, TEXTS)
    for _ in range(2):
        opt.zero_grad()
        sp(ids, mask, labels).loss.backward()
        assert all(p.grad is None for p in model.parameters())
        opt.step()
    assert not torch.equal(start, sp.adapter.weight)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_train_classifier_moves_only_the_prompt(random_bert):
    model, tok = random_bert
    before = {k: v.clone() for k, v in model.state_dict().items()}
    clf = label_sentence_classifier(model, tok, ["bad", "good"], prompt=make_prompt(model, tok, 3, "vocab"))
    assert clf.n_trainable == 3 * model.config.hidden_size
    res = fit(
        clf,
        (TEXTS * 4, [1, 0, 0] * 4),
        (TEXTS, [1, 0, 0]),
        TrainSettings(batch_size=4, lr=0.05, max_steps=3, eval_every=2, progress=False),
    )
    assert res.steps_run == 3 and len(res.history["loss"]) == 3 and res.history["eval_step"] == [2, 3]
    assert 0.0 <= res.best_select_accuracy <= 1.0 and res.n_trainable == clf.n_trainable
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_causal_label_word_classifier_shapes(random_gpt2):
    model, tok = random_gpt2
    clf = label_word_classifier(model, tok, ["negative", "positive"], prompt=make_prompt(model, tok, 3, "labels"))
    ids, mask = clf.tokenize(TEXTS)
    assert clf(ids, mask).shape == (3, 2)
    assert clf.predict(TEXTS).shape == (3,)


# --- inits and reading a prompt ---------------------------------------------------------------


def test_inits(random_gpt2):
    model, tok = random_gpt2
    emb = model.get_input_embeddings().weight
    for init in INITS:
        assert init_prompt_embedding(model, tok, 7, init).shape == (7, model.config.n_embd)
    text = init_prompt_embedding(model, tok, 3, "text", init_text=" good movie")
    ids = tok(" good movie", add_special_tokens=False)["input_ids"]
    assert torch.equal(text[0], emb[ids[0]]) and torch.equal(text[len(ids) % 3], emb[ids[0]])
    labels = init_prompt_embedding(model, tok, 4, "labels", label_words=["bad", "good"])
    assert torch.allclose(labels[1], emb[tok(" good", add_special_tokens=False)["input_ids"]].mean(0))
    assert torch.equal(
        init_prompt_embedding(model, tok, 5, "vocab", seed=1), init_prompt_embedding(model, tok, 5, "vocab", seed=1)
    )
    with pytest.raises(PromptError, match="unknown init"):
        init_prompt_embedding(model, tok, 3, "zeros")


def test_nearest_tokens_and_drift(random_gpt2):
    model, tok = random_gpt2
    w = init_prompt_embedding(model, tok, 2, "text", init_text=" movie review")
    nearest = nearest_tokens(w, model, tok, k=3)
    assert [row[0][0] for row in nearest] == ["Ġmovie", "Ġreview"] and nearest[0][0][1] == pytest.approx(1.0)
    drift = prompt_drift(w, w)
    assert drift["l2"].max() == 0 and drift["cosine"].min() == pytest.approx(1.0)


# --- save / load ------------------------------------------------------------------------------


# --- bad inputs -------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, -3, 2.5, True])
def test_bad_number_of_virtual_tokens(random_gpt2, n):
    model, tok = random_gpt2
    with pytest.raises(PromptError, match="positive integer"):
        add_soft_prompt(model, tok, n)


def test_prompt_plus_input_longer_than_context(random_gpt2, random_bert):
    model, tok = random_gpt2
    sp = add_soft_prompt(model, tok, 30)
    with pytest.raises(ContextWindowError, match="30 virtual tokens"):
        sp(torch.zeros(1, model.config.n_positions - 10, dtype=torch.long))
    enc = add_soft_prompt(random_bert.model, random_bert.tokenizer, 10)
    with pytest.raises(ContextWindowError):
        enc(torch.zeros(1, random_bert.model.config.max_position_embeddings, dtype=torch.long))


def test_wrong_prompt_size_and_optimizer(random_gpt2):
    model, tok = random_gpt2
    with pytest.raises(PromptShapeError):
        PromptedModel(model, SoftPrompt(3, 17))
    with pytest.raises(PromptShapeError):
        SoftPrompt(3, 8, torch.zeros(4, 8))
    with pytest.raises(PromptError, match="unknown optimizer"):
        make_optimizer(SoftPrompt(2, 4).parameters(), "sgd")
    assert issubclass(PromptError, CourseError)


# --- behaviour on the real pretrained encoder --------------------------------------------------


def test_minilm_zero_shot_label_sentences_beat_chance():
    loaded = load_model("sentence-transformers/all-MiniLM-L6-v2", "encoder", allow_random=False, verbose=False)
    dev = subsample(load_task("sst2", "dev"), 96, seed=0)
    clf = label_sentence_classifier(*loaded, task_info("sst2").label_sentences)
    acc = evaluate_classifier(clf, dev["text"], dev["label"])
    assert acc >= 0.6  # 70 % on the full dev split; chance is 50 %


def test_init_starts_at_the_scale_the_model_reads_even_when_the_embedding_layer_scales():
    """Gemma 2's embedding layer multiplies its rows by √d: an init from the raw weight rows would start a
    prompt √d = 11.3 times smaller than every real token the model reads (PEFT's text init calls the layer)."""
    loaded = random_model("google/gemma-2-2b", "causal")
    model, tok = loaded.model, loaded.tokenizer
    layer = model.get_input_embeddings()
    ids = tok("This is a movie review", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        read = layer(torch.tensor(ids)).float()
    text = init_prompt_embedding(model, tok, len(ids), "text", init_text="This is a movie review")
    # same rows through the same layer: equal to float32 round-off of values of size ~read.abs().max()
    assert_close(text, read, rtol=1e-6, atol=1e-6 * read.abs().max().item())
    scale = (read.norm() / layer.weight[torch.tensor(ids)].float().norm()).item()
    assert scale == pytest.approx(model.config.hidden_size**0.5, rel=1e-4)
    rand = init_prompt_embedding(model, tok, 200, "random", seed=0)
    assert rand.std().item() == pytest.approx(layer(torch.arange(layer.weight.shape[0])).std().item(), rel=0.1)

"""Tests of pt_helpers.p_tuning: the P-tuning adapter, checked against PEFT's PromptEncoderConfig."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from _helpers import OWN_SCALE, TEXTS, close

from pt_helpers.adapters import ADAPTERS, PromptedModel
from pt_helpers.checkpoint import CONFIG_FILE, load_prompt, read_config, save_prompt
from pt_helpers.classifiers import classifier_for
from pt_helpers.errors import PromptError, PromptShapeError
from pt_helpers.p_tuning import PTuningEncoder, add_p_tuning, make_p_tuning, peft_twin
from pt_helpers.training import TrainSettings, fit

warnings.filterwarnings("ignore", message=".*[Tt]oken type ids.*")


@pytest.mark.parametrize("family", ["gpt2", "minilm"])
@pytest.mark.parametrize("encoder_type", ["mlp", "lstm"])
def test_same_outputs_and_gradients_as_peft(family, encoder_type, random_gpt2, minilm):
    loaded = {"gpt2": random_gpt2, "minilm": minilm}[family]
    model, tok = copy.deepcopy(loaded.model), loaded.tokenizer
    tok.padding_side = "right"  # PEFT counts padding in positions; with right padding both conventions coincide
    enc = tok(TEXTS, return_tensors="pt", padding=True)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    adapter = make_p_tuning(model, tok, 4, encoder_type=encoder_type, encoder_hidden_size=32, seed=1)
    ours = PromptedModel(model, adapter)
    twin = peft_twin(model, adapter)
    twin.eval()  # no dropout in the frozen model; PEFT still runs the encoder (its config is not inference_mode)
    real = mask.bool()
    if ours.is_causal:
        labels = ids.masked_fill(mask == 0, -100)
        a_out, b_out = ours(ids, mask, labels=labels), twin(input_ids=ids, attention_mask=mask, labels=labels)
        a, b = a_out.logits[real], b_out.logits[:, 4:][real]
        close(a_out.loss, b_out.loss, what="loss vs PEFT")
        a_out.loss.backward()
        b_out.loss.backward()
    else:
        a = ours(ids, mask).hidden[real]
        b = twin(input_ids=ids, attention_mask=mask).last_hidden_state[:, 4:][real]
        probe = torch.randn_like(a)  # a random linear read-out of the outputs
        (a * probe).sum().backward()
        (b * probe).sum().backward()
    close(a, b, what="outputs vs PEFT")
    pe = twin.prompt_encoder["default"]
    grad = adapter.embedding.grad
    assert grad is not None and grad.abs().max() > 0
    # gradients sum over B·T terms through the frozen network: a looser rtol than the outputs
    close(grad, pe.embedding.weight.grad, rtol=1e-4, what="gradient of E vs PEFT", floor=OWN_SCALE)
    close(
        adapter.mlp_head[-1].weight.grad,
        pe.mlp_head[-1].weight.grad,
        rtol=1e-4,
        what="encoder gradient",
        floor=OWN_SCALE,
    )
    if encoder_type == "lstm":
        close(
            adapter.lstm_head.weight_hh_l0.grad,
            pe.lstm_head.weight_hh_l0.grad,
            rtol=1e-4,
            what="LSTM gradient",
            floor=OWN_SCALE,
        )


def test_lstm_couples_the_virtual_tokens_and_mlp_does_not(random_gpt2):
    model, tok = random_gpt2
    for encoder_type, coupled in [("mlp", False), ("lstm", True)]:
        adapter = make_p_tuning(model, tok, 5, encoder_type=encoder_type, encoder_hidden_size=16, seed=0)
        before = adapter().detach().clone()
        with torch.no_grad():
            adapter.embedding[0] += 1.0  # change the first input only
        after = adapter().detach()
        assert not torch.equal(after[0], before[0])
        assert (not torch.equal(after[1:], before[1:])) == coupled


def test_registered_trained_by_fit_and_only_the_encoder_trains(minilm):
    assert ADAPTERS["p_tuning"] is PTuningEncoder
    model, tok = minilm
    adapter = make_p_tuning(model, tok, 3, encoder_hidden_size=16, seed=0)
    clf = classifier_for(model, tok, "sst2", adapter)
    trainable = {n for n, p in clf.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("prompted.adapter.") for n in trainable)
    before = {n: p.detach().clone() for n, p in clf.named_parameters()}
    data = (["great film", "awful film", "loved it", "hated it"], [1, 0, 1, 0])
    res = fit(clf, data, data, TrainSettings(max_steps=3, batch_size=4, eval_every=3, progress=False, lr=1e-2))
    changed = {n for n, p in clf.named_parameters() if not torch.equal(p, before[n])}
    assert res.n_trainable == adapter.embedding.numel() + sum(p.numel() for p in adapter.mlp_head.parameters())
    assert changed and changed <= trainable  # the frozen model did not move


def test_save_load_round_trip_keeps_the_prompt(tmp_path, minilm, random_gpt2):
    model, tok = minilm
    pm = add_p_tuning(model, tok, 4, encoder_type="lstm", encoder_hidden_size=16, seed=3)
    folder = save_prompt(pm.adapter, tmp_path / "pt", model, tok, task="sst2")
    config = read_config(folder)
    assert config["method"] == "p_tuning" and config["adapter"]["p_tuning_encoder"] == "lstm"
    back = load_prompt(folder, model, tok)
    assert isinstance(back, PTuningEncoder) and back.encoder_type == "none"
    assert back.n_virtual_tokens == 4 and sum(p.numel() for p in back.parameters()) == 4 * 384  # only P is kept
    enc = tok(TEXTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        close(back(), pm.adapter(), what="saved P", floor=OWN_SCALE)
        a = pm(enc["input_ids"], enc["attention_mask"]).hidden
        b = PromptedModel(model, back)(enc["input_ids"], enc["attention_mask"]).hidden
    close(b, a, what="outputs after save → load")
    assert (folder / CONFIG_FILE).is_file()
    with pytest.raises(PromptShapeError):  # a MiniLM prompt (d=384) does not fit GPT-2's stand-in width
        load_prompt(folder, random_gpt2.model, random_gpt2.tokenizer, check_identity=False)


def test_bad_settings_are_clear_errors(minilm):
    model, tok = minilm
    with pytest.raises(PromptError, match="encoder_type"):
        make_p_tuning(model, tok, 4, encoder_type="transformer")
    with pytest.raises(PromptError, match="n_virtual_tokens"):
        make_p_tuning(model, tok, 0)
    with pytest.raises(PromptError, match="encoder_hidden_size"):
        PTuningEncoder(4, 384, encoder_hidden_size=-1)
    with pytest.raises(PromptShapeError, match="init_embedding"):
        PTuningEncoder(4, 384, init_embedding=torch.zeros(3, 384))
    with pytest.raises(PromptShapeError, match="hidden size"):
        PromptedModel(model, PTuningEncoder(4, 100))
    with pytest.raises(PromptError, match="trainable"):
        peft_twin(model, PTuningEncoder(4, 384).to_direct())


def test_same_seed_same_adapter(minilm):
    model, tok = minilm
    a, b = (make_p_tuning(model, tok, 4, encoder_hidden_size=8, seed=5) for _ in range(2))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))

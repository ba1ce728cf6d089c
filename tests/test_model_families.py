"""Random stand-ins for every model family the course supports, and kind="auto" decided from the config.

Offline (HF_HUB_OFFLINE=1) the random fallback has no config to read, so a *name* picks the family
(models.KNOWN_NAMES); a real checkpoint's kind and family are read from its config.json.
"""

import pytest
import torch
from _helpers import CAUSAL_NAMES

from pt_helpers import lm
from pt_helpers.errors import ModelNotFoundError
from pt_helpers.frozen import attention_geometry, context_length, is_causal_lm
from pt_helpers.models import (
    KNOWN_NAMES,
    PRETRAINED,
    RANDOM_FAMILIES,
    TOKENIZER_CONVENTIONS,
    load_model,
    model_family,
    random_model,
)

# CAUSAL_NAMES (tests/_helpers.py): one real hub name per causal family, what a student would type; the tests
# below check that each resolves through models.KNOWN_NAMES to its family.
GQA_FAMILIES = ["llama", "mistral", "qwen2", "gemma2", "phi3"]
ADDS_BOS = ["opt", "llama", "mistral", "gemma2", "phi3"]
EOT = 50256  # <|endoftext|> in the shipped GPT-2 tokenizer
TEXT = "The movie was surprisingly good."

_cache: dict[str, object] = {}


def stand_in(family: str):
    """random_model(<hub name of family>) at a trained model's magnitudes (logits tens below zero, as the
    notebooks' random fallback gives), built once per test session (each takes ~0.3 s)."""
    if family not in _cache:
        _cache[family] = random_model(CAUSAL_NAMES[family], seed=0, magnitudes=PRETRAINED)
    return _cache[family]


def test_the_table_has_every_family_once_and_every_name_points_into_it():
    assert set(RANDOM_FAMILIES) == set(CAUSAL_NAMES) | {"bert"}
    for model_type, fam in RANDOM_FAMILIES.items():
        assert fam.model_type == model_type and fam.tokenizer in TOKENIZER_CONVENTIONS and fam.description
        assert fam.natural_kind in fam.classes
        assert fam.config_class.model_type == model_type
    assert {t for _, t in KNOWN_NAMES} == set(RANDOM_FAMILIES)


@pytest.mark.parametrize("family", list(CAUSAL_NAMES))
def test_causal_stand_in_by_hub_name(family):
    loaded = stand_in(family)
    assert loaded.family == family == loaded.model.config.model_type
    assert loaded.kind == "causal" and loaded.source == "random" and loaded.is_pretrained is False
    assert is_causal_lm(loaded.model) and is_causal_lm(loaded.model.config)
    assert context_length(loaded.model) >= 512
    assert len(loaded.tokenizer) == loaded.model.config.vocab_size == 50257
    assert f"{RANDOM_FAMILIES[family].label}-family stand-in" in loaded.describe()


@pytest.mark.parametrize("family", list(CAUSAL_NAMES))
def test_load_model_offline_falls_back_to_the_family(offline, family, capsys):
    loaded = load_model(CAUSAL_NAMES[family], allow_random=True)
    label = RANDOM_FAMILIES[family].label
    assert loaded.family == family and loaded.kind == "causal" and loaded.source == "random"
    assert f"random {label}-family stand-in" in loaded.banner()
    out = capsys.readouterr().out
    assert f"{label}-family stand-in" in out and "RANDOM WEIGHTS" in out


def test_qwen_offline_is_a_small_random_qwen2(offline):
    loaded = load_model("Qwen/Qwen2.5-0.5B", allow_random=True, verbose=False)
    assert loaded.model.config.model_type == "qwen2" and loaded.n_parameters < 20e6
    assert "random Qwen2-family stand-in" in loaded.banner()


@pytest.mark.parametrize("family", list(CAUSAL_NAMES))
def test_chain_rule_equals_the_models_own_loss(family):
    model, tok = stand_in(family)
    ids = torch.tensor([lm.encode(tok, TEXT)])
    n_scored = ids.shape[1] - 1  # every token after the start token
    with torch.no_grad():
        loss = model(input_ids=ids, labels=ids).loss.item()  # mean over the n scored tokens
    expected = -loss * n_scored
    # Same float32 numbers summed in another order (log_softmax + gather vs. cross-entropy mean × n), so
    # they agree to rounding only. The sum is ≈ n · log(50257) ≈ 70 nats for random weights: the absolute
    # tolerance scales with that magnitude instead of being a fixed number.
    torch.testing.assert_close(
        torch.tensor(lm.sequence_logprob(model, tok, TEXT)),
        torch.tensor(expected),
        rtol=1e-4,
        atol=1e-4 * abs(expected),
    )


@pytest.mark.parametrize("family", GQA_FAMILIES)
def test_grouped_query_attention_is_exercised(family):
    geo = attention_geometry(stand_in(family).model)
    assert geo.n_kv_heads < geo.n_heads
    if family == "gemma2":  # an explicit head_dim that is not hidden / heads
        assert geo.head_dim != stand_in(family).model.config.hidden_size // geo.n_heads


@pytest.mark.parametrize("family", ["gpt2", "gpt_neox"])
def test_gpt2_convention_bos_is_eos_and_not_added(family):
    tok = stand_in(family).tokenizer
    assert tok.bos_token_id == tok.eos_token_id == tok.pad_token_id == EOT
    assert tok("Hello world")["input_ids"] == [15496, 995]
    assert lm.encode(tok, "Hello world") == [EOT, 15496, 995]


@pytest.mark.parametrize("family", ADDS_BOS)
def test_llama_convention_tokenizer_adds_bos_and_encode_does_not_double_it(family):
    tok = stand_in(family).tokenizer
    assert tok.bos_token_id is not None and tok.pad_token_id is not None
    assert tok("hi")["input_ids"][0] == tok.bos_token_id
    assert tok("hi")["input_ids"] == [tok.bos_token_id] + tok("hi", add_special_tokens=False)["input_ids"]
    assert tok.bos_token_id not in tok("hi", add_special_tokens=False)["input_ids"]
    ids = lm.encode(tok, "hi there")
    assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
    assert ids == tok("hi there")["input_ids"]  # the same ids the tokenizer itself would give


def test_qwen_convention_has_no_bos_and_starts_with_end_of_text():
    tok = stand_in("qwen2").tokenizer
    assert tok.bos_token is None and tok.bos_token_id is None
    assert tok.eos_token == "<|endoftext|>" and tok.pad_token is not None
    assert tok("hi")["input_ids"] == tok("hi", add_special_tokens=False)["input_ids"]
    assert lm.bos_token_id(tok) == tok.eos_token_id == EOT
    assert lm.encode(tok, "hi") == [EOT] + tok("hi")["input_ids"]


@pytest.mark.parametrize("family", list(CAUSAL_NAMES))
def test_padding_side_is_right_and_padding_is_masked(family):
    tok = stand_in(family).tokenizer
    assert tok.padding_side == "right"
    batch = tok(["hi", "hi there friend"], padding=True)
    assert batch["attention_mask"][0][-1] == 0 and batch["attention_mask"][1][-1] == 1


def test_bert_stand_in_is_an_encoder(offline):
    loaded = random_model("bert-base-uncased")
    assert loaded.kind == "encoder" and loaded.family == "bert" and not is_causal_lm(loaded.model)
    fallback = load_model("bert-base-uncased", allow_random=True, verbose=False)
    assert fallback.kind == "encoder" and fallback.family == "bert" and not is_causal_lm(fallback.model.config)
    assert "random BERT-family stand-in" in fallback.banner()


def test_explicit_kinds_still_work(offline):
    base = random_model("meta-llama/Llama-3.2-1B", "encoder")
    assert type(base.model).__name__ == "LlamaModel" and base.kind == "encoder"
    assert random_model("gpt2", "causal").kind == "causal"
    assert random_model("bert-base-uncased", "masked").kind == "masked"
    with pytest.raises(ModelNotFoundError, match="kind 'masked' does not apply"):
        random_model("Qwen/Qwen2.5-0.5B", "masked")
    with pytest.raises(ValueError, match="kind must be one of"):
        random_model("gpt2", "seq2seq")


def test_names_are_matched_case_insensitively_by_prefix_glob():
    assert model_family("QWEN/qwen2.5-1.5B-Instruct") == "qwen2"
    assert model_family("meta-llama/Meta-Llama-3-8B") == "llama"
    assert model_family("distilgpt2") == model_family("gpt2-medium") == "gpt2"
    assert model_family("/data/models/bert-base-uncased") == "bert"  # a local path: its last part
    assert model_family("sentence-transformers/all-MiniLM-L6-v2") == "bert"
    assert model_family("EleutherAI/pythia-160m-deduped") == "gpt_neox"


def test_an_unknown_name_lists_the_known_families(offline):
    with pytest.raises(ModelNotFoundError) as err:
        model_family("t5-small")
    for label in ("GPT-2", "GPT-NeoX", "OPT", "Llama", "Mistral", "Qwen2", "Gemma 2", "Phi-3", "BERT"):
        assert label in str(err.value)
    with pytest.raises(ModelNotFoundError) as err:
        load_model("t5-small", allow_random=True, verbose=False)
    msg = str(err.value)
    assert msg.startswith("no weights found for 't5-small'") and "Tried:" in msg and "hub: offline" in msg
    assert "Qwen2" in msg


def _save(loaded, folder):
    loaded.model.save_pretrained(folder)
    loaded.tokenizer.save_pretrained(folder)
    return folder


def test_auto_kind_reads_the_config_not_the_folder_name(offline, monkeypatch):
    tiny = random_model("meta-llama/Llama-3.2-1B", seed=3)
    folder = _save(tiny, offline / "models" / "my-lm")
    loaded = load_model(str(folder), verbose=False)  # kind="auto" is the default
    assert loaded.kind == "causal" and loaded.family == "llama" and loaded.source == "path"
    assert loaded.is_pretrained and loaded.banner() == ""
    ids = torch.tensor([[EOT, 15496, 995]])
    with torch.no_grad():
        assert torch.equal(loaded.model(ids).logits, tiny.model(ids).logits)
    assert loaded.tokenizer("hi")["input_ids"][0] == loaded.tokenizer.bos_token_id  # BOS convention survives
    by_name = load_model("my-lm", verbose=False)  # found under $PT_MODELS_DIR
    assert by_name.source == "models_dir" and by_name.kind == "causal"


def test_auto_kind_of_a_bert_folder_is_encoder(offline):
    folder = _save(random_model("bert-base-uncased", "encoder", seed=1), offline / "my-encoder")
    loaded = load_model(str(folder), verbose=False)
    assert loaded.kind == "encoder" and loaded.family == "bert"
    assert type(loaded.model).__name__ == "BertModel"


def test_folders_without_config_or_weights_are_clear_errors(offline):
    empty = offline / "empty"
    empty.mkdir()
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        load_model(str(empty), verbose=False)
    tiny = random_model("Qwen/Qwen2.5-0.5B")
    no_weights = offline / "config-only"
    tiny.model.config.save_pretrained(no_weights)
    tiny.tokenizer.save_pretrained(no_weights)
    with pytest.raises(ModelNotFoundError, match="no weights"):
        load_model(str(no_weights), verbose=False)


def test_new_families_are_seeded():
    a, b, c = (random_model("google/gemma-2-2b", seed=s).model for s in (0, 0, 1))
    assert torch.equal(a.model.embed_tokens.weight, b.model.embed_tokens.weight)
    assert not torch.equal(a.model.embed_tokens.weight, c.model.embed_tokens.weight)

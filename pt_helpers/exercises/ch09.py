"""Checkers for the exercises of notebook 09 (instruction-tuned models, chat templates 对话模板)."""

from __future__ import annotations

from . import Feedback, correct, wrong


def template_overhead(tokenizer, user_text: str = "Review: a gripping film") -> int:
    """Tokens the chat template adds around one user message, generation prompt included: the rendered
    conversation's token count minus the message's own tokens."""
    from ..chat import message, template_ids

    own = len(tokenizer(user_text, add_special_tokens=False)["input_ids"])
    return len(template_ids(tokenizer, [message("user", user_text)], add_generation_prompt=True)) - own


def check_1(predicted, tokenizer, user_text: str = "Review: a gripping film") -> Feedback:
    """Exercise 1 (predict, then run): how many tokens does the template add around one user message,
    the assistant header included? Measured on ``tokenizer``'s own template."""
    truth = template_overhead(tokenizer, user_text)
    try:
        guess = int(predicted)
    except (TypeError, ValueError):
        return wrong(f"give a whole number of tokens, got {predicted!r}.")
    if guess != predicted:
        return wrong(f"give a whole number of tokens, got {predicted!r}.")
    if guess == truth:
        return correct(
            f"{truth} tokens of wrapping per one-turn conversation: markers, role names and newlines. A chat model "
            "reads them before every answer; a prompt that leaves them out is a format it was never tuned on."
        )
    hint = "more" if truth > guess else "fewer"
    return wrong(
        f"the template adds {hint} than {guess} tokens. Count, in the token table above: each marker is ONE "
        "token; role names and the newline after them are ordinary tokens; do not forget the generation "
        "prompt (the assistant header) and any default system turn the template inserts."
    )


API_ANSWERS = {
    "system prompt": True,
    "few-shot demonstrations": True,
    "contextual calibration": "logprobs",
    "soft prompt": False,
    "prefix tuning": False,
    "self-consistency voting": True,
}


def check_2(answers) -> Feedback:
    """Exercise 2: for each method, can you use it through a closed chat API? ``True`` (text is enough),
    ``"logprobs"`` (only if the API returns log-probabilities), or ``False`` (needs the model's insides)."""
    if not isinstance(answers, dict):
        return wrong("give a dict: method name → True, 'logprobs' or False.")
    missing = sorted(set(API_ANSWERS) - set(answers))
    if missing:
        return wrong(f"answer every method; missing: {missing}.")
    for method, expected in API_ANSWERS.items():
        got = answers[method]
        if got != expected or type(got) is not type(expected):
            why = {
                True: "text in and text out is all it needs",
                "logprobs": "it divides the model's label probabilities by their content-free values: it needs "
                "the log-probs of given answers, which only some APIs return",
                False: "it trains vectors the model reads as input embeddings or keys/values, and the gradient "
                "must flow back through the model: no API exposes either",
            }[expected]
            return wrong(f"{method}: {why} (expected {expected!r}, got {got!r}).")
    return correct("through an API you keep the discrete levers; the continuous ones need the weights.")


def check_3(vote) -> Feedback:
    """Exercise 3: ``vote(answers)`` — self-consistency's majority vote over extracted answers, where None (no
    answer found) does not vote and a tie goes to the answer that appeared first; ``None`` if nobody answered."""
    if not callable(vote):
        return wrong("pass the function itself, vote, not its result.")
    cases = [
        (["7", "12", "7"], "7"),
        (["12", None, None, "7", "7"], "7"),
        (["12", "7"], "12"),
        (["3", "5", "5", "3"], "3"),
        ([None, None], None),
        ([], None),
    ]
    for answers, expected in cases:
        try:
            got = vote(list(answers))
        except Exception as exc:  # noqa: BLE001 — show the learner what went wrong
            return wrong(f"vote({answers}) raised {exc!r}.")
        if isinstance(got, tuple):
            got = got[0]
        if got != expected:
            return wrong(f"vote({answers}) = {got!r}, expected {expected!r}.")
    return correct("the vote marginalises over reasoning paths: only the final answers count (Wang et al. 2023).")

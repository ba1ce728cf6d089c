"""Instruction-tuned models (chapter 09): chat templates and few-shot classification as a conversation.

An instruction-tuned ("chat") model was fine-tuned on conversations written in one exact token format,
its *chat template* (对话模板). SmolLM2-Instruct and Qwen2.5-Instruct use the ChatML layout::

    <|im_start|>system⏎You classify reviews.<|im_end|>⏎
    <|im_start|>user⏎Review: a gripping film<|im_end|>⏎
    <|im_start|>assistant⏎positive<|im_end|>⏎

``tokenizer.apply_chat_template(messages)`` renders a list of ``{"role", "content"}`` turns in that format
(a Jinja template stored with the tokenizer). This module

* ``load_chat_model(name)``: ``models.load_model`` plus a chat template. A real instruct model keeps its
  own template. A random stand-in (offline) gets the course's ChatML template ``CHATML_TEMPLATE``; its
  GPT-2 vocabulary has no ``<|im_start|>`` / ``<|im_end|>``, so they are added as special tokens and the
  model's embedding matrix (and output layer) grows by two rows (``resize_token_embeddings``, seeded) —
  a new token id needs a row to look up, or the model would index past its matrix. A *pretrained base*
  model without a template is refused (it never saw one; putting ChatML on it would be a made-up format);
* ``chat_context_and_queries``: few-shot classification as a conversation — system turn + k demonstrations
  (user turn, assistant answer) are the shared context; each test input is a user turn followed by the
  assistant header; the label word is the assistant's answer. The pieces feed the course's scorers
  (``icl.score_label_words_cached`` = ``icl.score_label_words_naive``) unchanged;
* ``chat_classifier``: a soft prompt on a chat model, its virtual tokens either *before the system turn*
  (where PEFT's prompt tuning puts them) or *inside the user turn* (``UserTurnSoftPrompt``: the fixed
  system turn and user header are the first, frozen part of the prompt cache), trained by ``training.fit``;
* ``generate_replies`` / ``sample_answers`` / ``majority_vote``: batched greedy or sampled replies,
  chain-of-thought sampling and self-consistency voting;
* ``word_problems`` / ``solve_word_problems``: generated two-step arithmetic word problems with exact answers,
  answered directly, with a chain of thought and with a self-consistency vote on the same problems, scored
  exactly (``score_answers``) so that the three arms are compared with paired tests.

Start token: the course's scorers put one start token (``lm.bos_token_id``) in front of every context.
When a template's text starts with the BOS token (Llama 3's ``<|begin_of_text|>``), the context handed to
them has it removed, so the scored ids are exactly the template's; otherwise (ChatML: the stand-in's, and
SmolLM2-Instruct's, whose BOS ``<|im_start|>`` opens every turn and so does not start a text, see
``lm.bos_token_id``) the scored ids are the template's with that one start token (``<|endoftext|>``) in
front — ``engine_ids`` shows them.
"""

from __future__ import annotations

import copy
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers.utils import logging as hf_logging

from . import icl
from .adapters import PromptAdapter, check_width, register_adapter
from .classifiers import LabelWords, PromptClassifier
from .errors import ChatTemplateError, CheckpointError, CourseError
from .frozen import check_context, check_model_and_tokenizer, input_embeddings
from .lm import bos_token_id, label_token_ids
from .models import LoadedModel, load_model
from .soft_prompt import SoftPrompt, peft_twin

IM_START, IM_END = "<|im_start|>", "<|im_end|>"
CHAT_MARKERS = (IM_START, IM_END)
ROLES = ("system", "user", "assistant")

# [chatml]
# The course's own ChatML template (the layout SmolLM2-Instruct and Qwen2.5-Instruct were tuned on, without
# their default system prompts): every turn is <|im_start|>role⏎content<|im_end|>⏎, and the generation prompt
# is the assistant header <|im_start|>assistant⏎ that the model continues.
CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
# [/chatml]

DEFAULT_SYSTEM = "You are a careful text classifier. Answer with exactly one word: {choices}."


# ---------------------------------------------------------------------------------------------------
# Loading a chat model
# ---------------------------------------------------------------------------------------------------


def add_chat_template(loaded: LoadedModel, seed: int = 0) -> list[str]:
    """Give a random stand-in the course's ChatML template; returns the marker tokens it had to add.

    A tokenizer that has a template keeps it (nothing added: ``[]``). A pretrained model without one is a
    base model: ``ChatTemplateError``. The markers become *special* tokens (never split, never produced by
    ordinary text) and the embedding matrix gets one new row per added token, drawn (seeded) from a normal
    distribution with the old rows' mean and covariance (``resize_token_embeddings``' default).
    """
    tok, model = loaded.tokenizer, loaded.model
    if getattr(tok, "chat_template", None):
        return []
    if loaded.is_pretrained:
        raise ChatTemplateError(
            f"{loaded.name!r} has pretrained weights but no chat template: it is a base model, never tuned on "
            "conversations, so any chat format would be made up. Load its instruction-tuned sibling (e.g. "
            "'HuggingFaceTB/SmolLM2-135M-Instruct'), or prompt the base model with plain text (icl.prompt_format)."
        )
    vocab = tok.get_vocab()
    added = [m for m in CHAT_MARKERS if m not in vocab]
    if added:
        tok.add_special_tokens({"additional_special_tokens": added})
    rows = model.get_input_embeddings().num_embeddings
    if len(tok) > rows:
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # its note on how new rows are drawn is the docstring above
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model.resize_token_embeddings(len(tok))
        finally:
            hf_logging.set_verbosity(verbosity)
    tok.chat_template = CHATML_TEMPLATE
    return added


def load_chat_model(
    name: str = "HuggingFaceTB/SmolLM2-135M-Instruct",
    *,
    seed: int = 0,
    device: str | torch.device | None = None,
    verbose: bool = True,
) -> LoadedModel:
    """A causal chat model and its tokenizer, with a chat template (the model's own, or the course's ChatML
    on a random stand-in, said loudly)."""
    loaded = load_model(name, "causal", seed=seed, device=device, verbose=verbose)
    added = add_chat_template(loaded, seed)
    if verbose and not loaded.is_pretrained:
        rows = loaded.model.get_input_embeddings().num_embeddings
        print(
            f"!! chat template: the course's ChatML template (chat.CHATML_TEMPLATE) set on the stand-in's tokenizer;"
            f"\n!! special tokens added: {added or 'none'} → embedding matrix resized to {rows:,} rows (random rows)."
        )
    return loaded


def check_chat_tokenizer(tokenizer) -> None:
    """A tokenizer with a chat template, or a ``ChatTemplateError`` naming the fix."""
    if not getattr(tokenizer, "chat_template", None):
        raise ChatTemplateError(
            "this tokenizer has no chat template (tokenizer.chat_template is empty): load the model with "
            "chat.load_chat_model(name), which keeps an instruct model's own template and gives a random "
            "stand-in the course's ChatML template"
        )


# ---------------------------------------------------------------------------------------------------
# Conversations
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChatFormat:
    """How a classification task is written as a conversation.

    ``system``: the system turn ("" for none); each input is a user turn ``user_prefix + text``; the
    assistant's answer is a *bare* label word (it follows the assistant header's newline, no space).
    """

    system: str
    user_prefix: str
    label_words: tuple[str, ...]


def chat_format(task: str, system: str | None = None) -> ChatFormat:
    """The course's chat format of ``task``: its causal label words (bare, one token each), its in-context
    input prefix ("Review: "), and a system turn naming the answers (or ``system``)."""
    from .data import task_info

    info = task_info(task)
    words = tuple(w.strip() for w in info.label_words)
    if not words:
        raise CourseError(f"task {task!r} has no label words for a causal LM; chat formats exist for one-text tasks")
    if system is None:
        system = info.icl_instruction or DEFAULT_SYSTEM.format(choices=", ".join(words))
    return ChatFormat(system, info.icl_input_prefix, words)


def message(role: str, content: str) -> dict[str, str]:
    if role not in ROLES:
        raise ChatTemplateError(f"role must be one of {ROLES}, got {role!r}")
    return {"role": role, "content": str(content)}


def conversation(demonstrations: Sequence[Any], test_example: Any, fmt: ChatFormat) -> list[dict[str, str]]:
    """System turn, then per demonstration a user turn and the assistant's label word, then (unless
    ``test_example`` is None) the test input as the last user turn."""
    msgs = [message("system", fmt.system)] if fmt.system else []
    for text, label in icl.as_demos(demonstrations):
        if not 0 <= label < len(fmt.label_words):
            raise CourseError(f"label {label} is out of range for {len(fmt.label_words)} label words")
        msgs += [message("user", fmt.user_prefix + text), message("assistant", fmt.label_words[label])]
    if test_example is not None:
        msgs.append(message("user", fmt.user_prefix + icl.text_of(test_example)))
    return msgs


def render(tokenizer, messages: Sequence[dict], add_generation_prompt: bool = False) -> str:
    """The conversation as the exact text the chat model was tuned on (its own template)."""
    check_chat_tokenizer(tokenizer)
    return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=add_generation_prompt)


def template_ids(tokenizer, messages: Sequence[dict], add_generation_prompt: bool = False) -> list[int]:
    """The token ids of ``render(...)`` (special markers as single tokens, nothing added in front)."""
    return tokenizer(render(tokenizer, messages, add_generation_prompt), add_special_tokens=False)["input_ids"]


def with_start_token(tokenizer, ids: Sequence[int]) -> list[int]:
    """``ids`` with exactly one start token (``lm.bos_token_id``) in front: the template's own, when it writes
    one (Llama 3's ``<|begin_of_text|>``), else one put there — as the course's scorers do."""
    start = bos_token_id(tokenizer)
    ids = list(ids)
    return ids if ids[:1] == [start] else [start] + ids


def chat_context_and_queries(
    tokenizer, demonstrations: Sequence[Any], test_examples: Sequence[Any], fmt: ChatFormat
) -> tuple[str, list[str]]:
    """``(context, queries)`` for ``icl.score_label_words_cached`` / ``_naive``: the rendered conversation
    split where the shared part (system turn + demonstrations) ends.

    ``start + context + queries[i] + label word`` is the conversation of input i answered with that label,
    ``start`` being the scorer's start token (see the module docstring). Raises ``ChatTemplateError`` when
    the template rewrites earlier turns once a turn is added (then no context is shared), and
    ``icl.DemonstrationLeakError`` when a test input is one of the demonstrations.
    """
    icl.check_examples(test_examples)
    demos = icl.as_demos(demonstrations)
    icl.check_no_leak(demos, test_examples)
    context = render(tokenizer, conversation(demos, None, fmt)) if (demos or fmt.system) else ""
    queries = []
    for x in test_examples:
        full = render(tokenizer, conversation(demos, x, fmt), add_generation_prompt=True)
        if not full.startswith(context):
            raise ChatTemplateError(
                "this chat template renders the shared turns differently once a test turn is added, so they are "
                "not a shared context; score each conversation on its own with icl.score_label_words_naive"
            )
        queries.append(full[len(context) :])
    bos = tokenizer.convert_ids_to_tokens(bos_token_id(tokenizer))  # the scorers' start token, not always BOS
    if bos and context.startswith(bos):
        context = context[len(bos) :]  # the scorer puts the start token back
    elif bos and not context and queries and all(q.startswith(bos) for q in queries):
        queries = [q[len(bos) :] for q in queries]
    return context, queries


def engine_ids(tokenizer, context: str, query: str, label_word: str) -> list[int]:
    """The ids the course's scorers read for one (context, query, label word): start token + pieces."""
    ids = icl.encode_context(tokenizer, context) + icl.encode_inputs(tokenizer, [query])[0]
    return ids + tokenizer(label_word, add_special_tokens=False)["input_ids"]


def score_chat(
    model,
    tokenizer,
    demonstrations: Sequence[Any],
    test_examples: Sequence[Any],
    fmt: ChatFormat,
    *,
    cached: bool = True,
    reduction: str = "sum",
    batch_size: int = 16,
) -> torch.Tensor:
    """(n, C) log P(answer = label word c | conversation of input i), by the cached engine or the naive one."""
    check_model_and_tokenizer(model, tokenizer, "score_chat")
    context, queries = chat_context_and_queries(tokenizer, demonstrations, test_examples, fmt)
    if cached:
        return icl.score_label_words_cached(
            model, tokenizer, context, queries, fmt.label_words, reduction=reduction, batch_size=batch_size
        )
    return icl.score_label_words_naive(
        model, tokenizer, context, queries, fmt.label_words, reduction=reduction, batch_size=batch_size
    )


# ---------------------------------------------------------------------------------------------------
# A soft prompt on a chat model
# ---------------------------------------------------------------------------------------------------

PLACEMENTS = ("before_system", "user_turn")
TEXT_SLOT = "\x00TEXT\x00"


class ChatLabelWords(LabelWords):
    """The label-word head for a chat prompt: the answer follows the assistant header's newline, so the
    label words stay bare (``"positive"``, not the continuation ``" positive"``), one token each."""

    def __init__(self, tokenizer, label_words: Sequence[str], template: str):
        nn.Module.__init__(self)
        if "{text}" not in template:
            raise CourseError(f"template {template!r} has no {{text}} slot")
        self.label_words = [str(w).strip() for w in label_words]
        self.template = template
        self.register_buffer("label_ids", torch.tensor(label_token_ids(tokenizer, self.label_words)))


class ChatPromptClassifier(PromptClassifier):
    """``PromptClassifier`` whose inputs are chat text: tokenized without the tokenizer's own special tokens
    (the template already holds every marker; a Llama-style tokenizer would otherwise add BOS mid-prompt)."""

    add_special_tokens = False


@register_adapter  # checkpoint.load_prompt finds it by its method name once chat is imported
class UserTurnSoftPrompt(PromptAdapter):
    """Virtual tokens *inside the user turn*: ``[start] system turn, <|im_start|>user⏎ [P] text …``.

    Everything before P is the same for every example, so it is part of the prompt: its embeddings are a
    frozen buffer (``anchor_embeddings``, (m, d)), P (n, d) is the only trained tensor, and the engine
    (``PromptedModel``) computes the keys/values of all m + n tokens once per batch and shares them.
    A checkpoint stores P and the anchor's token ids; loading recomputes the anchor's embeddings from the
    model's own embedding layer, as ``chat_classifier`` does (``load_prompt`` checks it is the same model).
    """

    method = "chat_user_turn"

    def __init__(self, anchor_ids: Sequence[int], anchor_embeddings: torch.Tensor, prompt: SoftPrompt):
        super().__init__()
        if anchor_embeddings.dim() != 2 or anchor_embeddings.shape != (len(anchor_ids), prompt.hidden_size):
            raise CourseError(
                f"anchor_embeddings must be ({len(anchor_ids)}, {prompt.hidden_size}), got "
                f"{tuple(anchor_embeddings.shape)}"
            )
        self.anchor_ids = list(anchor_ids)
        self.register_buffer("anchor_embeddings", anchor_embeddings.detach().clone().float())
        self.prompt = prompt

    @property
    def n_virtual_tokens(self) -> int:
        return len(self.anchor_ids) + self.prompt.n_virtual_tokens

    def virtual_embeddings(self, batch_size: int = 1) -> torch.Tensor:
        anchor = self.anchor_embeddings.to(self.prompt.weight.device).unsqueeze(0).expand(batch_size, -1, -1)
        return torch.cat([anchor, self.prompt(batch_size)], 1)  # (B, m + n, d)

    def check_fits(self, model) -> None:
        check_width(model, self.prompt.hidden_size, f"the soft prompt ({self.prompt.n_virtual_tokens} × d)")

    def saved_tensors(self) -> dict[str, torch.Tensor]:
        return {"prompt": self.prompt.weight.detach().float().cpu().contiguous()}

    def saved_settings(self) -> dict:
        return {"anchor_ids": list(self.anchor_ids), "init": self.prompt.init}

    @classmethod
    def from_saved(cls, model, tensors, settings) -> UserTurnSoftPrompt:
        anchor_ids = settings.get("anchor_ids")
        vocab = model.get_input_embeddings().num_embeddings
        if not isinstance(anchor_ids, list) or not all(isinstance(i, int) and 0 <= i < vocab for i in anchor_ids):
            raise CheckpointError(
                f"a {cls.method} checkpoint needs 'anchor_ids' (token ids below the model's {vocab}) in its "
                f"adapter settings, got {anchor_ids!r}: save it again with save_prompt."
            )
        prompt = SoftPrompt.from_saved(model, tensors, {"init": settings.get("init", "custom")})
        with torch.no_grad():  # the embedding layer's own output, exactly what chat_classifier stores
            anchor = model.get_input_embeddings()(torch.tensor(anchor_ids, device=input_embeddings(model).device))
        return cls(anchor_ids, anchor, prompt)


def chat_text_template(tokenizer, fmt: ChatFormat) -> tuple[str, str]:
    """``(before, after)``: the rendered one-turn conversation around the user turn's content, generation
    prompt included — ``before + user_prefix + text + after`` is what the model reads before answering."""
    full = render(
        tokenizer,
        [*([message("system", fmt.system)] if fmt.system else []), message("user", TEXT_SLOT)],
        add_generation_prompt=True,
    )
    if full.count(TEXT_SLOT) != 1:
        raise ChatTemplateError("the chat template must show the user's text exactly once")
    before, after = full.split(TEXT_SLOT)
    return before, after


def _slot(before: str, after: str) -> str:
    """A ``str.format`` template ``before{text}after`` (literal braces escaped)."""
    esc = lambda s: s.replace("{", "{{").replace("}", "}}")  # noqa: E731
    return esc(before) + "{text}" + esc(after)


def chat_classifier(
    model,
    tokenizer,
    fmt: ChatFormat,
    prompt: SoftPrompt | None = None,
    *,
    placement: str = "before_system",
    max_length: int = 256,
    share_prompt_cache: bool = True,
) -> ChatPromptClassifier:
    """A frozen chat model + a soft prompt + the chat label-word head, for ``training.fit``.

    ``placement="before_system"``: the input is the whole one-turn conversation (start token + system turn +
    user turn + assistant header), the virtual tokens come before it — where PEFT's ``PromptTuningConfig``
    puts them. ``"user_turn"``: the virtual tokens open the user turn's content, right after
    ``<|im_start|>user⏎`` (``UserTurnSoftPrompt``); the input is then ``user_prefix + text``, the end of the
    turn and the assistant header. Either way the label word is read right after the assistant header.
    """
    check_model_and_tokenizer(model, tokenizer, "chat_classifier")
    if placement not in PLACEMENTS:
        raise CourseError(f"placement must be one of {PLACEMENTS}, got {placement!r}")
    before, after = chat_text_template(tokenizer, fmt)
    start_id = bos_token_id(tokenizer)
    start = tokenizer.convert_ids_to_tokens(start_id)
    if before.startswith(start):
        before = before[len(start) :]  # one start token, put back below
    if placement == "before_system" or prompt is None:
        head = ChatLabelWords(tokenizer, fmt.label_words, _slot(start + before + fmt.user_prefix, after))
        adapter = prompt
    else:
        anchor_ids = [start_id] + tokenizer(before, add_special_tokens=False)["input_ids"]
        # the embedding layer's own output (Gemma's scales its rows by √d): exactly what the model reads
        with torch.no_grad():
            anchor = model.get_input_embeddings()(torch.tensor(anchor_ids, device=input_embeddings(model).device))
        adapter = UserTurnSoftPrompt(anchor_ids, anchor, prompt)
        head = ChatLabelWords(tokenizer, fmt.label_words, _slot(fmt.user_prefix, after))
    return ChatPromptClassifier(
        model, tokenizer, head, adapter, max_length=max_length, share_prompt_cache=share_prompt_cache
    )


def compare_with_peft(classifier: ChatPromptClassifier, texts: Sequence[str]) -> dict[str, torch.Tensor]:
    """Our soft prompt before the system turn vs PEFT's ``PromptTuningConfig`` with the same vectors, on the
    same chat-formatted ids (right-padded: PEFT's positions follow the columns). Returns the logits of the real
    tokens, the next-token losses and the prompt gradients of both, as pairs ``(ours, peft)``."""
    prompt = classifier.adapter
    if not isinstance(prompt, SoftPrompt):
        raise CourseError("compare_with_peft needs the before-the-system-turn placement (a SoftPrompt adapter)")
    tok, n = classifier.tokenizer, prompt.n_virtual_tokens
    side, tok.padding_side = tok.padding_side, "right"
    try:
        enc = tok(
            [classifier.head.format(t) for t in texts], add_special_tokens=False, padding=True, return_tensors="pt"
        )
    finally:
        tok.padding_side = side
    ids, mask = enc["input_ids"].to(classifier.device), enc["attention_mask"].to(classifier.device)
    labels = ids.masked_fill(mask == 0, -100)
    prompt.weight.grad = None
    ours = classifier.prompted(ids, mask, labels)
    ours.loss.backward()
    twin = peft_twin(copy.deepcopy(classifier.model), prompt, task_type="CAUSAL_LM")  # chapter 05's twin
    weight = twin.prompt_encoder["default"].embedding.weight
    ref = twin.eval()(input_ids=ids, attention_mask=mask, labels=labels)
    ref.loss.backward()
    real = mask.bool()
    out = dict(
        logits=(ours.logits[real].detach(), ref.logits[:, n:][real].detach()),
        loss=(ours.loss.detach(), ref.loss.detach()),
        gradient=(prompt.weight.grad.detach().clone(), weight.grad.detach().clone()),
    )
    prompt.weight.grad = None
    return out


# ---------------------------------------------------------------------------------------------------
# What a closed API allows
# ---------------------------------------------------------------------------------------------------

# What each prompting method of the course reads from the model, and whether a hosted chat API offers it.
# ``takes_model`` says whether the course's function takes the model object itself (checked against its
# signature in tests/test_chat.py); the API column is what such services give: text and, from some providers,
# log-probabilities of tokens — never embeddings, keys/values or gradients.
# [closed-api]
CLOSED_API_NEEDS: tuple[tuple[str, str, str, bool, str], ...] = (
    # (method, course function, what it needs from the model, takes_model, through a closed API)
    ("discrete prompt / system prompt", "chat.render", "text in, text out", False, "yes"),
    ("demonstrations (few-shot)", "chat.conversation", "text in, text out", False, "yes"),
    ("chain-of-thought + voting", "chat.sample_answers", "sampled text", True, "yes"),
    ("label-word scoring", "icl.score_label_words_cached", "log-probs of given words", True, "if log-probs exposed"),
    ("contextual calibration", "icl.contextual_calibration", "log-probs of given words", False, "if log-probs exposed"),
    ("soft prompt", "soft_prompt.add_soft_prompt", "input embeddings + gradients", True, "no"),
    ("deep prompt (prefix tuning)", "adapters.PromptedModel", "each layer's keys/values + gradients", True, "no"),
)
# [/closed-api]


class ClosedChatAPI:
    """A stand-in for a hosted chat model: it keeps the model private and offers only what such services
    offer — sampled replies, and the log-probabilities of given answers (as some providers expose them)."""

    def __init__(self, model, tokenizer):
        check_model_and_tokenizer(model, tokenizer, "ClosedChatAPI")
        self.__model, self.__tokenizer = model, tokenizer

    def reply(self, messages: Sequence[dict], n: int = 1, seed: int = 0, max_new_tokens: int = 32) -> list[str]:
        return sample_answers(self.__model, self.__tokenizer, messages, n, max_new_tokens, seed=seed)

    def answer_logprobs(self, demonstrations, test_examples, fmt: ChatFormat) -> torch.Tensor:
        """(n, C) log P(answer = label word | conversation), detached: numbers, no gradients."""
        with torch.no_grad():
            return score_chat(self.__model, self.__tokenizer, demonstrations, test_examples, fmt).detach().clone()


# ---------------------------------------------------------------------------------------------------
# Chain-of-thought sampling and self-consistency
# ---------------------------------------------------------------------------------------------------

COT_TRIGGER = "Let's think step by step."  # Kojima et al. 2022, Table 4 (the best-scoring zero-shot trigger)


def _end_ids(tokenizer) -> list[int]:
    """The ids that end an assistant turn: ``<|im_end|>`` where the tokenizer has it, and its EOS."""
    end = [t for t in (tokenizer.convert_tokens_to_ids(IM_END), tokenizer.eos_token_id) if t is not None]
    return list(dict.fromkeys(t for t in end if t != tokenizer.unk_token_id))


@torch.no_grad()
def generate_replies(
    model,
    tokenizer,
    conversations: Sequence[Sequence[dict]],
    *,
    reply_start: str = "",
    n_samples: int = 1,
    temperature: float | None = None,
    max_new_tokens: int = 48,
    seed: int = 0,
    batch_size: int = 32,
) -> list[list[str]]:
    """For each conversation, ``n_samples`` assistant replies, each cut at the end-of-turn marker.

    The conversation is rendered with the model's template and its generation prompt; ``reply_start`` is the
    beginning of the assistant's reply, written for it (``"The answer is"``, or Kojima et al.'s trigger), and
    is not part of the returned text. ``temperature=None``: greedy decoding (one reply); otherwise sampling
    from the full distribution at that temperature (no top-k / top-p), seeded: the same seed and
    ``batch_size`` give the same replies. Conversations are batched, left-padded (``generate`` derives the
    positions from the attention mask), at most ``batch_size`` sequences at a time. Defined in chapter 09.
    """
    check_model_and_tokenizer(model, tokenizer, "generate_replies")
    for name, value in (("n_samples", n_samples), ("max_new_tokens", max_new_tokens), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise CourseError(f"{name} must be a positive integer, got {value!r}")
    if temperature is None and n_samples != 1:
        raise CourseError(
            f"greedy decoding (temperature=None) gives one reply, got n_samples={n_samples}: pass a temperature"
        )
    if temperature is not None and not (isinstance(temperature, (int, float)) and temperature > 0):
        raise CourseError(f"temperature must be a number > 0 (or None for greedy decoding), got {temperature!r}")
    if isinstance(conversations, (str, dict)) or not all(isinstance(c, Sequence) for c in conversations):
        raise CourseError("conversations must be a list of conversations, each a list of message dicts")
    start = tokenizer(reply_start, add_special_tokens=False)["input_ids"] if reply_start else []
    prompts = [with_start_token(tokenizer, template_ids(tokenizer, c, True)) + start for c in conversations]
    check_context(model, max(map(len, prompts), default=0) + max_new_tokens, "conversation + generated tokens")
    end = _end_ids(tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else end[0]
    per_batch = max(1, batch_size // n_samples)  # conversations per call; each becomes n_samples sequences
    replies: list[list[str]] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for i in range(0, len(prompts), per_batch):
            chunk = prompts[i : i + per_batch]
            width = max(map(len, chunk))
            ids = torch.tensor([[pad] * (width - len(p)) + p for p in chunk], device=model.device)
            mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in chunk], device=model.device)
            sampling = dict(do_sample=True, temperature=float(temperature), top_k=0, top_p=1.0) if temperature else {}
            out = model.generate(
                ids, attention_mask=mask, max_new_tokens=max_new_tokens, num_return_sequences=n_samples,
                eos_token_id=end, pad_token_id=pad, **(sampling or dict(do_sample=False)),
            )  # fmt: skip
            texts = [tokenizer.decode(row[width:], skip_special_tokens=True).strip() for row in out]
            replies += [texts[j : j + n_samples] for j in range(0, len(texts), n_samples)]
    return replies


def sample_answers(
    model,
    tokenizer,
    messages: Sequence[dict],
    n_samples: int = 5,
    max_new_tokens: int = 48,
    temperature: float = 0.7,
    seed: int = 0,
) -> list[str]:
    """``n_samples`` sampled assistant replies to one conversation ``messages`` (``generate_replies``)."""
    if not (isinstance(n_samples, int) and n_samples >= 1):
        raise CourseError(f"n_samples must be a positive integer, got {n_samples!r}")
    (replies,) = generate_replies(
        model, tokenizer, [messages], n_samples=n_samples, temperature=temperature, max_new_tokens=max_new_tokens,
        seed=seed, batch_size=n_samples,
    )  # fmt: skip
    return replies


def extract_number(text: str) -> str | None:
    """The last number in a reply (the answer of a chain of thought), or None when there is none."""
    if not isinstance(text, str):
        raise CourseError(f"extract_number needs a reply's text (a str), got {type(text).__name__}")
    found = re.findall(r"-?\d+(?:\.\d+)?", text.replace(",", ""))
    return found[-1] if found else None


def majority_vote(answers: Sequence[str | None]) -> tuple[str | None, int]:
    """Self-consistency (Wang et al. 2023): the most frequent extracted answer and its count; replies with
    no answer (None) do not vote; ties go to the answer seen first. ``(None, 0)`` when nobody answered."""
    votes = Counter(a for a in answers if a is not None)
    if not votes:
        return None, 0
    best = max(votes.values())
    winner = next(a for a in answers if a is not None and votes[a] == best)
    return winner, best


# ---------------------------------------------------------------------------------------------------
# Generated arithmetic word problems: chain of thought measured on answers a program can check
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WordProblem:
    """A two-step arithmetic word problem and its exact answer (a whole number ≥ 1)."""

    question: str
    answer: int

    def is_correct(self, reply_answer: str | None) -> bool:
        """Whether an extracted answer (``extract_number``'s string, or None) equals the exact answer."""
        return reply_answer is not None and float(reply_answer) == self.answer


_NAMES = ("Tom", "Sara", "Ben", "Mia", "Leo", "Anna", "Sam", "Lily")
_THINGS = ("apples", "pencils", "stickers", "marbles", "cards", "books")


# (question, answer, the largest c): two steps each; c is drawn from 2..largest (a plural noun; no count below 0)
_PROBLEM_KINDS = (
    (
        "{name} has {a} {things}. {name} gets {b} more and then gives {c} away. How many {things} does {name} "
        "have now?",
        lambda a, b, c: a + b - c,
        lambda a, b, top: a + b - 1,
    ),
    (
        "A box holds {a} {things}. {name} has {b} full boxes and gives {c} {things} away. How many {things} are left?",
        lambda a, b, c: a * b - c,
        lambda a, b, top: a * b - 1,
    ),
    (
        "{name} reads {a} pages a day for {b} days, then reads {c} more pages. How many pages did {name} read in all?",
        lambda a, b, c: a * b + c,
        lambda a, b, top: top,
    ),
    (
        "There are {a} birds on a tree. {c} fly away, then {b} more land. How many birds are on the tree now?",
        lambda a, b, c: a - c + b,
        lambda a, b, top: a,
    ),
)


def _problem(kind: int, rng: np.random.Generator, top: int) -> WordProblem:
    """One problem of template ``kind`` with a, b in 2..``top``."""
    question, answer, largest_c = _PROBLEM_KINDS[kind]
    name, things = _NAMES[rng.integers(len(_NAMES))], _THINGS[rng.integers(len(_THINGS))]
    a, b = (int(x) for x in rng.integers(2, top + 1, size=2))
    c = int(rng.integers(2, largest_c(a, b, top) + 1))
    return WordProblem(question.format(name=name, things=things, a=a, b=b, c=c), answer(a, b, c))


N_PROBLEM_KINDS = len(_PROBLEM_KINDS)


def word_problems(n: int, seed: int = 0, max_operand: int = 9) -> list[WordProblem]:
    """``n`` generated two-step word problems with exact answers, seeded (``numpy.random.default_rng(seed)``):
    the same ``n``, ``seed`` and ``max_operand`` give the same problems. Four templates (a + b − c, a × b − c,
    a × b + c, a − c + b) with operands from 2 to ``max_operand``; a program knows every answer, so a reply is
    scored exactly (``WordProblem.is_correct``). Defined in chapter 09."""
    for what, value, low in (("n", n, 1), ("max_operand", max_operand, 3)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise CourseError(f"{what} must be a whole number ≥ {low}, got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise CourseError(f"seed must be a whole number ≥ 0, got {seed!r}")
    rng = np.random.default_rng(int(seed))
    return [_problem(int(rng.integers(N_PROBLEM_KINDS)), rng, int(max_operand)) for _ in range(int(n))]


def score_answers(answers: Sequence[str | None], problems: Sequence[WordProblem]) -> np.ndarray:
    """(n,) bool: is each extracted answer the exact answer of its problem (same order)."""
    if len(answers) != len(problems):
        raise CourseError(f"one answer per problem: got {len(answers)} answers for {len(problems)} problems")
    if not all(isinstance(p, WordProblem) for p in problems):
        raise CourseError("problems must be WordProblem objects (chat.word_problems)")
    return np.array([p.is_correct(a) for p, a in zip(problems, answers)], dtype=bool)


DIRECT_START = "The answer is"  # the answer format of Wei et al. (2022b)'s exemplars, given as the reply's start
REASONING_ARMS = ("direct", "chain of thought", "self-consistency")
REASONING_PAIRS = (
    ("chain of thought", "direct"),
    ("self-consistency", "chain of thought"),
    ("self-consistency", "direct"),
)


@dataclass
class ReasoningRun:
    """Chapter 09's three arms on the same problems: per arm the replies (a list per problem), the extracted
    answers, whether each is right, and the seconds it took."""

    problems: list[WordProblem]
    replies: dict[str, list[list[str]]]
    answers: dict[str, list[str | None]]
    correct: dict[str, np.ndarray]
    seconds: dict[str, float]

    def summary(self) -> dict:
        """The run as plain numbers (what a recorded run stores): n; per arm the problems right, the accuracy
        and its Wilson 95 % interval; per pair of ``REASONING_PAIRS`` the paired test (``stats.paired_test``)."""
        from .stats import accuracy_interval, paired_test

        arms = {}
        for arm, c in self.correct.items():
            acc = accuracy_interval(c)
            arms[arm] = dict(right=int(c.sum()), accuracy=acc.value, low=acc.low, high=acc.high)
        pairs = {}
        for a, b in REASONING_PAIRS:
            t = paired_test(self.correct[a], self.correct[b])
            pairs[f"{a} vs {b}"] = dict(
                only_a=t.only_a, only_b=t.only_b, difference=t.difference, low=t.low, high=t.high, p_value=t.p_value
            )
        return dict(n=len(self.problems), arms=arms, paired=pairs, seconds=dict(self.seconds))


def solve_word_problems(
    model,
    tokenizer,
    problems: Sequence[WordProblem],
    *,
    n_samples: int = 5,
    max_new_tokens: int = 96,
    answer_tokens: int = 12,
    temperature: float = 0.7,
    seed: int = 0,
    batch_size: int = 32,
) -> ReasoningRun:
    """Each problem as one user turn, answered three ways (``REASONING_ARMS``):

    * **direct** — greedy; the reply is started with ``DIRECT_START``, ``answer_tokens`` new tokens;
    * **chain of thought** — greedy; the reply is started with ``COT_TRIGGER`` (zero-shot CoT, Kojima et al.
      2022), ``max_new_tokens`` new tokens;
    * **self-consistency** — ``n_samples`` chains sampled at ``temperature``, their answers voted
      (``majority_vote``; Wang et al. 2023).

    The answer of a reply is its last number (``extract_number``; a chain cut at ``max_new_tokens`` keeps the
    last number it reached), scored exactly (``score_answers``). Defined in chapter 09."""
    import time

    problems = list(problems)
    if not problems:
        raise CourseError("problems is empty: pass chat.word_problems(n) with n ≥ 1")
    score_answers([None] * len(problems), problems)  # checks the problems before any generation
    turns = [[message("user", p.question)] for p in problems]
    plans = {
        "direct": dict(reply_start=DIRECT_START, max_new_tokens=answer_tokens),
        "chain of thought": dict(reply_start=COT_TRIGGER, max_new_tokens=max_new_tokens),
        "self-consistency": dict(reply_start=COT_TRIGGER, max_new_tokens=max_new_tokens, n_samples=n_samples,
                                 temperature=temperature),
    }  # fmt: skip
    replies, answers, seconds = {}, {}, {}
    for arm, plan in plans.items():
        t0 = time.perf_counter()
        replies[arm] = generate_replies(model, tokenizer, turns, seed=seed, batch_size=batch_size, **plan)
        seconds[arm] = time.perf_counter() - t0
        answers[arm] = [majority_vote([extract_number(r) for r in rs])[0] for rs in replies[arm]]
    correct = {arm: score_answers(answers[arm], problems) for arm in plans}
    return ReasoningRun(problems, replies, answers, correct, seconds)


# ---------------------------------------------------------------------------------------------------
# Saying what a comparison shows
# ---------------------------------------------------------------------------------------------------


def paired_verdict(name_a: str, name_b: str, test, alpha: float = 0.05) -> str:
    """One line for ``stats.paired_test(correct_a, correct_b)``: the test and its verdict
    (``PairedTest.verdict``: an arm ranked higher only at p < ``alpha``; a small n, a degenerate pair or a
    smoke budget ranks nothing, and says so). Defined in chapter 09."""
    from .stats import PairedTest

    if not isinstance(test, PairedTest):
        raise CourseError(f"test must be what stats.paired_test returns, got {type(test).__name__}")
    verdict = test.verdict((name_a, name_b), alpha)
    return f"{name_a} vs {name_b}: {test}" + ("" if test.smoke or test.degenerate else f" → {verdict}")

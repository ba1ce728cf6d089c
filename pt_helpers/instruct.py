"""Instruction tuning done, not described (chapter 10), and DPO's loss computed two ways.

FLAN (Wei et al. 2022, "Finetuned Language Models Are Zero-Shot Learners", §2) fine-tunes a language model on
many tasks written as natural-language instructions, several phrasings per task, and then measures zero-shot
accuracy on task *clusters it never saw*. This module does it in miniature on SmolLM2-135M-Instruct:

* ``build_mixture``: SST-2, AG News and TREC training examples as chat conversations — one user turn (an
  instruction phrasing drawn with the seed from ``PHRASINGS``, the input and the answer options) and one assistant
  turn (the label word);
* ``encode_sft``: the conversations through the model's own chat template, the loss on the assistant's tokens
  only (``labels`` = -100 everywhere else); the assistant spans come from the template's renderings with and
  without each assistant turn (``assistant_spans``), never from searching the text for a family's markers;
* ``check_assistant_only_loss``: an independent check of a batch — no system, user or template token carries loss;
* ``sft_lora``: LoRA (PEFT, on the query and value projections; ``inject_lora`` is the one place it enters) trained
  by the course's one loop, ``training.fit``, on a copy of the model;
* ``held_out_zero_shot``: RTE and CB — tasks the mixture never contains — zero-shot through the chat template,
  scored by the log-probability of each whole reply (label word + end of turn), on the same examples before
  and after tuning;
* ``dpo_loss_two_ways``: Rafailov et al. (2023, §4)'s DPO loss from the log-ratios, and from the implicit reward
  in the Bradley–Terry form — the two must agree.

Why the end-of-turn token carries loss: generation stops only when the model emits it (``chat._end_ids``). A
model trained on the answer word alone learns *what* to say but not to *stop*, and a reply is scored here as
the whole turn (word + end of turn), so training and scoring read the same tokens. The newline the template
writes after the end-of-turn token is template glue, never generated: it carries no loss.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import chat, data
from .errors import ChatTemplateError, CourseError, TrainConfigError, UnknownTaskError, check_texts
from .frozen import check_model_and_tokenizer, count_trainable, input_embeddings

IGNORE_INDEX = -100  # the label of a token that carries no loss (PyTorch's and transformers' convention)
MIXTURE_TASKS = ("sst2", "agnews", "trec")
HELD_OUT_TASKS = ("rte", "cb")
_ALIASES = {"ag_news": "agnews"}  # the hub's spelling (fancyzhx/ag_news) of the course's task name

# [phrasings]
# FLAN-style instruction phrasings, four per task (FLAN wrote ten per data set, §2.2; some put the
# instruction before the input, some after). {options} lists the task's label words; the answer is one of them.
PHRASINGS: dict[str, tuple[str, ...]] = {
    "sst2": (
        "What is the sentiment of this movie review?\n\n{text}\n\nAnswer with one of: {options}.",
        "{text}\n\nDid the reviewer like the movie? Reply with one word from: {options}.",
        "Classify the sentiment of the following sentence as {options}.\n\nSentence: {text}",
        "Review: {text}\nIs this review {options}?",
    ),
    "agnews": (
        "What is this news article about?\n\n{text}\n\nAnswer with one of: {options}.",
        "{text}\n\nWhich section of a newspaper would this article appear in? Options: {options}.",
        "Classify the topic of the following news article as {options}.\n\nArticle: {text}",
        "Article: {text}\nTopic ({options})?",
    ),
    "trec": (
        "What kind of answer does this question ask for?\n\n{text}\n\nAnswer with one of: {options}.",
        "{text}\n\nIs the answer to the question above a {options}? Reply with one word.",
        "Classify the following question by the type of its answer: {options}.\n\nQuestion: {text}",
        "Question: {text}\nAnswer type ({options})?",
    ),
}
# The held-out tasks get one fixed phrasing in the same style; the options are the data's label names.
HELD_OUT_PHRASING = (
    "Premise: {premise}\nHypothesis: {hypothesis}\n\n"
    "How does the hypothesis relate to the premise? Answer with one of: {options}."
)
# [/phrasings]
N_PHRASINGS = {task: len(p) for task, p in PHRASINGS.items()}


# ---------------------------------------------------------------------------------------------------
# The mixture
# ---------------------------------------------------------------------------------------------------


def _task_key(task, allowed: Sequence[str], what: str) -> str:
    """A task name of ``allowed`` (``"ag_news"`` accepted for ``"agnews"``), or an error naming the valid ones."""
    if not isinstance(task, str):
        raise UnknownTaskError(f"{what} must be a task name (a string), got {task!r}; valid: {', '.join(allowed)}")
    key = task.strip().lower().replace("-", "")
    key = _ALIASES.get(key, key)
    if key not in allowed:
        other = (
            f" ({key!r} is a course task, but not one of these: the mixture trains on {MIXTURE_TASKS}, "
            f"zero-shot is measured on the held-out {HELD_OUT_TASKS})"
            if key in data.TASKS
            else f" (the course's tasks: {', '.join(sorted(data.TASKS))})"
        )
        raise UnknownTaskError(f"unknown {what} {task!r}; valid: {', '.join(allowed)}{other}")
    return key


def _positive_int(name: str, value, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise CourseError(f"{name} must be a whole number ≥ {low}, got {value!r}")
    return int(value)


def build_mixture(
    tokenizer, tasks: Sequence[str] = MIXTURE_TASKS, n_per_task: int = 100, seed: int = 0, system: str | None = None
) -> list[list[dict]]:
    """FLAN-style conversations: ``n_per_task`` training examples of each task, shuffled together.

    Each conversation is ``[system?] + [user: phrasing with the input and the options, assistant: label word]``.
    The examples are ``data.subsample(training split, n_per_task, seed)``; each one's phrasing is drawn from
    the task's ``N_PHRASINGS[task]`` (four) with ``numpy.random.default_rng(seed)``, which then shuffles the
    order. No system turn by default (``system=None``): the template writes its own default, if it has one.
    The tokenizer is checked for a chat template (the conversations are meant for it). Defined in chapter 10.
    """
    chat.check_chat_tokenizer(tokenizer)
    if isinstance(tasks, str) or not isinstance(tasks, Sequence) or not tasks:
        raise UnknownTaskError(f"tasks must be a non-empty list of task names such as {MIXTURE_TASKS}, got {tasks!r}")
    keys = [_task_key(t, MIXTURE_TASKS, "mixture task") for t in tasks]
    if len(set(keys)) != len(keys):
        raise CourseError(f"tasks lists a task twice ({list(tasks)}): name each task once")
    n_per_task = _positive_int("n_per_task", n_per_task)
    seed = _positive_int("seed", seed, 0)
    if system is not None and (not isinstance(system, str) or not system.strip()):
        raise CourseError(f"system must be a non-empty string or None (no system turn), got {system!r}")
    rng = np.random.default_rng(seed)
    conversations = []
    for key in keys:
        info = data.task_info(key)
        train = data.load_task(key, "train")
        if n_per_task > len(train):
            raise CourseError(
                f"n_per_task={n_per_task} but {key}'s training split has {len(train)} examples: ask for at most that"
            )
        rows = data.subsample(train, n_per_task, seed)
        options = ", ".join(info.label_words)
        for text, label in zip(data.texts_of(rows), rows["label"]):
            phrasing = PHRASINGS[key][int(rng.integers(N_PHRASINGS[key]))]
            turns = [chat.message("system", system)] if system is not None else []
            turns += [
                chat.message("user", phrasing.format(text=text, options=options)),
                chat.message("assistant", info.label_words[label]),
            ]
            conversations.append(turns)
    return [conversations[i] for i in rng.permutation(len(conversations))]


# ---------------------------------------------------------------------------------------------------
# The loss mask, from the template
# ---------------------------------------------------------------------------------------------------


def _check_conversation(conv, where: str = "conversation") -> list[dict]:
    """One conversation as a list of {"role", "content"} turns, or an error naming it (``where``)."""
    if isinstance(conv, (str, Mapping)) or not isinstance(conv, Sequence):
        raise CourseError(
            f"{where} must be a list of turns ({{'role': ..., 'content': ...}}), got {type(conv).__name__}"
        )
    if not conv:
        raise CourseError(f"{where} is empty: a conversation needs a user turn and the assistant's reply")
    turns = []
    for k, turn in enumerate(conv):
        if not isinstance(turn, Mapping) or not {"role", "content"} <= set(turn):
            raise CourseError(f"{where}[{k}] must be a dict with 'role' and 'content', got {turn!r}")
        if turn["role"] not in chat.ROLES:
            raise CourseError(f"{where}[{k}] has role {turn['role']!r}; roles are {chat.ROLES}")
        if not isinstance(turn["content"], str):
            raise CourseError(f"{where}[{k}]'s content must be a string, got {type(turn['content']).__name__}")
        turns.append({"role": turn["role"], "content": turn["content"]})
    roles = [t["role"] for t in turns]
    if "assistant" not in roles:
        raise CourseError(
            f"{where} has no assistant turn (roles {roles}): supervised fine-tuning learns the assistant's reply; "
            "append {'role': 'assistant', 'content': <the answer>}"
        )
    for k, turn in enumerate(turns):
        if turn["role"] == "assistant" and (k == 0 or roles[k - 1] != "user"):
            raise CourseError(f"{where}[{k}]: an assistant turn must follow a user turn (roles {roles})")
        if turn["role"] == "assistant" and not turn["content"].strip():
            raise CourseError(f"{where}[{k}]: the assistant's reply is empty; give it the answer to learn")
    return turns


def assistant_spans(tokenizer, conversation: Sequence[dict]) -> tuple[list[int], list[tuple[int, int]]]:
    """The template's token ids of ``conversation`` and, per assistant turn, the span ``[start, end)`` that
    carries loss. Defined in chapter 10.

    For the assistant turn k: ``start`` = the length of the conversation before it *with the generation
    prompt* (where the model starts writing), ``end`` = one past the first token that stops generation
    (``chat._end_ids``: the end of turn) inside the turn as the template renders it. Both renderings must be
    prefixes of the whole conversation's ids (a template that rewrites earlier turns is refused)."""
    turns = _check_conversation(conversation)
    ids = chat.template_ids(tokenizer, turns)
    stops = set(chat._end_ids(tokenizer))
    spans = []
    for k, turn in enumerate(turns):
        if turn["role"] != "assistant":
            continue
        before = chat.template_ids(tokenizer, turns[:k], add_generation_prompt=True)
        upto = chat.template_ids(tokenizer, turns[: k + 1])
        if ids[: len(before)] != before or ids[: len(upto)] != upto:
            raise ChatTemplateError(
                f"turn {k}: the template renders the conversation up to this assistant turn differently from the "
                "start of the whole conversation, so its reply cannot be located in the ids"
            )
        reply = ids[len(before) : len(upto)]
        end = next((i for i, t in enumerate(reply) if t in stops), None)
        if end is None:
            raise ChatTemplateError(
                f"turn {k}: the template closes the assistant turn without a token that stops generation "
                f"({tokenizer.convert_ids_to_tokens(sorted(stops))}); the reply's end cannot be learned"
            )
        spans.append((len(before), len(before) + end + 1))
    return ids, spans


def encode_sft(tokenizer, conversations: Sequence[Sequence[dict]], max_length: int = 256) -> dict[str, torch.Tensor]:
    """``dict(input_ids, attention_mask, labels)``, each (N, L) with L the longest conversation (right-padded).

    ``input_ids``: the course's start token (``chat.with_start_token``, as its scorers read a conversation)
    + the template's ids. ``labels`` = ``input_ids`` on the assistant spans (``assistant_spans``: the reply and
    its end-of-turn token; see the module docstring for why the end of turn carries loss) and ``IGNORE_INDEX``
    elsewhere — system, user, template markers, the start token and the padding. transformers' convention:
    labels are *not* shifted (the model predicts ``labels[t]`` from the tokens before t). A conversation
    longer than ``max_length`` tokens is an error (truncating it could cut the reply away). Defined in chapter 10.
    """
    chat.check_chat_tokenizer(tokenizer)
    if isinstance(conversations, (str, Mapping)) or not isinstance(conversations, Sequence) or not conversations:
        raise CourseError("conversations must be a non-empty list of conversations (each a list of turn dicts)")
    max_length = _positive_int("max_length", max_length, 2)
    rows, spans_of = [], []
    for i, conv in enumerate(conversations):
        _check_conversation(conv, f"conversations[{i}]")
        ids, spans = assistant_spans(tokenizer, conv)
        full = chat.with_start_token(tokenizer, ids)
        shift = len(full) - len(ids)
        if len(full) > max_length:
            raise CourseError(
                f"conversations[{i}] is {len(full)} tokens, longer than max_length={max_length}: raise max_length "
                "or shorten its input (truncation could cut the assistant's reply away)"
            )
        rows.append(full)
        spans_of.append([(a + shift, b + shift) for a, b in spans])
    width = max(map(len, rows))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else chat._end_ids(tokenizer)[0]
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    for r, (ids, spans) in enumerate(zip(rows, spans_of)):
        input_ids[r, : len(ids)] = torch.tensor(ids)
        attention_mask[r, : len(ids)] = 1
        for a, b in spans:
            labels[r, a:b] = input_ids[r, a:b]
    return dict(input_ids=input_ids, attention_mask=attention_mask, labels=labels)


def _role_headers(tokenizer) -> dict[str, list[int]]:
    """Per role, the ids the template writes before a turn's content, read from the template itself: the
    assistant's is the generation prompt; a role's header is the text before its content back to the
    generation prompt's first token (the turn opener, ChatML's ``<|im_start|>``)."""
    slot = "\x00SLOT\x00"
    probe = [chat.message("user", "x")]
    gen = chat.render(tokenizer, probe, add_generation_prompt=True)[len(chat.render(tokenizer, probe)) :]
    gen_ids = tokenizer(gen, add_special_tokens=False)["input_ids"]
    if not gen_ids:
        raise ChatTemplateError("the chat template writes no generation prompt, so assistant turns cannot be found")
    opener = tokenizer.convert_ids_to_tokens(gen_ids[0])
    headers = {"assistant": gen_ids}
    for role, turns in (("system", []), ("user", [chat.message("system", "s")])):
        text = chat.render(tokenizer, [*turns, chat.message(role, slot)])
        before = text[: text.index(slot)]
        start = before.rfind(opener)
        if start < 0:
            raise ChatTemplateError(f"cannot find the {role} turn's header in the template's rendering")
        headers[role] = tokenizer(before[start:], add_special_tokens=False)["input_ids"]
    return headers


def check_assistant_only_loss(tokenizer, batch: Mapping[str, torch.Tensor]) -> None:
    """Raise ``CourseError`` naming the row, position and token if any token outside an assistant reply carries
    loss. Defined in chapter 10.

    Independent of ``encode_sft``'s bookkeeping: each row's ids are read afresh. A role header (read from the
    template, ``_role_headers``) opens a turn of that role; an assistant reply runs from the end of its header
    to the first token that stops generation, inclusive. A position whose label is not ``IGNORE_INDEX`` must
    lie in such a reply, be a real token (attention mask 1) and be labelled with its own token.
    """
    for key in ("input_ids", "labels"):
        if key not in batch:
            raise CourseError(f"batch has no {key!r}: pass what encode_sft returns (input_ids, attention_mask, labels)")
    ids, labels = torch.as_tensor(batch["input_ids"]), torch.as_tensor(batch["labels"])
    mask = torch.as_tensor(batch.get("attention_mask", torch.ones_like(ids)))
    if ids.dim() != 2 or labels.shape != ids.shape or mask.shape != ids.shape:
        raise CourseError(
            f"input_ids, labels and attention_mask must be (N, L) of one shape, got {tuple(ids.shape)}, "
            f"{tuple(labels.shape)}, {tuple(mask.shape)}"
        )
    headers = _role_headers(tokenizer)
    stops = set(chat._end_ids(tokenizer))
    for r in range(ids.shape[0]):
        row, lab = ids[r].tolist(), labels[r].tolist()
        where = ["template"] * len(row)  # each position's part: template, a role's header or turn, assistant reply
        role, in_reply, p = "template", False, 0
        while p < len(row):
            hit = next((name for name, h in headers.items() if row[p : p + len(h)] == h), None)
            if hit is not None:
                role, in_reply = hit, hit == "assistant"
                where[p : p + len(headers[hit])] = [f"{hit} header"] * len(headers[hit])
                p += len(headers[hit])
                continue
            where[p] = "assistant reply" if in_reply else (f"{role} turn" if role != "assistant" else "template")
            if in_reply and row[p] in stops:
                in_reply = False
            p += 1
        for p, (token, label) in enumerate(zip(row, lab)):
            if label == IGNORE_INDEX:
                continue
            name = tokenizer.convert_ids_to_tokens(token)
            if where[p] != "assistant reply" or not mask[r, p]:
                part = where[p] if mask[r, p] else "padding"
                raise CourseError(
                    f"row {r}, position {p} (token {name!r}) carries loss but lies in the {part}, not in an "
                    "assistant reply: only the assistant's tokens may be learned (build labels with encode_sft)"
                )
            if label != token:
                raise CourseError(
                    f"row {r}, position {p}: label {label} is not the token there ({token}, {name!r}); labels are "
                    "the input ids themselves, unshifted (the model shifts them)"
                )


# ---------------------------------------------------------------------------------------------------
# LoRA SFT with the shared loop
# ---------------------------------------------------------------------------------------------------

LORA_TARGETS = ("q_proj", "v_proj")  # the query and value projections, as LoRA's paper (Hu et al. 2021, §7.1)


def inject_lora(model, lora_rank: int, seed: int = 0):
    """LoRA (PEFT's ``LoraConfig``: rank r, α = 2r as in chapter 06, no dropout) on ``LORA_TARGETS``, injected
    into ``model`` in place, every other weight frozen; returns ``model``. The one place SFT's adapter enters the
    model: chapter 10's own LoRA (``pt_helpers.lora``) can replace this function. Defined in chapter 10."""
    from peft import LoraConfig, inject_adapter_in_model

    lora_rank = _positive_int("lora_rank", lora_rank)
    linear = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    missing = [t for t in LORA_TARGETS if t not in linear]
    if missing:
        raise CourseError(
            f"{type(model).__name__} has no linear layers named {missing} (its linear layers: {sorted(linear)}): "
            "LoRA here targets a Llama-style attention's q_proj and v_proj"
        )
    model.requires_grad_(False)
    config = LoraConfig(r=lora_rank, lora_alpha=2 * lora_rank, lora_dropout=0.0, target_modules=list(LORA_TARGETS))
    with torch.random.fork_rng(devices=[]):  # A's random init, seeded (B starts at 0: the update starts at 0)
        torch.manual_seed(int(seed))
        inject_adapter_in_model(config, model)
    return model


class SFTObjective(nn.Module):
    """Supervised fine-tuning as ``training.fit`` sees a classifier: ``tokenize(texts) → (ids, roles)`` and
    ``forward(ids, roles) → (B, 2)`` logits whose cross-entropy with class 0 is the SFT loss.

    A "text" is one conversation as JSON (``json.dumps``); ``roles`` (B, L) is 0 for padding, 1 for a token
    read only, 2 for a token that carries loss (the assistant spans of ``encode_sft``). With s = log P(reply |
    conversation before it), summed over the loss-carrying tokens, the logits are ``[s, log(1 − e^s)]``: their
    log-sum-exp is log(e^s + 1 − e^s) = 0, so the cross-entropy with class 0 is exactly −s, the reply's negative
    log-likelihood — SFT's loss summed over a conversation's reply tokens and averaged over conversations.
    (TRL's SFT averages over all reply tokens of a batch instead; with one-word replies the two differ by a
    factor of about the reply length, which the learning rate absorbs.) The "accuracy" ``fit`` selects the
    best step with is then the fraction of held-out conversations whose whole reply has probability > ½.
    Defined in chapter 10.
    """

    def __init__(self, model, tokenizer, max_length: int = 256):
        super().__init__()
        check_model_and_tokenizer(model, tokenizer, "SFTObjective")
        self.model, self.tokenizer, self.max_length = model, tokenizer, max_length

    @property
    def device(self) -> torch.device:
        return input_embeddings(self.model).device

    def tokenize(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        conversations = [json.loads(t) for t in check_texts(texts, "conversations (as JSON)")]
        enc = encode_sft(self.tokenizer, conversations, self.max_length)
        roles = enc["attention_mask"] + (enc["labels"] != IGNORE_INDEX).long()
        return enc["input_ids"].to(self.device), roles.to(self.device)

    def reply_logprob(self, input_ids: torch.Tensor, roles: torch.Tensor) -> torch.Tensor:
        """(B,) log P(every loss-carrying token | the tokens before it), summed per row."""
        scored = roles[:, 1:] == 2  # (B, L-1): the logits at column t predict token t + 1
        cols = scored.any(0).nonzero().squeeze(-1)  # only these columns' logits are computed (vocab is 49 k)
        out = self.model(input_ids=input_ids, attention_mask=(roles > 0).long(), logits_to_keep=cols)
        logp = F.log_softmax(out.logits.float(), dim=-1)  # (B, K, V)
        token_logp = logp.gather(-1, input_ids[:, cols + 1].unsqueeze(-1)).squeeze(-1)  # (B, K)
        return (token_logp * scored[:, cols]).sum(-1)

    def forward(self, input_ids: torch.Tensor, roles: torch.Tensor) -> torch.Tensor:
        s = self.reply_logprob(input_ids, roles).clamp(max=-1e-7)  # log(1 − e^s) needs s < 0
        return torch.stack([s, torch.log(-torch.expm1(s))], -1)


def sft_lora(
    model,
    tokenizer,
    conversations: Sequence[Sequence[dict]],
    *,
    max_steps: int,
    lr: float,
    lora_rank: int,
    seed: int,
    batch_size: int = 8,
    select_size: int | None = None,
    eval_every: int | None = None,
    max_length: int = 256,
    progress: bool = False,
):
    """LoRA SFT of a *copy* of ``model`` on ``conversations`` with the course's one loop (``training.fit``);
    returns ``(tuned copy, FitResult)``. ``model`` itself is left untouched (so "before" stays measurable).

    ``select_size`` conversations (default: a tenth, at least 8), drawn with ``seed``, are held out to choose the
    best step (``SFTObjective``'s accuracy, every ``eval_every`` steps; default: only at the end); the rest are
    trained on, ``batch_size`` per step, AdamW at peak ``lr`` with ``fit``'s warm-up and cosine decay. The
    returned copy holds LoRA layers (``comparison.merge_lora`` folds them in). Defined in chapter 10.
    """
    from . import comparison  # noqa: F401  (registers the "lora" method that TrainSettings validates)
    from .training import TrainSettings, fit

    check_model_and_tokenizer(model, tokenizer, "sft_lora")
    if isinstance(conversations, (str, Mapping)) or not isinstance(conversations, Sequence):
        raise CourseError("conversations must be a list of conversations (build_mixture makes one)")
    encode_sft(tokenizer, conversations, max_length)  # every conversation checked before any training
    n = len(conversations)
    select_size = max(8, n // 10) if select_size is None else _positive_int("select_size", select_size)
    if select_size >= n:
        raise TrainConfigError(
            f"select_size={select_size} leaves nothing to train on out of {n} conversations: pass more "
            "conversations or a smaller select_size"
        )
    order = np.random.default_rng(_positive_int("seed", seed, 0)).permutation(n)
    as_json = [json.dumps(list(conversations[i]), ensure_ascii=False) for i in order]
    select, train = as_json[:select_size], as_json[select_size:]
    settings = TrainSettings(
        model=getattr(model.config, "_name_or_path", "") or type(model).__name__,
        method="lora",
        lr=lr,
        max_steps=max_steps,
        batch_size=batch_size,
        eval_every=eval_every or max_steps,
        max_length=max_length,
        eval_batch_size=16,
        seed=seed,
        progress=progress,
    )
    settings.resolved()  # a bad max_steps / lr / batch_size is a TrainConfigError here, before the copy
    tuned = inject_lora(copy.deepcopy(model), lora_rank, seed)
    objective = SFTObjective(tuned, tokenizer, max_length)
    result = fit(objective, (train, [0] * len(train)), (select, [0] * len(select)), settings, desc="SFT (LoRA)")
    if result.n_trainable != count_trainable(tuned):
        raise CourseError("fit trained other parameters than the LoRA layers")  # cannot happen: a guard
    return tuned, result


# ---------------------------------------------------------------------------------------------------
# Zero-shot on held-out tasks
# ---------------------------------------------------------------------------------------------------


def reply_end(tokenizer) -> str:
    """The text of the token that ends an assistant reply in this template (ChatML: ``<|im_end|>``), read from
    the template's rendering of a probe conversation (``assistant_spans``). Defined in chapter 10."""
    ids, spans = assistant_spans(tokenizer, [chat.message("user", "x"), chat.message("assistant", "y")])
    return tokenizer.convert_ids_to_tokens(ids[spans[0][1] - 1])


def held_out_examples(task: str, n: int, seed: int, split: str = "dev") -> tuple[list[str], np.ndarray, tuple]:
    """``(user turns, labels, answer words)`` of ``n`` examples of a held-out task (``data.subsample`` of
    ``split`` with ``seed``: the same examples for the same arguments). The answer words are the data's label
    names (``not_entailment`` → ``not entailment``), listed in the turn as its options. Defined in chapter 10."""
    key = _task_key(task, HELD_OUT_TASKS, "held-out task")
    n = _positive_int("n", n)
    ds = data.load_task(key, split)
    if n > len(ds):
        raise CourseError(f"n={n} but {key}'s {split} split has {len(ds)} examples: ask for at most that")
    rows = data.subsample(ds, n, _positive_int("seed", seed, 0))
    words = tuple(name.replace("_", " ") for name in data.label_names(key))
    options = ", ".join(words)
    turns = [
        HELD_OUT_PHRASING.format(premise=p, hypothesis=h, options=options)
        for p, h in zip(rows["premise"], rows["hypothesis"])
    ]
    return turns, np.asarray(rows["label"]), words


def held_out_scores(
    model, tokenizer, task: str, n: int, seed: int, split: str = "dev"
) -> tuple[torch.Tensor, np.ndarray]:
    """``((n, C) log P(reply = answer word c + end of turn | user turn), labels)`` — scored by the course's
    cached scorer through the chat template (``chat.score_chat``, no demonstrations, no system turn).
    Defined in chapter 10."""
    check_model_and_tokenizer(model, tokenizer, "held_out_scores")
    turns, labels, words = held_out_examples(task, n, seed, split)
    end = reply_end(tokenizer)
    fmt = chat.ChatFormat(system="", user_prefix="", label_words=tuple(w + end for w in words))
    was_training = model.training
    model.eval()
    try:
        scores = chat.score_chat(model, tokenizer, [], turns, fmt)
    finally:
        model.train(was_training)
    return scores, labels


def held_out_zero_shot(model, tokenizer, task: str, n: int, seed: int, split: str = "dev") -> np.ndarray:
    """(n,) 0/1: is the most probable reply (label word + end of turn; ``held_out_scores``) the right one, on
    ``held_out_examples(task, n, seed, split)`` — the same examples before and after tuning, so the two are
    compared with ``stats.paired_test``. Defined in chapter 10."""
    scores, labels = held_out_scores(model, tokenizer, task, n, seed, split)
    return (scores.argmax(-1).numpy() == labels).astype(int)


# ---------------------------------------------------------------------------------------------------
# DPO's loss, two ways
# ---------------------------------------------------------------------------------------------------


def dpo_loss_two_ways(
    policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """DPO's per-pair loss (Rafailov et al. 2023, §4, Eq. 7), computed two ways; returns both. Defined in chapter 10.

    The KL-regularised objective max_π E[r(x, y)] − β KL(π ‖ π_ref) has the optimum π*(y|x) = π_ref(y|x)
    exp(r(x, y)/β) / Z(x), so r(x, y) = β log π*(y|x)/π_ref(y|x) + β log Z(x): the *implicit reward*.
    Bradley–Terry says P(y_w ≻ y_l) = exp r_w / (exp r_w + exp r_l); Z(x) cancels, and −log of it is the loss.

    * from the log-ratios: −log σ(β[(log π(y_w) − log π_ref(y_w)) − (log π(y_l) − log π_ref(y_l))]);
    * from the reward form: r = β (log π − log π_ref) for each reply, then −(r_w − log(e^{r_w} + e^{r_l})).

    Inputs: summed log-probabilities of each reply, one per pair (any shape, all the same); ``beta`` > 0.
    """
    names = ("policy_chosen_logps", "policy_rejected_logps", "ref_chosen_logps", "ref_rejected_logps")
    values = [torch.as_tensor(v) for v in (policy_chosen_logps, policy_rejected_logps, ref_chosen_logps,
                                           ref_rejected_logps)]  # fmt: skip
    for name, v in zip(names, values):
        if not torch.is_floating_point(v) or v.shape != values[0].shape or not torch.isfinite(v).all():
            raise CourseError(
                f"{name} must be finite float log-probabilities of the shape of policy_chosen_logps "
                f"({tuple(values[0].shape)}), got dtype {v.dtype}, shape {tuple(v.shape)}"
            )
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not beta > 0:
        raise CourseError(f"beta must be a number > 0 (the KL penalty's weight; DPO used 0.1–0.5), got {beta!r}")
    pi_w, pi_l, ref_w, ref_l = values
    # [dpo-two-ways]
    from_logratios = -F.logsigmoid(beta * ((pi_w - ref_w) - (pi_l - ref_l)))
    reward_w, reward_l = beta * (pi_w - ref_w), beta * (pi_l - ref_l)  # the implicit rewards, up to β log Z(x)
    from_reward_form = -(reward_w - torch.logsumexp(torch.stack([reward_w, reward_l]), dim=0))  # −log P(y_w ≻ y_l)
    # [/dpo-two-ways]
    return from_logratios, from_reward_form

"""Discrete prompts (chapter 04): templates, verbalisers, cloze scoring, prompt search and generation prompts.

A discrete prompt turns a classification task into language modelling (Schick & Schütze 2021, PET):

    x = "a gripping, funny film"  ──Template──▶  "a gripping, funny film It was {mask}."
    label "positive"  ──Verbalizer──▶  the word(s) "great" (or ["great", "good"])
    score(label) = log P(verbaliser word | prompt)   under a frozen LM
    prediction   = argmax over labels

* :class:`Template` holds a pattern with ``{text}`` (or ``{premise}`` and ``{hypothesis}``) and an
  optional ``{mask}`` answer slot; :class:`Verbalizer` maps each label to one or more words.
* :func:`causal_word_scores` scores every verbaliser word after the prompt with a causal LM (GPT-2):
  the sum (or mean) of the word's token log-probs by the chain rule — never only its first token.
* :func:`cloze_word_scores` scores words at ``[MASK]`` with a masked LM (BERT), PET style: a word of
  k tokens gets k ``[MASK]`` tokens, scored in parallel or left to right.
* :func:`grid_predictions` / :func:`grid_outcomes` score every template × verbaliser pair per example;
  :func:`as_grid` is its accuracy table, :func:`prediction_histogram` what each cell answers;
  :func:`greedy_phrase_search` and :func:`autoprompt_search` (Shin et al. 2020) search a prompt on a
  *training* split only; :func:`search_then_evaluate` scores the result on a held-out split afterwards.
* :func:`generate_with_prompt` and :func:`rouge` do "TL;DR:" summarisation scored by ``rouge-score``.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from . import packed
from .errors import LabelWordError, PromptError, TemplateError, check_texts
from .frozen import check_context
from .lm import bos_token_id
from .scoring import REDUCTIONS, accuracy, check_reduction, embed_sentences, reduce_logprobs  # noqa: F401

INPUT_FIELDS = ("text", "premise", "hypothesis")
MASK_FIELD = "mask"
FIELD_SETS = (("text",), ("premise", "hypothesis"))
WORD_POOLING = ("logsumexp", "max", "mean")
MULTI_TOKEN_MODES = ("parallel", "left_to_right")


# --------------------------------------------------------------------------------------------------
# Templates
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Template:
    """A prompt pattern such as ``"Review: {text}\\nSentiment: {mask}"``.

    Placeholders: ``{text}`` for one-text tasks (SST-2, TREC, AG News) or ``{premise}`` and
    ``{hypothesis}`` for pair tasks (CB, RTE), each exactly once; ``{mask}`` (optional, at most once)
    marks where the answer goes. Without ``{mask}`` the answer goes at the end. Write literal braces
    as ``{{`` and ``}}``.
    """

    pattern: str
    name: str = ""
    fields: tuple[str, ...] = field(init=False, default=())
    has_mask: bool = field(init=False, default=False)

    def __post_init__(self):
        if not isinstance(self.pattern, str):
            raise TemplateError(f"a template pattern must be a str, got {type(self.pattern).__name__}")
        try:
            parsed = list(string.Formatter().parse(self.pattern))
        except ValueError as exc:
            raise TemplateError(
                f"template {self.pattern!r} is not a valid pattern ({exc}); write literal braces as '{{{{' and '}}}}'."
            ) from None
        names = [name for _, name, _, _ in parsed if name is not None]
        for name in names:
            if name == "":
                raise TemplateError(
                    f"template {self.pattern!r} has an empty placeholder '{{}}'; name it: "
                    "{text}, {premise}, {hypothesis} or {mask}."
                )
            if name not in INPUT_FIELDS + (MASK_FIELD,):
                raise TemplateError(
                    f"template {self.pattern!r} has an unknown placeholder {{{name}}}; valid placeholders: "
                    "{text}, {premise}, {hypothesis}, {mask}."
                )
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise TemplateError(
                f"template {self.pattern!r} repeats placeholder(s) "
                f"{', '.join('{' + n + '}' for n in repeated)}; use each exactly once."
            )
        inputs = tuple(n for n in INPUT_FIELDS if n in names)
        if inputs not in FIELD_SETS:
            raise TemplateError(
                f"template {self.pattern!r} has input placeholder(s) {list(inputs) or 'none'}; it needs "
                "{text} (one-text tasks) or both {premise} and {hypothesis} (CB, RTE)."
            )
        object.__setattr__(self, "fields", inputs)
        object.__setattr__(self, "has_mask", MASK_FIELD in names)
        if not self.name:
            object.__setattr__(self, "name", self.pattern.replace("\n", "⏎"))

    def _values(self, example: Mapping[str, str]) -> dict[str, str]:
        missing = [f for f in self.fields if f not in example]
        if missing:
            raise TemplateError(
                f"the example has no {missing} field(s) that template {self.name!r} needs; it "
                f"has {sorted(example)}. Use a template with the task's fields {list(example)}."
            )
        for f in self.fields:  # None would become the text "None"; a number, a silent str()
            if not isinstance(example[f], str):
                raise TypeError(
                    f"the example's {f!r} is {example[f]!r} ({type(example[f]).__name__}), not a string; "
                    "drop the row or fill it in before formatting it with a template."
                )
        return {f: example[f].strip() for f in self.fields}

    def split(self, example: Mapping[str, str]) -> tuple[str, str]:
        """(text before the answer slot, text after it) for one example (dict with the template's fields)."""
        values = self._values(example)
        sentinel = "\x00MASK\x00"
        full = self.pattern.format(**values, **({MASK_FIELD: sentinel} if self.has_mask else {}))
        if not self.has_mask:
            return full, ""
        before, after = full.split(sentinel)
        return before, after

    def format(self, example: Mapping[str, str], answer: str = "") -> str:
        """The prompt as a string, with ``answer`` (e.g. ``"[MASK]"`` or a word) in the answer slot."""
        before, after = self.split(example)
        if not answer:
            return before + after
        sep = "" if (not before or before[-1].isspace()) else " "
        return before + sep + answer + after

    def check_task(self, task: str) -> Template:
        """Raise ``TemplateError`` unless the template's fields are the task's text columns; return self."""
        from .data import task_info

        cols = task_info(task).text_columns
        if tuple(cols) != self.fields:
            raise TemplateError(
                f"task {task!r} has fields {list(cols)} but template {self.name!r} uses "
                f"{list(self.fields)}; write the template with " + " and ".join("{" + c + "}" for c in cols) + "."
            )
        return self


# --------------------------------------------------------------------------------------------------
# Verbalisers
# --------------------------------------------------------------------------------------------------
class Verbalizer:
    """Label → one or more words (标签词映射). ``Verbalizer({"negative": "terrible", "positive": ["great", "good"]})``.

    ``label_names`` (e.g. ``ds.features["label"].names``) fixes the label order and catches unknown or
    missing labels; without it the order is the order of ``words``. Every label needs ≥1 non-empty
    word and no word may belong to two labels.
    """

    def __init__(
        self, words: Mapping[str, str | Sequence[str]], label_names: Sequence[str] | None = None, name: str = ""
    ):
        if not isinstance(words, Mapping) or not words:
            raise LabelWordError(
                "a verbaliser needs a non-empty dict label → word(s), e.g. "
                "{'negative': 'terrible', 'positive': 'great'}."
            )
        if label_names is not None:
            label_names = [str(n) for n in label_names]
            unknown = [k for k in words if k not in label_names]
            if unknown:
                raise LabelWordError(f"unknown label(s) {unknown}; the task's labels are {label_names}.")
            missing = [n for n in label_names if n not in words]
            if missing:
                raise LabelWordError(
                    f"label(s) {missing} have no words; give every label of {label_names} at least one word."
                )
        self.labels: list[str] = list(label_names) if label_names is not None else [str(k) for k in words]
        self.words: dict[str, list[str]] = {}
        owner: dict[str, str] = {}
        for label in self.labels:
            ws = words[label]
            ws = [ws] if isinstance(ws, str) else list(ws)
            if not ws:
                raise LabelWordError(f"label {label!r} has an empty word list; give it at least one word.")
            for w in ws:
                if not isinstance(w, str) or not w.strip():
                    raise LabelWordError(f"label {label!r} has an empty word {w!r}; use a real word.")
                key = w.strip().casefold()
                if key in owner and owner[key] != label:
                    raise LabelWordError(
                        f"labels {owner[key]!r} and {label!r} both use the word {w.strip()!r}; "
                        "each word may verbalise one label only."
                    )
                owner[key] = label
            self.words[label] = [w.strip() for w in ws]
        self.name = name or " / ".join("|".join(self.words[lab]) for lab in self.labels)

    @classmethod
    def for_task(cls, task: str, words: Mapping[str, str | Sequence[str]], name: str = "") -> Verbalizer:
        """A verbaliser whose labels are checked against ``task``'s label names."""
        from .data import label_names

        return cls(words, label_names(task), name)

    def __repr__(self) -> str:
        return f"Verbalizer({self.words!r})"

    @property
    def all_words(self) -> list[str]:
        """Every word, label by label (the column order of ``word_scores``)."""
        return [w for lab in self.labels for w in self.words[lab]]

    @property
    def word_label_index(self) -> list[int]:
        """For each word of ``all_words``, the index of its label."""
        return [i for i, lab in enumerate(self.labels) for _ in self.words[lab]]

    def token_ids(self, tokenizer: PreTrainedTokenizerBase, leading_space: bool = True) -> list[list[int]]:
        """Token ids of every word (``all_words`` order); ``leading_space`` tokenizes ``" word"`` (GPT-2).

        Raises ``LabelWordError`` when a word tokenizes to nothing or to the unknown token only, or when
        two labels' words tokenize to the same ids (e.g. ``"Good"``/``"good"`` in an uncased tokenizer).
        """
        out, seen = [], {}
        for w, li in zip(self.all_words, self.word_label_index):
            ids = word_token_ids(tokenizer, w, leading_space)
            key = tuple(ids)
            if key in seen and seen[key] != li:
                raise LabelWordError(
                    f"labels {self.labels[seen[key]]!r} and {self.labels[li]!r} have words that tokenize to the "
                    f"same tokens {tokenizer.convert_ids_to_tokens(ids)}; the model cannot tell them apart — "
                    "choose different words."
                )
            seen[key] = li
            out.append(ids)
        return out

    def aggregate(self, word_scores: torch.Tensor, pooling: str = "logsumexp") -> torch.Tensor:
        """Label scores from word scores: (n, n_words) → (n, n_labels).

        ``"logsumexp"``: log Σ_w P(w) — the label's probability is that of any of its words;
        ``"max"``: its best word; ``"mean"``: the mean log-prob of its words (PET averages).
        """
        if pooling not in WORD_POOLING:
            raise ValueError(f"pooling must be one of {WORD_POOLING}, got {pooling!r}")
        if word_scores.shape[-1] != len(self.all_words):
            raise ValueError(
                f"word_scores has {word_scores.shape[-1]} columns, the verbaliser has {len(self.all_words)} words"
            )
        idx = torch.tensor(self.word_label_index)
        cols = []
        for li in range(len(self.labels)):
            s = word_scores[:, idx == li]  # (n, words of this label)
            cols.append(
                s.logsumexp(-1) if pooling == "logsumexp" else s.max(-1).values if pooling == "max" else s.mean(-1)
            )
        return torch.stack(cols, dim=-1)  # (n, n_labels)


def word_token_ids(tokenizer: PreTrainedTokenizerBase, word: str, leading_space: bool = True) -> list[int]:
    """Token ids of ``word`` (``" " + word`` when ``leading_space``); errors for empty or unknown-only words."""
    ids = tokenizer((" " if leading_space else "") + word, add_special_tokens=False)["input_ids"]
    if not ids:
        raise LabelWordError(
            f"label word {word!r} tokenizes to nothing with {type(tokenizer).__name__} "
            "(it is made of characters the tokenizer drops); use a real word."
        )
    if tokenizer.unk_token_id is not None and all(i == tokenizer.unk_token_id for i in ids):
        raise LabelWordError(
            f"label word {word!r} tokenizes to the unknown token {tokenizer.unk_token!r} only; "
            "the model cannot score it — choose a word in the tokenizer's vocabulary."
        )
    return ids


def examples_of(dataset, fields: Sequence[str]) -> list[dict[str, str]]:
    """Rows of a ``datasets.Dataset`` (or a list of dicts) as dicts holding just ``fields``."""
    if hasattr(dataset, "column_names"):
        cols = {f: dataset[f] for f in fields}
        return [{f: cols[f][i] for f in fields} for i in range(len(dataset))]
    return [{f: row[f] for f in fields} for row in dataset]


# --------------------------------------------------------------------------------------------------
# Scoring with a causal LM
# --------------------------------------------------------------------------------------------------
def _pad_right(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and the attention mask: (batch, width) each."""
    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, s in enumerate(seqs):
        ids[r, : len(s)] = torch.as_tensor(list(s), dtype=torch.long)
        mask[r, : len(s)] = 1
    return ids, mask


def selected_token_logprobs(
    model: PreTrainedModel,
    attention_mask: torch.Tensor,
    rows: torch.Tensor,
    positions: torch.Tensor,
    targets: torch.Tensor,
    *,
    input_ids: torch.Tensor | None = None,
    inputs_embeds: torch.Tensor | None = None,
) -> torch.Tensor:
    """log P(x_pos = target | x_<pos) under a causal LM, only at the (row, position) pairs asked for → (k,).

    Same numbers as ``pt_helpers.lm.token_logprobs`` at those entries, but the LM head (a
    d × vocab matrix) and the softmax over ~50k words run only where a label word is scored, not at
    every position of every sequence — most of the cost of scoring short words after long prompts.
    """
    body, head = model.base_model, model.get_output_embeddings()
    kwargs = dict(attention_mask=attention_mask.to(model.device))
    if inputs_embeds is not None:
        kwargs["inputs_embeds"] = inputs_embeds
    else:
        kwargs["input_ids"] = input_ids.to(model.device)
    check_context(model, attention_mask.shape[1])
    if body is model or head is None:  # no separate head to call: take the full logits
        logits = model(**kwargs).logits[rows, positions - 1]  # (k, vocab)
    else:
        hidden = body(**kwargs).last_hidden_state  # (batch, T, d)
        logits = head(hidden[rows, positions - 1])  # (k, vocab): predicts x_pos
    return F.log_softmax(logits.float(), dim=-1).gather(-1, targets.to(logits.device)[:, None]).squeeze(-1)


@torch.no_grad()
def continuation_logprobs(
    model: PreTrainedModel,
    prompt_ids: Sequence[Sequence[int]],
    word_ids: Sequence[Sequence[int]],
    reduction: str = "sum",
    batch_size: int = 8,
) -> torch.Tensor:
    """log P(word | prompt) for every prompt × word with a causal LM: Σ (or mean) over the word's tokens.

    prompt_ids: n lists (each already starting with BOS); word_ids: m lists → returns (n, m).
    Chapter 03's packed scorer (``packed.score_token_continuations``) with nothing shared but BOS: each prompt runs
    once, followed in the same packed sequence by every word's tokens (a block mask keeps them apart), instead of
    one forward pass of prompt + word per pair (m times fewer prompt positions). ``batch_size`` prompts are packed
    per pass (a few: the pass's attention grows with the square of the packed length).
    """
    check_reduction(reduction)
    if not prompt_ids:
        return torch.zeros(0, len(word_ids))
    bos = prompt_ids[0][0]
    if any(not p or p[0] != bos for p in prompt_ids):
        raise PromptError("every prompt must start with the same BOS token (causal_prompt_ids builds them so)")
    inputs = [list(p[1:]) for p in prompt_ids]
    return packed.score_token_continuations(model, [bos], inputs, word_ids, reduction, batch_size)


def causal_prompt_ids(
    tokenizer: PreTrainedTokenizerBase, template: Template, examples: Sequence[Mapping[str, str]]
) -> tuple[list[list[int]], bool]:
    """BOS + tokens of the text before the answer slot, per example; and whether words need a leading space.

    Trailing spaces of the prompt are dropped (the word carries its own leading space, as GPT-2's BPE
    expects); after a newline the word has no leading space. A causal LM reads left to right, so
    the answer slot must be at the end of the template.
    """
    prompts, newline_end = [], []
    for ex in examples:
        before, after = template.split(ex)
        if after.strip():
            raise TemplateError(
                f"template {template.name!r} has text after {{mask}} ({after!r}); a causal LM "
                "predicts the answer from its left context only — put {mask} at the end, or "
                "score this template with a masked LM (cloze_word_scores)."
            )
        before = before.rstrip(" ")
        newline_end.append(before.endswith("\n"))
        prompts.append([bos_token_id(tokenizer)] + tokenizer(before, add_special_tokens=False)["input_ids"])
    if len(set(newline_end)) > 1:
        raise TemplateError("some prompts end with a newline and some do not; fix the template.")
    return prompts, not (newline_end and newline_end[0])


@torch.no_grad()
def next_token_logprobs(
    model: PreTrainedModel, prompt_ids: Sequence[Sequence[int]], pad_id: int = 0, batch_size: int = 64
) -> torch.Tensor:
    """log P(next token | prompt) over the whole vocabulary, for each prompt → (n, vocab).

    One forward pass per batch of prompts scores *every* one-token word at once.
    """
    out = []
    body, head = model.base_model, model.get_output_embeddings()
    for start in range(0, len(prompt_ids), batch_size):
        chunk = prompt_ids[start : start + batch_size]
        ids, mask = _pad_right(chunk, pad_id)
        check_context(model, ids.shape[1])
        last = torch.tensor([len(p) - 1 for p in chunk])
        kwargs = dict(input_ids=ids.to(model.device), attention_mask=mask.to(model.device))
        if body is model or head is None:
            logits = model(**kwargs).logits[torch.arange(len(chunk)), last]  # (b, vocab)
        else:
            logits = head(body(**kwargs).last_hidden_state[torch.arange(len(chunk)), last])
        out.append(F.log_softmax(logits.float(), dim=-1).cpu())
    return torch.cat(out)  # (n, vocab)


def causal_word_scores(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    template: Template,
    words: Sequence[str],
    examples: Sequence[Mapping[str, str]],
    reduction: str = "sum",
    batch_size: int = 64,
) -> torch.Tensor:
    """log P(word | template(example)) for every example × word under a causal LM → (n, n_words).

    One-token words are read from one next-token distribution per prompt; words of several tokens
    are scored by the chain rule over all their tokens (:func:`continuation_logprobs`), summed
    (``reduction="sum"``) or averaged (``"mean"``) — never by their first token only.
    """
    check_reduction(reduction)
    prompts, space = causal_prompt_ids(tokenizer, template, examples)
    ids = [word_token_ids(tokenizer, w, leading_space=space) for w in words]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out = torch.zeros(len(prompts), len(words))
    single = [j for j, w in enumerate(ids) if len(w) == 1]
    multi = [j for j, w in enumerate(ids) if len(w) > 1]
    if single:
        nxt = next_token_logprobs(model, prompts, pad, batch_size)  # (n, vocab)
        out[:, single] = nxt[:, [ids[j][0] for j in single]]
    if multi:
        out[:, multi] = continuation_logprobs(model, prompts, [ids[j] for j in multi], reduction)
    return out


# --------------------------------------------------------------------------------------------------
# Cloze scoring with a masked LM (PET)
# --------------------------------------------------------------------------------------------------
def cloze_input_ids(
    tokenizer: PreTrainedTokenizerBase, before: str, after: str, n_masks: int
) -> tuple[list[int], list[int]]:
    """``[CLS] before [MASK]×n_masks after [SEP]`` as ids, and the positions of the masks."""
    if tokenizer.mask_token_id is None:
        raise TemplateError(
            f"{type(tokenizer).__name__} has no mask token: cloze prompts need a masked LM tokenizer (BERT family)."
        )
    b = tokenizer(before, add_special_tokens=False)["input_ids"]
    a = tokenizer(after, add_special_tokens=False)["input_ids"]
    ids = [tokenizer.cls_token_id] + b + [tokenizer.mask_token_id] * n_masks + a + [tokenizer.sep_token_id]
    return ids, list(range(1 + len(b), 1 + len(b) + n_masks))


def _mlm_head(model: PreTrainedModel):
    """The masked-LM head that maps hidden states to vocabulary logits (BERT: ``cls``; RoBERTa: ``lm_head``)."""
    for name in ("cls", "lm_head", "vocab_projector"):
        head = getattr(model, name, None)
        if head is not None:
            return head
    return None


@torch.no_grad()
def mlm_logprobs_at(
    model: PreTrainedModel,
    seqs: Sequence[Sequence[int]],
    positions: Sequence[Sequence[int]],
    pad_id: int = 0,
    batch_size: int = 32,
) -> list[torch.Tensor]:
    """log-softmax of a masked LM's logits at the given positions: one (len(positions[i]), vocab) per sequence."""
    out = []
    head = _mlm_head(model)
    for start in range(0, len(seqs), batch_size):
        chunk, where = seqs[start : start + batch_size], positions[start : start + batch_size]
        ids, mask = _pad_right(chunk, pad_id)
        check_context(model, ids.shape[1])
        rows = torch.tensor([r for r, ps in enumerate(where) for _ in ps])
        pos = torch.tensor([p for ps in where for p in ps])
        kwargs = dict(input_ids=ids.to(model.device), attention_mask=mask.to(model.device))
        if head is None or model.base_model is model:
            logits = model(**kwargs).logits[rows, pos]  # (k, vocab)
        else:
            logits = head(model.base_model(**kwargs).last_hidden_state[rows, pos])  # (k, vocab)
        lp = F.log_softmax(logits.float(), dim=-1).cpu()
        out.extend(lp.split([len(ps) for ps in where]))
    return out


def cloze_word_scores(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    template: Template,
    words: Sequence[str],
    examples: Sequence[Mapping[str, str]],
    reduction: str = "sum",
    multi_token: str = "parallel",
    batch_size: int = 32,
) -> torch.Tensor:
    """PET-style cloze scores: a word of k tokens fills k ``[MASK]`` tokens at ``{mask}`` → (n, n_words).

    ``"parallel"``: Σ_j log P(t_j at mask j | all k masks) — one forward pass per k.
    ``"left_to_right"``: Σ_j log P(t_j at mask j | t_<j already filled in, masks after) — k passes,
    a chain-rule-like factorisation (PET's inference fills masks one at a time).
    ``reduction="mean"`` divides by k. A template without ``{mask}`` gets the mask at the end.
    """
    check_reduction(reduction)
    if multi_token not in MULTI_TOKEN_MODES:
        raise ValueError(f"multi_token must be one of {MULTI_TOKEN_MODES}, got {multi_token!r}")
    word_ids = [word_token_ids(tokenizer, w, leading_space=False) for w in words]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    splits = [template.split(ex) for ex in examples]
    scores = torch.zeros(len(examples), len(words))
    if multi_token == "parallel":
        lengths = sorted({len(w) for w in word_ids})
        jobs = [(i, k) for i in range(len(examples)) for k in lengths]
        built = [cloze_input_ids(tokenizer, *splits[i], k) for i, k in jobs]
        lps = mlm_logprobs_at(model, [b[0] for b in built], [b[1] for b in built], pad, batch_size)
        table = dict(zip(jobs, lps))  # (i, k) → (k, vocab)
        for i in range(len(examples)):
            for j, w in enumerate(word_ids):
                lp = table[(i, len(w))]
                scores[i, j] = reduce_logprobs(lp[torch.arange(len(w)), w], torch.tensor(len(w)), reduction)
        return scores
    jobs, built = [], []  # left to right: one input per (example, word, step)
    for i in range(len(examples)):
        for j, w in enumerate(word_ids):
            ids, pos = cloze_input_ids(tokenizer, *splits[i], len(w))
            for step in range(len(w)):
                filled = list(ids)
                for s in range(step):
                    filled[pos[s]] = w[s]
                jobs.append((i, j, pos[step], w[step]))
                built.append(filled)
    lps = mlm_logprobs_at(model, built, [[job[2]] for job in jobs], pad, batch_size)
    for (i, j, _, t), lp in zip(jobs, lps):
        scores[i, j] += lp[0, t]
    if reduction == "mean":
        scores /= torch.tensor([len(w) for w in word_ids], dtype=scores.dtype)
    return scores


# --------------------------------------------------------------------------------------------------
# Accuracy, grids
# --------------------------------------------------------------------------------------------------
def word_scores(
    model, tokenizer, template: Template, words: Sequence[str], examples, method: str = "causal", **kwargs
) -> torch.Tensor:
    """Dispatch to :func:`causal_word_scores` (``method="causal"``) or :func:`cloze_word_scores` (``"cloze"``)."""
    if method == "causal":
        return causal_word_scores(model, tokenizer, template, words, examples, **kwargs)
    if method == "cloze":
        return cloze_word_scores(model, tokenizer, template, words, examples, **kwargs)
    raise ValueError(f"method must be 'causal' or 'cloze', got {method!r}")


def label_scores(
    model,
    tokenizer,
    template: Template,
    verbalizer: Verbalizer,
    examples,
    method: str = "causal",
    pooling: str = "logsumexp",
    **kwargs,
) -> torch.Tensor:
    """Score every label of ``verbalizer`` for every example → (n, n_labels) log-scores."""
    verbalizer.token_ids(tokenizer, leading_space=(method == "causal"))  # raises on bad words
    ws = word_scores(model, tokenizer, template, verbalizer.all_words, examples, method, **kwargs)
    return verbalizer.aggregate(ws, pooling)


def grid_predictions(
    model,
    tokenizer,
    templates: Sequence[Template],
    verbalizers: Sequence[Verbalizer],
    examples,
    method: str = "causal",
    pooling: str = "logsumexp",
    progress: bool = True,
    **kwargs,
) -> np.ndarray:
    """(templates, verbalisers, n) predicted label indices: what cell (t, v) answers on example i.

    Each template is run once for the union of all verbalisers' words, then each verbaliser pools its
    own columns, so the grid costs one scoring pass per template. Kept per example so that two cells can be
    compared paired on the same examples, and each cell's answers counted (:func:`prediction_histogram`).
    """
    from tqdm.auto import tqdm

    for v in verbalizers:
        v.token_ids(tokenizer, leading_space=(method == "causal"))
    union = list(dict.fromkeys(w for v in verbalizers for w in v.all_words))
    out = np.zeros((len(templates), len(verbalizers), len(examples)), dtype=np.int64)
    for ti, t in enumerate(tqdm(templates, desc="templates", disable=not progress)):
        ws = word_scores(model, tokenizer, t, union, examples, method, **kwargs)  # (n, n_union)
        for vi, v in enumerate(verbalizers):
            cols = ws[:, [union.index(w) for w in v.all_words]]
            out[ti, vi] = v.aggregate(cols, pooling).argmax(-1).cpu().numpy()
    return out


def grid_outcomes(
    model,
    tokenizer,
    templates: Sequence[Template],
    verbalizers: Sequence[Verbalizer],
    examples,
    labels: Sequence[int],
    method: str = "causal",
    pooling: str = "logsumexp",
    progress: bool = True,
    **kwargs,
) -> np.ndarray:
    """(templates, verbalisers, n) booleans: is cell (t, v) right on example i? Kept per example so that two
    cells can be compared by a paired test on the same examples (notebook 04, ``stats.split_half_selection``).

    :func:`grid_predictions` compared with the gold labels.
    """
    gold = np.asarray(list(labels))
    if len(gold) != len(examples):
        raise ValueError(f"{len(examples)} examples but {len(gold)} labels")
    preds = grid_predictions(model, tokenizer, templates, verbalizers, examples, method, pooling, progress, **kwargs)
    return preds == gold


def prediction_histogram(predictions: np.ndarray, labels: Sequence[str], cell_names: Sequence[str]) -> pd.DataFrame:
    """Share of examples each cell assigns to each label: rows = cells, columns = labels (+ the top label's share).

    ``predictions``: (cells, n) label indices (a grid's :func:`grid_predictions` reshaped to one row per cell).
    A cell that answers one label for almost every example scores about that label's share of the data —
    the majority baseline when it is the most frequent label — whatever its prompt says.
    """
    preds = np.asarray(predictions)
    if preds.ndim != 2 or preds.shape[0] != len(cell_names):
        raise ValueError(f"predictions must be (cells={len(cell_names)}, n), got shape {preds.shape}")
    counts = np.stack([np.bincount(row, minlength=len(labels)) for row in preds]) / preds.shape[1]
    table = pd.DataFrame(counts, index=list(cell_names), columns=list(labels))
    table["top share"] = table.max(axis=1)
    return table


def as_grid(outcomes: np.ndarray, templates: Sequence[Template], verbalizers: Sequence[Verbalizer]) -> pd.DataFrame:
    """The accuracy table (rows: template names, columns: verbaliser names) of a (T, V, n) outcome array."""
    return pd.DataFrame(
        np.asarray(outcomes).mean(-1), index=[t.name for t in templates], columns=[v.name for v in verbalizers]
    )


def spread(grid: pd.DataFrame) -> float:
    """Best minus worst accuracy over all cells of a prompt grid."""
    values = np.asarray(grid, dtype=float)
    return float(np.nanmax(values) - np.nanmin(values))


# --------------------------------------------------------------------------------------------------
# Prompt search on a training split
# --------------------------------------------------------------------------------------------------
@dataclass
class SearchResult:
    """What a search found: the template, its training accuracy, and the history of accepted steps."""

    template: Template
    train_accuracy: float
    history: list[dict] = field(default_factory=list)
    trigger_ids: list[int] | None = None


def objective(scores: torch.Tensor, labels: Sequence[int]) -> tuple[float, float]:
    """(accuracy, mean log P(gold label) after a softmax over labels) — the search's sort key."""
    labels = torch.as_tensor(list(labels))
    ll = scores.log_softmax(-1).gather(-1, labels[:, None]).mean().item()
    return accuracy(scores, labels), ll


def greedy_phrase_search(
    model,
    tokenizer,
    verbalizer: Verbalizer,
    train_examples,
    train_labels: Sequence[int],
    phrases: Sequence[str],
    n_steps: int = 2,
    base: str = "{text}",
    method: str = "causal",
    pooling: str = "logsumexp",
    progress: bool = True,
    **kwargs,
) -> SearchResult:
    """Grow a template ``base + phrase_1 + … + {mask}`` one phrase at a time, on the training split only.

    Each step tries every unused phrase and keeps the one with the best (accuracy, mean gold-label
    log-prob) on ``train_examples``; it stops early when no phrase improves. Returns the template and
    the history of its training scores.
    """
    from tqdm.auto import tqdm

    chosen: list[str] = []

    def build(parts):
        return Template(" ".join([base, *parts, "{mask}"]))

    def evaluate(t):
        return objective(
            label_scores(model, tokenizer, t, verbalizer, train_examples, method, pooling, **kwargs), train_labels
        )

    best = evaluate(build(chosen))
    history = [dict(step=0, phrase=None, template=build(chosen).pattern, train_accuracy=best[0], train_loglik=best[1])]
    for step in tqdm(range(1, n_steps + 1), desc="greedy search", disable=not progress):
        trials = [(evaluate(build(chosen + [p])), p) for p in phrases if p not in chosen]
        if not trials:
            break
        score, phrase = max(trials, key=lambda sp: sp[0])
        if score <= best:
            break
        best, chosen = score, chosen + [phrase]
        history.append(
            dict(
                step=step, phrase=phrase, template=build(chosen).pattern, train_accuracy=score[0], train_loglik=score[1]
            )
        )
    return SearchResult(build(chosen), best[0], history)


def candidate_token_mask(
    tokenizer: PreTrainedTokenizerBase, exclude_ids: Iterable[int] = (), vocab_size: int | None = None
) -> torch.Tensor:
    """(vocab,) bool: tokens allowed as triggers — whole alphabetic words, not special, not excluded.

    For a byte-level BPE (GPT-2) a word token starts with a space (``"Ġthe"``); word pieces such as
    ``"ing"`` or BERT's ``"##ing"`` are left out, so the trigger re-tokenizes to the same ids.
    AutoPrompt also excludes the label words themselves, so the trigger cannot just say the answer.
    """
    vocab = vocab_size or len(tokenizer)
    pieces = tokenizer.convert_ids_to_tokens(list(range(min(vocab, len(tokenizer)))))
    byte_level = any(p is not None and p.startswith("\u0120") for p in pieces[:5000])
    special = set(tokenizer.all_special_ids)
    allowed = torch.zeros(vocab, dtype=torch.bool)
    for tid, piece in enumerate(pieces):
        if piece is None or tid in special:
            continue
        if byte_level:
            ok = piece.startswith("\u0120") and piece[1:].isascii() and piece[1:].isalpha() and len(piece) > 2
        else:
            ok = piece.isascii() and piece.isalpha() and len(piece) > 1
        allowed[tid] = ok
    excluded = [i for i in set(exclude_ids) if i < vocab]
    if excluded:
        allowed[excluded] = False
    return allowed


def _trigger_batch(tokenizer, train_examples, word_ids, n_trigger, before_fn, pad_id):
    """Right-padded ids for BOS + text + trigger slots + word, for every example × word (example-major)."""
    seqs, trig_rows, trig_pos, rows, pos, tgt = [], [], [], [], [], []
    for ex in train_examples:
        pre = [bos_token_id(tokenizer)] + tokenizer(before_fn(ex), add_special_tokens=False)["input_ids"]
        for w in word_ids:
            r = len(seqs)
            seqs.append(pre + [pad_id] * n_trigger + list(w))
            trig_rows += [r] * n_trigger
            trig_pos += list(range(len(pre), len(pre) + n_trigger))
            for k, t in enumerate(w):
                rows.append(r), pos.append(len(pre) + n_trigger + k), tgt.append(t)
    ids, mask = _pad_right(seqs, pad_id)
    t = torch.tensor
    return dict(
        ids=ids,
        mask=mask,
        trig_rows=t(trig_rows),
        trig_pos=t(trig_pos),
        rows=t(rows),
        pos=t(pos),
        tgt=t(tgt),
        n_rows=len(seqs),
        n_tokens=t([len(w) for w in word_ids] * len(train_examples)),
    )


def _trigger_word_logprobs(model, batch, trigger_embeds, n_examples, n_words):
    """Σ log P(word tokens | text + trigger) for every example × word → (n_examples, n_words)."""
    emb = model.get_input_embeddings()
    x = emb(batch["ids"].to(model.device))  # (rows, T, d)
    where = (batch["trig_rows"].to(x.device), batch["trig_pos"].to(x.device))
    x = x.index_put(where, trigger_embeds.repeat(batch["n_rows"], 1))
    lp = selected_token_logprobs(
        model, batch["mask"], batch["rows"], batch["pos"], batch["tgt"], inputs_embeds=x
    )  # (word tokens,)
    owner = torch.repeat_interleave(torch.arange(batch["n_rows"]), batch["n_tokens"])
    per_row = torch.zeros(batch["n_rows"], dtype=lp.dtype).index_add(0, owner, lp.cpu())
    return per_row.view(n_examples, n_words)


AUTOPROMPT_CHUNK = 4  # training examples per forward/backward pass of the search (bounds peak memory)


def autoprompt_search(
    model,
    tokenizer,
    verbalizer: Verbalizer,
    train_examples,
    train_labels: Sequence[int],
    n_trigger: int = 3,
    n_iterations: int = 6,
    n_candidates: int = 10,
    base: str = "{text}",
    init_token: str = " the",
    seed: int = 0,
    progress: bool = True,
    chunk_size: int = AUTOPROMPT_CHUNK,
) -> SearchResult:
    """AutoPrompt (Shin et al. 2020) on a causal LM: template ``base [T]…[T] {mask}``, triggers searched on train.

    Each iteration picks a trigger position, computes the gradient of the loss
    L = −mean log softmax_labels(score)[gold] with respect to the one-hot vector of the token there,
    takes the ``n_candidates`` tokens with the largest first-order decrease −(e_v·∇), re-scores each
    candidate *exactly* on the training batch, and keeps the best one if it lowers the loss.
    Label words are pooled with log-sum-exp; only the training examples are ever read.

    The loss is a mean over examples, so the gradient is accumulated over chunks of ``chunk_size``
    examples: the same gradient (up to float32 summation order), with activations of one chunk alive
    at a time instead of the whole batch (at GPT-2 size, 24 examples at once held ~2.5 GB).
    """
    from tqdm.auto import tqdm

    gen = torch.Generator().manual_seed(seed)
    base_t = Template(base + " {mask}")
    word_ids = verbalizer.token_ids(tokenizer, leading_space=True)
    label_of_word = torch.tensor(verbalizer.word_label_index)
    W = model.get_input_embeddings().weight  # (vocab, d)
    allowed = candidate_token_mask(tokenizer, [t for w in word_ids for t in w], W.shape[0])
    init = word_token_ids(tokenizer, init_token.strip(), leading_space=init_token.startswith(" "))[0]
    triggers = [init] * n_trigger
    labels = torch.as_tensor(list(train_labels))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    if chunk_size < 1:
        raise PromptError(f"chunk_size must be at least 1 training example, got {chunk_size}")
    before = lambda ex: base_t.split(ex)[0].rstrip(" ")  # noqa: E731
    starts = range(0, len(train_examples), chunk_size)
    batches = [  # (start, batch of examples start … start + chunk_size − 1)
        (a, _trigger_batch(tokenizer, train_examples[a : a + chunk_size], word_ids, n_trigger, before, pad))
        for a in starts
    ]

    def label_scores_of(scores_words):  # (n, n_words) → (n, n_labels)
        return torch.stack(
            [scores_words[:, label_of_word == li].logsumexp(-1) for li in range(len(verbalizer.labels))], -1
        )

    def summed_loss(lab, gold):  # Σ over examples of −log softmax_labels[gold]
        return -lab.log_softmax(-1).gather(-1, gold[:, None]).sum()

    def chunk_scores(a, b, trigger_embeds):
        n = len(train_examples[a : a + chunk_size])
        return label_scores_of(_trigger_word_logprobs(model, b, trigger_embeds, n, len(word_ids)))

    def exact(trig):
        with torch.no_grad():
            lab = torch.cat([chunk_scores(a, b, W[trig]) for a, b in batches])
            return summed_loss(lab, labels) / len(labels), lab

    loss, lab = exact(triggers)
    history = [
        dict(
            iteration=0,
            triggers=tokenizer.decode(triggers),
            train_loss=loss.item(),
            train_accuracy=accuracy(lab, labels),
        )
    ]
    requires = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        for it in tqdm(range(1, n_iterations + 1), desc="AutoPrompt", disable=not progress):
            # [autoprompt-step]
            pos = int(torch.randint(n_trigger, (1,), generator=gen))
            one_hot = F.one_hot(torch.tensor(triggers), W.shape[0]).to(W.device, W.dtype).requires_grad_(True)
            for a, b in batches:  # L = mean over examples: accumulate each chunk's share of the gradient
                gold = labels[a : a + chunk_size]
                (summed_loss(chunk_scores(a, b, one_hot @ W), gold) / len(labels)).backward()
            grad = one_hot.grad[pos].cpu()  # (vocab,) = W @ ∂L/∂e_pos
            first_order = (-grad).masked_fill(~allowed, float("-inf"))  # predicted decrease of L
            cands = first_order.topk(n_candidates).indices.tolist()
            trials = []
            for c in cands:
                trial = list(triggers)
                trial[pos] = c
                trials.append((exact(trial), trial))
            (c_loss, c_lab), c_trig = min(trials, key=lambda t: t[0][0].item())
            if c_loss.item() < loss.item():
                triggers, loss, lab = c_trig, c_loss, c_lab
            # [/autoprompt-step]
            history.append(
                dict(
                    iteration=it,
                    position=pos,
                    triggers=tokenizer.decode(triggers),
                    train_loss=loss.item(),
                    train_accuracy=accuracy(lab, labels),
                )
            )
    finally:
        for p, r in zip(model.parameters(), requires):
            p.requires_grad_(r)
    pattern = base + tokenizer.decode(triggers).replace("{", "{{").replace("}", "}}") + " {mask}"
    return SearchResult(Template(pattern, name=f"AutoPrompt: {pattern!r}"), accuracy(lab, labels), history, triggers)


def search_then_evaluate(
    search: Callable[[list, list], SearchResult],
    train_examples,
    train_labels,
    heldout_examples,
    heldout_labels,
    score: Callable[[Template, list], torch.Tensor],
) -> dict:
    """Run ``search(train_examples, train_labels)`` first, then score its template on the held-out split.

    The search function only receives the training split, so it cannot peek at the evaluation split;
    the held-out split is read only after the search has returned.
    """
    result = search(list(train_examples), list(train_labels))
    train_acc = accuracy(score(result.template, list(train_examples)), train_labels)
    heldout_acc = accuracy(score(result.template, list(heldout_examples)), list(heldout_labels))
    return dict(
        template=result.template,
        train_accuracy=train_acc,
        heldout_accuracy=heldout_acc,
        gap=train_acc - heldout_acc,
        result=result,
    )


# --------------------------------------------------------------------------------------------------
# Real weights without an LM head: an embedding-similarity verbaliser (MiniLM)
# --------------------------------------------------------------------------------------------------
def mean_pooled_embeddings(model, tokenizer, texts: Sequence[str], batch_size: int = 32) -> torch.Tensor:
    """Sentence embeddings by masked mean pooling + L2 normalisation (sentence-transformers' recipe) → (n, d);
    ``scoring.embed_sentences`` with the encoder's whole window (512 tokens) so long AG News texts are not cut."""
    return embed_sentences(model, tokenizer, texts, batch_size=batch_size, max_length=512)


def embedding_label_scores(
    model,
    tokenizer,
    template: Template,
    verbalizer: Verbalizer,
    examples,
    batch_size: int = 32,
    prompt_embeddings: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cosine similarity between the embedding of ``template(example)`` and each label word → (n, n_labels).

    A verbaliser for encoders without an LM head: a label's score is its best word's similarity.
    The template changes the text that is embedded, so template sensitivity can be measured on real
    weights. Pass ``prompt_embeddings`` (n, d) to reuse the embedded prompts across verbalisers.
    """
    if prompt_embeddings is None:
        prompt_embeddings = mean_pooled_embeddings(
            model, tokenizer, [template.format(ex) for ex in examples], batch_size
        )  # (n, d)
    w = mean_pooled_embeddings(model, tokenizer, verbalizer.all_words, batch_size)  # (n_words, d)
    return verbalizer.aggregate(prompt_embeddings @ w.T, pooling="max")


def embedding_grid(
    model,
    tokenizer,
    templates: Sequence[Template],
    verbalizers: Sequence[Verbalizer],
    examples,
    labels: Sequence[int],
    progress: bool = True,
) -> pd.DataFrame:
    """Accuracy of the embedding-similarity verbaliser for every template × verbaliser (prompts embedded once)."""
    from tqdm.auto import tqdm

    acc = np.zeros((len(templates), len(verbalizers)))
    for ti, t in enumerate(tqdm(templates, desc="templates", disable=not progress)):
        e = mean_pooled_embeddings(model, tokenizer, [t.format(ex) for ex in examples])  # (n, d)
        for vi, v in enumerate(verbalizers):
            acc[ti, vi] = accuracy(
                embedding_label_scores(model, tokenizer, t, v, examples, prompt_embeddings=e), labels
            )
    return pd.DataFrame(acc, index=[t.name for t in templates], columns=[v.name for v in verbalizers])


# --------------------------------------------------------------------------------------------------
# Generation prompts
# --------------------------------------------------------------------------------------------------
@torch.no_grad()
def generate_with_prompt(
    model,
    tokenizer,
    template: Template,
    examples,
    max_new_tokens: int = 20,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int = 0,
    stop_at_newline: bool = True,
) -> list[str]:
    """Continue ``template(example)`` (e.g. ``"{text}\\nTL;DR:"``) with greedy decoding or sampling.

    One example at a time (no padding questions); ``seed`` makes sampling reproducible. The output is
    the generated text only, cut at the first newline when ``stop_at_newline``.
    """
    outs = []
    for i, ex in enumerate(examples):
        prompt = template.format(ex).rstrip(" ")
        ids = torch.tensor([[bos_token_id(tokenizer)] + tokenizer(prompt, add_special_tokens=False)["input_ids"]])
        check_context(model, ids.shape[1] + max_new_tokens, "prompt + generated tokens")
        torch.manual_seed(seed + i)
        gen_kwargs = dict(
            do_sample=do_sample,
            max_new_tokens=max_new_tokens,
            pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
        )
        if do_sample:
            gen_kwargs.update(temperature=temperature, top_p=top_p, top_k=0)
        new = model.generate(ids.to(model.device), attention_mask=torch.ones_like(ids).to(model.device), **gen_kwargs)[
            0, ids.shape[1] :
        ]
        text = tokenizer.decode(new, skip_special_tokens=True)
        outs.append(text.split("\n")[0].strip() if stop_at_newline else text.strip())
    return outs


def rouge_per_example(
    predictions: Sequence[str], references: Sequence[str], types: Sequence[str] = ("rouge1", "rouge2", "rougeL")
) -> dict[str, np.ndarray]:
    """ROUGE F1 (Lin 2004) of each prediction against its reference, with Google's ``rouge-score`` package
    (stemming on) → {type: (n,) array}; kept per example so that two summarisers can be compared paired."""
    from rouge_score import rouge_scorer

    predictions, references = check_texts(predictions, "predictions"), check_texts(references, "references")
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    scorer = rouge_scorer.RougeScorer(list(types), use_stemmer=True)
    scores = [scorer.score(ref, pred) for pred, ref in zip(predictions, references)]
    return {t: np.array([s[t].fmeasure for s in scores], dtype=float) for t in types}


def rouge(
    predictions: Sequence[str], references: Sequence[str], types: Sequence[str] = ("rouge1", "rouge2", "rougeL")
) -> dict[str, float]:
    """Mean ROUGE F1 (Lin 2004) with Google's ``rouge-score`` package (stemming on): :func:`rouge_per_example`'s
    mean."""
    return {t: float(v.mean()) for t, v in rouge_per_example(predictions, references, types).items()}


def lead_words(text: str, n_words: int = 8) -> str:
    """The first ``n_words`` words: the 'lead' baseline every summariser must beat."""
    return " ".join(text.split()[:n_words])

"""In-context learning (上下文学习), taught in chapter 03: prompts from demonstrations, cached scoring, calibration.

A frozen causal LM classifies a test input x by scoring each label's verbaliser (标签词映射) after a
prompt built from k demonstrations (Brown et al. 2020):

    prompt = [instruction] demo_1 ⏎⏎ demo_2 ⏎⏎ … demo_k ⏎⏎ "Review: x⏎Sentiment:"
    ŷ      = argmax_c  log P(label_words[c] | prompt)

Every test input shares the same demonstrations, so the naive loop (one forward pass per input × label)
recomputes the shared *context* — instruction and demonstrations, the text every prompt starts with —
n × C times. ("Context", not "prefix": in this course a prefix is only prefix tuning's trained keys/values,
chapter 06.) Zhao et al.'s code does something else again: one pass per input, reading each one-token label's
probability from the top-100 log-probs of that pass, with an extra pass per label missing from the top 100; we
score every label word, all of its tokens, exactly.
:func:`score_label_words_cached` encodes the context once, keeps its key/value cache, and runs only the
short suffixes (test input, then label tokens) on top of it — a batch of inputs packed into one sequence
with a block attention mask and explicit position ids, so the context's keys/values are never copied per
input (the packed scorer, :mod:`pt_helpers.packed`). It returns the same log-probabilities as
:func:`score_label_words_naive` (tested to ≤ 1e-4).

Also here: contextual calibration (Zhao et al. 2021), demonstration choice — random, nearest
neighbours by sentence embeddings (KATE, Liu et al. 2022), random labels (Min et al. 2022) — the
accuracy-vs-k experiment of notebook 03, and its paired comparisons (``compare_paired``, ``compare_runs``:
n, Wilson intervals, a paired test, and "degenerate" when no example separates the two arms).

Tokenization convention: the context, each input and each label word are tokenized *separately* and
concatenated (as :func:`pt_helpers.lm.conditional_logprob` does), with the BOS token in front of the
context. The course's formats put every separator at the *start* of the next piece
(``"\\n\\nReview: …"``), so for them separate and joint tokenization give the same ids.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from . import packed
from .device import float64_on
from .errors import ContextWindowError, CourseError, DemonstrationLeakError, LabelWordError, check_texts
from .frozen import check_model_and_tokenizer, context_length
from .lm import bos_token_id
from .packed import check_lengths
from .scoring import REDUCTIONS, accuracy, as_continuation, check_reduction, embed_sentences, reduce_logprobs  # noqa: F401
from .stats import accuracy_interval, paired_test, pooled_paired_test

if TYPE_CHECKING:
    import pandas as pd

CONTENT_FREE_INPUTS = ("N/A", "", "[MASK]")  # Zhao et al. 2021, §5


# ---------------------------------------------------------------------------------------------------
# Prompt formats and prompt building
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PromptFormat:
    """How one example is written in a prompt, and the verbaliser (one label word per label id).

    An example reads ``input_prefix + text + input_output_sep + output_prefix [+ label word]``;
    demonstrations are joined by ``demo_sep``, which is put at the *start* of the next example.
    Label words carry their leading space (``" Positive"``): they follow ``output_prefix`` directly.
    """

    input_prefix: str
    output_prefix: str
    label_words: tuple[str, ...]
    instruction: str = ""
    input_output_sep: str = "\n"
    demo_sep: str = "\n\n"

    def with_label_words(self, label_words: Sequence[str]) -> PromptFormat:
        """The same format with another verbaliser."""
        return replace(self, label_words=tuple(label_words))


def prompt_format(task: str) -> PromptFormat:
    """The course's prompt format for ``task`` (``"sst2"``, ``"agnews"``, ``"trec"``), from its ``TaskInfo``
    (Zhao et al. 2021, Table 14), label words as continuations (``scoring.as_continuation``)."""
    from .data import TASKS, task_info

    info = task_info(task)
    if not info.icl_label_words:
        raise CourseError(
            f"no prompt format for task {task!r}; formats exist for "
            f"{sorted(t for t, i in TASKS.items() if i.icl_label_words)}. "
            "Build your own with PromptFormat(input_prefix, output_prefix, label_words)."
        )
    return PromptFormat(
        info.icl_input_prefix,
        info.icl_output_prefix,
        tuple(as_continuation(w) for w in info.icl_label_words),
        instruction=info.icl_instruction,
    )


def text_of(example: Any) -> str:
    if isinstance(example, str):
        return example
    if isinstance(example, Mapping):
        return example["text"]
    return example[0]


def as_demos(demonstrations: Iterable[Any]) -> list[tuple[str, int]]:
    """(text, label) pairs from pairs or from dataset rows / dicts with ``text`` and ``label``."""
    out = []
    for d in demonstrations:
        if isinstance(d, Mapping):
            out.append((d["text"], int(d["label"])))
        else:
            text, label = d
            out.append((text, int(label)))
    check_texts([text for text, _ in out], "demonstration texts")
    return out


def format_example(text: str, fmt: PromptFormat, label: int | None = None) -> str:
    """One example: ``"Review: <text>\\nSentiment:"``, plus its label word when ``label`` is given."""
    body = f"{fmt.input_prefix}{text}{fmt.input_output_sep}{fmt.output_prefix}"
    if label is None:
        return body
    if not 0 <= int(label) < len(fmt.label_words):
        raise CourseError(f"label {label} is out of range for {len(fmt.label_words)} label words")
    return body + fmt.label_words[int(label)]


def build_context(demonstrations: Iterable[Any], fmt: PromptFormat) -> str:
    """The shared part of every prompt: instruction and the k labelled demonstrations (may be ``""``)."""
    pieces = ([fmt.instruction] if fmt.instruction else []) + [
        format_example(t, fmt, y) for t, y in as_demos(demonstrations)
    ]
    return fmt.demo_sep.join(pieces)


def build_query(test_example: Any, fmt: PromptFormat, *, after_context: bool = True) -> str:
    """The per-input part: ``demo_sep`` (if something precedes it) + the unlabelled test example.

    ``test_example`` is a string or a row with ``text`` (its ``label``, if any, is never read).
    """
    body = format_example(text_of(test_example), fmt)
    return (fmt.demo_sep + body) if after_context else body


def build_prompt(demonstrations: Iterable[Any], test_example: Any, fmt: PromptFormat) -> str:
    """The full prompt for one test example, ending with ``output_prefix`` (no label): context + query.

    Raises :class:`DemonstrationLeakError` when the test text is one of the demonstrations.
    """
    demos = as_demos(demonstrations)
    check_no_leak(demos, [test_example])
    context = build_context(demos, fmt)
    return context + build_query(test_example, fmt, after_context=bool(context))


def check_examples(test_examples, what: str = "test_examples") -> None:
    """A list of examples, never one string (whose characters would each be scored as an example)."""
    if isinstance(test_examples, (str, bytes)):
        raise TypeError(
            f"{what} must be a list of examples (strings or rows), not one string: wrap it as "
            f"[{str(test_examples)[:30]!r}]"
        )
    if test_examples is None:
        raise TypeError(f"{what} must be a list of examples (strings or rows), got None")
    # the texts themselves: a None (a missing cell) is named with its index here, not met inside .strip()
    check_texts([x if x is None or isinstance(x, str) else text_of(x) for x in test_examples], what)


def build_context_and_queries(
    demonstrations: Iterable[Any], test_examples: Sequence[Any], fmt: PromptFormat
) -> tuple[str, list[str]]:
    """``(context, queries)`` for the cached scorer: ``context + queries[i]`` is the prompt of example i."""
    check_examples(test_examples)
    demos = as_demos(demonstrations)
    check_no_leak(demos, test_examples)
    context = build_context(demos, fmt)
    return context, [build_query(x, fmt, after_context=bool(context)) for x in test_examples]


def check_no_leak(demonstrations: Iterable[Any], test_examples: Iterable[Any]) -> None:
    """Raise :class:`DemonstrationLeakError` if any test text appears among the demonstrations."""
    demo_texts = {t for t, _ in as_demos(demonstrations)}
    leaked = [t for t in map(text_of, test_examples) if t in demo_texts]
    if leaked:
        raise DemonstrationLeakError(
            f"{len(leaked)} test example(s) are also demonstrations (e.g. {leaked[0][:60]!r}), so their "
            "label is in the prompt. Sample demonstrations from the train split, or pass the test texts "
            "as `exclude_texts` to sample_demonstrations."
        )


# ---------------------------------------------------------------------------------------------------
# Tokenization of the pieces
# ---------------------------------------------------------------------------------------------------


def label_word_ids(tokenizer: PreTrainedTokenizerBase, label_words: Sequence[str]) -> list[list[int]]:
    """Token ids of each label word (any number of tokens ≥ 1); empty or identical words are errors."""
    if len(label_words) < 2:
        raise LabelWordError(f"need at least two label words to classify, got {list(label_words)}")
    ids = [tokenizer(w, add_special_tokens=False)["input_ids"] for w in label_words]
    for w, t in zip(label_words, ids):
        if len(t) == 0:
            raise LabelWordError(f"label word {w!r} tokenizes to nothing; use a non-empty word such as ' Positive'.")
    seen: dict[tuple[int, ...], str] = {}
    for w, t in zip(label_words, ids):
        if tuple(t) in seen:
            raise LabelWordError(
                f"label words {seen[tuple(t)]!r} and {w!r} collide: both tokenize to {t} "
                f"{tokenizer.convert_ids_to_tokens(t)}, so no score can tell them apart. Pick distinct words."
            )
        seen[tuple(t)] = w
    return ids


def encode_context(tokenizer: PreTrainedTokenizerBase, context: str) -> list[int]:
    """BOS + the context's tokens (just ``[BOS]`` for an empty context)."""
    ids = tokenizer(context, add_special_tokens=False)["input_ids"] if context else []
    return [bos_token_id(tokenizer)] + ids


def encode_inputs(tokenizer: PreTrainedTokenizerBase, inputs: Sequence[str]) -> list[list[int]]:
    """Token ids of each input (query) string, no special tokens."""
    if isinstance(inputs, str):
        raise TypeError("inputs must be a list of strings, not one string")
    return [tokenizer(x, add_special_tokens=False)["input_ids"] if x else [] for x in inputs]


# ---------------------------------------------------------------------------------------------------
# The naive scorer: every (input, label) pair recomputed from scratch
# ---------------------------------------------------------------------------------------------------


@torch.no_grad()
def score_label_words_naive(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    context: str,
    inputs: Sequence[str],
    label_words: Sequence[str],
    reduction: str = "sum",
    batch_size: int = 8,
    padding_side: str = "left",
) -> torch.Tensor:
    """log P(label_words[c] | context + inputs[i]) by one full forward pass per (input, label) pair.

    The reference the cached scorer must equal. Pairs are batched ``batch_size`` at a time with
    ``padding_side`` padding (``"left"``: position ids restart after the pads; ``"right"``).
    Returns (n_inputs, n_labels) natural-log probabilities, summed (or averaged) over label tokens.
    """
    check_model_and_tokenizer(model, tokenizer, "score_label_words_naive")
    check_reduction(reduction)
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    context_ids = encode_context(tokenizer, context)
    input_ids = encode_inputs(tokenizer, inputs)
    label_ids = label_word_ids(tokenizer, label_words)
    check_lengths(model, len(context_ids), input_ids, label_ids)
    device, pad = model.device, tokenizer.pad_token_id or 0
    pairs = [(i, c) for i in range(len(inputs)) for c in range(len(label_words))]
    out = torch.zeros(len(inputs), len(label_words))
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        seqs = [context_ids + input_ids[i] + label_ids[c] for i, c in chunk]
        width = max(map(len, seqs))
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for r, s in enumerate(seqs):
            sl = slice(width - len(s), width) if padding_side == "left" else slice(0, len(s))
            ids[r, sl], mask[r, sl] = torch.tensor(s), 1
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)  # (b, width)
        # the positions whose logits predict each row's label tokens (padded by repeating the last one)
        n_keep = max(len(label_ids[c]) for _, c in chunk)
        keep = torch.zeros((len(seqs), n_keep), dtype=torch.long)
        for r, ((_, c), s) in enumerate(zip(chunk, seqs)):
            end = width if padding_side == "left" else len(s)  # one past the last token
            pos = torch.arange(end - len(label_ids[c]) - 1, end - 1)
            keep[r] = torch.cat([pos, pos[-1:].expand(n_keep - len(pos))])
        logits = model(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            position_ids=position_ids.to(device),
            logits_to_keep=keep.to(device),
        ).logits.float()  # (b, n_keep, vocab)
        logp = F.log_softmax(logits, dim=-1).cpu()
        for r, (i, c) in enumerate(chunk):
            n_lab = len(label_ids[c])
            lp = logp[r, torch.arange(n_lab), torch.tensor(label_ids[c])]
            out[i, c] = lp.sum() if reduction == "sum" else lp.mean()
    return out


# ---------------------------------------------------------------------------------------------------
# The cached scorer: the context once, then only suffixes
# ---------------------------------------------------------------------------------------------------


@torch.no_grad()
def score_label_words_cached(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    context: str,
    inputs: Sequence[str],
    label_words: Sequence[str],
    reduction: str = "sum",
    batch_size: int = 16,
    progress: bool = False,
) -> torch.Tensor:
    """log P(label_words[c] | context + inputs[i]), computing the shared context only once.

    1. The context (BOS + context tokens, all but its last token) runs once; each layer's keys/values are kept.
    2. A batch of ``batch_size`` inputs is *packed* into one sequence on top of that cache: for each input,
       its segment ``[last context token] + input``, followed by one segment per multi-token label holding
       that label's tokens. A block attention mask lets every token see the whole context, earlier tokens
       of its own segment, and (for a label segment) its own input; position ids restart after the context
       in every input segment and continue from the input's length in its label segments. So each input's
       tokens compute exactly what they would in its own full prompt — without padding, and without
       copying the context's keys/values once per input.
    3. The logits at each input's last token score every label's *first* token (all C labels at once);
       the logits inside a label segment score that label's remaining tokens.

    Multi-token labels are summed over their tokens (``reduction="sum"``: the log-probability of the
    whole word) or averaged (``"mean"``). Returns (n_inputs, n_labels) natural-log probabilities, equal to
    :func:`score_label_words_naive` up to float rounding.
    """
    check_model_and_tokenizer(model, tokenizer, "score_label_words_cached")
    check_reduction(reduction)
    context_ids = encode_context(tokenizer, context)
    input_ids = encode_inputs(tokenizer, inputs)
    label_ids = label_word_ids(tokenizer, label_words)
    return packed.score_token_continuations(model, context_ids, input_ids, label_ids, reduction, batch_size, progress)


# ---------------------------------------------------------------------------------------------------
# Contextual calibration (Zhao et al. 2021)
# ---------------------------------------------------------------------------------------------------


def as_float64(values: torch.Tensor | Sequence) -> torch.Tensor:
    """``values`` as float64, computed where float64 exists: on the tensor's own device, or on the CPU for a device
    without 64-bit floats (Apple's MPS: :func:`pt_helpers.device.float64_on`). Moved first, then cast, so the
    float64 tensor is never made on the device that refuses it; the result stays there (the CPU on MPS)."""
    if isinstance(values, torch.Tensor):
        return values.to(float64_on(values.device)).to(torch.float64)
    return torch.as_tensor(values, dtype=torch.float64)


def label_probs(label_logprobs: torch.Tensor) -> torch.Tensor:
    """p̂: the label scores renormalised over the C labels (a softmax of the log-probs). (n, C) → (n, C).

    In float64 (:func:`as_float64`: on the CPU when the scores sit on MPS)."""
    return torch.softmax(as_float64(label_logprobs), dim=-1)


def content_free_distribution(content_free_logprobs: torch.Tensor) -> torch.Tensor:
    """p_cf: the mean of the label probabilities over content-free inputs, renormalised. (m, C) → (C,).

    As in Zhao et al.'s code: average the raw probabilities P(label | prompt with "N/A"), then normalise.
    Done in log space (logsumexp), so long multi-token labels with tiny probabilities do not underflow.
    """
    lp = as_float64(content_free_logprobs)  # on the CPU when the scores sit on MPS
    if lp.dim() == 1:
        lp = lp.unsqueeze(0)
    if lp.shape[0] == 0 or lp.dim() != 2:
        raise CourseError(
            f"content-free log-probs must be (m ≥ 1, C), got shape {tuple(lp.shape)}: calibration "
            f"needs at least one content-free input, e.g. {list(CONTENT_FREE_INPUTS)}"
        )
    mean_lp = torch.logsumexp(lp, dim=0) - np.log(lp.shape[0])  # log of the mean probability
    return torch.softmax(mean_lp, dim=-1)


def contextual_calibration(label_logprobs: torch.Tensor, content_free_logprobs: torch.Tensor) -> torch.Tensor:
    """Contextual calibration: q ∝ W p̂ with W = diag(p_cf)⁻¹, renormalised so each row sums to 1.

    label_logprobs: (n, C) log-probs of the test inputs; content_free_logprobs: (m, C) log-probs of the
    content-free inputs under the *same* prompt (or a (C,) vector). Returns (n, C) calibrated
    probabilities. Zhao et al. write q = softmax(W p̂ + b) with b = 0; their code takes argmax(W p̂),
    which picks the same label as our renormalised W p̂.
    """
    p_hat = label_probs(label_logprobs)  # (n, C)
    p_cf = content_free_distribution(content_free_logprobs)  # (C,)
    W = torch.diag(1.0 / p_cf)  # (C, C)
    q = p_hat @ W.T  # (n, C): row i is W p̂_i
    return q / q.sum(-1, keepdim=True)


# ---------------------------------------------------------------------------------------------------
# Choosing demonstrations
# ---------------------------------------------------------------------------------------------------


def _pool_rows(pool: Any) -> list[dict]:
    if hasattr(pool, "column_names"):  # a datasets.Dataset
        return [{"text": t, "label": int(y)} for t, y in zip(pool["text"], pool["label"])]
    return [{"text": t, "label": y} for t, y in as_demos(pool)]


def sample_demonstrations(
    pool: Any, k: int, seed: int, *, balanced: bool = False, exclude_texts: Iterable[str] = ()
) -> list[dict]:
    """k demonstrations drawn without replacement from ``pool`` (a Dataset or (text, label) pairs).

    The same ``seed`` always gives the same demonstrations in the same order. ``exclude_texts``
    (e.g. the test texts) are never drawn. ``balanced=True`` cycles through the classes
    (k // C of each, the remainder from randomly chosen classes). Rows: ``{"text", "label", "index"}``.
    """
    if k < 0:
        raise ValueError(f"k must be ≥ 0, got {k}")
    rows = _pool_rows(pool)
    excluded = set(exclude_texts)
    allowed = np.array([i for i, r in enumerate(rows) if r["text"] not in excluded], dtype=int)
    if k > len(allowed):
        raise CourseError(
            f"cannot draw {k} demonstrations from a pool of {len(allowed)} allowed examples "
            "(test texts excluded); lower k or give a larger pool"
        )
    rng = np.random.default_rng(seed)
    if not balanced:
        chosen = rng.choice(allowed, size=k, replace=False)
    else:
        labels = np.array([rows[i]["label"] for i in allowed])
        classes = np.unique(labels)
        per_class = {c: rng.permutation(allowed[labels == c]).tolist() for c in classes}
        order = np.concatenate([rng.permutation(classes) for _ in range(k // len(classes) + 1)])[:k]
        short = {
            int(c): (int((order == c).sum()), len(per_class[c]))
            for c in classes
            if (order == c).sum() > len(per_class[c])
        }
        if short:
            raise CourseError(
                f"a balanced sample of {k} needs more examples of some classes than the pool has "
                f"(class: needed, available) {short}; lower k, use balanced=False, or give a larger pool"
            )
        chosen = [per_class[c].pop() for c in order]
        chosen = rng.permutation(np.array(chosen, dtype=int))
    return [dict(rows[i], index=int(i)) for i in chosen]


def shuffle_demonstrations(demonstrations: Sequence[Any], seed: int) -> list:
    """The same demonstrations in a seeded random order (Lu et al. 2022: order alone moves accuracy)."""
    perm = np.random.default_rng(seed).permutation(len(demonstrations))
    return [demonstrations[i] for i in perm]


def randomize_labels(demonstrations: Sequence[Any], n_labels: int, seed: int) -> list[dict]:
    """Demonstrations whose labels are replaced by labels drawn uniformly at random (Min et al. 2022)."""
    rng = np.random.default_rng(seed)
    return [{"text": t, "label": int(rng.integers(n_labels))} for t, _ in as_demos(demonstrations)]


def nearest_neighbour_indices(
    pool_embeddings: torch.Tensor,
    query_embeddings: torch.Tensor,
    k: int,
    *,
    pool_texts: Sequence[str] | None = None,
    query_texts: Sequence[str] | None = None,
) -> torch.Tensor:
    """KATE (Liu et al. 2022): for each query, the k pool rows with the highest cosine similarity.

    Embeddings: (n_pool, d) and (n_query, d), L2-normalised. The test input itself is never chosen (it
    would leak its label): a pool row whose text equals the query's text (when the texts are given), or
    whose embedding equals the query's (cosine ≥ 1 − 1e-6: the same sentence, even without texts), is
    skipped. Each row of the (n_query, k) result is ordered from least to most similar, so the most similar
    demonstration sits right before the test input (Liu et al.'s "reversed" order).
    """
    if (
        pool_embeddings.dim() != 2
        or query_embeddings.dim() != 2
        or pool_embeddings.shape[1] != query_embeddings.shape[1]
    ):
        raise CourseError(
            f"embeddings must be (n_pool, d) and (n_query, d) with the same d, got "
            f"{tuple(pool_embeddings.shape)} and {tuple(query_embeddings.shape)}"
        )
    if (pool_texts is None) != (query_texts is None):
        raise CourseError("give both pool_texts and query_texts (or neither)")
    sims = (query_embeddings @ pool_embeddings.T).clone()  # (n_query, n_pool)
    sims[sims >= 1 - 1e-6] = -float("inf")  # the query itself, by embedding
    if pool_texts is not None and query_texts is not None:
        where = {}
        for j, t in enumerate(pool_texts):
            where.setdefault(t, []).append(j)
        for i, t in enumerate(query_texts):
            for j in where.get(t, []):
                sims[i, j] = -float("inf")
    usable = int(torch.isfinite(sims).sum(-1).min()) if sims.numel() else 0
    if not 0 <= k <= usable:
        raise CourseError(
            f"cannot choose k = {k} nearest demonstrations: the pool has {pool_embeddings.shape[0]} "
            f"rows, {usable} usable for every query once each query itself is left out; lower k"
        )
    top = sims.topk(k, dim=-1).indices  # most similar first
    return top.flip(-1)


# ---------------------------------------------------------------------------------------------------
# In-context classification: prompt → scores → predictions
# ---------------------------------------------------------------------------------------------------


@dataclass
class ICLScores:
    """Label log-probs of the test inputs and of the content-free inputs under one prompt."""

    logprobs: torch.Tensor  # (n, C)
    content_free_logprobs: torch.Tensor  # (m, C)
    n_demonstrations: int
    context: str

    def predictions(self, calibrate: bool = False) -> torch.Tensor:
        """argmax over labels, before or after contextual calibration. (n,)"""
        scores = contextual_calibration(self.logprobs, self.content_free_logprobs) if calibrate else self.logprobs
        return scores.argmax(-1)


def fit_demonstrations(
    tokenizer: PreTrainedTokenizerBase,
    demonstrations: Sequence[Any],
    test_examples: Sequence[Any],
    fmt: PromptFormat,
    window: int,
    on_overflow: str = "error",
) -> list:
    """The demonstrations that fit ``window`` tokens with the longest test input and label.

    ``on_overflow="error"`` raises :class:`ContextWindowError` with the lengths; ``"drop"`` removes
    demonstrations from the front (farthest from the test input) with a warning until the prompt fits.
    """
    if on_overflow not in ("error", "drop"):
        raise ValueError(f"on_overflow must be 'error' or 'drop', got {on_overflow!r}")
    demos = list(demonstrations)
    longest_label = max(len(t) for t in label_word_ids(tokenizer, fmt.label_words))

    def total(ds):
        context, queries = build_context_and_queries(ds, test_examples, fmt)
        return (len(encode_context(tokenizer, context)), max(len(q) for q in encode_inputs(tokenizer, queries)))

    n_context, n_query = total(demos)
    if n_context + n_query + longest_label <= window:
        return demos
    if on_overflow == "error":
        raise ContextWindowError(
            f"the prompt is {n_context + n_query + longest_label} tokens (context with {len(demos)} demonstrations "
            f"{n_context} + longest input {n_query} + longest label {longest_label}) but the model's context "
            f"window is {window} tokens. Use fewer demonstrations, shorter ones, or on_overflow='drop'."
        )
    original = n_context + n_query + longest_label
    while demos and sum(total(demos)) + longest_label > window:
        demos = demos[1:]
    n_context, n_query = total(demos)
    if n_context + n_query + longest_label > window:
        raise ContextWindowError(
            f"even with no demonstrations the prompt is {n_context + n_query + longest_label} "
            f"tokens, more than the context window of {window}: shorten the test input."
        )
    warnings.warn(
        f"dropped {len(demonstrations) - len(demos)} of {len(demonstrations)} demonstrations: the prompt "
        f"was {original} tokens, the context window is {window}; now {n_context + n_query + longest_label}.",
        stacklevel=2,
    )
    return demos


def score_icl(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    demonstrations: Sequence[Any],
    test_examples: Sequence[Any],
    fmt: PromptFormat,
    *,
    reduction: str = "sum",
    batch_size: int = 16,
    content_free_inputs: Sequence[str] = CONTENT_FREE_INPUTS,
    on_overflow: str = "error",
    progress: bool = False,
) -> ICLScores:
    """Score every test example (and each content-free input) under one k-shot prompt, cached.

    ``demonstrations``: (text, label) pairs or rows; ``test_examples``: strings or rows (labels unread).
    """
    check_model_and_tokenizer(model, tokenizer, "score_icl")
    check_examples(test_examples)
    check_examples(content_free_inputs, "content_free_inputs")
    demos = fit_demonstrations(
        tokenizer,
        demonstrations,
        list(test_examples) + list(content_free_inputs),
        fmt,
        context_length(model),
        on_overflow,
    )
    context, queries = build_context_and_queries(demos, list(test_examples), fmt)
    cf_queries = [build_query(x, fmt, after_context=bool(context)) for x in content_free_inputs]
    lp = score_label_words_cached(
        model,
        tokenizer,
        context,
        queries + cf_queries,
        fmt.label_words,
        reduction=reduction,
        batch_size=batch_size,
        progress=progress,
    )
    n = len(queries)
    return ICLScores(lp[:n], lp[n:], len(demos), context)


def majority_outcomes(train_labels: Sequence[int], test_labels: Sequence[int]) -> tuple[int, np.ndarray]:
    """The label most frequent in the *training* labels, and whether it is right on each test example.

    Chosen on training data (not on the examples it is scored on), so it is a baseline a prompt must beat: a
    classifier that always answers it, without reading the text. Chapter 04 pairs these outcomes with a
    template's (``stats.paired_test``).
    """
    train = np.asarray(list(train_labels))
    if train.size == 0:
        raise CourseError("train_labels is empty: the majority label needs training labels")
    label = int(np.bincount(train).argmax())
    return label, np.asarray(list(test_labels)) == label


def majority_baseline(train_labels: Sequence[int], test_labels: Sequence[int]) -> float:
    """Accuracy of always predicting the most frequent training label (``majority_outcomes``, averaged)."""
    return float(np.mean(majority_outcomes(train_labels, test_labels)[1]))


def accuracy_vs_k(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    train: Any,
    test: Any,
    fmt: PromptFormat,
    ks: Sequence[int] = (0, 1, 2, 4, 8),
    n_demo_sets: int = 5,
    seed: int = 0,
    n_orderings: int = 1,
    random_labels: bool = False,
    batch_size: int = 16,
    progress: bool = True,
) -> pd.DataFrame:
    """Accuracy (raw and calibrated) for each k, over ``n_demo_sets`` seeded demonstration sets and
    ``n_orderings`` orderings of each set. One row per (k, demo_set, ordering); k = 0 has one row.

    ``test``: a Dataset (or rows) with ``text`` and ``label``; demonstrations come from ``train`` and
    never include a test text. ``random_labels=True`` replaces demonstration labels at random.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    test_rows = _pool_rows(test)
    texts, labels = [r["text"] for r in test_rows], [r["label"] for r in test_rows]
    jobs = [
        (k, s, o)
        for k in ks
        for s in (range(1) if k == 0 else range(n_demo_sets))
        for o in (range(1) if k <= 1 else range(n_orderings))
    ]
    rows = []
    for k, s, o in tqdm(jobs, desc="k-shot runs", disable=not progress):
        demos = sample_demonstrations(train, k, seed=seed * 1000 + 10 * k + s, exclude_texts=texts)
        if o:
            demos = shuffle_demonstrations(demos, seed=o)
        if random_labels:
            demos = randomize_labels(demos, len(fmt.label_words), seed=seed * 1000 + 10 * k + s)
        sc = score_icl(model, tokenizer, demos, texts, fmt, batch_size=batch_size)
        raw, cal = sc.predictions(), sc.predictions(calibrate=True)
        rows.append(
            dict(
                k=k,
                demo_set=s,
                ordering=o,
                accuracy=accuracy(raw, labels),
                calibrated_accuracy=accuracy(cal, labels),
                predictions=raw.tolist(),
                calibrated_predictions=cal.tolist(),
                correct=correct_outcomes(raw, labels).tolist(),
                calibrated_correct=correct_outcomes(cal, labels).tolist(),
            )
        )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------------
# Paired comparisons: every ranking with its n, an interval and a paired test on the same examples
# ---------------------------------------------------------------------------------------------------


def correct_outcomes(predictions: Sequence[int] | torch.Tensor, labels: Sequence[int]) -> np.ndarray:
    """0/1 per example: was the prediction right? (n,) — the input of every paired test."""
    pred, gold = np.asarray(torch.as_tensor(predictions)), np.asarray(labels)
    if pred.shape != gold.shape:
        raise CourseError(f"{pred.size} predictions for {gold.size} labels: they must be the same examples")
    return (pred == gold).astype(int)


def compare_paired(
    comparison: str,
    correct_a: Sequence[int],
    correct_b: Sequence[int],
    *,
    names: tuple[str, str] = ("A", "B"),
    predictions_a: Sequence[int] | None = None,
    predictions_b: Sequence[int] | None = None,
    alpha: float = 0.05,
) -> dict:
    """One row of a paired comparison of two methods on the SAME examples.

    Each accuracy with its Wilson interval and n; the difference A − B with McNemar's exact p and the
    interval that matches it (``stats.paired_test``, the course's one paired rule); and a verdict. When no
    example separates the arms (both right, or both wrong, on every example — ``PairedTest.degenerate``), or
    the predictions are identical, the verdict is "degenerate": the data cannot rank them, whatever the two
    accuracies look like.
    """
    a_name, b_name = names
    test = paired_test(correct_a, correct_b)
    acc_a, acc_b = accuracy_interval(correct_a), accuracy_interval(correct_b)
    identical = None
    if predictions_a is not None and predictions_b is not None:
        identical = bool(np.array_equal(np.asarray(predictions_a), np.asarray(predictions_b)))
    if test.degenerate or identical:
        what = "identical predictions" if identical else "the same examples right"
        verdict = f"degenerate: {what}, no example separates them"
    else:
        verdict = test.verdict(names, alpha)
    row = {
        "comparison": comparison,
        "n": test.n,
        f"{a_name} [95% CI]": f"{acc_a.value:.3f} [{acc_a.low:.3f}, {acc_a.high:.3f}]",
        f"{b_name} [95% CI]": f"{acc_b.value:.3f} [{acc_b.low:.3f}, {acc_b.high:.3f}]",
        "Δ [95% CI]": f"{test.difference:+.3f} [{test.low:+.3f}, {test.high:+.3f}]",
        "discordant (A only / B only)": f"{test.only_a} / {test.only_b}",
        "McNemar p": round(test.p_value, 4),
        "verdict": verdict,
        "degenerate": bool(test.degenerate or identical),
    }
    if identical is not None:
        row["identical predictions"] = identical
    return row


def compare_runs(
    runs_a: pd.DataFrame,
    runs_b: pd.DataFrame,
    column_a: str = "correct",
    column_b: str = "correct",
    *,
    names: tuple[str, str] = ("A", "B"),
) -> pd.DataFrame:
    """Paired comparisons of two sets of ``accuracy_vs_k`` runs, run by run.

    Rows are matched on (k, demo_set, ordering): the same demonstrations' texts, the same test examples.
    ``column_a`` / ``column_b`` pick the outcomes (``"correct"`` or ``"calibrated_correct"``), so one
    DataFrame can be compared with itself (raw vs calibrated). Returns one ``compare_paired`` row per run.
    """
    import pandas as pd

    keys = ["k", "demo_set", "ordering"]
    both = runs_a.merge(runs_b, on=keys, suffixes=("_a", "_b"))
    if both.empty:
        raise CourseError("no run of the first set matches a run of the second on (k, demo_set, ordering)")
    pred = {"correct": "predictions", "calibrated_correct": "calibrated_predictions"}
    rows = []
    for _, r in both.iterrows():
        ca = r[f"{column_a}_a"] if f"{column_a}_a" in r else r[column_a]
        cb = r[f"{column_b}_b"] if f"{column_b}_b" in r else r[column_b]
        row = compare_paired(
            f"k={r.k}, set {r.demo_set}" + (f", order {r.ordering}" if r.ordering else ""),
            ca,
            cb,
            names=names,
            predictions_a=r.get(f"{pred[column_a]}_a"),
            predictions_b=r.get(f"{pred[column_b]}_b"),
        )
        rows.append({"k": r.k, **row})
    return pd.DataFrame(rows)


def comparison_verdict(table: pd.DataFrame, names: tuple[str, str] = ("A", "B"), alpha: float = 0.05) -> str:
    """One sentence over the rows of a ``compare_paired`` table: how many comparisons each arm won at the
    table's significance level ``alpha`` (the one ``compare_paired`` used), how many showed no detectable
    difference, how many were degenerate — and how many "wins" chance alone would give over that many tests."""
    n = len(table)
    degenerate = int(table["degenerate"].sum())
    if degenerate == n:
        return (
            f"DEGENERATE: in all {n} paired comparisons {names[0]} and {names[1]} are right on exactly the "
            "same examples; the data cannot rank them, and no conclusion about either follows"
        )
    won = {name: int(table["verdict"].str.startswith(f"{name} higher").sum()) for name in names}
    none = n - degenerate - sum(won.values())
    chance = f" (with no real difference, about {alpha * n:.2g} of {n} tests at p < {alpha:g} happen by chance)"
    return (
        f"of {n} paired comparisons: {names[0]} significantly higher in {won[names[0]]}, {names[1]} in "
        f"{won[names[1]]}, no detectable difference in {none}, degenerate in {degenerate}" + (chance if n > 1 else "")
    )


def runs_with_intervals(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per ``accuracy_vs_k`` run: its n and its raw and calibrated accuracy with the Wilson interval.

    Defined in chapter 03 (every accuracy carries n and an interval)."""
    import pandas as pd

    rows = []
    for r in runs.itertuples():
        raw, cal = accuracy_interval(r.correct), accuracy_interval(r.calibrated_correct)
        rows.append(
            {
                "k": r.k,
                "demo set": r.demo_set,
                "ordering": r.ordering,
                "n": raw.n,
                "accuracy [95% CI]": f"{raw.value:.3f} [{raw.low:.3f}, {raw.high:.3f}]",
                "calibrated [95% CI]": f"{cal.value:.3f} [{cal.low:.3f}, {cal.high:.3f}]",
            }
        )
    return pd.DataFrame(rows)


def compare_pooled(
    comparison: str,
    correct_a: Sequence[Sequence[int]],
    correct_b: Sequence[Sequence[int]],
    *,
    names: tuple[str, str] = ("A", "B"),
    alpha: float = 0.05,
) -> dict:
    """ONE paired comparison pooled over R runs on the same n examples (``stats.pooled_paired_test``).

    ``correct_a`` / ``correct_b``: R lists of n outcomes, run r of A paired with run r of B (repeat one arm's
    outcomes R times to compare every run with one fixed arm, e.g. zero-shot). The row sits beside the per-run
    win count of ``comparison_verdict``: the count says how many single runs the data rank; this test asks
    whether A beats B on average over these runs, the example being the unit. Defined in chapter 03.
    """
    a, b = np.asarray([list(x) for x in correct_a]), np.asarray([list(x) for x in correct_b])
    test = pooled_paired_test(a, b, names=names)
    return {
        "comparison": comparison,
        "runs": test.n_runs,
        "n": test.n,
        f"{names[0]} (mean over runs)": round(test.accuracy_a, 3),
        f"{names[1]} (mean over runs)": round(test.accuracy_b, 3),
        "Δ [95% CI]": f"{test.difference:+.3f} [{test.low:+.3f}, {test.high:+.3f}]",
        "discordant (A only / B only)": f"{test.only_a} / {test.only_b}",
        "p (paired t over examples)": float(f"{test.p_value:.3g}"),
        "verdict": test.verdict(names, alpha),
        "test": test,
    }


def label_word_variants(label_words: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """The verbaliser with and without its leading space, capitalised as given and lower-case.

    Keys name each variant by its words (``"' Positive'"``); the first is ``label_words`` as given.
    Defined in chapter 03 (label-word casing and leading spaces)."""
    bare = [w.strip() for w in label_words]
    variants = {}
    for words in (
        tuple(label_words),
        tuple(" " + w for w in bare),
        tuple(bare),
        tuple(" " + w.lower() for w in bare),
        tuple(w.lower() for w in bare),
    ):
        variants.setdefault(" / ".join(repr(w) for w in words), words)
    return variants


def label_word_tokens(tokenizer: PreTrainedTokenizerBase, fmt: PromptFormat, words: Sequence[str]) -> pd.DataFrame:
    """How the tokenizer cuts each label word, alone and after the prompt's ``output_prefix`` (``"Sentiment:"``).

    "as scored" is what the course's scorers read (the pieces tokenized separately); "in running text" is the
    tokenization of ``output_prefix + word`` as one string, minus the ``output_prefix``'s own tokens. Where the
    two differ, the scored ids are not the ones the model met in its training text. Defined in chapter 03."""
    import pandas as pd

    head = tokenizer(fmt.output_prefix, add_special_tokens=False)["input_ids"]
    rows = []
    for w, ids in zip(words, label_word_ids(tokenizer, words)):
        joint = tokenizer(fmt.output_prefix + w, add_special_tokens=False)["input_ids"]
        running = joint[len(head) :] if joint[: len(head)] == head else None
        rows.append(
            {
                "label word": repr(w),
                "ids (as scored)": ids,
                "tokens": tokenizer.convert_ids_to_tokens(ids),
                "same ids in running text": running == ids,
            }
        )
    return pd.DataFrame(rows)


def findings_json(findings: Mapping[str, Any]) -> dict:
    """A notebook's findings as plain JSON: results of ``pt_helpers.stats`` (dataclasses) become dicts with their
    class name, lists and numbers stay. Used to record a run (``python benchmarks/_notebook_record.py 03`` reads
    the cell tagged ``findings``). Defined in chapter 03."""
    from dataclasses import asdict, is_dataclass

    def plain(x):
        if is_dataclass(x):
            return {"kind": type(x).__name__, **{k: plain(v) for k, v in asdict(x).items()}}
        if isinstance(x, Mapping):
            return {str(k): plain(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [plain(v) for v in x]
        if isinstance(x, (np.integer, np.floating, np.bool_)):
            return x.item()
        return x

    return plain(dict(findings))


def findings_table(findings: Mapping[str, Any]) -> pd.DataFrame:
    """The findings of a run as one table: each accuracy with n and its interval, each test with its numbers and
    the course's verdict wording (``PairedTest.verdict``). Lists and dicts of results give one row per item.
    Defined in chapter 03."""
    import pandas as pd

    from .stats import Accuracy, PooledPairedTest, SpreadTest

    rows = []

    def add(name, x):
        if isinstance(x, Accuracy):
            rows.append({"finding": name, "n": x.n, "value [95% CI]": f"{x.value:.3f} [{x.low:.3f}, {x.high:.3f}]"})
        elif isinstance(x, PooledPairedTest):
            rows.append(
                {
                    "finding": name,
                    "n": f"{x.n} × {x.n_runs} runs",
                    "value [95% CI]": f"Δ {x.difference:+.3f} [{x.low:+.3f}, {x.high:+.3f}]",
                    "p": float(f"{x.p_value:.3g}"),
                    "verdict": x.verdict(),
                }
            )
        elif isinstance(x, SpreadTest):
            rows.append(
                {
                    "finding": name,
                    "n": f"{x.n} × {x.n_variants} variants",
                    "value [95% CI]": f"spread {x.spread:.3f}",
                    "p": float(f"{x.p_value:.3g}"),
                    "verdict": "more than noise (p < 0.05)" if x.p_value < 0.05 else "not more than noise (p ≥ 0.05)",
                }
            )
        elif isinstance(x, Mapping):
            for k, v in x.items():
                add(f"{name}: {k}", v)
        elif isinstance(x, (list, tuple)):
            for i, v in enumerate(x):
                add(f"{name} [{i}]", v)
        else:
            rows.append({"finding": name, "value [95% CI]": str(x)})

    for name, x in findings.items():
        add(name, x)
    return pd.DataFrame(rows)

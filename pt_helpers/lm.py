"""Language-model probability by the chain rule: P(w1..wn) = Π_i P(w_i | w_<i) (taught in chapter 01).

Every function here works on any causal LM (the course's default, SmolLM2-135M-Instruct; GPT-2; any hub
model) and returns natural-log probabilities. The first token of a text has no left context, so we put a
start token in front (``bos_token_id``: ``<|endoftext|>`` for GPT-2 and for SmolLM2, whose tokenizer's own BOS
is the chat-turn marker ``<|im_start|>``): then *every* token of the text gets a conditional probability.

The probability of a *complete* sentence also needs its end: P(w1..wn, end) = Π_i P(w_i | w_<i) ·
P(EOS | w_1..w_n). By default the functions here leave that last factor out (they score the tokens of the
text, as the model's loss on the text does); ``include_eos=True`` appends the EOS token and adds
log P(EOS | BOS, w_1..w_n). Without it, "The movie was" scores at least as high as "The movie was good."
would if it were a prefix: a prefix is never less probable than its continuations.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .errors import CourseError, EmptyTextError, LabelWordError, check_texts
from .frozen import check_context, check_model_and_tokenizer

# The chat turn used to find a tokenizer's chat-turn markers: a token its template writes at every turn.
_PROBE_TURNS = ({"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"})
_TURN_MARKERS: dict[tuple, frozenset[str]] = {}


def chat_turn_markers(tokenizer: PreTrainedTokenizerBase, tokens: Sequence[str]) -> frozenset[str]:
    """Those of ``tokens`` that the tokenizer's chat template writes at every turn (ChatML's ``<|im_start|>``,
    ``<|im_end|>``): each appears at least twice in a rendered two-turn conversation. Empty without a template.

    A token written once (Llama 3's ``<|begin_of_text|>``, Gemma's ``<bos>``) opens the whole text, as it opens
    every document in pretraining; a token written at every turn means "a chat turn starts (ends) here".
    """
    template = getattr(tokenizer, "chat_template", None)
    if not template or not tokens:
        return frozenset()
    key = (template if isinstance(template, str) else repr(template), tuple(tokens))
    if key not in _TURN_MARKERS:
        try:
            rendered = tokenizer.apply_chat_template(list(_PROBE_TURNS), tokenize=False)
        except Exception:  # a template that refuses this conversation (e.g. needs a system turn): no evidence
            rendered = ""
        _TURN_MARKERS[key] = frozenset(t for t in tokens if isinstance(rendered, str) and rendered.count(t) >= 2)
    return _TURN_MARKERS[key]


def bos_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The id that starts a plain text, i.e. conditions its first word: the course's one choice of it.

    BOS, else EOS, else CLS — unless that token is a *chat-turn marker* (``chat_turn_markers``: the chat
    template writes it at every turn). SmolLM2-Instruct's tokenizer (from its GGUF file) names ``<|im_start|>``
    as BOS, which opens every turn of its ChatML template: in front of plain text it says "a chat turn
    starts", not "a document starts". Then the first of EOS, pad and unk that is no turn marker starts the
    text — for SmolLM2 ``<|endoftext|>`` (its unk token, the document separator of SmolLM2's pretraining
    tokenizer). Which one is used changes SmolLM2's log-probabilities and zero-shot accuracy a lot: chapter 01
    measures both, paired (``text_scores`` here; chapter 03's scorer with each start token as its prefix).
    When every candidate is a turn marker, BOS is kept.

    GPT-2 uses ``<|endoftext|>`` for both BOS and EOS. With no BOS (Qwen2's tokenizer has none), the
    end-of-text token conditions the first word, as Qwen's own pretraining documents separate: a text that
    follows ``<|endoftext|>`` is exactly what the model saw at the start of every document.
    """
    first = next(
        (t for t in (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.cls_token_id) if t is not None), None
    )
    if first is None:
        raise ValueError("the tokenizer has no BOS, EOS or CLS token to start a text with")
    pairs = [
        (tokenizer.convert_ids_to_tokens(t), t)
        for t in (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer.unk_token_id)
        if t is not None
    ]
    markers = chat_turn_markers(tokenizer, tuple(tok for tok, _ in pairs))
    if tokenizer.convert_ids_to_tokens(first) not in markers:
        return first
    return next((tid for tok, tid in pairs if tok not in markers), first)


def eos_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The id that ends a plain text (GPT-2: ``<|endoftext|>``, the same id as its BOS). No EOS is a CourseError.

    The same rule as ``bos_token_id``: EOS, unless it is a chat-turn marker. SmolLM2-Instruct's EOS is
    ``<|im_end|>``, which closes a chat turn; a plain text (a document) ends where the next document starts,
    at the start token ``bos_token_id`` chose (``<|endoftext|>``, when that is no turn marker either).
    """
    if tokenizer.eos_token_id is None:
        raise CourseError(
            f"the tokenizer {type(tokenizer).__name__} has no EOS token, so a sentence's end cannot be scored: "
            "use include_eos=False, or a tokenizer with an eos_token"
        )
    eos = int(tokenizer.eos_token_id)
    eos_tok = tokenizer.convert_ids_to_tokens(eos)
    if eos_tok not in chat_turn_markers(tokenizer, (eos_tok,)):
        return eos
    start = bos_token_id(tokenizer)
    start_tok = tokenizer.convert_ids_to_tokens(start)
    return eos if start_tok in chat_turn_markers(tokenizer, (start_tok,)) else start


def start_token(tokenizer: PreTrainedTokenizerBase, start_id: int | None = None) -> int:
    """``start_id`` checked against the vocabulary, or the course's ``bos_token_id`` when it is None."""
    if start_id is None:
        return bos_token_id(tokenizer)
    if isinstance(start_id, bool) or not isinstance(start_id, int) or not 0 <= start_id < len(tokenizer):
        raise CourseError(
            f"start_id must be a token id in [0, {len(tokenizer)}) of this tokenizer, got {start_id!r}; "
            "e.g. tokenizer.bos_token_id, or lm.bos_token_id(tokenizer)"
        )
    return start_id


def encode(
    tokenizer: PreTrainedTokenizerBase,
    text: str,
    *,
    prepend_bos: bool = True,
    append_eos: bool = False,
    start_id: int | None = None,
) -> list[int]:
    """Token ids of ``text``, with exactly one start token (``bos_token_id``, or ``start_id`` when given) in
    front when ``prepend_bos`` and the end token (``eos_token_id``) after it when ``append_eos``.

    The text is tokenized with ``add_special_tokens=False``, so a tokenizer that adds BOS itself (Llama,
    Mistral, Gemma, Phi-3) adds nothing here, and the start token is never doubled. Empty text is an error.
    ``start_id`` exists to compare start tokens (chapter 01); it must be an id of the tokenizer's vocabulary.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if not text.strip():
        raise EmptyTextError("the text is empty: a language model needs at least one token to score.")
    start = start_token(tokenizer, start_id)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if prepend_bos:
        ids = [start] + ids
    if append_eos:
        ids = ids + [eos_token_id(tokenizer)]
    return ids


def token_logprobs(
    model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """log P(x_t | x_<t) for t = 1..T-1.

    input_ids: (batch, T) → returns (batch, T-1); entry [b, t-1] scores token t. Positions where
    ``attention_mask`` is 0 (padding) are set to 0.0 so sums over a row ignore them.
    """
    if input_ids.dim() == 1:
        input_ids = input_ids.unsqueeze(0)
    check_context(model, input_ids.shape[1])
    input_ids = input_ids.to(model.device)
    if attention_mask is not None:
        attention_mask = attention_mask.to(model.device)
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits  # (batch, T, vocab)
    logp = F.log_softmax(logits[:, :-1].float(), dim=-1)  # predicts tokens 1..T-1
    out = logp.gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)  # (batch, T-1)
    if attention_mask is not None:
        out = out * attention_mask[:, 1:].to(out.dtype)
    return out


@torch.no_grad()
def sequence_logprob(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, text: str, *, include_eos: bool = False
) -> float:
    """log P(text) = Σ_i log P(w_i | BOS, w_<i): the chain rule, summed over every token of ``text``.

    ``include_eos=True`` scores the *complete* sentence: it appends EOS and adds the end-of-sequence term
    log P(EOS | BOS, w_1..w_n), so the sum equals −loss × (n + 1) of the sequence BOS w_1..w_n EOS.
    """
    check_model_and_tokenizer(model, tokenizer, "sequence_logprob")
    ids = torch.tensor([encode(tokenizer, text, append_eos=include_eos)])
    return token_logprobs(model, ids).sum().item()


@torch.no_grad()
def conditional_logprob(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompt: str, target: str, reduction: str = "sum"
) -> float:
    """log P(target | prompt): the chain rule over the target's tokens only.

    ``prompt`` and ``target`` are tokenized separately and concatenated, so the boundary between them
    is exactly where you put it. Mind byte-level BPE (GPT-2's, SmolLM2's): the word after a space is a different
    token (GPT-2's ``" positive"``, id 3967) from the word at the start of a text (``"positive"``).
    ``reduction``: ``"sum"`` (the log-probability) or ``"mean"`` (per target token).
    """
    check_model_and_tokenizer(model, tokenizer, "conditional_logprob")
    check_texts([prompt, target], "[prompt, target]")
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    prompt_ids = encode(tokenizer, prompt) if prompt.strip() else [bos_token_id(tokenizer)]
    target_ids = encode(tokenizer, target, prepend_bos=False)
    ids = torch.tensor([prompt_ids + target_ids])
    lp = token_logprobs(model, ids)[0, len(prompt_ids) - 1 :]  # the target's tokens only
    return (lp.sum() if reduction == "sum" else lp.mean()).item()


@torch.no_grad()
def perplexity(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, text: str, *, include_eos: bool = False
) -> float:
    """exp(-(1/n) Σ log P(w_i | w_<i)) over the n tokens of ``text`` (BOS as the first context);
    ``include_eos=True`` adds the end-of-sequence term and averages over n + 1."""
    check_model_and_tokenizer(model, tokenizer, "perplexity")
    lp = token_logprobs(model, torch.tensor([encode(tokenizer, text, append_eos=include_eos)]))
    return math.exp(-lp.mean().item())


def bits_per_token(logprob_sum: float, n_tokens: int) -> float:
    """Average surprisal in bits: −log₂ P per token."""
    return -logprob_sum / (n_tokens * math.log(2))


def label_token_id(tokenizer: PreTrainedTokenizerBase, word: str) -> int:
    """The single token id of ``word`` (include its leading space for byte-level BPE: ``" positive"``).

    Raises ``LabelWordError`` showing the tokens when ``word`` is empty or is more than one token.
    """
    ids = tokenizer(word, add_special_tokens=False)["input_ids"]
    if len(ids) == 0:
        raise LabelWordError(f"label word {word!r} tokenizes to nothing; use a non-empty word.")
    if len(ids) > 1:
        pieces = tokenizer.convert_ids_to_tokens(ids)
        raise LabelWordError(
            f"label word {word!r} is {len(ids)} tokens {pieces}, but one token is required here. "
            "Pick a one-token word (try it with a leading space: byte-level BPE folds it in), or score multi-token "
            "label words with conditional_logprob (one text) or icl.score_label_words_cached (many)."
        )
    return ids[0]


def label_token_ids(tokenizer: PreTrainedTokenizerBase, words: Sequence[str]) -> list[int]:
    """One token id per label word; two labels sharing a token is an error."""
    ids = [label_token_id(tokenizer, w) for w in words]
    if len(set(ids)) < len(ids):
        raise LabelWordError(f"label words {list(words)} collide: two of them are the same token {ids}.")
    return ids


@torch.no_grad()
def surprisal_table(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, text: str, *, include_eos: bool = False
):
    """One row per token of ``text``: its id, its string, log P(token | everything before), surprisal in bits.

    The rows' ``logprob`` column sums to ``sequence_logprob(model, tokenizer, text, include_eos=include_eos)``
    (``include_eos=True`` adds a last row for the EOS token).
    """
    check_model_and_tokenizer(model, tokenizer, "surprisal_table")
    import pandas as pd

    ids = encode(tokenizer, text, append_eos=include_eos)
    lp = token_logprobs(model, torch.tensor([ids]))[0].cpu()  # (n,)
    return pd.DataFrame(
        {
            "position": range(1, len(ids)),
            "token": [repr(tokenizer.convert_tokens_to_string([t])) for t in tokenizer.convert_ids_to_tokens(ids[1:])],
            "id": ids[1:],
            "logprob": lp.numpy(),
            "prob": lp.exp().numpy(),
            "surprisal_bits": (-lp / math.log(2)).numpy(),
        }
    )


# ---------------------------------------------------------------------------------------------------
# Chapter 01's measurements on real weights: real vs shuffled text, and which token starts a text
# ---------------------------------------------------------------------------------------------------


def shuffle_words(text: str, seed: int = 0) -> str:
    """``text`` with its words (split on whitespace) in a seeded random order different from the original.

    Defined in chapter 01: the same words, so the same vocabulary, only the order is lost — what a model
    that knows only word frequencies could not tell apart. A text with fewer than two distinct words cannot
    be reordered: a ``CourseError`` naming it.
    """
    import random

    words = text.split()
    if len(set(words)) < 2:
        raise CourseError(f"cannot shuffle {text!r}: it needs at least two different words")
    rng = random.Random(seed)
    shuffled = list(words)
    while shuffled == words:  # ends: with two distinct words some order differs, and each draw is uniform
        rng.shuffle(shuffled)
    return " ".join(shuffled)


@torch.no_grad()
def text_scores(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], *, start_id: int | None = None
):
    """One row per text: its token count, log P summed over its tokens, log P of its first token, the mean
    log P of the others, and its perplexity — each text after the start token ``start_id`` (default: the
    course's ``bos_token_id``). Defined in chapter 01, which compares start tokens and shuffled texts with it.

    ``logprob`` equals ``sequence_logprob`` and ``perplexity`` equals ``perplexity`` for the default start.
    """
    check_model_and_tokenizer(model, tokenizer, "text_scores")
    check_texts(list(texts), "texts")
    import pandas as pd

    rows = []
    for text in texts:
        # to the CPU before float64: MPS has no float64
        lp = token_logprobs(model, torch.tensor([encode(tokenizer, text, start_id=start_id)]))[0].cpu().double()
        rows.append(
            dict(
                n_tokens=lp.numel(),
                logprob=lp.sum().item(),
                first_logprob=lp[0].item(),  # log P(w_1 | start): all the start token conditions alone
                rest_mean_logprob=lp[1:].mean().item() if lp.numel() > 1 else math.nan,
                perplexity=math.exp(-lp.mean().item()),
            )
        )
    return pd.DataFrame(rows)

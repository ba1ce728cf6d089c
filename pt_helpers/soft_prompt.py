"""Soft prompt tuning (Lester, Al-Rfou & Constant 2021): n trainable vectors in front of a frozen model.

A soft prompt 软提示 is a matrix P ∈ R^{n×d} of *virtual-token* embeddings. The frozen model reads
``[P; E(x)]`` instead of ``E(x)``; only P is trained (提示微调 prompt tuning).

Public API (names are stable; other chapters import them)
---------------------------------------------------------
Prompt and its initialisation
    ``SoftPrompt(n_virtual_tokens, hidden_size, init_embedding=None)``  the n×d parameter; ``.weight``
    ``init_prompt_embedding(model, tokenizer, n, init, *, text=, label_words=, seed=)``  → (n, d) tensor;
        ``init`` ∈ ``INITS`` = ("random", "vocab", "text", "labels")
Wrappers around a frozen model (base weights frozen and kept in eval mode)
    ``SoftPromptCausalLM(model, prompt, share_prompt_cache=True)``  GPT-2 family;
        ``forward(input_ids, attention_mask, labels) -> SoftPromptOutput(logits (B,T,V), loss)``,
        ``generate(input_ids, attention_mask, max_new_tokens)``; with ``share_prompt_cache`` the prompt's
        keys/values are computed once per batch (batch 1) and shared (the speed idea of chapter 05).
    ``SoftPromptEncoder(model, prompt)``  BERT family; ``forward(input_ids, attention_mask)`` →
        ``SoftPromptOutput(hidden (B,T,d) of the real tokens only, attention_mask)``
    ``add_soft_prompt(model, n_virtual_tokens, ...)``  picks one of the two from the model's type.
Classifiers (the chapter's experiments; any of them trains with ``train_classifier``)
    ``LabelSentenceClassifier(encoder, tokenizer, label_sentences, temperature=0.05, prompt=None)``
        frozen sentence encoder (mean pooling); logits (B, C) = cos(embedding, label-sentence embedding) / T.
        ``.encode_texts(texts)`` → (N, d) unit vectors; ``.predict(texts)``; ``.n_trainable``.
    ``SST2_LABEL_SENTENCES``  the two label sentences of the verbaliser 标签词映射.
    ``LabelWordCausalClassifier(model, tokenizer, label_words, template="{text} Sentiment:", prompt=None)``
        causal LM; logits (B, C) = next-token logits of the label words at the last real position.
Training
    ``make_optimizer(params, name="adamw"|"adafactor", lr, weight_decay=0.0)``
    ``train_classifier(classifier, tokenizer, train_texts, train_labels, dev_texts, dev_labels, *,
        epochs, batch_size, lr, optimizer, max_steps, eval_every, patience, seed, amp, warmup_steps,
        lr_schedule, progress)``
        → ``TrainResult(history, dev_accuracy, best_dev_accuracy, best_step, steps, seconds, n_trainable)``;
        restores the best checkpoint on the held-out split it is given (optional early stopping 提前停止).
    ``lr_at(step, total, lr, warmup_steps, schedule)``  linear warm-up, then ``LR_SCHEDULES`` =
        ("constant", "linear", "cosine") decay to 0 at ``total``
    ``evaluate_classifier(classifier, tokenizer, texts, labels, batch_size)`` → accuracy
    ``count_trainable(module)``
Saving and reading a prompt
    ``save_soft_prompt(prompt, path, model, tokenizer, **config)`` → safetensors + JSON config
    ``load_soft_prompt(path, model, tokenizer)`` → SoftPrompt; a different base model, tokenizer or
        hidden size is a clear error (``BaseModelMismatchError``, ``PromptShapeError``).
    ``nearest_tokens(prompt_weight, model, tokenizer, k=5)``, ``prompt_drift(weight, init_weight)``
Errors: ``SoftPromptError`` (a ``CourseError``), ``PromptShapeError``, ``BaseModelMismatchError``;
    too long inputs raise ``pt_helpers.errors.ContextWindowError``.

Layout decisions (each is tested in ``tests/test_soft_prompt.py``)
    * Virtual tokens come *first* and take positions 0..n-1. Real tokens take positions n, n+1, … counted
      over non-padding tokens, so left padding, right padding and no padding give the same numbers
      (padding sits between the prompt and the text in the tensor but is masked and takes no position).
    * Returned logits / hidden states cover the real tokens only: shape (B, T, ·), never (B, n+T, ·).
    * Labels are given for the real tokens only (−100 = ignore); the virtual positions are never scored.
      The first real token is predicted from the last virtual token, exactly as in PEFT.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

from .device import seed_everything
from .errors import ContextWindowError, CourseError
from .models import context_length

INITS = ("random", "vocab", "text", "labels")
OPTIMIZERS = ("adamw", "adafactor")
DEFAULT_INIT_TEXT = "Classify the sentiment of this review"
SST2_LABEL_SENTENCES = ("This is a negative, terrible movie review.",
                        "This is a positive, great movie review.")
FORMAT_VERSION = 1


class SoftPromptError(CourseError):
    """A bad soft-prompt setting (n ≤ 0, unknown init or optimiser, …)."""


class PromptShapeError(SoftPromptError):
    """A prompt whose shape does not fit the model (wrong hidden size, wrong n)."""


class BaseModelMismatchError(SoftPromptError):
    """A saved prompt loaded onto a different base model or tokenizer than it was trained with."""


# ----------------------------------------------------------------------------------------------
# The prompt and its initialisations
# ----------------------------------------------------------------------------------------------

def _check_n(n_virtual_tokens) -> int:
    if not isinstance(n_virtual_tokens, (int, np.integer)) or isinstance(n_virtual_tokens, bool) \
            or n_virtual_tokens <= 0:
        raise SoftPromptError(f"n_virtual_tokens must be a positive integer, got {n_virtual_tokens!r}; "
                              "use e.g. 20 (Lester et al. 2021 used 1–150).")
    return int(n_virtual_tokens)


class SoftPrompt(nn.Module):
    """The only trainable part: ``weight`` of shape (n_virtual_tokens, hidden_size)."""

    def __init__(self, n_virtual_tokens: int, hidden_size: int, init_embedding: torch.Tensor | None = None):
        super().__init__()
        n = _check_n(n_virtual_tokens)
        if init_embedding is None:
            init_embedding = torch.randn(n, hidden_size) * 0.02
        if tuple(init_embedding.shape) != (n, hidden_size):
            raise PromptShapeError(f"init_embedding has shape {tuple(init_embedding.shape)}, "
                                   f"expected ({n}, {hidden_size}) = (n_virtual_tokens, hidden_size)")
        self.weight = nn.Parameter(init_embedding.detach().clone().float())
        self.init = "custom"

    @property
    def n_virtual_tokens(self) -> int:
        return self.weight.shape[0]

    @property
    def hidden_size(self) -> int:
        return self.weight.shape[1]

    def forward(self, batch_size: int = 1) -> torch.Tensor:
        """The prompt repeated over the batch: (batch, n, d) — a view, gradients sum over the batch."""
        return self.weight.unsqueeze(0).expand(batch_size, -1, -1)


def _input_embedding_matrix(model: PreTrainedModel) -> torch.Tensor:
    return model.get_input_embeddings().weight  # (vocab, d)


def _ordinary_token_ids(tokenizer: PreTrainedTokenizerBase, top_k: int = 5000) -> list[int]:
    """Ids of ordinary (non-special, non-[unused]) tokens among the first ``top_k`` that qualify."""
    special = set(tokenizer.all_special_ids)
    vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    ids = [i for i, t in enumerate(vocab) if i not in special and t and not t.startswith("[unused")
           and not t.startswith("<")]
    return ids[:top_k]


def _word_embeddings(model, tokenizer, text: str) -> torch.Tensor:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids:
        raise SoftPromptError(f"the text {text!r} has no tokens; give a non-empty init text")
    return _input_embedding_matrix(model)[torch.tensor(ids)].detach()  # (len, d)


def init_prompt_embedding(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, n_virtual_tokens: int,
                          init: str = "vocab", *, text: str = DEFAULT_INIT_TEXT,
                          label_words: Sequence[str] = ("negative", "positive"), seed: int = 0) -> torch.Tensor:
    """An initial prompt (n, d) built from the model's own input embeddings.

    * ``random``: N(0, σ²) with σ = the standard deviation of the vocabulary embeddings (same scale);
    * ``vocab``: the embeddings of n ordinary tokens sampled (seeded) from the 5,000 most frequent ids;
    * ``text``: the embeddings of the tokens of ``text``, repeated/cut to length n (as PEFT does);
    * ``labels``: the (sub-token mean) embedding of each label word, then sampled vocabulary (Lester).
    """
    n = _check_n(n_virtual_tokens)
    if init not in INITS:
        raise SoftPromptError(f"unknown init {init!r}; choose one of {INITS}")
    emb = _input_embedding_matrix(model).detach().float().cpu()  # (vocab, d)
    gen = torch.Generator().manual_seed(int(seed))
    if init == "random":
        return torch.randn(n, emb.shape[1], generator=gen) * emb.std()
    vocab_ids = _ordinary_token_ids(tokenizer)
    sampled = emb[torch.tensor(vocab_ids)[torch.randperm(len(vocab_ids), generator=gen)[:n]]]
    if init == "vocab":
        return sampled.clone()
    if init == "text":
        words = _word_embeddings(model, tokenizer, text).float().cpu()
        reps = math.ceil(n / words.shape[0])
        return words.repeat(reps, 1)[:n].clone()
    rows = [_word_embeddings(model, tokenizer, " " + w.strip()).float().cpu().mean(0) for w in label_words]
    labels = torch.stack(rows)[:n]
    return torch.cat([labels, sampled[: n - labels.shape[0]]]).clone()


def make_prompt(model, tokenizer, n_virtual_tokens: int, init: str = "vocab", **kwargs) -> SoftPrompt:
    """A ``SoftPrompt`` initialised by ``init_prompt_embedding`` (kwargs: text, label_words, seed)."""
    prompt = SoftPrompt(n_virtual_tokens, _input_embedding_matrix(model).shape[1],
                        init_prompt_embedding(model, tokenizer, n_virtual_tokens, init, **kwargs))
    prompt.init = init
    return prompt.to(_input_embedding_matrix(model).device)


# ----------------------------------------------------------------------------------------------
# Wrappers around frozen models
# ----------------------------------------------------------------------------------------------

@dataclass
class SoftPromptOutput:
    """``logits`` (B, T, V) for a causal LM or ``hidden`` (B, T, d) for an encoder: real tokens only."""

    logits: torch.Tensor | None = None
    loss: torch.Tensor | None = None
    hidden: torch.Tensor | None = None
    attention_mask: torch.Tensor | None = None


def freeze(model: nn.Module) -> nn.Module:
    """Turn off gradients of every parameter of ``model`` and put it in eval mode (no dropout)."""
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def count_trainable(module: nn.Module) -> int:
    """Number of parameters with ``requires_grad`` (shared tensors counted once)."""
    seen, total = set(), 0
    for p in module.parameters():
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


def real_position_ids(attention_mask: torch.Tensor, offset: int) -> torch.Tensor:
    """Positions of the real tokens after ``offset`` virtual ones, counted over non-padding tokens.

    attention_mask: (B, T) of 0/1 → (B, T) long; padding gets ``offset`` (it is masked anyway).
    """
    return (offset + attention_mask.long().cumsum(-1) - 1).clamp(min=offset)


class _FrozenBaseMixin:
    def train(self, mode: bool = True):
        """Train mode for the prompt only: the frozen base model stays in eval mode (no dropout)."""
        super().train(mode)
        self.model.eval()
        return self

    def _check_length(self, n_real: int) -> None:
        total = self.prompt.n_virtual_tokens + n_real
        window = context_length(self.model)
        if total > window:
            raise ContextWindowError(
                f"{self.prompt.n_virtual_tokens} virtual tokens + {n_real} input tokens = {total} > the model's "
                f"context window of {window}; use fewer virtual tokens or truncate the input to "
                f"{window - self.prompt.n_virtual_tokens} tokens.")


def _check_prompt_width(model: PreTrainedModel, prompt: SoftPrompt) -> None:
    d = _input_embedding_matrix(model).shape[1]
    if prompt.hidden_size != d:
        raise PromptShapeError(f"prompt hidden size {prompt.hidden_size} ≠ model hidden size {d}")


class SoftPromptCausalLM(_FrozenBaseMixin, nn.Module):
    """A frozen causal LM (GPT-2 family) reading ``[P; x]``.

    With ``share_prompt_cache=True`` (default) the prompt's keys and values at every layer are computed
    once, for batch size 1 (gradients flow), and expanded over the batch as a ``DynamicCache``: the
    virtual tokens come first, so in a causal model they never see the input and are the same for every
    example. ``False`` concatenates ``[P; E(x)]`` per example, as PEFT does (same numbers, slower).
    """

    def __init__(self, model: PreTrainedModel, prompt: SoftPrompt, share_prompt_cache: bool = True):
        super().__init__()
        _check_prompt_width(model, prompt)
        self.model = freeze(model)
        self.prompt = prompt
        self.share_prompt_cache = share_prompt_cache

    def prompt_cache(self, batch_size: int) -> tuple[DynamicCache, torch.Tensor]:
        """The prompt's per-layer keys/values expanded to ``batch_size`` and the last virtual token's
        logits (1, V) (they predict the first real token)."""
        n = self.prompt.n_virtual_tokens
        out = self.model(inputs_embeds=self.prompt(1), use_cache=True,
                         position_ids=torch.arange(n, device=self.prompt.weight.device).unsqueeze(0),
                         logits_to_keep=1)
        cache = DynamicCache(config=self.model.config)
        for i, layer in enumerate(out.cache.layers):  # keys/values: (1, heads, n, head_dim)
            cache.update(layer.keys.expand(batch_size, -1, -1, -1),
                         layer.values.expand(batch_size, -1, -1, -1), i)
        return cache, out.logits[:, -1]  # (1, V)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None) -> SoftPromptOutput:
        """input_ids, attention_mask, labels: (B, T) → logits (B, T, V) of the real tokens, mean CE loss."""
        B, T = input_ids.shape
        self._check_length(T)
        n = self.prompt.n_virtual_tokens
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        full_mask = torch.cat([attention_mask.new_ones(B, n), attention_mask], 1)  # (B, n+T)
        pos = real_position_ids(attention_mask, n)
        if self.share_prompt_cache:
            cache, last_virtual_logits = self.prompt_cache(B)
            logits = self.model(input_ids=input_ids, attention_mask=full_mask, position_ids=pos,
                                cache=cache, use_cache=True).logits  # (B, T, V)
        else:
            embeds = torch.cat([self.prompt(B), self.model.get_input_embeddings()(input_ids)], 1)
            full_pos = torch.cat([torch.arange(n, device=pos.device).expand(B, n), pos], 1)
            all_logits = self.model(inputs_embeds=embeds, attention_mask=full_mask, position_ids=full_pos).logits
            logits, last_virtual_logits = all_logits[:, n:], all_logits[:1, n - 1]
        loss = None
        if labels is not None:
            # the logits that predict token t: those of the previous real token, or of the last virtual
            # token when t is the first real token (whatever padding sits between them)
            prev_is_real = attention_mask[:, :-1].bool()  # (B, T-1): is token t-1 a real token?
            next_labels = labels[:, 1:].masked_fill(~prev_is_real, -100)
            loss_sum = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), next_labels.flatten(),
                                       ignore_index=-100, reduction="sum")
            first = labels.clone()  # tokens without a real token before them: predicted by the prompt
            first[:, 1:] = first[:, 1:].masked_fill(prev_is_real, -100)
            targets = first[first != -100]
            if targets.numel():
                loss_sum = loss_sum + F.cross_entropy(
                    last_virtual_logits.float().expand(targets.numel(), -1), targets, reduction="sum")
            loss = loss_sum / (labels != -100).sum().clamp(min=1)
        return SoftPromptOutput(logits=logits, loss=loss, attention_mask=attention_mask)

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                 max_new_tokens: int = 20) -> torch.Tensor:
        """Greedy decoding after ``[P; x]``; pad on the left for batches. Returns (B, max_new_tokens) ids."""
        B, T = input_ids.shape
        self._check_length(T + max_new_tokens)
        n = self.prompt.n_virtual_tokens
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        cache, _ = self.prompt_cache(B)
        mask = torch.cat([attention_mask.new_ones(B, n), attention_mask], 1)
        pos = real_position_ids(attention_mask, n)
        out = self.model(input_ids=input_ids, attention_mask=mask, position_ids=pos, cache=cache, use_cache=True)
        new_tokens = []
        next_pos = pos[:, -1:] + 1
        for _ in range(max_new_tokens):
            token = out.logits[:, -1].argmax(-1, keepdim=True)  # (B, 1)
            new_tokens.append(token)
            mask = torch.cat([mask, mask.new_ones(B, 1)], 1)
            out = self.model(input_ids=token, attention_mask=mask, position_ids=next_pos, cache=out.cache,
                             use_cache=True)
            next_pos = next_pos + 1
        return torch.cat(new_tokens, 1)


class SoftPromptEncoder(_FrozenBaseMixin, nn.Module):
    """A frozen encoder (BERT family) reading ``[P; [CLS] x [SEP]]`` (the prompt before [CLS], as PEFT)."""

    def __init__(self, model: PreTrainedModel, prompt: SoftPrompt):
        super().__init__()
        _check_prompt_width(model, prompt)
        self.model = freeze(model)
        self.prompt = prompt

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                return_prompt_states: bool = False) -> SoftPromptOutput:
        """input_ids, attention_mask: (B, T) → hidden (B, T, d) of the real tokens (or (B, n+T, d))."""
        B, T = input_ids.shape
        self._check_length(T)
        n = self.prompt.n_virtual_tokens
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        embeds = torch.cat([self.prompt(B), self.model.get_input_embeddings()(input_ids)], 1)  # (B, n+T, d)
        mask = torch.cat([attention_mask.new_ones(B, n), attention_mask], 1)
        pos = torch.cat([torch.arange(n, device=input_ids.device).expand(B, n),
                         real_position_ids(attention_mask, n)], 1)
        hidden = self.model(inputs_embeds=embeds, attention_mask=mask, position_ids=pos,
                            token_type_ids=torch.zeros_like(mask)).last_hidden_state
        if return_prompt_states:
            return SoftPromptOutput(hidden=hidden, attention_mask=mask)
        return SoftPromptOutput(hidden=hidden[:, n:], attention_mask=attention_mask)


def add_soft_prompt(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, n_virtual_tokens: int = 20,
                    init: str = "vocab", **kwargs) -> SoftPromptCausalLM | SoftPromptEncoder:
    """Freeze ``model`` and put a new soft prompt in front of it (causal LM or encoder, by its type)."""
    share = kwargs.pop("share_prompt_cache", True)
    prompt = make_prompt(model, tokenizer, n_virtual_tokens, init, **kwargs)
    if getattr(model, "can_generate", lambda: False)() and hasattr(model, "lm_head"):
        return SoftPromptCausalLM(model, prompt, share_prompt_cache=share)
    return SoftPromptEncoder(model, prompt)


# ----------------------------------------------------------------------------------------------
# Classifiers
# ----------------------------------------------------------------------------------------------

def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the token vectors where the mask is 1: (B, T, d), (B, T) → (B, d)."""
    m = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


class LabelSentenceClassifier(nn.Module):
    """A frozen sentence encoder (e.g. all-MiniLM-L6-v2) as a classifier without a head.

    embedding(x) = normalise(mean-pool(encoder([P;] x)))  (B, d);
    logits = embedding(x) · embedding(label sentence_c) / temperature  (B, C), cosine / T.
    The label sentences are embedded once, without the prompt, by the frozen encoder (the verbaliser).
    ``pool_prompt=True`` also averages the virtual tokens' output states into the sentence embedding.
    ``prompt=None`` is the zero-shot classifier; a ``SoftPrompt`` makes it trainable in the prompt only.
    """

    def __init__(self, encoder: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                 label_sentences: Sequence[str] = SST2_LABEL_SENTENCES, temperature: float = 0.05,
                 prompt: SoftPrompt | None = None, pool_prompt: bool = False, max_length: int = 128):
        super().__init__()
        self.tokenizer = tokenizer
        self.encoder = freeze(encoder)
        self.prompted = SoftPromptEncoder(encoder, prompt) if prompt is not None else None
        self.prompt = prompt
        self.temperature = float(temperature)
        self.pool_prompt = pool_prompt
        self.max_length = max_length
        self.label_sentences = list(label_sentences)
        with torch.no_grad():
            self.register_buffer("label_embeddings", self._embed(*self._tokenize(self.label_sentences),
                                                                 use_prompt=False))  # (C, d)

    @property
    def device(self) -> torch.device:
        return _input_embedding_matrix(self.encoder).device

    @property
    def n_trainable(self) -> int:
        return count_trainable(self)

    def _tokenize(self, texts: Sequence[str]):
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        return enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device)

    def _embed(self, input_ids, attention_mask, use_prompt: bool = True) -> torch.Tensor:
        if use_prompt and self.prompted is not None:
            out = self.prompted(input_ids, attention_mask, return_prompt_states=self.pool_prompt)
            hidden, mask = out.hidden, out.attention_mask
        else:
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask
        return F.normalize(mean_pool(hidden.float(), mask), dim=-1)  # (B, d)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, T), (B, T) → logits (B, C)."""
        return self._embed(input_ids, attention_mask) @ self.label_embeddings.T / self.temperature

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str], batch_size: int = 64, use_prompt: bool = True) -> torch.Tensor:
        """Unit-length sentence embeddings (N, d), on the CPU."""
        out = [self._embed(*self._tokenize(texts[i:i + batch_size]), use_prompt=use_prompt).cpu()
               for i in range(0, len(texts), batch_size)]
        return torch.cat(out)

    @torch.no_grad()
    def predict(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Predicted class ids (N,)."""
        return predict_classes(self, self.tokenizer, texts, batch_size)


class LabelWordCausalClassifier(nn.Module):
    """A causal LM as a classifier: logits (B, C) = next-token logits of the label words after the
    template, read at the last real token. ``prompt`` puts a soft prompt in front (shared cache)."""

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                 label_words: Sequence[str] = ("negative", "positive"), template: str = "{text} Sentiment:",
                 prompt: SoftPrompt | None = None, max_length: int = 128):
        super().__init__()
        from .lm import label_token_ids
        self.tokenizer = tokenizer
        self.model = freeze(model)
        self.prompt = prompt
        self.prompted = SoftPromptCausalLM(model, prompt) if prompt is not None else None
        self.template = template
        self.max_length = max_length
        self.register_buffer("label_ids", torch.tensor(label_token_ids(tokenizer, list(label_words))))

    @property
    def device(self) -> torch.device:
        return _input_embedding_matrix(self.model).device

    def _tokenize(self, texts: Sequence[str]):
        side = self.tokenizer.padding_side
        self.tokenizer.padding_side = "left"  # the last column is then every example's last real token
        try:
            enc = self.tokenizer([self.template.format(text=t) for t in texts], padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="pt")
        finally:
            self.tokenizer.padding_side = side
        return enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Left-padded (B, T), (B, T) → logits (B, C)."""
        if self.prompted is not None:
            logits = self.prompted(input_ids, attention_mask).logits
        else:
            pos = real_position_ids(attention_mask, 0)
            logits = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=pos).logits
        return logits[:, -1, self.label_ids].float()

    @torch.no_grad()
    def predict(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        return predict_classes(self, self.tokenizer, texts, batch_size)


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------

def make_optimizer(params, name: str = "adamw", lr: float = 1e-2, weight_decay: float = 0.0):
    """AdamW, or Adafactor as Lester et al. used it (fixed lr, no relative step, no parameter scaling)."""
    params = [p for p in params if p.requires_grad]
    if not params:
        raise SoftPromptError("no trainable parameters: did you freeze everything, prompt included?")
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "adafactor":
        from transformers.optimization import Adafactor
        return Adafactor(params, lr=lr, weight_decay=weight_decay, scale_parameter=False, relative_step=False,
                         warmup_init=False)
    raise SoftPromptError(f"unknown optimizer {name!r}; choose one of {OPTIMIZERS}")


def _tokenize_for(classifier, tokenizer, texts):
    if hasattr(classifier, "_tokenize"):
        return classifier._tokenize(texts)
    enc = tokenizer(list(texts), padding=True, truncation=True, max_length=128, return_tensors="pt")
    dev = next(classifier.parameters()).device
    return enc["input_ids"].to(dev), enc["attention_mask"].to(dev)


def _autocast(device: torch.device, amp: bool):
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


@torch.no_grad()
def predict_classes(classifier, tokenizer, texts: Sequence[str], batch_size: int = 64,
                    amp: bool = True) -> np.ndarray:
    """Argmax class ids (N,) of ``classifier(input_ids, attention_mask) -> (B, C)``."""
    was_training = classifier.training
    classifier.eval()
    device = next(iter(classifier.buffers()), next(classifier.parameters())).device
    preds = []
    for i in range(0, len(texts), batch_size):
        with _autocast(device, amp):
            preds.append(classifier(*_tokenize_for(classifier, tokenizer, texts[i:i + batch_size])).argmax(-1).cpu())
    classifier.train(was_training)
    return torch.cat(preds).numpy()


def evaluate_classifier(classifier, tokenizer, texts: Sequence[str], labels: Sequence[int],
                        batch_size: int = 64) -> float:
    """Accuracy of ``classifier`` on (texts, labels)."""
    return float((predict_classes(classifier, tokenizer, list(texts), batch_size) == np.asarray(labels)).mean())


LR_SCHEDULES = ("constant", "linear", "cosine")


def lr_at(step: int, total: int, lr: float, warmup_steps: int = 0, schedule: str = "constant") -> float:
    """Learning rate of step ``step`` (0-based) out of ``total``: linear warm-up to ``lr`` over
    ``warmup_steps``, then constant, or decaying to 0 at ``total`` (``"linear"`` or ``"cosine"``)."""
    if warmup_steps and step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return lr
    progress = min(1.0, (step - warmup_steps) / max(1, total - warmup_steps))
    if schedule == "linear":
        return lr * (1.0 - progress)
    return lr * 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass
class TrainResult:
    """What ``train_classifier`` returns. ``history``: lists ``step``, ``loss`` (per step), ``eval_step``,
    ``dev_accuracy`` (per evaluation), ``train_accuracy`` (running, per evaluation)."""

    history: dict = field(default_factory=dict)
    dev_accuracy: float = float("nan")       # of the returned (best) parameters
    best_dev_accuracy: float = float("nan")
    best_step: int = 0
    steps: int = 0
    seconds: float = 0.0
    n_trainable: int = 0
    stopped_early: bool = False


def train_classifier(classifier: nn.Module, tokenizer: PreTrainedTokenizerBase, train_texts: Sequence[str],
                     train_labels: Sequence[int], dev_texts: Sequence[str], dev_labels: Sequence[int], *,
                     epochs: float = 1.0, batch_size: int = 32, lr: float = 1e-2, optimizer: str = "adamw",
                     weight_decay: float = 0.0, max_steps: int | None = None, eval_every: int = 50,
                     patience: int | None = None, seed: int = 0, amp: bool = True, warmup_steps: int = 0,
                     lr_schedule: str = "constant", progress: bool = True, desc: str = "training") -> TrainResult:
    """Train the parameters of ``classifier`` that require grad with cross-entropy on (B, C) logits.

    ``classifier(input_ids, attention_mask) -> logits (B, C)`` is any of this module's classifiers (or
    one with the same call). Shuffles with ``seed``; evaluates on ``dev_texts`` (a held-out split: the
    notebooks pass sentences held out from train) every ``eval_every`` steps and at the end; keeps the best
    parameters (restored at the end) and stops after ``patience`` evaluations without improvement. bf16 autocast on CUDA when ``amp``. The lr warms up linearly over ``warmup_steps``,
    then follows ``lr_schedule`` (see ``lr_at``) over the planned number of steps.
    """
    from tqdm.auto import tqdm

    if lr_schedule not in LR_SCHEDULES:
        raise SoftPromptError(f"unknown lr_schedule {lr_schedule!r}; choose one of {LR_SCHEDULES}")
    seed_everything(seed)
    params = [p for p in classifier.parameters() if p.requires_grad]
    opt = make_optimizer(params, optimizer, lr, weight_decay)
    device = next(iter(classifier.buffers()), params[0]).device
    train_texts, train_labels = list(train_texts), torch.as_tensor(list(train_labels))
    steps_per_epoch = math.ceil(len(train_texts) / batch_size)
    total = max_steps if max_steps is not None else max(1, int(round(epochs * steps_per_epoch)))
    gen = torch.Generator().manual_seed(int(seed))
    hist = dict(step=[], loss=[], eval_step=[], dev_accuracy=[], train_accuracy=[])
    best = (-1.0, 0, [p.detach().clone() for p in params])
    bad_evals, correct_run, seen_run, step, stopped = 0, 0, 0, 0, False
    start = time.perf_counter()
    order = torch.randperm(len(train_texts), generator=gen)
    pos = 0
    classifier.train()
    bar = tqdm(total=total, desc=desc, disable=not progress, mininterval=2.0)
    while step < total:
        if pos >= len(order):
            order, pos = torch.randperm(len(train_texts), generator=gen), 0
        idx = order[pos:pos + batch_size]
        pos += batch_size
        ids, mask = _tokenize_for(classifier, tokenizer, [train_texts[i] for i in idx])
        y = train_labels[idx].to(device)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, total, lr, warmup_steps, lr_schedule)
        with _autocast(device, amp):
            logits = classifier(ids, mask)
        loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        correct_run += int((logits.argmax(-1) == y).sum())
        seen_run += len(y)
        hist["step"].append(step)
        hist["loss"].append(loss.item())
        bar.update(1)
        if step % eval_every == 0 or step == total:
            acc = evaluate_classifier(classifier, tokenizer, dev_texts, dev_labels, batch_size=64)
            classifier.train()
            hist["eval_step"].append(step)
            hist["dev_accuracy"].append(acc)
            hist["train_accuracy"].append(correct_run / max(1, seen_run))
            correct_run = seen_run = 0
            bar.set_postfix(loss=f"{loss.item():.3f}", dev=f"{acc:.3f}")
            if acc > best[0]:
                best, bad_evals = (acc, step, [p.detach().clone() for p in params]), 0
            else:
                bad_evals += 1
                if patience is not None and bad_evals >= patience:
                    stopped = True
                    break
    bar.close()
    with torch.no_grad():
        for p, b in zip(params, best[2]):
            p.copy_(b)
    classifier.eval()
    return TrainResult(history=hist, dev_accuracy=best[0], best_dev_accuracy=best[0], best_step=best[1],
                       steps=step, seconds=time.perf_counter() - start, n_trainable=sum(p.numel() for p in params),
                       stopped_early=stopped)


# ----------------------------------------------------------------------------------------------
# Saving, loading, reading a prompt
# ----------------------------------------------------------------------------------------------

def model_fingerprint(model: PreTrainedModel) -> str:
    """A short hash of the model's input-embedding matrix (every 97th row, to stay fast): two different
    checkpoints of the same architecture get different fingerprints."""
    emb = _input_embedding_matrix(model).detach().float().cpu()[::97].contiguous()
    return hashlib.sha256(emb.numpy().tobytes()).hexdigest()[:16]


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """A short hash of the tokenizer's vocabulary (token → id)."""
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    return hashlib.sha256(json.dumps(vocab).encode()).hexdigest()[:16]


def _paths(path) -> tuple[Path, Path]:
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
    return stem.with_suffix(".safetensors"), stem.with_suffix(".json")


def save_soft_prompt(prompt: SoftPrompt, path, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                     **extra) -> tuple[Path, Path]:
    """Write ``<path>.safetensors`` (tensor ``prompt``, (n, d)) and ``<path>.json`` (base model name — pass
    ``base_model="gpt2"`` to name it — and fingerprints, n_virtual_tokens, hidden_size, init, and ``extra``). Returns both paths."""
    from safetensors.torch import save_file
    st_path, json_path = _paths(path)
    st_path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"prompt": prompt.weight.detach().float().cpu().contiguous()}, str(st_path))
    base_model = extra.pop("base_model", None) or getattr(model, "name_or_path", "") or model.config.model_type
    config = dict(format_version=FORMAT_VERSION, base_model=base_model, model_type=model.config.model_type,
                  model_fingerprint=model_fingerprint(model), tokenizer_fingerprint=tokenizer_fingerprint(tokenizer),
                  n_virtual_tokens=prompt.n_virtual_tokens, hidden_size=prompt.hidden_size,
                  init=getattr(prompt, "init", "custom"), **extra)
    json_path.write_text(json.dumps(config, indent=1))
    return st_path, json_path


def load_soft_prompt(path, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                     check_identity: bool = True) -> SoftPrompt:
    """Read a prompt written by ``save_soft_prompt`` and check it belongs to ``model`` and ``tokenizer``."""
    from safetensors.torch import load_file
    st_path, json_path = _paths(path)
    for p in (st_path, json_path):
        if not p.is_file():
            raise SoftPromptError(f"{p} not found: a saved prompt is a .safetensors file plus a .json config "
                                  "next to it (write both with save_soft_prompt).")
    config = json.loads(json_path.read_text())
    tensors = load_file(str(st_path))
    if "prompt" not in tensors:
        raise PromptShapeError(f"{st_path} has no tensor named 'prompt' (found {sorted(tensors)})")
    weight = tensors["prompt"]
    d = _input_embedding_matrix(model).shape[1]
    if weight.dim() != 2 or weight.shape[1] != d:
        raise PromptShapeError(f"the prompt in {st_path} has shape {tuple(weight.shape)}, but this model's "
                               f"hidden size is {d}: it needs an (n, {d}) prompt. Was it trained on another model?")
    if weight.shape[0] != config.get("n_virtual_tokens", weight.shape[0]):
        raise PromptShapeError(f"{st_path} holds {weight.shape[0]} virtual tokens but its config says "
                               f"{config['n_virtual_tokens']}: the two files do not belong together.")
    if check_identity:
        fp = model_fingerprint(model)
        if config.get("model_fingerprint") != fp:
            raise BaseModelMismatchError(
                f"this prompt was trained on base model {config.get('base_model')!r} (fingerprint "
                f"{config.get('model_fingerprint')}), but the model you gave has fingerprint {fp}: a soft prompt "
                "only means something to the exact frozen model it was trained with. Load that model, or "
                "pass check_identity=False if you know what you are doing.")
        tf = tokenizer_fingerprint(tokenizer)
        if config.get("tokenizer_fingerprint") != tf:
            raise BaseModelMismatchError(f"the prompt was saved with a different tokenizer (fingerprint "
                                         f"{config.get('tokenizer_fingerprint')} ≠ {tf}); load the base "
                                         f"model's own tokenizer.")
    prompt = SoftPrompt(weight.shape[0], d, weight).to(_input_embedding_matrix(model).device)
    prompt.init = config.get("init", "custom")
    return prompt


@torch.no_grad()
def nearest_tokens(prompt_weight: torch.Tensor, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                   k: int = 5) -> list[list[tuple[str, float]]]:
    """For each virtual token (n, d), the ``k`` vocabulary tokens with the highest cosine similarity."""
    emb = F.normalize(_input_embedding_matrix(model).detach().float().cpu(), dim=-1)  # (V, d)
    sims = F.normalize(prompt_weight.detach().float().cpu(), dim=-1) @ emb.T  # (n, V)
    vals, ids = sims.topk(k, dim=-1)
    return [[(tokenizer.convert_ids_to_tokens(int(i)), float(v)) for i, v in zip(row_i, row_v)]
            for row_i, row_v in zip(ids, vals)]


@torch.no_grad()
def prompt_drift(weight: torch.Tensor, init_weight: torch.Tensor) -> dict[str, np.ndarray]:
    """How far each virtual token moved from its initial value: cosine, L2 distance, relative L2."""
    w, w0 = weight.detach().float().cpu(), init_weight.detach().float().cpu()
    dist = (w - w0).norm(dim=-1)
    return dict(cosine=F.cosine_similarity(w, w0, dim=-1).numpy(), l2=dist.numpy(),
                relative_l2=(dist / w0.norm(dim=-1).clamp(min=1e-12)).numpy())

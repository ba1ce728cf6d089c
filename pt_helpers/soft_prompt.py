"""Soft prompt tuning (Lester, Al-Rfou & Constant 2021): n trainable vectors in front of a frozen model.

Taught in chapter 05. A soft prompt 软提示 is a matrix P ∈ R^{n×d} of *virtual-token* embeddings. The
frozen model reads ``[P; E(x)]`` instead of ``E(x)``; only P is trained (提示微调 prompt tuning).

``SoftPrompt`` is one adapter of the course's protocol (``pt_helpers.adapters``): it gives the model n input
vectors (``virtual_embeddings``); ``PromptedModel`` runs it on a causal LM (the prompt's keys/values
computed once and shared by the batch) or an encoder (concatenated before ``[CLS]``, as PEFT does).

    SoftPrompt(n_virtual_tokens, hidden_size, init_embedding=None)  the n×d parameter; ``.weight``
    init_prompt_embedding(model, tokenizer, n, init, *, text=, label_words=, seed=)  → (n, d) tensor;
        ``init`` ∈ ``INITS`` = ("random", "vocab", "text", "labels")
    make_prompt(model, tokenizer, n, init, **kwargs)  → SoftPrompt
    add_soft_prompt(model, tokenizer, n, init, **kwargs)  → PromptedModel (frozen model + new prompt)
    nearest_tokens(weight, model, tokenizer, k), prompt_drift(weight, init_weight)

Layout decisions (each is tested in ``tests/test_soft_prompt.py``)
    * Virtual tokens come *first* and take positions 0..n-1. Real tokens take positions n, n+1, … counted
      over non-padding tokens, so left padding, right padding and no padding give the same numbers.
    * Returned logits / hidden states cover the real tokens only: shape (B, T, ·), never (B, n+T, ·).
    * Labels are given for the real tokens only (−100 = ignore); the first real token is predicted from
      the last virtual token, exactly as in PEFT.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .adapters import PromptAdapter, PromptedModel, check_width, register_adapter
from .errors import PromptError, PromptShapeError
from .frozen import check_model_and_tokenizer, input_embeddings

INITS = ("random", "vocab", "text", "labels")
DEFAULT_INIT_TEXT = "Classify the sentiment of this review"


def _check_n(n_virtual_tokens) -> int:
    if (
        not isinstance(n_virtual_tokens, (int, np.integer))
        or isinstance(n_virtual_tokens, bool)
        or n_virtual_tokens <= 0
    ):
        raise PromptError(
            f"n_virtual_tokens must be a positive integer, got {n_virtual_tokens!r}; "
            "use e.g. 20 (Lester et al. 2021 used 1–150)."
        )
    return int(n_virtual_tokens)


@register_adapter
class SoftPrompt(PromptAdapter):
    """The only trainable part: ``weight`` of shape (n_virtual_tokens, hidden_size) — adapter ``"soft"``."""

    method = "soft"

    def __init__(self, n_virtual_tokens: int, hidden_size: int, init_embedding: torch.Tensor | None = None):
        super().__init__()
        n = _check_n(n_virtual_tokens)
        if init_embedding is None:
            init_embedding = torch.randn(n, hidden_size) * 0.02
        if tuple(init_embedding.shape) != (n, hidden_size):
            raise PromptShapeError(
                f"init_embedding has shape {tuple(init_embedding.shape)}, "
                f"expected ({n}, {hidden_size}) = (n_virtual_tokens, hidden_size)"
            )
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

    def virtual_embeddings(self, batch_size: int = 1) -> torch.Tensor:
        return self(batch_size)

    def check_fits(self, model) -> None:
        check_width(model, self.hidden_size, f"the soft prompt ({self.n_virtual_tokens} × {self.hidden_size})")

    def saved_tensors(self) -> dict[str, torch.Tensor]:
        return {"prompt": self.weight.detach().float().cpu().contiguous()}

    def saved_settings(self) -> dict:
        return {"init": self.init}

    @classmethod
    def from_saved(cls, model, tensors, settings) -> SoftPrompt:
        if "prompt" not in tensors:
            raise PromptShapeError(f"a soft prompt checkpoint holds a tensor named 'prompt' (found {sorted(tensors)})")
        weight = tensors["prompt"]
        d = input_embeddings(model).shape[1]
        if weight.dim() != 2 or weight.shape[1] != d:
            raise PromptShapeError(
                f"the saved prompt has shape {tuple(weight.shape)}, but this model's hidden size "
                f"is {d}: it needs an (n, {d}) prompt. Was it trained on another model?"
            )
        prompt = cls(weight.shape[0], d, weight).to(input_embeddings(model).device)
        prompt.init = settings.get("init", "custom")
        return prompt


def _ordinary_token_ids(tokenizer: PreTrainedTokenizerBase, top_k: int = 5000) -> list[int]:
    """Ids of ordinary (non-special, non-[unused]) tokens among the first ``top_k`` that qualify."""
    special = set(tokenizer.all_special_ids)
    vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    ids = [
        i
        for i, t in enumerate(vocab)
        if i not in special and t and not t.startswith("[unused") and not t.startswith("<")
    ]
    return ids[:top_k]


def _word_embeddings(model, tokenizer, text: str) -> torch.Tensor:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids:
        raise PromptError(f"the text {text!r} has no tokens; give a non-empty init text")
    return input_embeddings(model)[torch.tensor(ids)].detach()  # (len, d)


def init_prompt_embedding(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    n_virtual_tokens: int,
    init: str = "vocab",
    *,
    text: str = DEFAULT_INIT_TEXT,
    label_words: Sequence[str] = ("negative", "positive"),
    seed: int = 0,
) -> torch.Tensor:
    """An initial prompt (n, d) built from the model's own input embeddings.

    * ``random``: N(0, σ²) with σ = the standard deviation of the vocabulary embeddings (same scale);
    * ``vocab``: the embeddings of n ordinary tokens sampled (seeded) from the 5,000 most frequent ids;
    * ``text``: the embeddings of the tokens of ``text``, repeated/cut to length n (as PEFT does);
    * ``labels``: the (sub-token mean) embedding of each label word, then sampled vocabulary (Lester).
    """
    check_model_and_tokenizer(model, tokenizer, "init_prompt_embedding")
    n = _check_n(n_virtual_tokens)
    if init not in INITS:
        raise PromptError(f"unknown init {init!r}; choose one of {INITS}")
    emb = input_embeddings(model).detach().float().cpu()  # (vocab, d)
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
    check_model_and_tokenizer(model, tokenizer, "make_prompt")
    prompt = SoftPrompt(
        n_virtual_tokens,
        input_embeddings(model).shape[1],
        init_prompt_embedding(model, tokenizer, n_virtual_tokens, init, **kwargs),
    )
    prompt.init = init
    return prompt.to(input_embeddings(model).device)


def add_soft_prompt(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    n_virtual_tokens: int = 20,
    init: str = "vocab",
    share_prompt_cache: bool = True,
    **kwargs,
) -> PromptedModel:
    """Freeze ``model`` and put a new soft prompt in front of it (kwargs: text, label_words, seed)."""
    return PromptedModel(
        model, make_prompt(model, tokenizer, n_virtual_tokens, init, **kwargs), share_prompt_cache=share_prompt_cache
    )


@torch.no_grad()
def nearest_tokens(
    prompt_weight: torch.Tensor, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, k: int = 5
) -> list[list[tuple[str, float]]]:
    """For each virtual token (n, d), the ``k`` vocabulary tokens with the highest cosine similarity."""
    emb = F.normalize(input_embeddings(model).detach().float().cpu(), dim=-1)  # (V, d)
    sims = F.normalize(prompt_weight.detach().float().cpu(), dim=-1) @ emb.T  # (n, V)
    vals, ids = sims.topk(k, dim=-1)
    return [
        [(tokenizer.convert_ids_to_tokens(int(i)), float(v)) for i, v in zip(row_i, row_v)]
        for row_i, row_v in zip(ids, vals)
    ]


@torch.no_grad()
def prompt_drift(weight: torch.Tensor, init_weight: torch.Tensor) -> dict[str, np.ndarray]:
    """How far each virtual token moved from its initial value: cosine, L2 distance, relative L2."""
    w, w0 = weight.detach().float().cpu(), init_weight.detach().float().cpu()
    dist = (w - w0).norm(dim=-1)
    return dict(
        cosine=F.cosine_similarity(w, w0, dim=-1).numpy(),
        l2=dist.numpy(),
        relative_l2=(dist / w0.norm(dim=-1).clamp(min=1e-12)).numpy(),
    )

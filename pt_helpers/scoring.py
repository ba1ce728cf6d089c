"""Scores shared by every chapter: label-word continuations, reductions, accuracy, sentence embeddings.

Taught in chapters 03 (label words, reductions), 05 (mean-pooled sentence embeddings) and used by all.

The ONE convention for a label word's leading space: label words are stored *bare* (``"positive"``,
``data.TaskInfo.label_words``); the code that puts a word right after a prompt turns it into a
continuation with ``as_continuation`` (``" positive"``). For byte-level BPE (GPT-2, Llama, Qwen …) the
word after a space is a different token from the word at the start of a text, and a prompt ends just
before the space ("… Sentiment:"), so the space belongs to the word.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .errors import check_texts

REDUCTIONS = ("sum", "mean")


def as_continuation(word: str) -> str:
    """A bare label word as it follows a prompt: one leading space, nothing else (``"positive"`` → ``" positive"``)."""
    return " " + str(word).strip()


def check_reduction(reduction: str) -> None:
    """``reduction`` must be ``"sum"`` (log-probability of the whole word) or ``"mean"`` (per token)."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def reduce_logprobs(token_lp: torch.Tensor, n_tokens: torch.Tensor, reduction: str) -> torch.Tensor:
    """Token log-probs (…, max_tokens), zero-padded → one score per word: their sum, or sum / n_tokens."""
    check_reduction(reduction)
    total = token_lp.sum(-1)
    return total if reduction == "sum" else total / n_tokens.to(total.dtype)


def accuracy(scores, labels: Sequence[int]) -> float:
    """Fraction of rows whose argmax equals the label. scores: (n, C) (log-)probs, or (n,) predictions."""
    scores = torch.as_tensor(np.asarray(scores)) if not torch.is_tensor(scores) else scores
    preds = scores.argmax(-1) if scores.dim() == 2 else scores
    labels = list(labels)
    if preds.shape[0] != len(labels):
        raise ValueError(f"{preds.shape[0]} score rows but {len(labels)} labels")
    return float((preds.cpu() == torch.as_tensor(list(labels))).float().mean())


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the token vectors where the mask is 1: (B, T, d), (B, T) → (B, d).

    How sentence-transformers' all-MiniLM-L6-v2 turns token states into one sentence embedding.
    """
    m = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


@torch.no_grad()
def embed_sentences(
    model, tokenizer, texts: Sequence[str], batch_size: int = 64, max_length: int = 128
) -> torch.Tensor:
    """Unit-length sentence embeddings (n, d) on the CPU: mean pooling of an encoder's last hidden states."""
    texts = check_texts(texts)
    chunks = []
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(
            list(texts[start : start + batch_size]),
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        ).to(model.device)
        hidden = model(**enc).last_hidden_state  # (b, T, d)
        chunks.append(F.normalize(mean_pool(hidden.float(), enc["attention_mask"]), dim=-1).cpu())
    return torch.cat(chunks)

"""Soft prompt tuning (Lester, Al-Rfou & Constant 2021): n trainable vectors in front of a frozen model.

Taught in chapter 05. A soft prompt 软提示 is a matrix P ∈ R^{n×d} of *virtual-token* embeddings. The
frozen model reads ``[P; E(x)]`` instead of ``E(x)``; only P is trained (提示微调 prompt tuning).

``SoftPrompt`` is one adapter of the course's protocol (``pt_helpers.adapters``): it gives the model n input
vectors (``virtual_embeddings``); ``PromptedModel`` runs it on a causal LM (the prompt's keys/values
computed once and shared by the batch) or an encoder (concatenated before ``[CLS]``, as PEFT does).

    SoftPrompt(n_virtual_tokens, hidden_size, init_embedding=None)  the n×d parameter; ``.weight``
    init_prompt_embedding(model, tokenizer, n, init, *, init_text=, label_words=, seed=, vocab_texts=, vocab_task=)
        → (n, d) tensor; ``init`` ∈ ``INITS`` = ("random", "vocab", "text", "labels")
    frequent_token_ids(tokenizer, texts=None, task="sst2", top_k=5000)  the "vocab" init's candidates: the most
        frequent ordinary tokens of the training text; is_ordinary_token_text(text) decides "ordinary"
    make_prompt(model, tokenizer, n, init, **kwargs)  → SoftPrompt
    add_soft_prompt(model, tokenizer, n, init, **kwargs)  → PromptedModel (frozen model + new prompt)
    peft_twin(base_model, prompt, task_type=None)  → PEFT's PromptTuningConfig model holding the same P
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
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .adapters import Method, PromptAdapter, PromptedModel, check_width, option, register_adapter, register_method
from .data import load_task, task_info
from .errors import PromptError, PromptShapeError
from .frozen import check_model_and_tokenizer, input_embeddings, is_causal_lm

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


def saved_prompt(model, tensors: dict, what: str) -> tuple[torch.Tensor, int]:
    """The saved (n, d) prompt of a checkpoint for ``model``, and d; a clear error for a missing tensor or a
    prompt trained on a model of another width (soft prompts and P-tuning save the same tensor)."""
    if "prompt" not in tensors:
        raise PromptShapeError(f"a {what} checkpoint holds a tensor named 'prompt' (found {sorted(tensors)})")
    weight = tensors["prompt"]
    d = input_embeddings(model).shape[1]
    if weight.dim() != 2 or weight.shape[1] != d:
        raise PromptShapeError(
            f"the saved {what} has shape {tuple(weight.shape)}, but this model's hidden size "
            f"is {d}: it needs an (n, {d}) prompt. Was it trained on another model?"
        )
    return weight, d


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
        weight, d = saved_prompt(model, tensors, "soft prompt")
        prompt = cls(weight.shape[0], d, weight).to(input_embeddings(model).device)
        prompt.init = settings.get("init", "custom")
        return prompt


VOCAB_TOP_K = 5000  # the "vocab" init samples among this many most frequent ordinary tokens
VOCAB_TASK = "sst2"  # whose training split the frequencies are counted on when neither texts nor a task is given
_ALLOWED_INNER = "'’-"  # apostrophes and hyphens may sit inside a word piece (n't, 's, well-made)


def is_ordinary_token_text(text: str) -> bool:
    """Is the decoded text of one token an ordinary word, word piece or number in Latin script?

    Decided from the characters themselves (``unicodedata``), never from ids or from the tokenizer's name:

    * surrounding spaces (GPT-2's ``Ġ``, SentencePiece's ``▁``, decoded) and WordPiece's ``##`` are removed;
    * at least one character must be a letter or a digit — lone symbols and punctuation (``√ ♠ . ,``) are out;
    * every letter must be Latin script (``unicodedata.name`` starts with ``LATIN``): other scripts'
      characters (``ム``, ``中``, ``α``) are out; every digit must be an ASCII digit;
    * the only other characters allowed are apostrophes and hyphens (``n't``, ``'s``, ``well-made``);
      a byte-level piece of a multi-byte character decodes to U+FFFD and is out.
    """
    t = text.strip()
    if t.startswith("##"):
        t = t[2:]
    if not t or not any(ch.isalnum() for ch in t):
        return False
    for ch in t:
        if ch.isalpha():
            if not unicodedata.name(ch, "").startswith("LATIN"):
                return False
        elif ch.isdigit() or ch.isnumeric():
            if not ("0" <= ch <= "9"):
                return False
        elif ch not in _ALLOWED_INNER:
            return False
    return True


_FREQUENT_CACHE: dict[tuple, list[int]] = {}


def frequent_token_ids(
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str] | None = None,
    *,
    task: str = VOCAB_TASK,
    top_k: int = VOCAB_TOP_K,
) -> list[int]:
    """The ``top_k`` most frequent *ordinary* tokens of ``texts``, most frequent first (ties: lower id first).

    ``texts`` defaults to the training split of ``task`` (the course's training text), tokenized without
    special tokens; that default is computed once per tokenizer and task. Special tokens and tokens that
    ``is_ordinary_token_text`` rejects (lone symbols, other scripts) are skipped. Token ids are NOT a
    frequency order: in MiniLM's WordPiece vocabulary the first ids are [unused] slots and single characters.
    """
    key = None
    if texts is None:
        key = (type(tokenizer).__name__, tokenizer.name_or_path, len(tokenizer), task, int(top_k))
        if key in _FREQUENT_CACHE:
            return list(_FREQUENT_CACHE[key])
        info = task_info(task)
        ds = load_task(task, "train")
        texts = [" ".join(str(row[c]) for c in info.text_columns) for row in ds.select_columns(list(info.text_columns))]
    texts = [str(t) for t in texts]
    if not texts:
        raise PromptError("frequent_token_ids needs at least one text to count tokens on")
    counts: Counter[int] = Counter()
    for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        counts.update(ids)
    special = set(tokenizer.all_special_ids)
    ranked = []
    for i, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if i not in special and is_ordinary_token_text(tokenizer.decode([i])):
            ranked.append(int(i))
            if len(ranked) == top_k:
                break
    if key is not None:
        _FREQUENT_CACHE[key] = list(ranked)
    return ranked


def _embedded(model, ids) -> torch.Tensor:
    """What the model's input-embedding layer feeds the first block for ``ids`` (len, d), float32 on the CPU.

    The layer, not its weight rows: some families scale inside it (Gemma 2 multiplies by √d), and a prompt
    must start at the scale the model actually reads."""
    layer = model.get_input_embeddings()
    with torch.no_grad():
        return layer(torch.as_tensor(ids, device=layer.weight.device)).float().cpu()


def _embedded_std(model, chunk: int = 8192) -> torch.Tensor:
    """Standard deviation of every vocabulary row as the layer outputs it, in chunks (no full copy)."""
    total, sq, count = 0.0, 0.0, 0
    for start in range(0, input_embeddings(model).shape[0], chunk):
        rows = _embedded(model, range(start, min(start + chunk, input_embeddings(model).shape[0]))).double()
        total, sq, count = total + rows.sum().item(), sq + (rows**2).sum().item(), count + rows.numel()
    mean = total / count
    return torch.tensor(math.sqrt(max(sq / count - mean**2, 0.0) * count / (count - 1)))


def _word_embeddings(model, tokenizer, text: str) -> torch.Tensor:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids:
        raise PromptError(f"the text {text!r} has no tokens; give a non-empty init text")
    return _embedded(model, ids)  # (len, d)


def init_prompt_embedding(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    n_virtual_tokens: int,
    init: str = "vocab",
    *,
    init_text: str = DEFAULT_INIT_TEXT,
    label_words: Sequence[str] = ("negative", "positive"),
    seed: int = 0,
    vocab_texts: Sequence[str] | None = None,
    vocab_task: str = VOCAB_TASK,
) -> torch.Tensor:
    """An initial prompt (n, d) built from the model's own input embeddings.

    * ``random``: N(0, σ²) with σ = the standard deviation of the vocabulary embeddings (same scale);
    * ``vocab``: the embeddings of n distinct tokens sampled (seeded) from the ``VOCAB_TOP_K`` = 5,000 most
      frequent ordinary tokens of the training text (``frequent_token_ids``: ``vocab_texts``, or by default
      the training split of ``vocab_task``) — ranked by counting, not by id;
    * ``text``: the embeddings of the tokens of ``init_text``, repeated/cut to length n (as PEFT does);
    * ``labels``: the (sub-token mean) embedding of each label word, then sampled frequent tokens (Lester).
    """
    check_model_and_tokenizer(model, tokenizer, "init_prompt_embedding")
    n = _check_n(n_virtual_tokens)
    if init not in INITS:
        raise PromptError(f"unknown init {init!r}; choose one of {INITS}")
    vocab_size, d = input_embeddings(model).shape
    gen = torch.Generator().manual_seed(int(seed))
    if init == "random":
        return torch.randn(n, d, generator=gen) * _embedded_std(model)
    if init == "text":
        words = _word_embeddings(model, tokenizer, init_text).float().cpu()
        reps = math.ceil(n / words.shape[0])
        return words.repeat(reps, 1)[:n].clone()
    vocab_ids = [i for i in frequent_token_ids(tokenizer, vocab_texts, task=vocab_task) if i < vocab_size]
    if len(vocab_ids) < n:
        raise PromptError(
            f"the 'vocab' init needs {n} distinct frequent tokens but the training text gives only "
            f"{len(vocab_ids)}; pass more vocab_texts or use fewer virtual tokens"
        )
    sampled = _embedded(model, torch.tensor(vocab_ids)[torch.randperm(len(vocab_ids), generator=gen)[:n]])
    if init == "vocab":
        return sampled.clone()
    rows = [_word_embeddings(model, tokenizer, " " + w.strip()).float().cpu().mean(0) for w in label_words]
    labels = torch.stack(rows)[:n]
    return torch.cat([labels, sampled[: n - labels.shape[0]]]).clone()


def make_prompt(model, tokenizer, n_virtual_tokens: int, init: str = "vocab", **kwargs) -> SoftPrompt:
    """A ``SoftPrompt`` initialised by ``init_prompt_embedding``.

    kwargs: init_text, label_words, seed, vocab_texts, vocab_task (see ``init_prompt_embedding``).
    """
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
    """Freeze ``model`` and put a new soft prompt in front of it (kwargs: init_text, label_words, seed)."""
    return PromptedModel(
        model, make_prompt(model, tokenizer, n_virtual_tokens, init, **kwargs), share_prompt_cache=share_prompt_cache
    )


def peft_twin(base_model: PreTrainedModel, prompt: SoftPrompt, task_type: str | None = None):
    """PEFT's ``PromptTuningConfig`` model on ``base_model`` holding a copy of ``prompt``'s P (its ``weight``).

    The independent reference of chapter 05's identities (as ``prefix.peft_twin`` and ``p_tuning.peft_twin``
    are for the deep prompts). PEFT wraps ``base_model`` itself: pass a copy to keep the original unwrapped.
    ``task_type`` defaults to CAUSAL_LM / FEATURE_EXTRACTION, decided from the model's config.
    """
    from peft import PromptTuningConfig, get_peft_model

    if task_type is None:
        task_type = "CAUSAL_LM" if is_causal_lm(base_model) else "FEATURE_EXTRACTION"
    cfg = PromptTuningConfig(task_type=task_type, num_virtual_tokens=prompt.n_virtual_tokens)
    twin = get_peft_model(base_model, cfg)
    with torch.no_grad():
        twin.prompt_encoder["default"].embedding.weight.copy_(prompt.weight)
    return twin


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


@dataclass
class SoftPromptOptions:
    """The soft prompt's own settings (``training.TrainSettings`` carries them under the same names)."""

    pool_prompt: bool = option(
        False, "encoders, soft only: also average the prompt's own output states into the sentence embedding"
    )


def build_soft_prompt(model, tokenizer, settings, *, init_text: str, label_words=None) -> SoftPrompt:
    """The registry's factory: a soft prompt of ``settings.n_virtual_tokens`` with ``settings.init``.

    The "vocab" and "labels" inits count token frequencies on the training split of the task being trained
    (``settings.task``, as ``training.TrainSettings`` carries it); settings that name no task get ``VOCAB_TASK``.
    """
    words = {"label_words": list(label_words)} if label_words else {}
    vocab_task = getattr(settings, "task", None) or VOCAB_TASK
    return make_prompt(model, tokenizer, settings.n_virtual_tokens, settings.init, seed=settings.seed,
                       init_text=init_text, vocab_task=vocab_task, **words)  # fmt: skip


register_method(
    Method(
        name="soft",
        summary="trainable vectors at the input only (Lester et al. 2021)",
        factory=build_soft_prompt,
        adapter_class=SoftPrompt,
        options=SoftPromptOptions,
        inits=INITS,
        default_init="text",
        default_lr=3e-2,
        defined_in="chapter 05",
    )
)

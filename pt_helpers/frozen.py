"""What every prompt method does to a frozen model, written once (taught in chapters 05 and 06).

* ``freeze`` / ``count_trainable``: the base model never changes; only the prompt is trained.
* ``is_causal_lm``: causal LM or encoder, decided from the model's config and class, never its name.
* ``attention_geometry``: layers, key/value heads and head size, for any family whose attention takes a
  key/value cache (grouped-query attention included).
* ``real_position_ids`` / ``extend_mask``: positions and attention masks when n virtual tokens come first.
* ``expand_cache``: the ONE place where per-layer keys/values of batch 1 become a batch's cache object.
* ``context_length`` / ``check_context``: the ONE context-window check.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import DynamicCache

from .errors import ContextWindowError, CourseError, PromptShapeError, TokenizerMismatchError

# a tokenizer must cover this share of the embedding rows: models pad their tables by a few % at most
MIN_VOCAB_COVERAGE = 0.9


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


def input_embeddings(model: nn.Module) -> torch.Tensor:
    """The model's input-embedding matrix (vocab, d)."""
    return model.get_input_embeddings().weight


# ---------------------------------------------------------------------------------------------------
# What kind of model is this? From its config and class only.
# ---------------------------------------------------------------------------------------------------


def _config(model_or_config):
    return getattr(model_or_config, "config", model_or_config)


def is_causal_lm(model_or_config) -> bool:
    """True for a decoder-only language model (GPT-2, Llama, Qwen2, …), False for an encoder (BERT …).

    Decided from facts: a loaded model's class (a ``…ForCausalLM`` / ``…LMHeadModel`` that can generate),
    else the config's ``is_decoder`` flag, its ``architectures`` list, and whether transformers registers
    its ``model_type`` as a causal LM *and not* as a masked LM (BERT is registered as both: it is an
    encoder unless its config says ``is_decoder``).
    """
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    cfg = _config(model_or_config)
    if getattr(cfg, "is_encoder_decoder", False):
        return False
    if getattr(cfg, "is_decoder", False):
        return True
    if isinstance(model_or_config, nn.Module):
        name = type(model_or_config).__name__
        if name.endswith(("ForCausalLM", "LMHeadModel")):
            return True
    for arch in getattr(cfg, "architectures", None) or []:
        if arch.endswith(("ForCausalLM", "LMHeadModel")):
            return True
    model_type = getattr(cfg, "model_type", "")
    return model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES


def model_kind(model_or_config) -> str:
    """``"causal"`` or ``"encoder"`` (see ``is_causal_lm``): the word saved in run configs and checkpoints."""
    return "causal" if is_causal_lm(model_or_config) else "encoder"


@dataclass(frozen=True)
class AttentionGeometry:
    """The shapes of one layer's key/value cache: (batch, n_kv_heads, length, head_dim) per layer.

    ``n_kv_heads`` < ``n_heads`` is grouped-query attention (Llama 2 70B, Mistral, Qwen2 …): several query
    heads share one key/value head, so a prefix needs keys and values for the ``n_kv_heads`` only.
    """

    n_layers: int
    n_kv_heads: int
    head_dim: int
    n_heads: int = 0  # query heads (0: same as n_kv_heads)

    @property
    def kv_width(self) -> int:
        """Width of one layer's keys (or values) of one token: n_kv_heads · head_dim."""
        return self.n_kv_heads * self.head_dim

    @property
    def flat_width(self) -> int:
        """Width of one virtual token's row in PEFT's prefix layout: keys and values of every layer."""
        return 2 * self.n_layers * self.kv_width


def attention_geometry(model_or_config) -> AttentionGeometry:
    """Layers, key/value heads and head size of any model whose config names them.

    Reads ``num_hidden_layers``, ``num_attention_heads``, ``num_key_value_heads`` (grouped-query attention;
    absent = one key/value head per query head) and ``head_dim`` (absent = hidden_size / heads), which
    transformers maps onto every family's own names (GPT-2's ``n_layer``, ``n_head`` …).
    """
    cfg = _config(model_or_config)
    cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    try:
        n_layers, n_heads, hidden = int(cfg.num_hidden_layers), int(cfg.num_attention_heads), int(cfg.hidden_size)
    except (AttributeError, TypeError) as exc:
        raise PromptShapeError(
            f"cannot read layers / attention heads / hidden size from {type(cfg).__name__}: deep "
            "prompts need a transformer whose config names them"
        ) from exc
    n_kv = getattr(cfg, "num_key_value_heads", None) or n_heads
    head_dim = getattr(cfg, "head_dim", None) or hidden // n_heads
    return AttentionGeometry(n_layers, int(n_kv), int(head_dim), n_heads)


# ---------------------------------------------------------------------------------------------------
# Virtual tokens in front: positions, masks, the cache
# ---------------------------------------------------------------------------------------------------


def real_position_ids(attention_mask: torch.Tensor, offset: int) -> torch.Tensor:
    """Positions of the real tokens after ``offset`` virtual ones, counted over non-padding tokens.

    attention_mask: (B, T) of 0/1 → (B, T) long; padding gets ``offset`` (it is masked anyway). So left
    padding, right padding and no padding give every real token the same position.
    """
    return (offset + attention_mask.long().cumsum(-1) - 1).clamp(min=offset)


def extend_mask(attention_mask: torch.Tensor, n_virtual_tokens: int) -> torch.Tensor:
    """(B, T) → (B, n + T): the virtual tokens in front are always attended to."""
    return torch.cat([attention_mask.new_ones(attention_mask.shape[0], n_virtual_tokens), attention_mask], 1)


def expand_cache(layers, batch_size: int, dtype: torch.dtype | None = None) -> DynamicCache:
    """A fresh ``DynamicCache`` whose layer ℓ holds ``layers[ℓ]``'s keys/values expanded over the batch.

    ``layers``: per layer (keys, values), each (1, n_kv_heads, n, head_dim) — a prompt's, a prefix's or a
    shared ICL prefix's. ``expand`` makes views, so nothing is copied and gradients flow back to the one
    row (summed over the batch). A new cache per forward pass: the model appends the input's keys/values.
    Cast to ``dtype`` (the model's, e.g. bf16) when given.
    """
    return DynamicCache(
        ddp_cache_data=[
            (
                k.expand(batch_size, -1, -1, -1).to(dtype or k.dtype),
                v.expand(batch_size, -1, -1, -1).to(dtype or v.dtype),
            )
            for k, v in layers
        ]
    )


def cache_layers(cache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per-layer (keys, values) of a transformers cache object, as ``expand_cache`` takes them."""
    return [(layer.keys, layer.values) for layer in cache.layers]


def context_length(model_or_config) -> int:
    """The longest input (in tokens) the model's position embeddings (or rotary range) allow."""
    cfg = _config(model_or_config)
    for attr in ("n_positions", "max_position_embeddings", "n_ctx", "seq_length"):
        if getattr(cfg, attr, None):
            return int(getattr(cfg, attr))
    raise CourseError(
        f"cannot read the context window of {type(cfg).__name__}: its config names none of "
        "n_positions, max_position_embeddings, n_ctx, seq_length"
    )


def check_context(model_or_config, n_tokens: int, what: str = "input", fix: str = "") -> None:
    """Raise ``ContextWindowError`` (with both lengths and the fix) if ``n_tokens`` exceed the window."""
    window = context_length(model_or_config)
    if n_tokens > window:
        raise ContextWindowError(
            f"{what} is {n_tokens} tokens but the model's context window is {window} tokens; shorten it by at "
            f"least {n_tokens - window} tokens"
            + (f" ({fix})." if fix else " (fewer virtual tokens or demonstrations, or truncation).")
        )


def check_model_and_tokenizer(model, tokenizer, where: str = "") -> None:
    """Arguments in the right order, and a tokenizer that belongs to the model (checked at the boundary).

    A tokenizer passed where the model goes (or the reverse) is a ``TypeError`` naming the argument, not an
    AttributeError from inside transformers; a tokenizer with more tokens than the model has embedding rows
    (another model's tokenizer) is a ``CourseError``. Fewer tokens than rows is normal: many models pad
    their embedding matrix to a multiple of 64.
    """
    at = f" in {where}" if where else ""
    if not isinstance(model, nn.Module) or not hasattr(model, "config"):
        hint = (
            " (it looks like a tokenizer: pass the model first, then the tokenizer)"
            if callable(getattr(model, "convert_ids_to_tokens", None))
            else ""
        )
        raise TypeError(f"model{at} must be a transformers model, got {type(model).__name__}{hint}")
    if tokenizer is None or not callable(getattr(tokenizer, "convert_ids_to_tokens", None)):
        hint = (
            " (it looks like a model: pass the model first, then the tokenizer)"
            if isinstance(tokenizer, nn.Module)
            else ""
        )
        raise TypeError(f"tokenizer{at} must be a transformers tokenizer, got {type(tokenizer).__name__}{hint}")
    rows = model.get_input_embeddings().num_embeddings
    n_tok = len(tokenizer)
    fix = "Load both from the same name or folder (load_model does)."
    if n_tok > rows:
        raise TokenizerMismatchError(
            f"the tokenizer{at} has {n_tok:,} tokens but the model embeds only {rows:,}: it belongs to another "
            f"model. {fix}"
        )
    # Fewer tokens than rows: padding rows, or another family's (smaller) vocabulary. Two facts tell them apart:
    # the config's special-token ids (BOS/EOS/PAD …) must be tokens of this tokenizer, and padding is a
    # small remainder (Phi-2 pads 50,295 tokens to 51,200: 2 %), never a third of the table.
    special = {
        role: tid
        for role in ("bos_token_id", "eos_token_id", "pad_token_id", "sep_token_id", "cls_token_id", "mask_token_id")
        for tid in _as_ids(getattr(model.config, role, None))
    }
    outside = {role: tid for role, tid in special.items() if tid >= n_tok}
    if outside:
        role, tid = next(iter(outside.items()))
        raise TokenizerMismatchError(
            f"the tokenizer{at} has {n_tok:,} tokens, but the model's {role.removesuffix('_id')} is token id {tid:,}, "
            f"which this tokenizer does not have: the tokenizer belongs to another model family. {fix}"
        )
    if n_tok < MIN_VOCAB_COVERAGE * rows:
        raise TokenizerMismatchError(
            f"the tokenizer{at} has {n_tok:,} tokens but the model embeds {rows:,}: {rows - n_tok:,} embedding rows "
            f"({1 - n_tok / rows:.0%}) would never be used, far more than the padding models add (a few %). "
            f"The tokenizer belongs to another model family. {fix}"
        )


def _as_ids(value) -> list[int]:
    """A config's special-token id as a list: None → [], 50256 → [50256], [1, 2] → [1, 2]."""
    if value is None:
        return []
    values = value if isinstance(value, (list, tuple)) else [value]
    return [int(v) for v in values if isinstance(v, int) and not isinstance(v, bool) and v >= 0]

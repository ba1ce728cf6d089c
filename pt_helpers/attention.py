"""Scaled dot-product attention (缩放点积注意力) from scratch, and a check against real model layers (chapter 02).

Vaswani et al. (2017), eq. 1:

    Attention(Q, K, V) = softmax(Q Kᵀ / √d_k) V

Shapes used everywhere in this module (a leading ``...`` may be any batch dims, e.g. ``batch, heads``)::

    q        (..., T_q, d_k)     one query vector per position that asks
    k        (..., T_k, d_k)     one key vector per position that can be looked at
    v        (..., T_k, d_v)     the value each position hands over when looked at
    weights  (..., T_q, T_k)     softmax over the key axis: every row sums to 1
    output   (..., T_q, d_v)     a weighted average of value vectors, one per query

**Mask convention** (the same as ``torch.nn.functional.scaled_dot_product_attention``):

* a **boolean** mask is ``True`` where the query *may* attend to the key and ``False`` where it may not;
* a **float** mask is *additive*: it is added to the scores before the softmax, ``0.0`` keeps a key,
  a large negative number (we use ``torch.finfo(dtype).min``, as Hugging Face does) removes it.

``to_additive_mask`` turns the first into the second. A query row in which *no* key is allowed (this
only happens for padding positions) gets uniform weights instead of NaN, as in Hugging Face's eager
attention; such rows belong to padding and must be ignored downstream.

The two ``recompute_*`` functions redo one layer of a real Hugging Face model (BERT family, e.g.
all-MiniLM-L6-v2; GPT-2 family) from that layer's own weight tensors, and compare every
intermediate result with what the model itself computed (read with hooks and ``output_attentions``).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import pandas as pd
import torch
import torch.nn.functional as F
from transformers import PreTrainedModel

from .errors import AttentionShapeError, CourseError

# --------------------------------------------------------------------------------------------------
# Masks
# --------------------------------------------------------------------------------------------------


def causal_mask(T: int, *, device: torch.device | str | None = None) -> torch.Tensor:
    """Boolean causal (look-back-only) mask: entry ``[i, j]`` is True iff ``j <= i``.

    Returns (T, T); it broadcasts against scores of shape (..., T, T).
    """
    if int(T) < 1:
        raise AttentionShapeError(f"causal_mask needs T >= 1 positions, got T={T}")
    return torch.ones(int(T), int(T), dtype=torch.bool, device=device).tril()  # (T, T)


def padding_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Boolean key-padding mask from a tokenizer's ``attention_mask`` (1 = real token, 0 = padding).

    attention_mask: (batch, T) of 0/1 → returns (batch, 1, 1, T), True where the *key* is a real
    token. The two singleton axes broadcast over heads and over queries: padding is hidden from every
    query, but the padded query rows themselves are still computed (and later ignored).
    """
    if attention_mask.dim() != 2:
        raise AttentionShapeError(
            f"padding_mask expects the tokenizer's attention_mask of shape (batch, T), got "
            f"{tuple(attention_mask.shape)}; for one sentence use attention_mask.unsqueeze(0)"
        )
    values = torch.unique(attention_mask)
    if not bool(((values == 0) | (values == 1)).all()):
        raise AttentionShapeError(
            f"attention_mask must hold only 0 (padding) and 1 (real token), found {values.tolist()}"
        )
    return attention_mask.bool()[:, None, None, :]  # (batch, 1, 1, T)


def to_additive_mask(mask: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Boolean mask (True = keep) → additive float mask: 0.0 where kept, ``finfo(dtype).min`` where not.

    Same shape as ``mask``. Float masks are returned unchanged (cast to ``dtype``).
    """
    if mask.dtype != torch.bool:
        return mask.to(dtype)
    zeros = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
    return zeros.masked_fill(~mask, torch.finfo(dtype).min)


# --------------------------------------------------------------------------------------------------
# Attention itself
# --------------------------------------------------------------------------------------------------


def _check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() < 2:
            raise AttentionShapeError(f"{name} must have at least 2 dims (..., T, d), got shape {tuple(t.shape)}")
    if q.shape[-1] != k.shape[-1]:
        raise AttentionShapeError(
            f"query and key must share the head dimension d_k to be dotted together: q has d_k={q.shape[-1]} "
            f"(shape {tuple(q.shape)}), k has d_k={k.shape[-1]} (shape {tuple(k.shape)}). "
            "Did you split both into the same number of heads?"
        )
    if k.shape[-2] != v.shape[-2]:
        raise AttentionShapeError(
            f"key and value must have one vector per key position: k has T_k={k.shape[-2]}, v has "
            f"T_k={v.shape[-2]} (shapes {tuple(k.shape)} and {tuple(v.shape)})"
        )
    try:
        torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    except RuntimeError:
        raise AttentionShapeError(
            f"the batch/head dims of q {tuple(q.shape[:-2])}, k {tuple(k.shape[:-2])} and v "
            f"{tuple(v.shape[:-2])} do not broadcast together"
        ) from None


def attention_scores(q: torch.Tensor, k: torch.Tensor, *, scale: float | None = None) -> torch.Tensor:
    """The logits of attention, Q Kᵀ · scale (default scale 1/√d_k).

    q: (..., T_q, d_k), k: (..., T_k, d_k) → (..., T_q, T_k).
    """
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    return torch.matmul(q, k.transpose(-2, -1)) * scale  # (..., T_q, T_k)


def scaled_dot_product_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None, *, scale: float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(Q Kᵀ/√d_k + mask) V, written out; returns ``(output, weights)``.

    q: (..., T_q, d_k), k: (..., T_k, d_k), v: (..., T_k, d_v);
    mask: bool (True = may attend) or additive float, broadcastable to (..., T_q, T_k).
    Returns output (..., T_q, d_v) and weights (..., T_q, T_k) (each row sums to 1).
    ``scale`` replaces 1/√d_k (``scale=1.0`` gives the unscaled variant of the √d_k experiment).
    """
    _check_qkv(q, k, v)
    scores = attention_scores(q, k, scale=scale)  # (..., T_q, T_k)
    if mask is not None:
        try:
            torch.broadcast_shapes(mask.shape, scores.shape)
        except RuntimeError:
            raise AttentionShapeError(
                f"mask of shape {tuple(mask.shape)} does not broadcast to the scores' shape "
                f"{tuple(scores.shape)} (…, T_q, T_k); causal_mask(T) gives (T, T), padding_mask gives "
                "(batch, 1, 1, T)"
            ) from None
        scores = scores + to_additive_mask(mask, scores.dtype)
    weights = torch.softmax(scores, dim=-1)  # (..., T_q, T_k)
    output = torch.matmul(weights, v)  # (..., T_q, d_v)
    return output, weights


def split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(batch, T, d_model) → (batch, n_heads, T, d_head) with d_head = d_model / n_heads.

    Head h owns the features ``h*d_head : (h+1)*d_head`` of every position (the layout Hugging Face
    BERT and GPT-2 use).
    """
    if x.dim() != 3:
        raise AttentionShapeError(f"split_heads expects (batch, T, d_model), got shape {tuple(x.shape)}")
    batch, T, d_model = x.shape
    if n_heads < 1 or d_model % n_heads:
        raise AttentionShapeError(
            f"d_model={d_model} cannot be split into n_heads={n_heads} equal heads; use a divisor of "
            f"{d_model} (the model's config.num_attention_heads)"
        )
    return x.view(batch, T, n_heads, d_model // n_heads).transpose(1, 2)  # (batch, n_heads, T, d_head)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`split_heads`: (batch, n_heads, T, d_head) → (batch, T, n_heads * d_head)."""
    if x.dim() != 4:
        raise AttentionShapeError(f"merge_heads expects (batch, n_heads, T, d_head), got shape {tuple(x.shape)}")
    batch, n_heads, T, d_head = x.shape
    return x.transpose(1, 2).reshape(batch, T, n_heads * d_head)  # (batch, T, d_model)


# --------------------------------------------------------------------------------------------------
# The two formulas popular posts print by mistake (computed here to show what goes wrong)
# --------------------------------------------------------------------------------------------------


def attention_without_softmax(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """WRONG ON PURPOSE: (Q Kᵀ/√d_k) V — the formula with the softmax left out.

    Returns (output (..., T_q, d_v), "weights" (..., T_q, T_k)); the "weights" are raw scores: they
    can be negative and their rows do not sum to 1, so the output is not an average of the values.
    """
    _check_qkv(q, k, v)
    scores = attention_scores(q, k)  # (..., T_q, T_k)
    return torch.matmul(scores, v), scores


def attention_without_values(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """WRONG ON PURPOSE: softmax(Q Kᵀ/√d_k) — the formula with the product with V left out.

    Returns (..., T_q, T_k): a T_q × T_k table of weights, not one d_v-vector per position.
    """
    if q.shape[-1] != k.shape[-1]:
        raise AttentionShapeError(f"q has d_k={q.shape[-1]} but k has d_k={k.shape[-1]}")
    return torch.softmax(attention_scores(q, k), dim=-1)  # (..., T_q, T_k)


# --------------------------------------------------------------------------------------------------
# Why √d_k: softmax saturation as d_k grows
# --------------------------------------------------------------------------------------------------


def softmax_entropy(weights: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of each attention row: weights (..., T_k) → (...). log(T_k) = uniform, 0 = one-hot."""
    return -(weights * torch.log(weights.clamp_min(1e-30))).sum(-1)


def softmax_jacobian_norm(weights: torch.Tensor) -> torch.Tensor:
    """Frobenius norm of the softmax Jacobian diag(p) − p pᵀ for each row p: (..., T_k) → (...).

    ‖J‖²_F = Σp_i² − 2Σp_i³ + (Σp_i²)². It tends to 0 as the softmax saturates (one-hot): then almost
    no gradient flows back into Q and K — the reason Vaswani et al. give for the 1/√d_k factor.
    """
    s2 = (weights**2).sum(-1)
    s3 = (weights**3).sum(-1)
    return (s2 - 2 * s3 + s2**2).clamp_min(0).sqrt()


def scaling_experiment(
    d_ks: Sequence[int] = (4, 16, 64, 256, 1024), *, n_queries: int = 256, n_keys: int = 64, seed: int = 0
) -> pd.DataFrame:
    """Measure what 1/√d_k does: random q, k with i.i.d. N(0, 1) entries, for each d_k, both ways.

    For each d_k and ``scaled`` ∈ {True, False}: the std of the scores (theory: √d_k unscaled, 1 scaled),
    the mean entropy of the attention rows (max log(n_keys)), the mean largest weight, the fraction of
    ``saturated`` rows (largest weight > 0.99: practically one-hot) and the mean softmax-Jacobian norm.
    Returns one row per (d_k, scaled).
    """
    gen = torch.Generator().manual_seed(int(seed))
    rows = []
    for d_k in d_ks:
        if int(d_k) < 1:
            raise ValueError(f"every d_k must be >= 1, got {d_k}")
        q = torch.randn(n_queries, d_k, generator=gen)  # (n_queries, d_k)
        k = torch.randn(n_keys, d_k, generator=gen)  # (n_keys, d_k)
        for scaled in (True, False):
            scores = attention_scores(q, k, scale=None if scaled else 1.0)  # (n_queries, n_keys)
            weights = torch.softmax(scores, dim=-1)
            rows.append(
                dict(
                    d_k=int(d_k),
                    scaled=scaled,
                    score_std=scores.std().item(),
                    entropy=softmax_entropy(weights).mean().item(),
                    max_weight=weights.max(-1).values.mean().item(),
                    saturated=(weights.max(-1).values > 0.99).float().mean().item(),
                    jacobian_norm=softmax_jacobian_norm(weights).mean().item(),
                )
            )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------------
# Recomputing a real layer from its own weights
# --------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def eager_attention(model: PreTrainedModel) -> Iterator[PreTrainedModel]:
    """Temporarily switch ``model`` to the plain ("eager") attention code, the only one that returns
    attention probabilities (``output_attentions=True``); restores the previous implementation after."""
    before = model.config._attn_implementation
    if before != "eager":
        model.set_attn_implementation("eager")
    try:
        yield model
    finally:
        if before != "eager":
            model.set_attn_implementation(before)


@dataclass
class LayerRecomputation:
    """Our from-scratch tensors next to the model's own, for one layer; ``max_abs_diff`` compares them.

    ``ours`` and ``model`` map the same names (e.g. ``"probs"``, ``"context"``) to tensors of the same
    shape; ``q``, ``k``, ``v`` are our per-head projections (batch, heads, T, d_head) and ``mask`` the
    boolean mask we used (True = may attend), for further experiments.
    """

    ours: dict[str, torch.Tensor]
    model: dict[str, torch.Tensor]
    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    mask: torch.Tensor
    described: dict[str, str] = field(default_factory=dict)

    def max_abs_diff(self) -> dict[str, float]:
        """Largest absolute difference, per compared tensor."""
        return {name: (self.ours[name] - self.model[name]).abs().max().item() for name in self.ours}

    def table(self) -> pd.DataFrame:
        """One row per compared tensor: its shape, what it is, and the largest difference."""
        diffs = self.max_abs_diff()
        return pd.DataFrame(
            [
                dict(
                    tensor=name,
                    shape=tuple(self.ours[name].shape),
                    what=self.described.get(name, ""),
                    max_abs_diff=diffs[name],
                )
                for name in self.ours
            ]
        )

    def assert_close(self, atol: float = 1e-4, rtol: float = 1e-5) -> None:
        """Raise AssertionError naming every tensor that differs by more than ``atol + rtol · |model|``,
        element by element. The relative part matters: real GPT-2's residual stream reaches ~3000, where one
        float32 step is already 2.4e-4, so an absolute tolerance alone fails on the real model."""
        bad = {
            n: d
            for n, d in self.max_abs_diff().items()
            if not torch.all((self.ours[n] - self.model[n]).abs() <= atol + rtol * self.model[n].abs())
        }
        assert not bad, f"recomputation differs from the model by more than {atol:g} + {rtol:g}·|value|: {bad}"


def _capture(module: torch.nn.Module, *, inputs: bool = False, kwarg: str | None = None):
    """Register a hook that stores ``module``'s first input (``inputs=True``) or first output."""
    store: dict[str, torch.Tensor] = {}
    if inputs:

        def pre_hook(mod, args, kwargs):
            store["x"] = args[0] if args else kwargs[kwarg]

        return store, module.register_forward_pre_hook(pre_hook, with_kwargs=True)

    def hook(mod, args, output):
        store["x"] = output[0] if isinstance(output, tuple) else output

    return store, module.register_forward_hook(hook)


def _check_layer(layers, layer: int) -> None:
    if not 0 <= int(layer) < len(layers):
        raise IndexError(f"layer {layer} does not exist: the model has layers 0..{len(layers) - 1}")


def _ids_and_mask(model, input_ids, attention_mask):
    if input_ids.dim() == 1:
        input_ids = input_ids.unsqueeze(0)
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    elif attention_mask.dim() == 1:
        attention_mask = attention_mask.unsqueeze(0)
    if attention_mask.shape != input_ids.shape:
        raise AttentionShapeError(
            f"attention_mask {tuple(attention_mask.shape)} must have the shape of input_ids {tuple(input_ids.shape)}"
        )
    return input_ids.to(model.device), attention_mask.to(model.device)


@torch.no_grad()
def recompute_bert_self_attention(
    model: PreTrainedModel, layer: int, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
) -> LayerRecomputation:
    """Redo self-attention of BERT-family ``layer`` from its weights; compare with the model's own.

    input_ids, attention_mask: (batch, T) (or (T,)). The layer's *input* (for layer 0: the embedding
    output) is read from the model with a hook, so only the layer itself is recomputed:

        Q = x W_qᵀ + b_q, K = x W_kᵀ + b_k, V = x W_vᵀ + b_v     → split_heads → (batch, heads, T, d_head)
        probs, ctx = scaled_dot_product_attention(Q, K, V, padding_mask(attention_mask))
        context = merge_heads(ctx)                                (batch, T, hidden)
        attention_output = LayerNorm(context W_oᵀ + b_o + x)      output dense + residual + LayerNorm
        layer_output = LayerNorm(W_2 gelu(W_1 a + b_1) + b_2 + a) with a = attention_output (the FFN)

    Compared with the model (eval mode, eager attention):
    ``probs`` (batch, heads, T, T) ↔ ``output_attentions``; ``context`` ↔ output of ``attention.self``;
    ``attention_output`` ↔ output of ``attention`` (incl. the output dense, residual and LayerNorm);
    ``layer_output`` ↔ output of the whole layer (= ``hidden_states[layer + 1]``).
    """
    base = model.base_model
    layers = base.encoder.layer
    _check_layer(layers, layer)
    input_ids, attention_mask = _ids_and_mask(model, input_ids, attention_mask)
    blk = layers[layer]
    hooks = {
        "x": _capture(blk, inputs=True, kwarg="hidden_states"),
        "context": _capture(blk.attention.self),
        "attention_output": _capture(blk.attention),
        "layer_output": _capture(blk),
    }
    try:
        with eager_attention(model):
            out = model(input_ids=input_ids, attention_mask=attention_mask, output_attentions=True)
    finally:
        for _, handle in hooks.values():
            handle.remove()
    x = hooks["x"][0]["x"]  # (batch, T, hidden) the layer's input
    sa, n_heads = blk.attention.self, model.config.num_attention_heads
    q = split_heads(F.linear(x, sa.query.weight, sa.query.bias), n_heads)  # (batch, heads, T, d_head)
    k = split_heads(F.linear(x, sa.key.weight, sa.key.bias), n_heads)
    v = split_heads(F.linear(x, sa.value.weight, sa.value.bias), n_heads)
    mask = padding_mask(attention_mask)  # (batch, 1, 1, T)
    ctx, probs = scaled_dot_product_attention(q, k, v, mask)
    context = merge_heads(ctx)  # (batch, T, hidden)
    so = blk.attention.output
    attn_out = F.layer_norm(
        F.linear(context, so.dense.weight, so.dense.bias) + x,
        so.LayerNorm.normalized_shape,
        so.LayerNorm.weight,
        so.LayerNorm.bias,
        so.LayerNorm.eps,
    )
    inter, fo = blk.intermediate, blk.output
    hidden = inter.intermediate_act_fn(F.linear(attn_out, inter.dense.weight, inter.dense.bias))
    layer_out = F.layer_norm(
        F.linear(hidden, fo.dense.weight, fo.dense.bias) + attn_out,
        fo.LayerNorm.normalized_shape,
        fo.LayerNorm.weight,
        fo.LayerNorm.bias,
        fo.LayerNorm.eps,
    )
    ours = dict(probs=probs, context=context, attention_output=attn_out, layer_output=layer_out)
    theirs = dict(
        probs=out.attentions[layer],
        context=hooks["context"][0]["x"],
        attention_output=hooks["attention_output"][0]["x"],
        layer_output=hooks["layer_output"][0]["x"],
    )
    described = dict(
        probs="softmax(QKᵀ/√d_k + mask), per head",
        context="heads merged, before output dense",
        attention_output="LayerNorm(dense(context) + x)",
        layer_output="after the feed-forward block",
    )
    return LayerRecomputation(ours, theirs, q, k, v, mask, described)


@torch.no_grad()
def recompute_gpt2_attention(
    model: PreTrainedModel, layer: int, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
) -> LayerRecomputation:
    """Redo the causal self-attention of GPT-2 block ``layer`` from its weights; compare with the model.

    input_ids, attention_mask: (batch, T) (or (T,)); either padding side works (a padded query row
    with no visible key gets uniform weights, as in the model). The block's input x is read with a
    hook; then, as in GPT-2 (pre-LayerNorm):

        h = LayerNorm_1(x)
        Q | K | V = h W_attn + b_attn        one combined Conv1D "c_attn": (batch, T, 3·hidden), split in 3
        split_heads each → (batch, heads, T, d_head)
        probs, ctx = scaled_dot_product_attention(Q, K, V, causal_mask(T) & padding_mask(attention_mask))
        attn_output = merge_heads(ctx) W_proj + b_proj          the Conv1D "c_proj"
        block_output = x + attn_output + MLP(LayerNorm_2(x + attn_output))

    (Conv1D stores its weight as (in, out), so it computes h @ W + b — the transpose of nn.Linear.)
    Compared: ``probs`` ↔ ``output_attentions``; ``context`` ↔ the input of ``c_proj``;
    ``attn_output`` ↔ output of ``attn``; ``block_output`` ↔ output of the whole block.
    The scale follows the config: 1/√d_head, further divided by (layer+1) when
    ``scale_attn_by_inverse_layer_idx`` is set (False for every released GPT-2).
    """
    base = model.base_model
    blocks = base.h
    _check_layer(blocks, layer)
    input_ids, attention_mask = _ids_and_mask(model, input_ids, attention_mask)
    blk = blocks[layer]
    hooks = {
        "x": _capture(blk, inputs=True, kwarg="hidden_states"),
        "context": _capture(blk.attn.c_proj, inputs=True, kwarg="x"),
        "attn_output": _capture(blk.attn),
        "block_output": _capture(blk),
    }
    try:
        with eager_attention(model):
            out = model(input_ids=input_ids, attention_mask=attention_mask, output_attentions=True, use_cache=False)
    finally:
        for _, handle in hooks.values():
            handle.remove()
    cfg, x = model.config, hooks["x"][0]["x"]  # x: (batch, T, hidden)
    hidden_size, n_heads = cfg.hidden_size, cfg.num_attention_heads
    ln1, attn = blk.ln_1, blk.attn
    h = F.layer_norm(x, ln1.normalized_shape, ln1.weight, ln1.bias, ln1.eps)
    qkv = h @ attn.c_attn.weight + attn.c_attn.bias  # (batch, T, 3 * hidden)
    q, k, v = (split_heads(t, n_heads) for t in qkv.split(hidden_size, dim=-1))  # (batch, heads, T, d_head)
    scale = 1.0 / math.sqrt(hidden_size // n_heads) if cfg.scale_attn_weights else 1.0
    if cfg.scale_attn_by_inverse_layer_idx:
        scale /= float(layer + 1)
    T = input_ids.shape[1]
    mask = causal_mask(T, device=x.device) & padding_mask(attention_mask)  # (batch, 1, T, T)
    ctx, probs = scaled_dot_product_attention(q, k, v, mask, scale=scale)
    context = merge_heads(ctx)  # (batch, T, hidden)
    attn_out = context @ attn.c_proj.weight + attn.c_proj.bias
    mid = x + attn_out
    ln2, mlp = blk.ln_2, blk.mlp
    h2 = F.layer_norm(mid, ln2.normalized_shape, ln2.weight, ln2.bias, ln2.eps)
    block_out = mid + (mlp.act(h2 @ mlp.c_fc.weight + mlp.c_fc.bias) @ mlp.c_proj.weight + mlp.c_proj.bias)
    ours = dict(probs=probs, context=context, attn_output=attn_out, block_output=block_out)
    theirs = dict(
        probs=out.attentions[layer],
        context=hooks["context"][0]["x"],
        attn_output=hooks["attn_output"][0]["x"],
        block_output=hooks["block_output"][0]["x"],
    )
    described = dict(
        probs="causal softmax(QKᵀ/√d_k + mask), per head",
        context="heads merged, before c_proj",
        attn_output="after c_proj",
        block_output="x + attn + MLP(LN₂(·))",
    )
    return LayerRecomputation(ours, theirs, q, k, v, mask, described)


# --------------------------------------------------------------------------------------------------
# The rest of a Transformer block: positions, normalisation, the MLP, the residual stream
# --------------------------------------------------------------------------------------------------


def scaled_tolerance(reference: torch.Tensor, rel: float = 1e-5) -> dict[str, float]:
    """``assert_close`` tolerances scaled to the magnitudes compared: rtol = ``rel`` and atol = ``rel`` ×
    the largest |value| of ``reference``.

    Why: a float32 result that is a sum of many products (a matmul, a norm's mean) carries rounding error
    proportional to the size of the terms summed, i.e. to the largest magnitudes around it, not to each
    entry's own size; an entry that happens to be near 0 in a tensor of values ~100 is still off by ~1e-5.
    A real bug (a wrong position, a missing residual, the wrong norm) is off by a sizeable fraction of that
    scale, orders of magnitude more than ``rel``.
    """
    return dict(rtol=rel, atol=rel * max(float(reference.detach().abs().max()), 1e-30))


def gpt2_input_embeddings(model: PreTrainedModel, input_ids: torch.Tensor) -> torch.Tensor:
    """GPT-2's first hidden state from its own weight tensors: token embedding + learned position embedding.

    input_ids (batch, T) → (batch, T, hidden). GPT-2 learns one vector per position 0..n_positions−1
    (``wpe``) and *adds* it to the token's vector (``wte``); that sum is ``hidden_states[0]``.
    """
    # [learned-positions]
    base = model.base_model
    positions = torch.arange(input_ids.shape[-1], device=input_ids.device)  # 0, 1, …, T−1
    return base.wte.weight[input_ids] + base.wpe.weight[positions]  # (batch, T, hidden)
    # [/learned-positions]


def rope_cos_sin(position_ids: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotary position embedding tables (Su et al. 2021) in the layout of Llama-family models.

    position_ids (batch, T) → cos, sin of shape (batch, T, head_dim). Frequency i (i = 0 … head_dim/2 − 1) is
    θ_i = theta^(−2i/head_dim); position m rotates the coordinate pair (i, i + head_dim/2) by the angle m·θ_i.
    """
    # [rope]
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)  # (head_dim/2,)
    angles = position_ids[..., None].float() * inv_freq.to(position_ids.device)  # (batch, T, head_dim/2)
    angles = torch.cat([angles, angles], dim=-1)  # pair i with i + head_dim/2: the "half-split" layout
    return angles.cos(), angles.sin()
    # [/rope]


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each pair (x_i, x_{i+d/2}) of ``x`` (batch, heads, T, d) by its angle: cos, sin (batch, T, d).

    x'_i = x_i cos − x_{i+d/2} sin,  x'_{i+d/2} = x_{i+d/2} cos + x_i sin — a 2-D rotation per pair, so norms
    are unchanged and q'_m · k'_n depends on the positions only through m − n.
    """
    # [apply-rope]
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)  # (−x_{i+d/2}, x_i)
    return x * cos[:, None] + rotated * sin[:, None]  # cos, sin broadcast over the heads axis
    # [/apply-rope]


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    """LayerNorm (Ba et al. 2016) over the last axis: (x − mean) / √(var + eps) · weight + bias (biased var)."""
    # [norms]
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)  # the biased variance, as in torch's LayerNorm
    return (x - mean) / torch.sqrt(var + eps) * weight + bias
    # [/norms]


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm (Zhang & Sennrich 2019): x / √(mean(x²) + eps) · weight — no mean subtracted, no bias."""
    # [rms-norm]
    return x / torch.sqrt((x.float() ** 2).mean(-1, keepdim=True) + eps).to(x.dtype) * weight
    # [/rms-norm]


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """GPT-2's GELU (``gelu_new``): 0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³)))."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def gpt2_mlp(mlp: torch.nn.Module, h: torch.Tensor) -> torch.Tensor:
    """GPT-2's MLP from its weights: GELU(h W_fc + b_fc) W_proj + b_proj (Conv1D weights are (in, out))."""
    # [gpt2-mlp]
    return gelu_tanh(h @ mlp.c_fc.weight + mlp.c_fc.bias) @ mlp.c_proj.weight + mlp.c_proj.bias
    # [/gpt2-mlp]


def swiglu_mlp(mlp: torch.nn.Module, h: torch.Tensor) -> torch.Tensor:
    """Llama's gated MLP (SwiGLU, Shazeer 2020): W_down (SiLU(W_gate h) ⊙ W_up h), SiLU(z) = z·σ(z)."""
    # [swiglu-mlp]
    gate, up = h @ mlp.gate_proj.weight.T, h @ mlp.up_proj.weight.T  # (batch, T, d_ff) each
    return (gate * torch.sigmoid(gate) * up) @ mlp.down_proj.weight.T  # (batch, T, hidden)
    # [/swiglu-mlp]


@torch.no_grad()
def recompute_llama_layer(model: PreTrainedModel, layer: int, input_ids: torch.Tensor) -> LayerRecomputation:
    """Redo one decoder layer of a Llama-family model from its weight tensors; compare with the model.

    input_ids: (batch, T) (or (T,)), no padding; positions 0..T−1. The layer's input x is read with a hook:

        h = RMSNorm_1(x);  Q = h W_qᵀ, K = h W_kᵀ, V = h W_vᵀ        (n_heads, n_kv_heads, n_kv_heads heads)
        Q, K = RoPE(Q), RoPE(K)                                   rotary positions, from config's rope_theta
        K, V repeated n_heads / n_kv_heads times (grouped-query attention)
        context = merge(softmax(QKᵀ/√d_head + causal) V);  attn_output = context W_oᵀ
        mid = x + attn_output;  mlp_output = SwiGLU(RMSNorm_2(mid));  layer_output = mid + mlp_output

    Compared: our cos/sin tables ↔ the model's ``rotary_emb``; probs ↔ ``output_attentions``; context ↔ the
    input of ``o_proj``; attn_output ↔ output of ``self_attn``; mlp_output ↔ output of ``mlp``;
    layer_output ↔ output of the layer. Only the default RoPE (no scaling) is recomputed.
    """
    cfg = model.config
    rope = dict(getattr(cfg, "rope_parameters", None) or {})
    theta = rope.get("rope_theta", getattr(cfg, "rope_theta", None))
    if cfg.model_type != "llama" or rope.get("rope_type", "default") != "default" or theta is None:
        raise CourseError(
            f"recompute_llama_layer handles Llama models with default rotary positions; got model_type "
            f"{cfg.model_type!r}, rope {rope or 'none'}. Use a Llama-family checkpoint (e.g. the course's default, "
            "HuggingFaceTB/SmolLM2-135M-Instruct)."
        )
    base = model.base_model
    _check_layer(base.layers, layer)
    input_ids, _ = _ids_and_mask(model, input_ids, None)
    blk, sa = base.layers[layer], base.layers[layer].self_attn
    hooks = {
        "x": _capture(blk, inputs=True, kwarg="hidden_states"),
        "context": _capture(sa.o_proj, inputs=True, kwarg="input"),
        "attn_output": _capture(sa),
        "mlp_output": _capture(blk.mlp),
        "layer_output": _capture(blk),
    }
    try:
        with eager_attention(model):
            out = model(input_ids=input_ids, output_attentions=True, use_cache=False)
    finally:
        for _, handle in hooks.values():
            handle.remove()
    x = hooks["x"][0]["x"]  # (batch, T, hidden)
    batch, T = input_ids.shape
    d_head = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    n_heads, n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
    position_ids = torch.arange(T, device=x.device).expand(batch, T)
    cos, sin = rope_cos_sin(position_ids, d_head, float(theta))
    model_cos, model_sin = base.rotary_emb(x, position_ids)
    h = rms_norm(x, blk.input_layernorm.weight, blk.input_layernorm.variance_epsilon)

    def heads(t, n):  # (batch, T, n·d_head) → (batch, n, T, d_head)
        return t.view(batch, T, n, d_head).transpose(1, 2)

    q = apply_rope(heads(h @ sa.q_proj.weight.T, n_heads), cos, sin)
    k = apply_rope(heads(h @ sa.k_proj.weight.T, n_kv), cos, sin)
    v = heads(h @ sa.v_proj.weight.T, n_kv)
    k, v = (t.repeat_interleave(n_heads // n_kv, dim=1) for t in (k, v))  # head j reads kv head j // group
    mask = causal_mask(T, device=x.device)
    ctx, probs = scaled_dot_product_attention(q, k, v, mask, scale=d_head**-0.5)
    context = merge_heads(ctx)  # (batch, T, n_heads·d_head)
    attn_out = context @ sa.o_proj.weight.T
    mid = x + attn_out  # the residual stream: the attention's output is *added* to its input
    ln2 = blk.post_attention_layernorm
    mlp_out = swiglu_mlp(blk.mlp, rms_norm(mid, ln2.weight, ln2.variance_epsilon))
    ours = dict(
        cos=cos,
        sin=sin,
        probs=probs,
        context=context,
        attn_output=attn_out,
        mlp_output=mlp_out,
        layer_output=mid + mlp_out,
    )
    theirs = dict(
        cos=model_cos,
        sin=model_sin,
        probs=out.attentions[layer],
        context=hooks["context"][0]["x"],
        attn_output=hooks["attn_output"][0]["x"],
        mlp_output=hooks["mlp_output"][0]["x"],
        layer_output=hooks["layer_output"][0]["x"],
    )
    described = dict(
        cos="cos(m·θ_i), rotary table",
        sin="sin(m·θ_i), rotary table",
        probs="causal softmax(RoPE(Q) RoPE(K)ᵀ/√d_head), per head",
        context="heads merged, before o_proj",
        attn_output="after o_proj",
        mlp_output="SwiGLU(RMSNorm₂(x + attn))",
        layer_output="x + attn + MLP: the residual stream after the layer",
    )
    return LayerRecomputation(ours, theirs, q, k, v, mask, described)

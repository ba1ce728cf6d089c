"""The packed scorer (taught in chapter 03; used by chapters 03, 04 and 09): log P(label | context + input) for
many inputs and labels, computing a shared context once.

:func:`score_token_continuations` works on token ids. The context (BOS + shared tokens, all but the last) runs
once and its keys/values are kept; a batch of inputs is then *packed* into one sequence on top of that cache —
for each input, ``[last context token] + input``, followed by one segment per multi-token label — with a block
attention mask and explicit position ids, so each input computes exactly what it would in its own full prompt,
without padding and without copying the context's keys/values once per input.

Its callers: ``icl.score_label_words_cached`` (chapter 03: demonstrations as the shared context),
``prompts.continuation_logprobs`` (chapter 04: nothing shared but BOS), and through them chapter 09's chat
scoring. Its equality with one forward pass per (input, label) pair is tested in tests/test_icl.py and
tests/test_prompts.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from transformers import DynamicCache, PreTrainedModel

from .errors import CourseError, LabelWordError
from .frozen import cache_layers, check_context, expand_cache
from .scoring import check_reduction, reduce_logprobs


def check_lengths(model, n_context: int, input_ids: list[list[int]], label_ids: list[list[int]]) -> None:
    """Raise ContextWindowError when the longest prompt + label would not fit the model's context (shared by
    the packed scorer and ``icl.score_label_words_naive``)."""
    longest_input = max((len(q) for q in input_ids), default=0)
    longest_label = max(len(t) for t in label_ids)
    total = n_context + longest_input + longest_label
    check_context(
        model,
        total,
        what=(
            f"the longest prompt + label (context {n_context} + input {longest_input} + label {longest_label} tokens)"
        ),
    )


@torch.no_grad()
def encode_context_cache(model: PreTrainedModel, context_ids: Sequence[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Run the model once over ``context_ids`` and return each layer's (keys, values).

    Each tensor is (1, heads, len(context_ids), head_dim). An empty ``context_ids`` gives ``[]``.
    """
    if len(context_ids) == 0:
        return []
    ids = torch.tensor([list(context_ids)], device=model.device)  # (1, L)
    cache = model(input_ids=ids, use_cache=True, cache=DynamicCache(), logits_to_keep=1).cache  # no logits needed
    return cache_layers(cache)


def _packed_suffixes(lead: int, input_ids: list[list[int]], label_ids: list[list[int]], n_cached: int):
    """Lay out a batch's suffixes as ONE sequence on top of the context cache (no padding, no copies).

    Segments, in order: for input i, ``A_i = [lead] + input_i``; then, for each label c of several tokens,
    ``B_ic = label_c[:-1]`` (the tokens whose next-token logits score ``label_c[1:]``).
    Returns token ids (N,), position ids (N,), the segment's "owner" input (N,), a flag for A-segments (N,),
    a segment id (N,), and the bookkeeping of which logits score which label token.
    """
    ids, pos, owner, seg_id, is_a = [], [], [], [], []
    first_pos = []  # (row r) → index in the sequence of A_r's last token
    rest = []  # (r, c, index of the token predicting label_c[t+1], t+1)
    n_seg = 0
    for r, q in enumerate(input_ids):
        a = [lead] + q
        start = len(ids)
        ids += a
        pos += [n_cached + j for j in range(len(a))]
        owner += [r] * len(a)
        seg_id += [n_seg] * len(a)
        is_a += [True] * len(a)
        first_pos.append(start + len(a) - 1)
        n_seg += 1
        for c, lab in enumerate(label_ids):
            if len(lab) < 2:
                continue
            b_start = len(ids)
            feed = lab[:-1]
            ids += feed
            pos += [n_cached + len(a) + j for j in range(len(feed))]
            owner += [r] * len(feed)
            seg_id += [n_seg] * len(feed)
            is_a += [False] * len(feed)
            rest += [(r, c, b_start + j, j + 1) for j in range(len(feed))]
            n_seg += 1
    return (
        torch.tensor(ids),
        torch.tensor(pos),
        torch.tensor(owner),
        torch.tensor(is_a),
        torch.tensor(seg_id),
        first_pos,
        rest,
    )


def _packed_attention_mask(
    owner: torch.Tensor,
    is_a: torch.Tensor,
    seg_id: torch.Tensor,
    n_cached: int,
    dtype: torch.dtype,
    pos: torch.Tensor | None = None,
    window: int | None = None,
) -> torch.Tensor:
    """(1, 1, N, n_cached + N) additive mask: every token sees the whole context; inside the suffix, token u
    sees an earlier token v of its own segment, or of its own input's A-segment (a label continuation
    reads its input). 0 where allowed, the dtype's minimum where not. With a sliding ``window`` (and the
    suffix's positions ``pos``), u sees only keys fewer than ``window`` positions back, as the model's own
    sliding-window mask (``q − k < window``) does in the naive scorer."""
    n = len(owner)
    earlier = torch.arange(n).unsqueeze(0) <= torch.arange(n).unsqueeze(1)  # (N, N): v ≤ u
    same_seg = seg_id.unsqueeze(0) == seg_id.unsqueeze(1)
    reads_input = (owner.unsqueeze(0) == owner.unsqueeze(1)) & is_a.unsqueeze(0)  # v in u's input segment
    allowed = torch.cat([torch.ones(n, n_cached, dtype=torch.bool), earlier & (same_seg | reads_input)], dim=1)
    if window is not None:
        key_pos = torch.cat([torch.arange(n_cached), pos])  # the context sits at 0..n_cached-1
        allowed &= (pos.unsqueeze(1) - key_pos.unsqueeze(0)) < window
    mask = torch.zeros(allowed.shape, dtype=dtype)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[None, None]


def _packed_masks_for_layers(config, owner, is_a, seg_id, pos, n_cached: int, dtype: torch.dtype, device):
    """The packed mask for every kind of attention layer the model has, read from its config.

    A 4-D mask is used by every layer as it is, so a model's sliding window (``config.sliding_window``) must be
    built into it, or the cached scores differ from the naive ones once a prompt is longer than the window.
    Without ``layer_types`` a set window applies to every layer (Mistral, Phi-3): one sliding mask. With
    ``layer_types`` mixing full and sliding layers (Gemma 2, Qwen2 with use_sliding_window) the model takes a
    dict layer type → mask.
    """
    full = _packed_attention_mask(owner, is_a, seg_id, n_cached, dtype).to(device)
    window = getattr(config, "sliding_window", None)
    if not window:
        return full
    sliding = _packed_attention_mask(owner, is_a, seg_id, n_cached, dtype, pos=pos, window=int(window)).to(device)
    layer_types = set(getattr(config, "layer_types", None) or ["sliding_attention"])
    by_type = {"full_attention": full, "sliding_attention": sliding}
    unknown = layer_types - set(by_type)
    if unknown:
        raise CourseError(
            f"cached scoring knows full and sliding-window attention layers, not {sorted(unknown)}; "
            "use score_label_words_naive for this model"
        )
    if len(layer_types) == 1:
        return by_type[layer_types.pop()]
    return {t: by_type[t] for t in layer_types}


@torch.no_grad()  # a scorer: no graph (on SmolLM2 without it one call grew to 13.9 GB in 80 s, issue 27)
def score_token_continuations(
    model: PreTrainedModel,
    context_ids: Sequence[int],
    input_ids: Sequence[Sequence[int]],
    label_ids: Sequence[Sequence[int]],
    reduction: str = "sum",
    batch_size: int = 16,
    progress: bool = False,
) -> torch.Tensor:
    """:func:`score_label_words_cached` on token ids: log P(label_ids[c] | context_ids + input_ids[i]) → (n, C).

    ``context_ids`` starts with BOS and is shared (``[BOS]`` alone: nothing is cached, every input is its own
    prompt — chapter 04's templates score their multi-token words this way, ``prompts.continuation_logprobs``).
    """
    check_reduction(reduction)
    context_ids, input_ids = list(context_ids), [list(q) for q in input_ids]
    label_ids = [list(t) for t in label_ids]
    if not context_ids or not label_ids or any(len(t) == 0 for t in label_ids):
        raise LabelWordError("score_token_continuations needs a context (at least BOS) and labels of ≥ 1 token each")
    check_lengths(model, len(context_ids), input_ids, label_ids)
    device, dtype = model.device, model.dtype
    n_cached = len(context_ids) - 1  # the last context token leads each input
    context_layers = encode_context_cache(model, context_ids[:-1])  # [(1, heads, n_cached, head_dim)] × layers
    first_ids = torch.tensor([t[0] for t in label_ids])  # (C,)
    n_tokens = torch.tensor([len(t) for t in label_ids])  # (C,)
    max_tokens = int(n_tokens.max())
    out = torch.zeros(len(input_ids), len(label_ids))

    starts = range(0, len(input_ids), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="scoring", leave=False)
    for start in starts:
        rows = list(range(start, min(start + batch_size, len(input_ids))))
        ids, pos, owner, is_a, seg_id, first_pos, rest = _packed_suffixes(
            context_ids[-1], [input_ids[i] for i in rows], label_ids, n_cached
        )
        # (1, 1, N, n_cached + N), or one such mask per attention-layer type (sliding windows)
        mask = _packed_masks_for_layers(model.config, owner, is_a, seg_id, pos, n_cached, dtype, device)
        keep = torch.tensor(first_pos + [p for _, _, p, _ in rest])  # positions whose logits we need
        cache = expand_cache(context_layers, 1) if context_layers else DynamicCache()
        logits = model(
            input_ids=ids[None].to(device),
            attention_mask=mask,
            position_ids=pos[None].to(device),
            cache=cache,
            use_cache=True,
            logits_to_keep=keep.to(device),
        ).logits[0]  # (len(keep), vocab)
        logp = F.log_softmax(logits.float(), dim=-1).cpu()
        token_lp = torch.zeros(len(rows), len(label_ids), max_tokens)  # (b, C, max label tokens)
        token_lp[:, :, 0] = logp[: len(rows)][:, first_ids]
        for j, (r, c, _, t) in enumerate(rest):
            token_lp[r, c, t] = logp[len(rows) + j, label_ids[c][t]]
        out[rows] = reduce_logprobs(token_lp, n_tokens, reduction)
    return out

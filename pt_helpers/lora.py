"""LoRA and IA³ written from their equations, and He et al.'s unified view on a real layer (chapter 10).

Defined in chapter 10.

* ``LoraLinear`` wraps a frozen ``nn.Linear`` W (d_out, d_in) and adds a trained low-rank update
  (Hu et al. 2022, §4.1, eq. 3):  h = W x + (α / r) · B A x,  A (r, d_in) drawn (Kaiming-uniform as
  ``nn.Linear`` and PEFT, or Gaussian), B (d_out, r) zeros — so the adapted model starts equal to the base.
* ``merge`` folds the update into the weight, W ← W + (α/r) B A: a plain model, no extra latency.
* ``IA3Linear`` (Liu et al. 2022, §3.3): a learned vector l rescales a layer's output (keys, values:
  l ⊙ W x) or, for the feed-forward's down projection, its input — the FFN's intermediate activation
  (W (l ⊙ x)); l starts at ones.
* ``add_lora`` / ``add_ia3`` inject them into a model in place; which layers is read from the model's config
  (``model_type``) through PEFT's own default-target tables, then checked against the model's modules.
* ``peft_lora_twin`` / ``peft_ia3_twin``: the same adapters built by PEFT on a copy of the same weights, with
  our numbers copied in — the tests assert equal logits.
* ``prefix_as_gated_adapter``: He et al. (2022, §3): a prefix is an adapter f(x W₁) W₂ with
  W₁ = P_Kᵀ, W₂ = P_V, f = softmax, added through a gate λ(x) — computed on a real layer by
  ``prefix.prefix_forms_on_layer`` and compared with the layer's own output.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

from .errors import CourseError
from .frozen import count_trainable, freeze

LORA_INITS = ("kaiming", "gaussian")


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise CourseError(f"{name} must be a positive integer, got {value!r}")
    return value


class LoraLinear(nn.Module):
    """A frozen ``nn.Linear`` plus (α / r) · B A (Hu et al. 2022, eq. 3)."""

    def __init__(self, base: nn.Linear, r: int, alpha: float, init: str = "kaiming"):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise CourseError(f"LoRA wraps an nn.Linear, got {type(base).__name__}")
        _positive_int(r, "r (the LoRA rank)")
        if not (isinstance(alpha, (int, float)) and alpha > 0):
            raise CourseError(f"alpha must be a positive number, got {alpha!r}")
        if init not in LORA_INITS:
            raise CourseError(f"init must be one of {LORA_INITS}, got {init!r}")
        self.base = base.requires_grad_(False)
        self.r, self.alpha, self.scaling = r, float(alpha), float(alpha) / r
        w = base.weight
        self.A = nn.Parameter(torch.empty(r, base.in_features, dtype=w.dtype, device=w.device))
        self.B = nn.Parameter(torch.zeros(base.out_features, r, dtype=w.dtype, device=w.device))
        # [lora-init]
        if init == "kaiming":  # what nn.Linear (and PEFT's default) draws for a weight of this shape
            nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
        else:  # PEFT's "gaussian": N(0, 1/r²)
            nn.init.normal_(self.A, std=1.0 / r)
        # B = 0: the update B A is zero at the start, so training starts from the base model exactly
        # [/lora-init]

    def delta_weight(self) -> torch.Tensor:
        """(α / r) · B A, the update in the weight's shape (d_out, d_in)."""
        return self.scaling * (self.B @ self.A)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # [lora-forward]
        # W x + (α/r) B (A x): two thin products, never the d_out × d_in matrix B A
        return self.base(x) + self.scaling * ((x @ self.A.T) @ self.B.T)
        # [/lora-forward]


class IA3Linear(nn.Module):
    """A frozen ``nn.Linear`` whose output (``feedforward=False``: l ⊙ W x) or input (``True``: W (l ⊙ x)) is
    rescaled by a learned vector l, initialised to ones (Liu et al. 2022, §3.3)."""

    def __init__(self, base: nn.Linear, feedforward: bool = False):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise CourseError(f"IA³ wraps an nn.Linear, got {type(base).__name__}")
        self.base = base.requires_grad_(False)
        self.feedforward = bool(feedforward)
        n = base.in_features if feedforward else base.out_features
        self.scale = nn.Parameter(torch.ones(n, dtype=base.weight.dtype, device=base.weight.device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # [ia3-forward]
        if self.feedforward:  # the FFN's intermediate activation, rescaled before the down projection
            return self.base(x * self.scale)
        return self.base(x) * self.scale  # keys or values, rescaled per output feature
        # [/ia3-forward]


def _model_type(model) -> str:
    config = getattr(model, "config", None)
    if config is None or not getattr(config, "model_type", None):
        raise CourseError("the model has no config.model_type: pass targets=... (names of its nn.Linear modules)")
    return config.model_type


def _linear_names(model, targets) -> list[str]:
    """Full names of the ``nn.Linear`` modules whose last name part is in ``targets``; error if none."""
    targets = tuple(targets)
    found = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and n.rpartition(".")[2] in targets]
    if not found:
        linear = sorted({n.rpartition(".")[2] for n, m in model.named_modules() if isinstance(m, nn.Linear)})
        raise CourseError(f"no nn.Linear of this model is named {targets}; its linear layers are named {linear}")
    return found


def _layers_named(model, targets) -> list[nn.Linear]:
    """The linear layers named ``targets``, plain or already wrapped by LoRA / IA³ (then their frozen base)."""
    targets = tuple(targets)
    wrapped = [m.base for n, m in model.named_modules()
               if isinstance(m, (LoraLinear, IA3Linear)) and n.rpartition(".")[2] in targets]  # fmt: skip
    return wrapped or list(map(model.get_submodule, _linear_names(model, targets)))


def target_layers(model, targets=None) -> dict[str, nn.Linear]:
    """{full name: layer} of LoRA's target layers (``lora_targets`` when ``targets`` is None), before injection."""
    names = _linear_names(model, lora_targets(model) if targets is None else targets)
    return {name: model.get_submodule(name) for name in names}


def lora_targets(model) -> tuple[str, ...]:
    """LoRA's default layers for ``model``: PEFT's table for its ``config.model_type`` (Llama: q_proj, v_proj —
    the query and value projections, Hu et al. 2022 §7.1), checked to name nn.Linear modules of the model."""
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as TABLE

    kind = _model_type(model)
    if kind not in TABLE:
        raise CourseError(f"PEFT has no default LoRA layers for model_type {kind!r}: pass targets=...")
    _layers_named(model, TABLE[kind])
    return tuple(TABLE[kind])


def ia3_targets(model) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """IA³'s default (targets, feed-forward targets) for ``model`` from PEFT's tables (Llama: keys, values and
    the FFN's down projection, whose *input* is rescaled), checked against the model's modules."""
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING as FF
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING as TABLE

    kind = _model_type(model)
    if kind not in TABLE or kind not in FF:
        raise CourseError(f"PEFT has no default IA³ layers for model_type {kind!r}: pass targets=...")
    _layers_named(model, TABLE[kind])
    return tuple(TABLE[kind]), tuple(FF[kind])


def _replace(model, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


def add_lora(
    model, r: int = 8, alpha: float | None = None, targets=None, *, init: str = "kaiming", seed: int = 0
) -> list[str]:
    """Freeze ``model`` and wrap its target ``nn.Linear`` layers in ``LoraLinear`` (in place); returns their names.

    ``alpha`` None: 2 r (the comparison of chapter 06 uses the same). ``targets`` None: ``lora_targets(model)``.
    A is drawn from ``seed`` (the global random state is left as it was)."""
    _positive_int(r, "r (the LoRA rank)")
    if any(isinstance(m, (LoraLinear, IA3Linear)) for m in model.modules()):
        raise CourseError("this model already has LoRA / IA³ layers: add them to a fresh copy (copy.deepcopy(base))")
    alpha = 2 * r if alpha is None else alpha
    names = _linear_names(model, lora_targets(model) if targets is None else targets)
    freeze(model)
    state = torch.random.get_rng_state()
    torch.manual_seed(int(seed))
    try:
        for name in names:
            _replace(model, name, LoraLinear(model.get_submodule(name), r, alpha, init))
    finally:
        torch.random.set_rng_state(state)
    return names


def add_ia3(model, targets=None, feedforward=None) -> list[str]:
    """Freeze ``model`` and wrap its IA³ target layers in ``IA3Linear`` (in place); returns their names."""
    if targets is None:
        targets, default_ff = ia3_targets(model)
        feedforward = default_ff if feedforward is None else feedforward
    feedforward = tuple(feedforward or ())
    names = _linear_names(model, targets)
    freeze(model)
    for name in names:
        _replace(model, name, IA3Linear(model.get_submodule(name), name.rpartition(".")[2] in feedforward))
    return names


def merge(model, in_place: bool = False) -> nn.Module:
    """``model`` with every ``LoraLinear`` folded into a plain ``nn.Linear``: W ← W + (α/r) B A.

    A copy by default; ``in_place=True`` changes ``model`` itself and holds no second copy of its weights."""
    merged = model if in_place else copy.deepcopy(model)
    # [lora-merge-ours]
    for name, module in list(merged.named_modules()):
        if isinstance(module, LoraLinear):
            with torch.no_grad():
                module.base.weight += module.delta_weight()  # W + (α/r) B A, in the layer's own storage
            _replace(merged, name, module.base)  # a plain nn.Linear again: no extra latency
    # [/lora-merge-ours]
    return merged


def unwrap(model, in_place: bool = False) -> nn.Module:
    """``model`` with every ``LoraLinear`` / ``IA3Linear`` replaced by its frozen base layer (a copy by default)."""
    plain = model if in_place else copy.deepcopy(model)
    for name, module in list(plain.named_modules()):
        if isinstance(module, (LoraLinear, IA3Linear)):
            _replace(plain, name, module.base)
    return plain


def lora_parameter_count(model, r: int, targets=None) -> int:
    """r · (d_in + d_out) summed over the target layers: the numbers LoRA trains (before injecting it)."""
    layers = _layers_named(model, lora_targets(model) if targets is None else targets)  # before add_lora or after
    return sum(r * (m.in_features + m.out_features) for m in layers)


def trainable_count(model) -> int:
    """Numbers that require grad (``frozen.count_trainable``)."""
    return count_trainable(model)


def peft_lora_twin(model, in_place: bool = False):
    """PEFT's LoRA on a copy of the same base weights, with our A and B copied in (a ``PeftModel``).

    ``model`` carries ``LoraLinear`` layers (``add_lora``); every one must share r and α (PEFT's one config).
    ``in_place=True`` builds the twin from ``model`` itself (no copy of its weights; ``model`` is consumed)."""
    from peft import LoraConfig, get_peft_model

    ours = {n: m for n, m in model.named_modules() if isinstance(m, LoraLinear)}
    if not ours:
        raise CourseError("the model has no LoraLinear layer: call lora.add_lora(model) first")
    (r, alpha), *more = {(m.r, m.alpha) for m in ours.values()}
    if more:
        raise CourseError("PEFT's twin needs one r and alpha for every layer")
    targets = sorted({n.rpartition(".")[2] for n in ours})
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, target_modules=targets, bias="none")
    twin = get_peft_model(unwrap(model, in_place), config)
    with torch.no_grad():
        for name, m in ours.items():  # our modules stay alive here even when unwrapped in place
            layer = twin.base_model.model.get_submodule(name)
            layer.lora_A["default"].weight.copy_(m.A)
            layer.lora_B["default"].weight.copy_(m.B)
    return twin.eval()


def peft_ia3_twin(model, in_place: bool = False):
    """PEFT's IA³ on a copy of the same base weights, with our vectors copied in (a ``PeftModel``);
    ``in_place=True``: built from ``model`` itself, which is consumed."""
    from peft import IA3Config, get_peft_model

    ours = {n: m for n, m in model.named_modules() if isinstance(m, IA3Linear)}
    if not ours:
        raise CourseError("the model has no IA3Linear layer: call lora.add_ia3(model) first")
    targets = sorted({n.rpartition(".")[2] for n in ours})
    ff = sorted({n.rpartition(".")[2] for n, m in ours.items() if m.feedforward})
    twin = get_peft_model(unwrap(model, in_place), IA3Config(target_modules=targets, feedforward_modules=ff))
    with torch.no_grad():
        for name, m in ours.items():
            target = twin.base_model.model.get_submodule(name).ia3_l["default"]
            target.copy_(m.scale.reshape(target.shape))  # PEFT keeps (d_out, 1) or (1, d_in)
    return twin.eval()


@dataclass
class GatedAdapterView:
    """He et al.'s unified view of one prefix layer (``prefix_as_gated_adapter``), per query head, shapes
    (B, H, T, d_h) and (B, H, T): ``gate`` λ(x); ``own`` the head's attention over the input alone;
    ``adapter`` f(x W₁) W₂ = softmax(q P_Kᵀ/√d_h) P_V, a bottleneck of n units; ``view`` = own + λ (adapter − own);
    ``model`` the layer's own merged heads; ``max_error`` max |view − model|; ``scale`` max |model|."""

    gate: torch.Tensor
    own: torch.Tensor
    adapter: torch.Tensor
    view: torch.Tensor
    model: torch.Tensor
    max_error: float
    scale: float


@torch.no_grad()
def prefix_as_gated_adapter(prompted, input_ids: torch.Tensor, layer: int) -> GatedAdapterView:
    """A deep prompt's layer ``layer`` written as He et al.'s gated adapter (2022, §3), on a real model:
    h ← h + λ(x) · (f(x W₁) W₂ − h), with W₁ = P_Kᵀ (down to n units), f = softmax, W₂ = P_V (up to d_h).

    ``prefix.prefix_forms_on_layer`` runs the model and gives the gate λ(x), the rotary tables and the layer's
    own output (one home for the hooks); the queries, keys and values the layer computed in that run are
    read here by hooks on its projections, and the adapter form is compared with the layer's output."""
    from .attention import apply_rope
    from .prefix import prefix_forms_on_layer

    attn = prompted.model.base_model.layers[layer].self_attn
    seen: dict = {}
    hooks = [getattr(attn, p).register_forward_hook(lambda m, a, out, p=p: seen.setdefault(p, out))
             for p in ("q_proj", "k_proj", "v_proj")]  # fmt: skip
    try:
        forms = prefix_forms_on_layer(prompted, input_ids, layer)
    finally:
        for h in hooks:
            h.remove()
    d_h, T = attn.head_dim, input_ids.shape[1]
    q, k, v = (seen[p].view(1, T, -1, d_h).transpose(1, 2) for p in ("q_proj", "k_proj", "v_proj"))
    q, k = apply_rope(q, forms.cos, forms.sin), apply_rope(k, forms.cos, forms.sin)
    prefix_k, prefix_v = prompted.adapter.virtual_key_values()[layer]
    group = q.shape[1] // k.shape[1]  # grouped-query attention: query head h reads key/value head h // group
    k, v, prefix_k, prefix_v = (t.repeat_interleave(group, dim=1) for t in (k, v, prefix_k, prefix_v))
    # [unified-view]
    scale = d_h**-0.5
    future = torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1)
    own = torch.softmax((q @ k.transpose(-1, -2) * scale).masked_fill(future, float("-inf")), -1) @ v  # h
    adapter = torch.softmax(q @ prefix_k.transpose(-1, -2) * scale, -1) @ prefix_v  # f(x W₁) W₂
    view = own + forms.gate[..., None] * (adapter - own)  # h + λ(x) Δh: an adapter through a gate
    # [/unified-view]
    model_out = forms.model_context
    return GatedAdapterView(forms.gate, own, adapter, view, model_out, float((view - model_out).abs().max()),
                            float(model_out.abs().max()))  # fmt: skip

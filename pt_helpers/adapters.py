"""One protocol for every prompt method, and the one engine that runs any of them on a frozen model.

Taught in chapters 05 (soft prompts) and 06 (deep prompts). A prompt *adapter* is a small trainable
module that hands the frozen model n virtual tokens in one of two forms:

* ``virtual_embeddings(batch)`` — n input vectors (B, n, d) read before the text (soft prompt, P-tuning);
* ``virtual_key_values()`` — per layer, n keys and values (1, n_kv_heads, n, head_dim) that the text
  attends to through the model's key/value cache (prefix tuning / P-Tuning v2).

``PromptedModel(model, adapter)`` turns either form into outputs for the *real* tokens only:

* causal LM: logits (B, T, V) and the next-token loss. Virtual tokens come first, so in a causal model
  they never see the text: their keys/values are the same for every example. The engine computes them
  once for batch 1 and expands them over the batch as a cache (``frozen.expand_cache``), whatever the
  adapter — for a soft prompt that is the shared prompt cache of chapter 05;
* encoder: hidden states (B, T, d). A soft prompt is concatenated to the input embeddings (in a
  bidirectional encoder the prompt also reads the text); a deep prompt goes through the cache.

A new method is one subclass of ``PromptAdapter`` with ``register_adapter``: it implements one of the two
forms, ``saved_tensors`` / ``saved_settings`` / ``from_saved`` (the checkpoint format is shared,
``pt_helpers.checkpoint``), and nothing else.

The method registry (``register_method``, modelled on PEFT's ``register_peft_method``, which each PEFT
tuner calls once in its ``__init__``) holds everything else the code knows about a method, once: its
adapter class, its settings (a dataclass whose fields carry their help text in ``metadata["help"]``), its
valid inits and default init, its default learning rate and its factory. ``training.TrainSettings``, the
CLI (``pt_helpers.train``: ``--method`` choices, help, the adapter it builds) and chapter 06's comparison
all read it; README.md, "Adding a method", says how to add one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from transformers import DynamicCache

from .errors import CourseError, PromptShapeError
from .frozen import (
    cache_layers,
    check_context,
    expand_cache,
    extend_mask,
    freeze,
    input_embeddings,
    is_causal_lm,
    real_position_ids,
)

ADAPTERS: dict[str, type[PromptAdapter]] = {}


def register_adapter(cls: type[PromptAdapter]) -> type[PromptAdapter]:
    """Class decorator: make an adapter class known by its ``method`` name (checkpoints load it by that name)."""
    ADAPTERS[cls.method] = cls
    return cls


TRAINS = ("prompt", "model", "features")  # what a method trains: an adapter | the model's own weights | a probe


def option(default: Any, help: str, choices: tuple | None = None) -> Any:  # noqa: A002  (argparse's word)
    """A settings field: its default, the help text the CLI shows and (optionally) its valid values."""
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass(frozen=True)
class Method:
    """Everything the code knows about one training method, registered once with ``register_method``.

    ``factory(model, tokenizer, settings, *, init_text, label_words)`` returns the new adapter (``trains``
    ``"prompt"``) or prepares the model in place and returns None (``"model"``: LoRA, full fine-tuning);
    ``settings`` is any object with ``n_virtual_tokens``, ``init``, ``seed`` and the fields of
    ``options``, and optionally ``task`` (the task being trained: the soft prompt's "vocab" init counts its
    training split) — ``training.TrainSettings`` is one. ``options``: the method's own settings, a dataclass
    whose fields carry ``metadata["help"]`` (use ``option``); ``inits``: the valid ``init`` values,
    ``default_init`` the one used when none is given; ``default_lr``: the learning rate used when none is
    given. Only ``trains="prompt"`` methods are offered by the CLI (their adapters are saved as a prompt).
    """

    name: str
    summary: str  # one line: what is trained (the CLI's --method help)
    factory: Callable | None
    adapter_class: type | None = None
    options: type | None = None
    inits: tuple[str, ...] = ()
    default_init: str | None = None
    default_lr: float = 1e-2
    trains: str = "prompt"
    defined_in: str = ""  # the chapter that teaches it

    def option_fields(self) -> tuple:
        return fields(self.options) if self.options is not None else ()

    def option_values(self, settings) -> dict:
        """This method's own settings, read from ``settings`` (a missing one takes the method's default)."""
        return {f.name: getattr(settings, f.name, f.default) for f in self.option_fields()}


METHODS: dict[str, Method] = {}


def register_method(method: Method) -> Method:
    """Make ``method`` known to the settings, the CLI and the comparison (as PEFT's ``register_peft_method``).

    A name is registered once: registering another method under a taken name is an error (re-registering
    the same object, as a module reload does, is not)."""
    if not isinstance(method, Method):
        raise CourseError(f"register_method takes a Method, got {type(method).__name__}")
    if method.trains not in TRAINS:
        raise CourseError(f"Method {method.name!r}: trains must be one of {TRAINS}, got {method.trains!r}")
    if method.inits and method.default_init not in method.inits:
        raise CourseError(f"Method {method.name!r}: default_init {method.default_init!r} is not in {method.inits}")
    for f in method.option_fields():
        if not f.metadata.get("help"):
            raise CourseError(f"Method {method.name!r}: option {f.name!r} has no help (declare it with option())")
    old = METHODS.get(method.name)
    if old is not None and old != method:
        raise CourseError(f"a method called {method.name!r} is already registered ({old.summary!r})")
    METHODS[method.name] = method
    return method


def unregister_method(name: str) -> None:
    """Forget a registered method (tests register toy methods and remove them again)."""
    METHODS.pop(name, None)


def get_method(name: str) -> Method:
    """The registered method ``name``; an unknown name lists the registered ones."""
    if name not in METHODS:
        raise CourseError(f"unknown method {name!r}; registered methods: {sorted(METHODS)}")
    return METHODS[name]


def method_names(trains: str | None = None) -> tuple[str, ...]:
    """Registered method names in the order the course teaches them (by ``defined_in``; then methods that name
    no chapter, by name), optionally only those that train ``trains``. Stable whatever the import order."""
    chosen = [m for m in METHODS.values() if trains is None or m.trains == trains]
    return tuple(m.name for m in sorted(chosen, key=lambda m: (not m.defined_in, m.defined_in, m.name)))


class PromptAdapter(nn.Module):
    """The protocol. Subclasses set ``method`` and implement one of the two ``virtual_*`` forms."""

    method: ClassVar[str] = ""

    @property
    def n_virtual_tokens(self) -> int:
        raise NotImplementedError

    def virtual_embeddings(self, batch_size: int = 1) -> torch.Tensor | None:
        """(batch, n, d) input vectors, or None when the adapter works through the key/value cache."""
        return None

    def virtual_key_values(self) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
        """Per layer (keys, values), each (1, n_kv_heads, n, head_dim), or None for an input-layer prompt."""
        return None

    def distinct_prompts(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(K distinct prompts' input vectors (K, n, d), which one row b reads (B,)) for a shared cache.

        One prompt for the whole batch: ``(virtual_embeddings(1), None)``. An adapter whose rows read different
        prompts (``serving.MixedPrompts``) returns its K prompts and the row index, so a causal LM runs each of
        the K prompts once and every row attends to its own one's cached keys/values.
        """
        return self.virtual_embeddings(1), None

    def check_fits(self, model: nn.Module) -> None:
        """Raise ``PromptShapeError`` when this adapter's shapes do not fit ``model``."""

    def saved_tensors(self) -> dict[str, torch.Tensor]:
        """What a checkpoint stores (after any reparameterisation): name → tensor."""
        raise NotImplementedError

    def saved_settings(self) -> dict:
        """JSON-able settings that ``from_saved`` needs besides the tensors."""
        return {}

    @classmethod
    def from_saved(cls, model: nn.Module, tensors: dict[str, torch.Tensor], settings: dict) -> PromptAdapter:
        raise NotImplementedError


@dataclass
class PromptedOutput:
    """Outputs over the real tokens only: ``logits`` (B, T, V) of a causal LM or ``hidden`` (B, T, d) of an
    encoder; ``loss`` when labels were given; ``attention_mask`` of the returned positions."""

    logits: torch.Tensor | None = None
    loss: torch.Tensor | None = None
    hidden: torch.Tensor | None = None
    attention_mask: torch.Tensor | None = None


class PromptedModel(nn.Module):
    """A frozen model reading an adapter's virtual tokens (or no adapter: the plain frozen model).

    Real tokens take positions n, n+1, … counted over non-padding tokens, so left, right and no padding
    give the same numbers (``frozen.real_position_ids``). ``share_prompt_cache=False`` makes a causal LM
    read a soft prompt by concatenation ``[P; E(x)]`` per example, as PEFT does (same numbers, slower).
    ``keep_input_positions`` (deep prompts; default True for encoders, False for causal LMs): the input
    keeps positions 0..T-1 as without a prefix, instead of n..n+T-1.
    """

    def __init__(
        self,
        model: nn.Module,
        adapter: PromptAdapter | None = None,
        *,
        share_prompt_cache: bool = True,
        keep_input_positions: bool | None = None,
    ):
        super().__init__()
        if not isinstance(model, nn.Module) or not hasattr(model, "config"):
            raise TypeError(
                f"model must be a transformers model, got {type(model).__name__}: pass the model "
                "first (model, tokenizer = load_model(...)), then the adapter"
            )
        if adapter is not None and not isinstance(adapter, PromptAdapter):
            raise TypeError(
                f"adapter must be a PromptAdapter (SoftPrompt, PrefixEncoder …) or None, got {type(adapter).__name__}"
            )
        self.model = freeze(model)
        self.adapter = adapter
        self.is_causal = is_causal_lm(model)
        self.share_prompt_cache = share_prompt_cache
        self.keep_input_positions = (not self.is_causal) if keep_input_positions is None else keep_input_positions
        if adapter is not None:
            adapter.check_fits(model)

    @property
    def n_virtual_tokens(self) -> int:
        return 0 if self.adapter is None else self.adapter.n_virtual_tokens

    @property
    def device(self) -> torch.device:
        return input_embeddings(self.model).device

    def train(self, mode: bool = True):
        """Train mode for the adapter only: the frozen base model stays in eval mode (no dropout)."""
        super().train(mode)
        self.model.eval()
        return self

    # --- the virtual tokens as a cache (causal LMs, and deep prompts everywhere) ----------------------
    def prompt_cache(self, batch_size: int):
        """(cache over the batch, logits (1, V) of the last virtual token or None).

        A deep prompt *is* keys/values. A soft prompt's keys/values are computed by running the frozen
        model once on the n prompt vectors (batch 1, gradients flow); the last virtual token's logits
        predict the first real token.
        """
        n = self.n_virtual_tokens
        layers, last_logits, rows = self.adapter.virtual_key_values(), None, None
        if layers is None:
            prompts, rows = self.adapter.distinct_prompts()  # (K, n, d); K = 1 unless rows read different prompts
            # An explicit config-less DynamicCache keeps every virtual token's keys/values in every layer. The
            # model's own default cache (built from its config) gives sliding-window layers (every other layer of
            # Gemma 2) a layer that keeps only the last window − 1 tokens, so with n ≥ window those layers lost
            # virtual tokens and the text's attention mask no longer matched the cache. A full layer is exact: a
            # sliding-window layer still applies its window through the attention mask, by position.
            out = self.model(
                inputs_embeds=prompts,
                use_cache=True,
                logits_to_keep=1,
                cache=DynamicCache(),
                position_ids=torch.arange(n, device=self.device).expand(len(prompts), n),
            )
            layers = cache_layers(out.cache)
            last_logits = out.logits[:, -1]
        if rows is not None:
            # [row-cache]
            # K prompts ran once (K·n positions); row b gathers its own prompt's keys/values, so a mixed batch
            # costs K·n + B·T positions instead of concatenation's B·(n + T).
            rows = rows.to(self.device)
            layers = [(k.index_select(0, rows), v.index_select(0, rows)) for k, v in layers]
            return expand_cache(layers, batch_size, self.model.dtype), last_logits.index_select(0, rows)
            # [/row-cache]
        return expand_cache(layers, batch_size, self.model.dtype), last_logits

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        return_prompt_states: bool = False,
        logits_to_keep: int = 0,
    ) -> PromptedOutput:
        """input_ids, attention_mask, labels (−100 = ignore): (B, T) → outputs over the T real tokens.

        ``logits_to_keep`` (causal LMs; transformers' argument): ``k > 0`` returns the logits of the last k
        real positions only, (B, k, V) — the LM head runs only there. A label-word head reads one position;
        all T × V of them were 49,152 floats a position on SmolLM2. ``0``: every position (the loss needs them).
        """
        if not torch.is_tensor(input_ids):
            raise TypeError(f"input_ids must be a (batch, length) tensor of token ids, got {type(input_ids).__name__}")
        if input_ids.dim() == 1:
            input_ids = input_ids.unsqueeze(0)
        B, T = input_ids.shape
        n = self.n_virtual_tokens
        check_context(
            self.model,
            n + T,
            f"{n} virtual tokens + {T} input tokens",
            fix=f"use fewer virtual tokens or truncate the input to {max(0, T - n)} tokens",
        )
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if self.is_causal:
            if not (isinstance(logits_to_keep, int) and 0 <= logits_to_keep):
                raise CourseError(f"logits_to_keep must be an integer ≥ 0 (0 = all positions), got {logits_to_keep!r}")
            if logits_to_keep and labels is not None:
                raise CourseError("labels need the logits of every position: pass logits_to_keep=0 with labels")
            return self._causal(input_ids, attention_mask, labels, logits_to_keep)
        return self._encoder(input_ids, attention_mask, return_prompt_states)

    def _causal(self, input_ids, attention_mask, labels, logits_to_keep: int = 0) -> PromptedOutput:
        B, n = input_ids.shape[0], self.n_virtual_tokens
        pos = real_position_ids(attention_mask, n)
        last_virtual = None
        # only passed when set, so a model class without the argument still runs the default
        keep = {"logits_to_keep": logits_to_keep} if logits_to_keep else {}
        if self.adapter is None:
            logits = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=pos, **keep).logits
        elif self.share_prompt_cache or self.adapter.virtual_embeddings(1) is None:
            cache, last_virtual = self.prompt_cache(B)
            logits = self.model(
                input_ids=input_ids,
                attention_mask=extend_mask(attention_mask, n),
                position_ids=pos,
                cache=cache,
                use_cache=True,
                **keep,
            ).logits  # (B, T or logits_to_keep, V)
        else:  # concatenation, as PEFT does
            embeds = torch.cat([self.adapter.virtual_embeddings(B), self.model.get_input_embeddings()(input_ids)], 1)
            full_pos = torch.cat([torch.arange(n, device=pos.device).expand(B, n), pos], 1)
            # The head runs only where a logit is used, the last virtual position and the input's T: at GPT-2's
            # vocabulary, logits for n = 100 virtual positions of a batch of 16 alone are 300 MiB, plus the
            # same again for their gradient.
            kept = self.model(
                inputs_embeds=embeds,
                attention_mask=extend_mask(attention_mask, n),
                position_ids=full_pos,
                logits_to_keep=logits_to_keep or input_ids.shape[1] + 1,
            ).logits  # (B, 1 + T, V), or (B, logits_to_keep, V)
            logits, last_virtual = (kept, None) if logits_to_keep else (kept[:, 1:], kept[:1, 0])
        loss = None if labels is None else next_token_loss(logits, labels, attention_mask, last_virtual)
        return PromptedOutput(logits=logits, loss=loss, attention_mask=attention_mask)

    def _encoder(self, input_ids, attention_mask, return_prompt_states) -> PromptedOutput:
        B, T = input_ids.shape
        n = self.n_virtual_tokens
        if self.adapter is None:
            hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            return PromptedOutput(hidden=hidden, attention_mask=attention_mask)
        mask = extend_mask(attention_mask, n)
        embeds = self.adapter.virtual_embeddings(B)
        if embeds is not None:  # soft prompt before [CLS], as PEFT does; the prompt reads the text too
            embeds = torch.cat([embeds, self.model.get_input_embeddings()(input_ids)], 1)  # (B, n+T, d)
            pos = torch.cat(
                [torch.arange(n, device=input_ids.device).expand(B, n), real_position_ids(attention_mask, n)], 1
            )
            hidden = self.model(
                inputs_embeds=embeds, attention_mask=mask, position_ids=pos, token_type_ids=torch.zeros_like(mask)
            ).last_hidden_state
            if return_prompt_states:
                return PromptedOutput(hidden=hidden, attention_mask=mask)
            return PromptedOutput(hidden=hidden[:, n:], attention_mask=attention_mask)
        if return_prompt_states:
            raise CourseError(
                "a deep prompt has no output states of its own (it lives in the key/value cache): "
                "pool_prompt applies to input-layer prompts only"
            )
        pos = (
            torch.arange(T, device=input_ids.device).expand(B, T)
            if self.keep_input_positions
            else real_position_ids(attention_mask, n)
        )
        cache, _ = self.prompt_cache(B)
        hidden = self.model(input_ids=input_ids, attention_mask=mask, position_ids=pos, cache=cache).last_hidden_state
        return PromptedOutput(hidden=hidden, attention_mask=attention_mask)

    @torch.no_grad()
    def generate(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, max_new_tokens: int = 20
    ) -> torch.Tensor:
        """Greedy decoding after the virtual tokens (causal LMs); pad on the left. → (B, max_new_tokens) ids."""
        if not self.is_causal:
            raise CourseError("generate needs a causal language model; this one is an encoder")
        B, T = input_ids.shape
        n = self.n_virtual_tokens
        check_context(self.model, n + T + max_new_tokens, f"{n} virtual + {T} input + {max_new_tokens} new tokens")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        mask, pos = extend_mask(attention_mask, n), real_position_ids(attention_mask, n)
        cache = self.prompt_cache(B)[0] if self.adapter is not None else None
        out = self.model(input_ids=input_ids, attention_mask=mask, position_ids=pos, cache=cache, use_cache=True)
        new_tokens, next_pos = [], pos[:, -1:] + 1
        for _ in range(max_new_tokens):
            token = out.logits[:, -1].argmax(-1, keepdim=True)  # (B, 1)
            new_tokens.append(token)
            mask = torch.cat([mask, mask.new_ones(B, 1)], 1)
            out = self.model(
                input_ids=token, attention_mask=mask, position_ids=next_pos, cache=out.cache, use_cache=True
            )
            next_pos = next_pos + 1
        return torch.cat(new_tokens, 1)


def next_token_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    attention_mask: torch.Tensor,
    last_virtual_logits: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean cross-entropy of every label (−100 = ignore) that something predicts.

    Token t is predicted by the previous *real* token (whatever padding sits between them). A text's first
    real token is predicted by the last virtual token when the prompt has one (a soft prompt: exactly as
    PEFT pads its labels), and is not scored when it has none (a deep prompt or no prompt: as the model's
    own shifted loss). logits (B, T, V), labels and mask (B, T), last_virtual_logits (1, V) or, when rows read
    different prompts, (B, V).
    """
    prev_is_real = attention_mask[:, :-1].bool()  # (B, T-1)
    # The labels move one step left, not the logits: position t is scored against label t+1, and the last
    # position against nothing (−100). Slicing the logits instead (logits[:, :-1]) copies all B·T·V of them
    # and its backward fills a zero tensor of that size (with the prefix's per-layer selections, 0.16 s of a
    # 6.7 s GPT-2 prefix step on one CPU thread: benchmarks/README.md).
    next_labels = F.pad(labels[:, 1:].masked_fill(~prev_is_real, -100), (0, 1), value=-100)  # (B, T)
    loss_sum = F.cross_entropy(logits.flatten(0, 1).float(), next_labels.flatten(), ignore_index=-100, reduction="sum")
    n_scored = (next_labels != -100).sum()
    if last_virtual_logits is not None:
        first = labels.clone()  # tokens with no real token before them
        first[:, 1:] = first[:, 1:].masked_fill(prev_is_real, -100)
        targets = first[first != -100]
        if targets.numel():
            # one prompt for the batch: (1, V); rows reading their own prompts (a mixed batch): (B, V), by row
            per_row = last_virtual_logits.shape[0] > 1
            last = last_virtual_logits[(first != -100).nonzero()[:, 0]] if per_row else last_virtual_logits
            loss_sum = loss_sum + F.cross_entropy(last.float().expand(targets.numel(), -1), targets, reduction="sum")
            n_scored = n_scored + targets.numel()
    return loss_sum / n_scored.clamp(min=1)


def check_width(model: nn.Module, width: int, what: str) -> None:
    """An input-layer prompt must be as wide as the model's embeddings."""
    d = input_embeddings(model).shape[1]
    if width != d:
        raise PromptShapeError(
            f"{what} has width {width} but the model's hidden size is {d}: a prompt only fits "
            "the model (size) it was made for"
        )

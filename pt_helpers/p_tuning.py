"""P-tuning (Liu et al. 2021, "GPT Understands, Too"): the prompt is the output of a small trainable encoder.

Taught in chapter 08. A plain soft prompt (``pt_helpers.soft_prompt``) trains the n × d matrix P itself.
P-tuning trains n input vectors E ∈ R^{n×d} and a small network f, and hands the frozen model P = f(E):

* ``encoder_type="mlp"``:  P = W₃ ReLU(W₂ ReLU(W₁ E + b₁) + b₂) + b₃  (each virtual token on its own);
* ``encoder_type="lstm"``: H = BiLSTM(E) (k layers, read across the n tokens), P = W₂ ReLU(W₁ H + b₁) + b₂,
  so every virtual token depends on its neighbours (Liu et al. 2021, §3.2: the prompt embeddings should be
  dependent on each other, and the reparameterisation makes optimisation easier).

The module names and shapes are PEFT's ``PromptEncoder`` (``PromptEncoderConfig`` with
``encoder_reparameterization_type``), so ``peft_twin`` copies our weights into PEFT and the two give the same
outputs and gradients (``tests/test_p_tuning.py``). P goes where a soft prompt goes (``virtual_embeddings``):
the one engine ``adapters.PromptedModel`` runs it, ``training.fit`` trains it, ``checkpoint`` saves it.

After training only P matters: like PEFT, a checkpoint stores P (n × d, exactly the bytes of a soft prompt),
and ``from_saved`` returns a P-tuning adapter of type ``"none"`` that holds P directly (``to_direct``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .adapters import Method, PromptAdapter, PromptedModel, check_width, option, register_adapter, register_method
from .errors import PromptError, PromptShapeError
from .frozen import check_model_and_tokenizer, input_embeddings, is_causal_lm
from .soft_prompt import saved_prompt

ENCODER_TYPES = ("mlp", "lstm")  # trainable reparameterisations; "none" = P held directly (after training)


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise PromptError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


@register_adapter
class PTuningEncoder(PromptAdapter):
    """n trainable inputs E (n, d) → a small encoder → the prompt P (n, d). Adapter ``"p_tuning"``.

    ``encoder_hidden_size`` defaults to d (PEFT's default is the model's hidden size too); ``num_layers`` and
    ``dropout`` are the LSTM's (``encoder_num_layers``, ``encoder_dropout`` in PEFT).
    """

    method = "p_tuning"

    def __init__(
        self,
        n_virtual_tokens: int,
        hidden_size: int,
        *,
        encoder_type: str = "mlp",
        encoder_hidden_size: int | None = None,
        num_layers: int = 2,
        dropout: float = 0.0,
        init_embedding: torch.Tensor | None = None,
    ):
        super().__init__()
        n = _positive_int(n_virtual_tokens, "n_virtual_tokens")
        d = _positive_int(hidden_size, "hidden_size")
        if encoder_type not in (*ENCODER_TYPES, "none"):
            raise PromptError(
                f"encoder_type must be one of {ENCODER_TYPES} (or 'none' for a trained P held directly), "
                f"got {encoder_type!r}; Liu et al. used an LSTM, PEFT recommends the MLP"
            )
        h = d if encoder_hidden_size is None else _positive_int(encoder_hidden_size, "encoder_hidden_size")
        if init_embedding is None:
            init_embedding = torch.randn(n, d)  # as PEFT's nn.Embedding: N(0, 1)
        if tuple(init_embedding.shape) != (n, d):
            raise PromptShapeError(
                f"init_embedding has shape {tuple(init_embedding.shape)}, "
                f"expected ({n}, {d}) = (n_virtual_tokens, hidden_size)"
            )
        self.encoder_type = encoder_type
        self.encoder_hidden_size = h
        self.num_layers = _positive_int(num_layers, "num_layers")
        self.dropout = float(dropout)
        # [p-tuning-encoder]
        self.embedding = nn.Parameter(init_embedding.detach().clone().float())  # E (n, d): trainable inputs
        if encoder_type == "lstm":
            self.lstm_head = nn.LSTM(
                d, h, num_layers=self.num_layers, dropout=self.dropout, bidirectional=True, batch_first=True
            )
            self.mlp_head = nn.Sequential(nn.Linear(2 * h, 2 * h), nn.ReLU(), nn.Linear(2 * h, d))
        elif encoder_type == "mlp":
            self.mlp_head = nn.Sequential(nn.Linear(d, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, d))
        # [/p-tuning-encoder]

    @property
    def n_virtual_tokens(self) -> int:
        return self.embedding.shape[0]

    @property
    def hidden_size(self) -> int:
        return self.embedding.shape[1]

    def forward(self) -> torch.Tensor:
        """The prompt P (n, d) = f(E)."""
        # [p-tuning-forward]
        if self.encoder_type == "lstm":
            return self.mlp_head(self.lstm_head(self.embedding.unsqueeze(0))[0])[0]  # BiLSTM across the n tokens
        if self.encoder_type == "mlp":
            return self.mlp_head(self.embedding)  # each virtual token on its own
        return self.embedding  # "none": P itself
        # [/p-tuning-forward]

    def virtual_embeddings(self, batch_size: int = 1) -> torch.Tensor:
        """P repeated over the batch: (batch, n, d); computed once, so the gradients sum over the batch."""
        return self().unsqueeze(0).expand(batch_size, -1, -1)

    @torch.no_grad()
    def to_direct(self) -> PTuningEncoder:
        """A ``"none"`` adapter holding this adapter's current P: what you keep (and serve) after training."""
        return PTuningEncoder(
            self.n_virtual_tokens, self.hidden_size, encoder_type="none", init_embedding=self().detach().float()
        ).to(self.embedding.device)

    def check_fits(self, model) -> None:
        check_width(model, self.hidden_size, f"the P-tuning prompt ({self.n_virtual_tokens} × {self.hidden_size})")

    def saved_tensors(self) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            return {"prompt": self().detach().float().cpu().contiguous()}

    def saved_settings(self) -> dict:
        return {
            "p_tuning_encoder": self.encoder_type,  # how it was trained; only P is saved
            "encoder_hidden_size": self.encoder_hidden_size,
            "num_layers": self.num_layers,
        }

    @classmethod
    def from_saved(cls, model, tensors, settings) -> PTuningEncoder:
        weight, d = saved_prompt(model, tensors, "P-tuning prompt")
        return cls(weight.shape[0], d, encoder_type="none", init_embedding=weight).to(input_embeddings(model).device)


def make_p_tuning(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    n_virtual_tokens: int = 20,
    *,
    encoder_type: str = "mlp",
    encoder_hidden_size: int | None = None,
    num_layers: int = 2,
    seed: int = 0,
) -> PTuningEncoder:
    """A new ``PTuningEncoder`` for ``model`` (E ~ N(0, 1) and the encoder's layers drawn from ``seed``)."""
    check_model_and_tokenizer(model, tokenizer, "make_p_tuning")
    d = input_embeddings(model).shape[1]
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(int(seed))
    try:
        adapter = PTuningEncoder(
            n_virtual_tokens,
            d,
            encoder_type=encoder_type,
            encoder_hidden_size=encoder_hidden_size,
            num_layers=num_layers,
        )
    finally:
        torch.random.set_rng_state(gen_state)
    return adapter.to(input_embeddings(model).device)


def add_p_tuning(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, n_virtual_tokens: int = 20, **kwargs):
    """Freeze ``model`` and put a new P-tuning prompt in front of it (``make_p_tuning``'s settings)."""
    return PromptedModel(model, make_p_tuning(model, tokenizer, n_virtual_tokens, **kwargs))


def peft_twin(base_model: PreTrainedModel, adapter: PTuningEncoder, task_type: str | None = None):
    """PEFT's ``PromptEncoderConfig`` model on ``base_model`` holding a copy of ``adapter``'s E and encoder.

    ``task_type`` defaults to CAUSAL_LM / FEATURE_EXTRACTION, decided from the model's config.
    """
    from peft import PromptEncoderConfig, get_peft_model

    if adapter.encoder_type not in ENCODER_TYPES:
        raise PromptError("peft_twin needs a trainable adapter (encoder_type 'mlp' or 'lstm'), not a held P")
    if task_type is None:
        task_type = "CAUSAL_LM" if is_causal_lm(base_model) else "FEATURE_EXTRACTION"
    cfg = PromptEncoderConfig(
        task_type=task_type,
        num_virtual_tokens=adapter.n_virtual_tokens,
        encoder_reparameterization_type=adapter.encoder_type.upper(),
        encoder_hidden_size=adapter.encoder_hidden_size,
        encoder_num_layers=adapter.num_layers,
        encoder_dropout=adapter.dropout,
    )
    twin = get_peft_model(base_model, cfg)
    pe = twin.prompt_encoder["default"]
    with torch.no_grad():
        pe.embedding.weight.copy_(adapter.embedding)
        pe.mlp_head.load_state_dict(adapter.mlp_head.state_dict())
        if adapter.encoder_type == "lstm":
            pe.lstm_head.load_state_dict(adapter.lstm_head.state_dict())
    return twin


P_TUNING_INITS = ("random",)  # E ~ N(0, 1), as PEFT's PromptEncoder; P = encoder(E) is what the model reads


@dataclass
class PTuningOptions:
    """P-tuning's own settings (``training.TrainSettings`` carries them under the same names)."""

    p_tuning_encoder: str = option(
        "mlp", "p_tuning only: the encoder of E, mlp (PEFT's default) or lstm (Liu et al. 2021)", ENCODER_TYPES
    )


def build_p_tuning(model, tokenizer, settings, *, init_text: str, label_words=None) -> PTuningEncoder:
    """The registry's factory (P-tuning has one init: E is drawn from ``settings.seed``)."""
    if settings.p_tuning_encoder not in ENCODER_TYPES:
        raise PromptError(f"p_tuning_encoder must be one of {ENCODER_TYPES}, got {settings.p_tuning_encoder!r}")
    return make_p_tuning(model, tokenizer, settings.n_virtual_tokens, encoder_type=settings.p_tuning_encoder,
                         seed=settings.seed)  # fmt: skip


register_method(
    Method(
        name="p_tuning",
        summary="input vectors produced by a small encoder (Liu et al. 2021, chapter 08; the saved prompt is P)",
        factory=build_p_tuning,
        adapter_class=PTuningEncoder,
        options=PTuningOptions,
        inits=P_TUNING_INITS,
        default_init="random",
        default_lr=1e-2,  # chapter 08's pt_lr
        defined_in="chapter 08",
    )
)

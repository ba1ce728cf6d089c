"""A classifier is a frozen model + a prompt adapter (or none) + a head — composed, not inherited.

Taught in chapters 05–07. Two heads turn a frozen model's outputs into class logits (B, C):

* ``LabelWords`` (causal LMs): the next-token logits of one label word per class after a template,
  read at the last real token (inputs are left-padded, so that is the last column);
* ``LabelSentences`` (sentence encoders such as all-MiniLM-L6-v2): cosine similarity between the
  mean-pooled sentence embedding and one fixed label sentence per class, divided by a temperature.
  ``pool_prompt=True`` also averages a soft prompt's own output states into the embedding — a variant
  that Lester et al.'s method does not have; tables name it.

``PromptClassifier(model, tokenizer, head, adapter)`` works with any adapter of ``pt_helpers.adapters``
(soft prompt, deep prompt, …) or none (zero-shot; full fine-tuning and LoRA make the model's own
weights trainable instead). ``classifier_for(model, tokenizer, task, adapter)`` picks the head from the
model's config (causal LM → label words, encoder → label sentences) and the task's ``TaskInfo``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .adapters import PromptAdapter, PromptedModel, PromptedOutput
from .errors import CourseError, check_texts
from .frozen import check_model_and_tokenizer, input_embeddings, is_causal_lm
from .lm import label_token_ids
from .scoring import as_continuation, mean_pool


class LabelWords(nn.Module):
    """Head for causal LMs: logits (B, C) = next-token logits of the label words at the last real token."""

    padding_side = "left"  # the last column is then every example's last real token
    logits_to_keep = 1  # it reads the last position only: the LM head runs there alone (PromptedModel)

    def __init__(self, tokenizer, label_words: Sequence[str], template: str = "{text} Sentiment:"):
        super().__init__()
        if "{text}" not in template:
            raise CourseError(f"template {template!r} has no {{text}} slot; e.g. '{{text}} Sentiment:'")
        self.label_words = [as_continuation(w) for w in label_words]
        self.template = template
        self.register_buffer("label_ids", torch.tensor(label_token_ids(tokenizer, self.label_words)))

    def format(self, text: str) -> str:
        return self.template.format(text=text)

    def forward(self, out: PromptedOutput) -> torch.Tensor:
        return out.logits[:, -1, self.label_ids].float()


class LabelSentences(nn.Module):
    """Head for sentence encoders: cos(mean-pooled embedding, label-sentence embedding_c) / temperature.

    The label sentences are embedded once, by the frozen encoder *without* any prompt (the verbaliser).
    """

    padding_side = "right"

    def __init__(
        self,
        model,
        tokenizer,
        label_sentences: Sequence[str],
        temperature: float = 0.05,
        pool_prompt: bool = False,
        max_length: int = 128,
    ):
        super().__init__()
        if not temperature > 0:
            raise CourseError(
                f"temperature must be > 0 (logits are cosine / temperature), got {temperature!r}; the course uses 0.05"
            )
        self.label_sentences = list(label_sentences)
        self.temperature = float(temperature)
        self.pool_prompt = bool(pool_prompt)
        with torch.no_grad():
            enc = tokenizer(
                self.label_sentences, padding=True, truncation=True, max_length=max_length, return_tensors="pt"
            ).to(input_embeddings(model).device)
            hidden = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
            self.register_buffer(
                "label_embeddings", F.normalize(mean_pool(hidden.float(), enc["attention_mask"]), dim=-1)
            )

    def format(self, text: str) -> str:
        return text

    def embed(self, out: PromptedOutput) -> torch.Tensor:
        """Unit sentence embeddings (B, d), mean-pooled over the positions ``out.attention_mask`` keeps."""
        return F.normalize(mean_pool(out.hidden.float(), out.attention_mask), dim=-1)

    def forward(self, out: PromptedOutput) -> torch.Tensor:
        return self.embed(out) @ self.label_embeddings.T / self.temperature


class PromptClassifier(nn.Module):
    """``forward(input_ids, attention_mask) → logits (B, C)``: the frozen model, the adapter, the head."""

    def __init__(
        self,
        model,
        tokenizer,
        head: nn.Module,
        adapter: PromptAdapter | None = None,
        *,
        max_length: int = 128,
        share_prompt_cache: bool = True,
    ):
        super().__init__()
        check_model_and_tokenizer(model, tokenizer, "PromptClassifier")
        self.tokenizer = tokenizer
        self.prompted = PromptedModel(model, adapter, share_prompt_cache=share_prompt_cache)
        self.head = head
        self.max_length = max_length
        if isinstance(head, LabelWords) != self.prompted.is_causal:
            kind = "causal LM" if self.prompted.is_causal else "sentence encoder"
            raise CourseError(
                f"{type(head).__name__} does not fit a {kind}: "
                "use LabelWords with causal LMs and LabelSentences with encoders (classifier_for picks it)"
            )

    @property
    def model(self):
        return self.prompted.model

    @property
    def adapter(self) -> PromptAdapter | None:
        return self.prompted.adapter

    @property
    def device(self) -> torch.device:
        return self.prompted.device

    @property
    def n_trainable(self) -> int:
        from .frozen import count_trainable

        return count_trainable(self)

    # whether the tokenizer adds its own special tokens (BOS/CLS …); a chat template writes its own markers
    add_special_tokens = True

    def tokenize(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(input_ids, attention_mask) on the model's device, padded on the head's side."""
        texts = check_texts(texts)
        side = self.tokenizer.padding_side
        self.tokenizer.padding_side = self.head.padding_side
        try:
            enc = self.tokenizer(
                [self.head.format(t) for t in texts],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                add_special_tokens=self.add_special_tokens,
                return_tensors="pt",
            )
        finally:
            self.tokenizer.padding_side = side
        return enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        pool_prompt = getattr(self.head, "pool_prompt", False) and self.adapter is not None
        # a head that reads the last k positions says so (LabelWords: 1); 0 = all positions
        keep = getattr(self.head, "logits_to_keep", 0)
        return self.head(
            self.prompted(input_ids, attention_mask, return_prompt_states=pool_prompt, logits_to_keep=keep)
        )

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str], batch_size: int = 64, use_prompt: bool = True) -> torch.Tensor:
        """Unit sentence embeddings (N, d) on the CPU (label-sentence head only)."""
        if not isinstance(self.head, LabelSentences):
            raise CourseError("encode_texts needs a sentence encoder (LabelSentences head)")
        texts = check_texts(texts)
        adapter = self.prompted.adapter
        if not use_prompt:
            self.prompted.adapter = None
        try:
            pool = self.head.pool_prompt and self.prompted.adapter is not None
            out = [
                self.head.embed(
                    self.prompted(*self.tokenize(texts[i : i + batch_size]), return_prompt_states=pool)
                ).cpu()
                for i in range(0, len(texts), batch_size)
            ]
        finally:
            self.prompted.adapter = adapter
        return torch.cat(out)

    @torch.no_grad()
    def predict(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Predicted class ids (N,)."""
        return predict_classes(self, texts, batch_size)


def autocast_for(device: torch.device, amp: bool = True):
    """bf16 autocast on CUDA when ``amp``; a no-op context on the CPU (float32 there)."""
    if amp and torch.device(device).type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


@torch.no_grad()
def predict_classes(classifier, texts: Sequence[str], batch_size: int = 64, amp: bool = True) -> np.ndarray:
    """Argmax class ids (N,) of ``classifier(*classifier.tokenize(texts)) -> (B, C)``."""
    texts = check_texts(texts)
    was_training = classifier.training
    classifier.eval()
    preds = []
    for i in range(0, len(texts), batch_size):
        with autocast_for(classifier.device, amp):
            preds.append(classifier(*classifier.tokenize(texts[i : i + batch_size])).argmax(-1).cpu())
    classifier.train(was_training)
    return torch.cat(preds).numpy() if preds else np.zeros(0, dtype=int)


def evaluate_classifier(classifier, texts: Sequence[str], labels: Sequence[int], batch_size: int = 64) -> float:
    """Accuracy of ``classifier`` on (texts, labels)."""
    return float((predict_classes(classifier, texts, batch_size) == np.asarray(list(labels))).mean())


def classifier_for(
    model,
    tokenizer,
    task: str,
    adapter: PromptAdapter | None = None,
    *,
    temperature: float = 0.05,
    pool_prompt: bool = False,
    max_length: int = 128,
    share_prompt_cache: bool = True,
) -> PromptClassifier:
    """The course's classifier of ``task`` on ``model``: label words for a causal LM, label sentences for an
    encoder (decided from the model's config), with the task's verbaliser from ``data.TaskInfo``."""
    from .data import task_info

    info = task_info(task)
    if is_causal_lm(model):
        head = LabelWords(tokenizer, info.label_words, info.template)
    else:
        head = LabelSentences(model, tokenizer, info.label_sentences, temperature, pool_prompt, max_length)
    return PromptClassifier(
        model, tokenizer, head, adapter, max_length=max_length, share_prompt_cache=share_prompt_cache
    )


def label_sentence_classifier(
    encoder,
    tokenizer,
    label_sentences: Sequence[str],
    temperature: float = 0.05,
    prompt: PromptAdapter | None = None,
    pool_prompt: bool = False,
    max_length: int = 128,
) -> PromptClassifier:
    """A sentence encoder + ``prompt`` (or none: zero-shot) + the ``LabelSentences`` head."""
    check_model_and_tokenizer(encoder, tokenizer, "label_sentence_classifier")
    head = LabelSentences(encoder, tokenizer, label_sentences, temperature, pool_prompt, max_length)
    return PromptClassifier(encoder, tokenizer, head, prompt, max_length=max_length)


def label_word_classifier(
    model,
    tokenizer,
    label_words: Sequence[str],
    template: str = "{text} Sentiment:",
    prompt: PromptAdapter | None = None,
    max_length: int = 128,
) -> PromptClassifier:
    """A causal LM + ``prompt`` (or none: zero-shot) + the ``LabelWords`` head."""
    check_model_and_tokenizer(model, tokenizer, "label_word_classifier")
    return PromptClassifier(
        model, tokenizer, LabelWords(tokenizer, label_words, template), prompt, max_length=max_length
    )

"""The method comparison of chapter 06: every method trained by the same ``training.fit``, measured alike.

``compare_method`` trains one method (deep prompt, deep prompt + MLP, shallow prompt, linear probe, LoRA,
full fine-tuning) on a *copy* of a frozen sentence encoder and returns one row; ``PeakMemory`` measures
memory; ``summarise_comparison`` makes the table; ``model_label`` names a loaded model by its provenance.
"""

from __future__ import annotations

import copy
import os
import threading
import time
from collections.abc import Sequence

import numpy as np
import torch

from .classifiers import LabelSentences, PromptClassifier, evaluate_classifier
from .device import seed_everything
from .errors import TrainConfigError
from .prefix import make_prefix
from .soft_prompt import make_prompt
from .training import TrainSettings, fit


class PeakMemory:
    """Peak memory of the code inside ``with PeakMemory(device) as pm:`` → ``pm.mib``.

    CUDA: ``torch.cuda.max_memory_allocated`` minus the allocation at entry (exact tensor memory).
    CPU: the growth of the process's resident set size (``/proc/self/statm``) over its value at entry,
    sampled every ``interval`` seconds by a background thread (tensor memory plus allocator overhead;
    approximate, and 0 where /proc is missing).
    """

    def __init__(self, device: torch.device | str = "cpu", interval: float = 0.005):
        self.device = torch.device(device)
        self.interval = interval
        self.mib = float("nan")
        self.method = "cuda max_memory_allocated" if self.device.type == "cuda" else "cpu peak RSS growth"

    @staticmethod
    def _rss() -> int:
        try:
            with open("/proc/self/statm") as fh:
                return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            return 0

    def _sample(self):
        while not self._stop.is_set():
            self._peak = max(self._peak, self._rss())
            time.sleep(self.interval)

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._base = self._peak = self._rss()
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()
            peak = max(self._peak, self._rss())
        self.mib = max(0, peak - self._base) / 2**20
        return False


def model_label(loaded) -> str:
    """A model's label for tables and prints, from its provenance (never a typed name):
    ``"gpt2 · gpt2 family · RANDOM weights"``, ``"sentence-transformers/all-MiniLM-L6-v2 · bert family · pretrained"``.
    ``loaded`` is a ``models.LoadedModel``."""
    weights = "pretrained" if loaded.is_pretrained else "RANDOM weights"
    return f"{loaded.name} · {loaded.family} family · {weights}"


COMPARED_METHODS = ("deep prompt", "deep prompt + MLP", "shallow prompt", "linear probe", "LoRA", "full fine-tuning")


def compare_method(
    method: str,
    encoder,
    tokenizer,
    label_sentences: Sequence[str],
    train_data,
    select_data,
    eval_data,
    *,
    seed: int = 0,
    steps: int = 100,
    batch_size: int = 32,
    lr: float | None = None,
    n_virtual_tokens: int | None = None,
    init_text: str = "Classify this text",
    lora_rank: int = 8,
    temperature: float = 0.05,
    max_length: int = 64,
    eval_every: int | None = None,
    lr_schedule: str = "cosine",
    warmup: float = 0.05,
    progress: bool = True,
) -> dict:
    """Train one method on a *copy* of the frozen ``encoder`` and measure it. Returns one row (a dict).

    ``train_data``, ``select_data``, ``eval_data``: (texts, labels). The model of the best
    ``select_data`` accuracy (checked every ``eval_every`` steps) is kept; ``accuracy`` is measured on
    ``eval_data``, never used for choices. Every method is trained by ``training.fit`` (warm-up, then
    ``lr_schedule``). Every method classifies the same way (cosine to the fixed
    label-sentence embeddings / T), except the linear probe (logistic regression on the frozen embeddings).
    Row keys: method, seed, trained_params, accuracy, select_accuracy, seconds, peak_mib, memory_measure,
    and loss_curve (training loss per step; not for the probe).
    """
    from peft import LoraConfig, inject_adapter_in_model
    from sklearn.linear_model import LogisticRegression

    if method not in COMPARED_METHODS:
        raise TrainConfigError(f"unknown method {method!r}; choose from {COMPARED_METHODS}")
    seed_everything(seed)
    device = next(encoder.parameters()).device
    model = copy.deepcopy(encoder)
    default_lr = {
        "deep prompt": 1e-2,
        "deep prompt + MLP": 1e-3,
        "shallow prompt": 3e-2,
        "LoRA": 1e-3,
        "full fine-tuning": 3e-5,
    }
    (tr_x, tr_y), (se_x, se_y), (ev_x, ev_y) = train_data, select_data, eval_data
    row = dict(method=method, seed=seed)
    with PeakMemory(device) as mem:
        start = time.perf_counter()
        if method == "linear probe":
            clf = PromptClassifier(
                model,
                tokenizer,
                LabelSentences(model, tokenizer, label_sentences, temperature, max_length=max_length),
                max_length=max_length,
            )
            n_fit = min(len(tr_x), steps * batch_size)  # the same number of training examples as the others
            feats = clf.encode_texts(list(tr_x[:n_fit]), use_prompt=False).numpy()
            probe = LogisticRegression(max_iter=2000, C=10.0).fit(feats, np.asarray(tr_y[:n_fit]))
            row["seconds"] = time.perf_counter() - start
            row["trained_params"] = int(probe.coef_.size + probe.intercept_.size)
            row["select_accuracy"] = float(probe.score(clf.encode_texts(list(se_x), use_prompt=False).numpy(), se_y))
            row["accuracy"] = float(probe.score(clf.encode_texts(list(ev_x), use_prompt=False).numpy(), ev_y))
        else:
            head = LabelSentences(model, tokenizer, label_sentences, temperature, max_length=max_length)
            adapter = None
            if method.startswith("deep prompt"):
                adapter = make_prefix(
                    model,
                    tokenizer,
                    n_virtual_tokens or 10,
                    init_text=init_text,
                    reparameterize=method.endswith("MLP"),
                    init_std=0.5,
                )
            elif method == "shallow prompt":
                adapter = make_prompt(model, tokenizer, n_virtual_tokens or 20, "text", text=init_text, seed=seed)
            clf = PromptClassifier(model, tokenizer, head, adapter, max_length=max_length)
            if method == "LoRA":
                inject_adapter_in_model(
                    LoraConfig(
                        r=lora_rank, lora_alpha=2 * lora_rank, lora_dropout=0.0, target_modules=["query", "value"]
                    ),
                    clf.model,
                )
            elif method == "full fine-tuning":
                clf.model.requires_grad_(True)
            settings = TrainSettings(
                max_steps=steps,
                batch_size=batch_size,
                lr=lr or default_lr[method],
                seed=seed,
                eval_every=eval_every or max(1, steps // 3),
                lr_schedule=lr_schedule,
                warmup=warmup,
                max_length=max_length,
                progress=progress,
            )
            result = fit(clf, (tr_x, tr_y), (se_x, se_y), settings, desc=f"{method} (seed {seed})")
            row["seconds"] = time.perf_counter() - start
            row["trained_params"] = int(result.n_trainable)
            row["select_accuracy"] = float(result.best_select_accuracy)
            row["accuracy"] = evaluate_classifier(clf, ev_x, ev_y)
            row["loss_curve"] = list(result.history["loss"])
    row["peak_mib"] = mem.mib
    row["memory_measure"] = mem.method
    del model, clf
    return row


def summarise_comparison(rows: Sequence[dict], n_model_parameters: int):
    """One line per method: trained parameters (absolute, % of the model), time, memory, accuracy mean ± std."""
    import pandas as pd

    df = pd.DataFrame(rows)
    order = [m for m in COMPARED_METHODS if m in set(df["method"])] + [
        m for m in dict.fromkeys(df["method"]) if m not in COMPARED_METHODS
    ]
    g = df.groupby("method", sort=False)
    out = pd.DataFrame(
        {
            "trained params": g["trained_params"].first(),
            "% of model": 100 * g["trained_params"].first() / n_model_parameters,
            "train time (s)": g["seconds"].mean(),
            "peak memory (MiB)": g["peak_mib"].mean(),
            "accuracy mean": g["accuracy"].mean(),
            "accuracy std": g["accuracy"].std(ddof=1).fillna(0.0),
            "seeds": g["seed"].nunique(),
        }
    ).loc[order]
    return out

"""Train a soft or deep prompt from the command line, on one process or many (``accelerate launch``).

    python -m pt_helpers.train --help
    python -m pt_helpers.train --model sentence-transformers/all-MiniLM-L6-v2 --task sst2 \\
        --method deep --n-virtual-tokens 10 --max-steps 300 --output-dir runs/sst2-deep
    python -m pt_helpers.train --config my_run.yaml --seed 2          # YAML gives defaults, flags win
    accelerate launch --multi_gpu --num_processes 4 -m pt_helpers.train --config my_run.yaml
    accelerate launch --multi_gpu --num_processes 2 -m pt_helpers.train --cpu ...   # 2 CPU processes (gloo)

(With accelerate 1.15, ``accelerate launch --cpu --num_processes 2`` starts a single process: several CPU
processes need MPI (``--mpirun_hostfile``). On a machine without GPUs, ``--multi_gpu`` plus this script's
``--cpu`` flag starts them through torch's elastic launcher instead; so does ``torchrun --nproc_per_node 2``.)

The script is written once for every scale: ``accelerate.Accelerator`` wraps the classifier in
``DistributedDataParallel`` (so the prompt's gradients are all-reduced by the engine, never by hand),
splits every *global* batch of ``--batch-size`` examples evenly over the processes
(``split_batches=True``), and only the main process writes files. One process with batch B and k
processes with the same B therefore take the same optimisation steps (up to float rounding).

Outputs in ``--output-dir``: the prompt (soft: ``prompt.safetensors`` + ``prompt.json``; deep:
``prefix.safetensors`` + ``prefix_config.json``), ``train_config.json`` (every setting) and
``metrics.json`` (loss per step, accuracy, time, trained parameters, number of processes).

Supported: BERT-family encoders (e.g. all-MiniLM-L6-v2) with the label-sentence verbaliser, and GPT-2-
family causal LMs with label words, on the tasks in ``LABEL_SENTENCES`` / ``LABEL_WORDS``.

This module also holds what notebook 06 needs to compare methods fairly: ``PeakMemory`` and
``compare_method`` (deep prompt, shallow prompt, linear probe, LoRA, full fine-tuning).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import threading
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .data import load_task, subsample
from .device import seed_everything
from .errors import CourseError
from .models import load_model
from .prefix import PrefixLabelWordClassifier, PrefixSentenceClassifier, save_prefix
from .soft_prompt import (SST2_LABEL_SENTENCES, LabelSentenceClassifier, LabelWordCausalClassifier,
                          count_trainable, evaluate_classifier, make_optimizer, make_prompt, save_soft_prompt,
                          train_classifier)

# The verbalisers: one label sentence per class (encoders), one label word per class (causal LMs).
LABEL_SENTENCES: dict[str, tuple[str, ...]] = {
    "sst2": SST2_LABEL_SENTENCES,
    "trec": ("This question asks what an abbreviation or acronym stands for.",   # ABBR
             "This question asks for a description, a definition or a reason.",   # DESC
             "This question asks about a thing, an object, an animal or a substance.",  # ENTY
             "This question asks about a person, a group or an organisation.",    # HUM
             "This question asks about a place, a city or a country.",            # LOC
             "This question asks for a number, a date, an amount or a quantity."),  # NUM
}
LABEL_WORDS: dict[str, tuple[str, ...]] = {
    "sst2": (" negative", " positive"),
    "trec": (" acronym", " description", " entity", " person", " location", " number"),  # one GPT-2 token each
}
TEMPLATES = {"sst2": "{text} Sentiment:", "trec": "{text} Answer type:"}
INIT_TEXTS = {"sst2": "Classify the sentiment of this movie review",
              "trec": "Classify what kind of answer this question asks for"}
EVAL_SPLIT = {"sst2": "dev", "trec": "test"}  # TREC has no dev split: its 500-question test set is used
METHODS = ("soft", "deep")


class TrainConfigError(CourseError):
    """A bad training setting (unknown method or task, a batch that does not split over the processes …)."""


@dataclass
class TrainConfig:
    """Every setting of a run; the names are the CLI flags (``n_virtual_tokens`` ↔ ``--n-virtual-tokens``)."""

    model: str = "sentence-transformers/all-MiniLM-L6-v2"
    task: str = "sst2"
    method: str = "soft"               # soft (input layer only) | deep (every layer, via the KV cache)
    n_virtual_tokens: int = 20
    init: str = ""                     # soft: random|vocab|text|labels (default vocab); deep: text|random (text)
    reparameterize: bool = False       # deep only: Li & Liang's MLP while training
    mlp_hidden: int = 512
    optimizer: str = "adamw"           # adamw | adafactor
    lr: float = 0.0                    # 0 → 3e-2 (soft) / 1e-2 (deep)
    batch_size: int = 32               # GLOBAL batch, split evenly over the processes
    max_steps: int = 200
    train_size: int = 0                # 0 → the whole training split
    eval_size: int = 0                 # 0 → the whole evaluation split
    temperature: float = 0.05
    max_length: int = 64
    seed: int = 0
    output_dir: str = "runs/prompt"
    cpu: bool = False                  # force the CPU even when a GPU is present
    eval_batch_size: int = 64
    progress: bool = True

    def resolved(self) -> "TrainConfig":
        """A copy with defaults that depend on the method filled in, and every value checked."""
        cfg = copy.deepcopy(self)
        if cfg.method not in METHODS:
            raise TrainConfigError(f"--method must be one of {METHODS}, got {cfg.method!r}")
        if cfg.task not in LABEL_SENTENCES:
            raise TrainConfigError(f"--task {cfg.task!r} has no verbaliser here; supported: {sorted(LABEL_SENTENCES)}")
        if cfg.n_virtual_tokens <= 0:
            raise TrainConfigError(f"--n-virtual-tokens must be positive, got {cfg.n_virtual_tokens}")
        if cfg.batch_size <= 0 or cfg.max_steps <= 0:
            raise TrainConfigError("--batch-size and --max-steps must be positive")
        if cfg.reparameterize and cfg.method != "deep":
            raise TrainConfigError("--reparameterize applies to --method deep only")
        cfg.init = cfg.init or ("vocab" if cfg.method == "soft" else "text")
        cfg.lr = cfg.lr or (3e-2 if cfg.method == "soft" else 1e-2)
        return cfg


# ----------------------------------------------------------------------------------------------
# Building the classifier for a config
# ----------------------------------------------------------------------------------------------

def build_classifier(cfg: TrainConfig, model, tokenizer):
    """The trainable classifier for ``cfg`` on a loaded model: logits (B, C) from (input_ids, attention_mask)."""
    is_causal = model.config.model_type == "gpt2"
    if is_causal:
        words = LABEL_WORDS[cfg.task]
        if cfg.method == "soft":
            prompt = make_prompt(model, tokenizer, cfg.n_virtual_tokens, cfg.init, seed=cfg.seed,
                                 text=INIT_TEXTS[cfg.task], label_words=[w.strip() for w in words])
            return LabelWordCausalClassifier(model, tokenizer, words, template=TEMPLATES[cfg.task], prompt=prompt,
                                             max_length=cfg.max_length)
        return PrefixLabelWordClassifier(model, tokenizer, words, template=TEMPLATES[cfg.task],
                                         n_virtual_tokens=cfg.n_virtual_tokens, max_length=cfg.max_length,
                                         init=cfg.init, init_text=INIT_TEXTS[cfg.task],
                                         reparameterize=cfg.reparameterize, mlp_hidden=cfg.mlp_hidden)
    sentences = LABEL_SENTENCES[cfg.task]
    if cfg.method == "soft":
        prompt = make_prompt(model, tokenizer, cfg.n_virtual_tokens, cfg.init, seed=cfg.seed,
                             text=INIT_TEXTS[cfg.task])
        return LabelSentenceClassifier(model, tokenizer, sentences, temperature=cfg.temperature, prompt=prompt,
                                       max_length=cfg.max_length)
    return PrefixSentenceClassifier(model, tokenizer, sentences, n_virtual_tokens=cfg.n_virtual_tokens,
                                    temperature=cfg.temperature, max_length=cfg.max_length, init=cfg.init,
                                    init_text=INIT_TEXTS[cfg.task], reparameterize=cfg.reparameterize,
                                    mlp_hidden=cfg.mlp_hidden)


def _texts_labels(task: str, split: str, size: int, seed: int) -> tuple[list[str], list[int]]:
    import datasets
    datasets.disable_progress_bars()
    try:
        ds = subsample(load_task(task, split), size or None, seed=seed)
    finally:
        datasets.enable_progress_bars()
    return list(ds["text"]), list(ds["label"])


def step_order(n_examples: int, n_steps: int, batch_size: int, seed: int) -> list[int]:
    """Example indices for every step, epoch after epoch, each epoch a seeded permutation: (n_steps · B,)."""
    gen = torch.Generator().manual_seed(int(seed))
    need, order = n_steps * batch_size, []
    while len(order) < need:
        order.extend(torch.randperm(n_examples, generator=gen).tolist())
    return order[:need]


# ----------------------------------------------------------------------------------------------
# The training run (one process or many)
# ----------------------------------------------------------------------------------------------

def train(cfg: TrainConfig) -> dict:
    """Train the prompt of ``cfg`` (under ``accelerate launch`` or not); write the files; return the metrics."""
    from accelerate import Accelerator, DataLoaderConfiguration
    from tqdm.auto import tqdm

    cfg = cfg.resolved()
    accelerator = Accelerator(cpu=cfg.cpu, dataloader_config=DataLoaderConfiguration(split_batches=True))
    world = accelerator.num_processes
    if cfg.batch_size % world:
        raise TrainConfigError(f"--batch-size {cfg.batch_size} does not split evenly over {world} processes; "
                               f"use a multiple of {world}")
    seed_everything(cfg.seed)
    loaded = load_model(cfg.model, "causal" if "gpt2" in cfg.model.lower() else "encoder",
                        device=accelerator.device, verbose=accelerator.is_main_process)
    model, tokenizer = loaded
    seed_everything(cfg.seed)                                  # same prompt initialisation on every process
    classifier = build_classifier(cfg, model, tokenizer)
    n_trainable = count_trainable(classifier)
    optimizer = make_optimizer(classifier.parameters(), cfg.optimizer, cfg.lr)

    train_texts, train_labels = _texts_labels(cfg.task, "train", cfg.train_size, cfg.seed)
    order = step_order(len(train_texts), cfg.max_steps, cfg.batch_size, cfg.seed)
    examples = [(train_texts[i], train_labels[i]) for i in order]

    def collate(batch):
        ids, mask = classifier._tokenize([t for t, _ in batch])
        return {"input_ids": ids.cpu(), "attention_mask": mask.cpu(),
                "labels": torch.tensor([y for _, y in batch])}

    loader = torch.utils.data.DataLoader(examples, batch_size=cfg.batch_size, shuffle=False, collate_fn=collate)
    ddp_classifier, optimizer, loader = accelerator.prepare(classifier, optimizer, loader)

    losses: list[float] = []
    start = time.perf_counter()
    ddp_classifier.train()
    for batch in tqdm(loader, desc=f"{cfg.method} prompt", disable=not (cfg.progress and accelerator.is_main_process)):
        logits = ddp_classifier(batch["input_ids"], batch["attention_mask"])   # (B / world, C)
        loss = F.cross_entropy(logits.float(), batch["labels"])                 # mean over this process's share
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)                                             # DDP all-reduces (averages) grads
        optimizer.step()
        losses.append(float(accelerator.reduce(loss.detach(), reduction="mean")))
    seconds = time.perf_counter() - start

    metrics = dict(method=cfg.method, task=cfg.task, model=cfg.model, pretrained=loaded.is_pretrained,
                   n_trainable=n_trainable, n_model_parameters=loaded.n_parameters, steps=len(losses),
                   num_processes=world, global_batch_size=cfg.batch_size, train_seconds=seconds,
                   loss=losses, final_loss=losses[-1] if losses else float("nan"))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        inner = accelerator.unwrap_model(ddp_classifier)
        eval_texts, eval_labels = _texts_labels(cfg.task, EVAL_SPLIT[cfg.task], cfg.eval_size, 0)
        metrics["eval_split"] = EVAL_SPLIT[cfg.task]
        metrics["accuracy"] = evaluate_classifier(inner, tokenizer, eval_texts, eval_labels, cfg.eval_batch_size)
        out = Path(cfg.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        if cfg.method == "soft":
            save_soft_prompt(inner.prompt, out / "prompt", model, tokenizer, task=cfg.task, seed=cfg.seed)
        else:
            save_prefix(inner.prefixed, out, cfg.model, task=cfg.task, seed=cfg.seed)
        (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=1))
        (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
        print(f"{cfg.method} prompt · {n_trainable:,} trained parameters · {world} process(es) · "
              f"{len(losses)} steps in {seconds:.1f} s · final loss {metrics['final_loss']:.4f} · "
              f"{metrics['eval_split']} accuracy {metrics['accuracy']:.3f} → {out}")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return metrics


# ----------------------------------------------------------------------------------------------
# The command line
# ----------------------------------------------------------------------------------------------

def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def build_parser() -> argparse.ArgumentParser:
    """The CLI: one flag per ``TrainConfig`` field, plus ``--config FILE.yaml``."""
    helps = {
        "model": "model name or folder (BERT family: label-sentence verbaliser; GPT-2 family: label words)",
        "task": f"task: one of {sorted(LABEL_SENTENCES)}",
        "method": "soft: trainable vectors at the input only (Lester et al. 2021); deep: trainable keys/values "
                  "at every layer (prefix tuning / P-Tuning v2)",
        "n_virtual_tokens": "number of virtual tokens",
        "init": "soft: random|vocab|text|labels (default vocab); deep: text|random (default text)",
        "reparameterize": "deep only: train P = MLP(E) (Li & Liang 2021); the saved prefix is P",
        "mlp_hidden": "hidden width of the reparameterisation MLP",
        "optimizer": "adamw or adafactor",
        "lr": "learning rate (default 3e-2 soft, 1e-2 deep)",
        "batch_size": "GLOBAL batch size, split evenly over the processes of accelerate launch",
        "max_steps": "optimisation steps",
        "train_size": "seeded subset of the training split (0 = all)",
        "eval_size": "seeded subset of the evaluation split (0 = all; SST-2 dev, TREC test)",
        "temperature": "encoders: cosine similarity / temperature gives the logits",
        "max_length": "truncate inputs to this many tokens",
        "seed": "seed of the prompt initialisation and of the data order",
        "output_dir": "folder for the prompt, train_config.json and metrics.json",
        "cpu": "run on the CPU even when a GPU is present",
        "eval_batch_size": "batch size of the final evaluation",
        "progress": "show a progress bar (--no-progress to hide it)",
    }
    parser = argparse.ArgumentParser(
        prog="python -m pt_helpers.train",
        description="Train a soft or deep prompt on a frozen model. Settings come from --config (YAML) and "
                    "flags (flags win). Runs unchanged under `accelerate launch` (data parallel; the "
                    "--batch-size is global).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--config", help="YAML file of settings (keys = the flag names, with _ or -)")
    for f in fields(TrainConfig):
        if f.type in ("bool", bool):
            parser.add_argument(_flag(f.name), action=argparse.BooleanOptionalAction, default=f.default,
                                help=helps[f.name])
        else:
            caster = {"int": int, "float": float, "str": str}[f.type if isinstance(f.type, str) else f.type.__name__]
            choices = {"method": METHODS, "task": sorted(LABEL_SENTENCES), "optimizer": ("adamw", "adafactor")}
            parser.add_argument(_flag(f.name), type=caster, default=f.default, help=helps[f.name],
                                choices=choices.get(f.name))
    return parser


def parse_config(argv: Sequence[str] | None = None) -> TrainConfig:
    """Flags (and the YAML file of ``--config``) → a ``TrainConfig``; unknown YAML keys are an error."""
    parser = build_parser()
    first, _ = parser.parse_known_args(argv)
    if first.config:
        import yaml
        path = Path(first.config)
        if not path.is_file():
            raise TrainConfigError(f"--config {path} not found")
        loaded = yaml.safe_load(path.read_text()) or {}
        known = {f.name for f in fields(TrainConfig)}
        loaded = {str(k).replace("-", "_"): v for k, v in loaded.items()}
        unknown = sorted(set(loaded) - known)
        if unknown:
            raise TrainConfigError(f"unknown keys {unknown} in {path}; valid keys: {sorted(known)}")
        parser.set_defaults(**loaded)
    args = vars(parser.parse_args(argv))
    args.pop("config")
    return TrainConfig(**args)


def main(argv: Sequence[str] | None = None) -> dict:
    """Entry point of ``python -m pt_helpers.train``."""
    return train(parse_config(argv))


# ----------------------------------------------------------------------------------------------
# The method comparison of notebook 06
# ----------------------------------------------------------------------------------------------

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


COMPARED_METHODS = ("deep prompt", "deep prompt + MLP", "shallow prompt", "linear probe", "LoRA",
                    "full fine-tuning")


def compare_method(method: str, encoder, tokenizer, label_sentences: Sequence[str], train_data, select_data,
                   eval_data, *, seed: int = 0, steps: int = 100, batch_size: int = 32, lr: float | None = None,
                   n_virtual_tokens: int | None = None, init_text: str = "Classify this text",
                   lora_rank: int = 8, temperature: float = 0.05, max_length: int = 64, eval_every: int | None = None,
                   progress: bool = True) -> dict:
    """Train one method on a *copy* of the frozen ``encoder`` and measure it. Returns one row (a dict).

    ``train_data``, ``select_data``, ``eval_data``: (texts, labels). The model of the best
    ``select_data`` accuracy (checked every ``eval_every`` steps) is kept; ``accuracy`` is measured on
    ``eval_data``, never used for choices. Every method classifies the same way (cosine to the fixed
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
    default_lr = {"deep prompt": 1e-2, "deep prompt + MLP": 1e-3, "shallow prompt": 3e-2, "LoRA": 1e-3,
                  "full fine-tuning": 3e-5}
    (tr_x, tr_y), (se_x, se_y), (ev_x, ev_y) = train_data, select_data, eval_data
    row = dict(method=method, seed=seed)
    with PeakMemory(device) as mem:
        start = time.perf_counter()
        if method == "linear probe":
            clf = LabelSentenceClassifier(model, tokenizer, label_sentences, temperature=temperature,
                                          max_length=max_length)
            n_fit = min(len(tr_x), steps * batch_size)  # the same number of training examples as the others
            feats = clf.encode_texts(list(tr_x[:n_fit]), use_prompt=False).numpy()
            probe = LogisticRegression(max_iter=2000, C=10.0).fit(feats, np.asarray(tr_y[:n_fit]))
            row["seconds"] = time.perf_counter() - start
            row["trained_params"] = int(probe.coef_.size + probe.intercept_.size)
            row["select_accuracy"] = float(probe.score(clf.encode_texts(list(se_x), use_prompt=False).numpy(), se_y))
            row["accuracy"] = float(probe.score(clf.encode_texts(list(ev_x), use_prompt=False).numpy(), ev_y))
        else:
            if method.startswith("deep prompt"):
                clf = PrefixSentenceClassifier(model, tokenizer, label_sentences, n_virtual_tokens=n_virtual_tokens or 10,
                                               temperature=temperature, max_length=max_length, init_text=init_text,
                                               reparameterize=method.endswith("MLP"), init_std=0.5)
            elif method == "shallow prompt":
                prompt = make_prompt(model, tokenizer, n_virtual_tokens or 20, "text", text=init_text, seed=seed)
                clf = LabelSentenceClassifier(model, tokenizer, label_sentences, temperature=temperature,
                                              prompt=prompt, max_length=max_length)
            else:
                clf = LabelSentenceClassifier(model, tokenizer, label_sentences, temperature=temperature,
                                              max_length=max_length)
                if method == "LoRA":
                    inject_adapter_in_model(LoraConfig(r=lora_rank, lora_alpha=2 * lora_rank, lora_dropout=0.0,
                                                       target_modules=["query", "value"]), clf.encoder)
                else:
                    clf.encoder.requires_grad_(True)
            result = train_classifier(clf, tokenizer, tr_x, tr_y, se_x, se_y, max_steps=steps,
                                      batch_size=batch_size, lr=lr or default_lr[method], seed=seed,
                                      eval_every=eval_every or max(1, steps // 3), progress=progress,
                                      desc=f"{method} (seed {seed})")
            row["seconds"] = time.perf_counter() - start
            row["trained_params"] = int(result.n_trainable)
            row["select_accuracy"] = float(result.best_dev_accuracy)
            row["accuracy"] = evaluate_classifier(clf, tokenizer, ev_x, ev_y)
            row["loss_curve"] = list(result.history["loss"])
    row["peak_mib"] = mem.mib
    row["memory_measure"] = mem.method
    del model, clf
    return row


def summarise_comparison(rows: Sequence[dict], n_model_parameters: int):
    """One line per method: trained parameters (absolute, % of the model), time, memory, accuracy mean ± std."""
    import pandas as pd

    df = pd.DataFrame(rows)
    order = [m for m in COMPARED_METHODS if m in set(df["method"])] + \
        [m for m in dict.fromkeys(df["method"]) if m not in COMPARED_METHODS]
    g = df.groupby("method", sort=False)
    out = pd.DataFrame({
        "trained params": g["trained_params"].first(),
        "% of model": 100 * g["trained_params"].first() / n_model_parameters,
        "train time (s)": g["seconds"].mean(),
        "peak memory (MiB)": g["peak_mib"].mean(),
        "accuracy mean": g["accuracy"].mean(),
        "accuracy std": g["accuracy"].std(ddof=1).fillna(0.0),
        "seeds": g["seed"].nunique(),
    }).loc[order]
    return out


if __name__ == "__main__":
    main()

"""The method comparison of chapter 06: every method trained by the same ``training.fit``, measured alike.

* ``train_method`` trains one method (deep prompt, deep prompt + MLP, the two soft prompts, linear probe,
  LoRA, full fine-tuning — each a registered method of ``adapters.METHODS`` with the options of its row,
  ``COMPARED``; any other registered method by its own name) at ONE learning rate on a *copy* of a frozen
  sentence encoder;
* ``run_method`` sweeps the learning rate (the probe: its regularisation C) with the first seed, picks the
  value of the best **selection-split** accuracy (held-out training examples, never the evaluation data),
  then trains the remaining seeds at that value; every returned row carries its per-example outcomes on
  the evaluation set, so methods can be compared *paired*;
* ``comparison_table`` makes the table: variant, chosen lr, n, Wilson interval, the mean over seeds
  (``stats.seed_interval``; one seed is "n/a (1 seed)") and the paired test (``stats.paired_test``)
  against the row each method is compared with (``COMPARED_WITH``);
* ``PeakMemory`` measures memory; ``model_label`` names a loaded model by its provenance.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from .adapters import METHODS, Method, get_method, option, register_method
from .classifiers import LabelSentences, PromptClassifier, predict_classes
from .device import seed_everything
from .errors import TrainConfigError
from .project import RENAMED_RESULTS, RENAMED_SETTINGS, atomic_write_json, renamed_keys
from .stats import accuracy_interval, paired_test, seed_interval, smoke_budget
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


@dataclass
class LoraOptions:
    """LoRA's own settings in the comparison."""

    lora_rank: int = option(8, "rank r of the LoRA update (alpha = 2 r), on the query and value projections")


def build_lora(model, tokenizer, settings, *, init_text: str = "", label_words=None):
    """Inject LoRA (PEFT) into ``model`` in place; no prompt adapter."""
    from peft import LoraConfig, inject_adapter_in_model

    r = getattr(settings, "lora_rank", 8)
    config = LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.0, target_modules=["query", "value"])
    inject_adapter_in_model(config, model)


def build_full_finetuning(model, tokenizer, settings, *, init_text: str = "", label_words=None):
    """Make every weight of ``model`` trainable, in place; no prompt adapter."""
    model.requires_grad_(True)


register_method(Method("lora", "LoRA on the query and value projections (PEFT)", build_lora, options=LoraOptions,
                       default_lr=1e-3, trains="model", defined_in="chapter 06"))  # fmt: skip
register_method(Method("full_finetuning", "every weight of the model", build_full_finetuning, default_lr=3e-5,
                       trains="model", defined_in="chapter 06"))  # fmt: skip
register_method(Method("linear_probe", "logistic regression on the frozen embeddings (lr = its C)", None,
                       default_lr=1.0, trains="features", defined_in="chapter 05"))  # fmt: skip

# The rows of chapter 06's table: a registered method and the options that make the variant.
COMPARED = {
    "deep prompt": ("deep", {}),
    "deep prompt + MLP": ("deep", dict(reparameterize=True)),
    "soft prompt": ("soft", {}),
    "soft prompt + pooled states": ("soft", dict(pool_prompt=True)),
    "P-tuning": ("p_tuning", {}),
    "linear probe": ("linear_probe", {}),
    "LoRA": ("lora", {}),
    "full fine-tuning": ("full_finetuning", {}),
}
COMPARED_METHODS = tuple(COMPARED)


def method_of(name: str) -> tuple[Method, dict]:
    """(registered method, options) of a table row name, or of any registered method's own name."""
    if name in COMPARED:
        registered, options = COMPARED[name]
        return get_method(registered), dict(options)
    if name in METHODS:
        return get_method(name), {}
    raise TrainConfigError(f"unknown method {name!r}; choose from {COMPARED_METHODS} or {tuple(METHODS)}")


# Each method's row is tested, paired on the same evaluation examples, against the row it is compared with.
COMPARED_WITH = {
    "deep prompt": "full fine-tuning",  # P-Tuning v2's claim: a deep prompt comes close to fine-tuning
    "deep prompt + MLP": "deep prompt",  # what the reparameterisation changes
    "soft prompt": "deep prompt",  # what prompts at every layer add
    "soft prompt + pooled states": "soft prompt",  # what pooling the prompt's own states adds
    "P-tuning": "soft prompt",  # what the prompt encoder adds (chapter 08's first question)
    "linear probe": "full fine-tuning",
    "LoRA": "full fine-tuning",
    "full fine-tuning": "zero-shot",
}

# The values swept with the first seed (learning rates; for the probe, logistic regression's C).
DEFAULT_SWEEP = {
    "deep prompt": (3e-3, 1e-2, 3e-2),
    "deep prompt + MLP": (3e-4, 1e-3, 3e-3),
    "soft prompt": (1e-2, 3e-2, 1e-1),
    "soft prompt + pooled states": (1e-2, 3e-2, 1e-1),
    "P-tuning": (3e-3, 1e-2, 3e-2),
    "linear probe": (0.1, 1.0, 10.0),
    "LoRA": (3e-4, 1e-3, 3e-3),
    "full fine-tuning": (1e-5, 3e-5, 1e-4),
}


# The "recorded" profile of chapters 05, 06 and 08 (issue 28): sized so that the whole comparison (SST-2 and TREC,
# every row of COMPARED, 3 seeds) is about 3 hours of one-thread CPU, spread over several sessions
# (benchmarks/_decision_record.py keeps each finished run in benchmarks/records/ch06_recorded/<task>/).
# The one home of its budget: every recorded table prints `budget_words(RECORDED_BUDGET)`.
RECORDED_BUDGET = dict(
    max_steps=100,  # optimisation steps per run (one pass over train_size at batch 32)
    batch_size=32,
    train_size=3200,  # training examples after the selection split
    select_size=200,  # held-out training examples: the lr and the best step are chosen on them
    checks=4,  # selection-split checks per run (every max_steps // checks steps)
    n_seeds=3,  # seeds 0, 1, 2: seed 0 sweeps the lr, seeds 1 and 2 train at the chosen one
    sweep_size=2,  # the last sweep_size values of DEFAULT_SWEEP (the probe: its C)
    deep_n_virtual_tokens=10,
    soft_n_virtual_tokens=20,  # the soft prompts and P-tuning
)
RECORDED_DIR = "benchmarks/records/ch06_recorded"  # relative to the repository root
# The order the recorder trains them: the comparisons that decide the most first (05's and 06's partners).
RECORDED_ORDER = ("soft prompt", "linear probe", "deep prompt", "full fine-tuning", "soft prompt + pooled states",
                  "LoRA", "P-tuning", "deep prompt + MLP")  # fmt: skip


def budget_words(budget: dict = RECORDED_BUDGET) -> str:
    """The budget a recorded table states, in words: ``"recorded profile: 100 steps × batch 32 …"``.
    Defined in chapter 06."""
    b = budget
    return (
        f"recorded profile: {b['max_steps']} steps × batch {b['batch_size']} on {b['train_size']:,} training "
        f"examples, lr (probe: C) chosen from {b['sweep_size']} values on {b['select_size']} held-out training "
        f"examples with seed 0, seeds 0–{b['n_seeds'] - 1}, {b['checks']} selection checks per run, "
        f"{b['soft_n_virtual_tokens']} soft / {b['deep_n_virtual_tokens']} deep virtual tokens"
    )


def recorded_options(budget: dict, method: str, init_text: str) -> dict:
    """The keyword arguments of ``run_method`` for ``method`` under ``budget`` — the same that chapter 06's
    ``run_comparison`` passes, so the notebook and the recorder store and find the same run files. Defined in
    chapter 06."""
    n = budget["deep_n_virtual_tokens"] if method.startswith("deep") else budget["soft_n_virtual_tokens"]
    seeds = list(range(budget["n_seeds"]))
    return dict(
        seeds=seeds[:1] if method == "linear probe" else seeds,  # L-BFGS on fixed features: deterministic
        sweep=DEFAULT_SWEEP[method][-budget["sweep_size"] :],
        n_virtual_tokens=n,
        max_steps=budget["max_steps"],
        batch_size=budget["batch_size"],
        init_text=init_text,
        eval_every=max(1, budget["max_steps"] // budget["checks"]),
    )


def recorded_rows(folder, methods=None, budget: dict = RECORDED_BUDGET) -> tuple[list[dict], dict]:
    """The rows of a recorded comparison read back from ``folder`` (one task's ``RunStore`` files and its
    ``zero_shot.json``), without a model and without training: ``(rows, missing)``.

    A method has rows once its whole sweep (seed 0) is stored — the lr is then chosen on the selection
    accuracies, as ``run_method`` does — with one row for each seed recorded at the chosen value so far;
    ``missing`` maps a method to the files it still lacks (its sweep's, or its seeds' at the chosen value),
    so a table of fewer seeds than the budget's says which are not run yet. Defined in chapter 06."""
    folder = Path(folder)
    rows, missing = [], {}
    zero = folder / "zero_shot.json"
    if zero.is_file():
        row = json.loads(zero.read_text())["row"]
        rows.append(row | dict(correct=np.asarray(row["correct"], dtype=np.int8)))
    else:
        missing["zero-shot"] = [zero.name]
    for method in methods or COMPARED_METHODS:
        options = recorded_options(budget, method, "")
        sweep_files = [folder / run_file_name(method, v, options["seeds"][0]) for v in options["sweep"]]
        lacking = [p.name for p in sweep_files if not p.is_file()]
        if lacking:
            missing[method] = lacking + [run_file_name(method, "<chosen>", s) for s in options["seeds"][1:]]
            continue
        runs = {float(json.loads(p.read_text())["row"]["lr"]): _stored_row(p, budget) for p in sweep_files}
        chosen = max(runs, key=lambda v: runs[v]["select_accuracy"])  # the first of equal values, as run_method
        others = [folder / run_file_name(method, chosen, s) for s in options["seeds"][1:]]
        lacking = [p.name for p in others if not p.is_file()]
        if lacking:  # the lr is chosen: the seeds recorded so far are rows, the others are listed as not run
            missing[method] = lacking
            others = [p for p in others if p.is_file()]
        scores = {v: r["select_accuracy"] for v, r in runs.items()}
        part = dict(partial=bool(lacking))  # some seeds not recorded yet: the table pairs equal seeds only
        rows += [r | dict(sweep=scores) | part for r in [runs[chosen]] + [_stored_row(p, budget) for p in others]]
    return rows, missing


def recorded_table(
    folder, n_model_parameters: int, methods=None, budget: dict = RECORDED_BUDGET, compared_with: dict | None = None
):
    """A recorded comparison as chapters 05, 06 and 08 print it: ``(header, table, missing)`` — the header
    names the budget, the task's n and every method that is not run yet; the table is ``comparison_table`` of
    the finished methods (None when none has finished), each tested against its ``compared_with`` partner
    (default ``COMPARED_WITH``). Defined in chapter 06."""
    rows, missing = recorded_rows(folder, methods, budget)
    n = {len(r["correct"]) for r in rows}
    header = f"{Path(folder).name} · {budget_words(budget)} · n = {', '.join(map(str, sorted(n))) or '—'}"
    if missing:
        runs = {m: len(o["sweep"]) + len(o["seeds"]) - 1 for m in missing if m != "zero-shot"
                for o in [recorded_options(budget, m, "")]} | {"zero-shot": 1}  # fmt: skip
        header += "\nnot run yet (runs missing of the budget's): " + ", ".join(
            f"{m} ({len(f)} of {runs[m]})" for m, f in missing.items()
        )
    trained = any(r["method"] != "zero-shot" for r in rows)
    table = comparison_table(rows, n_model_parameters, compared_with) if trained else None
    return header, table, missing


def _stored_row(path: Path, budget: dict) -> dict:
    saved = _renamed_record(json.loads(path.read_text()))
    kwargs = saved["settings"]["train_kwargs"]
    for key in ("max_steps", "batch_size"):  # a file of another budget is never read as this one
        if kwargs.get(key) != repr(budget[key]):
            raise TrainConfigError(f"{path} was trained with {key}={kwargs.get(key)}, not the budget's {budget[key]}")
    row = saved["row"]
    return row | dict(correct=np.asarray(row["correct"], dtype=np.int8), resumed=True)


def variant(method: str, n_virtual_tokens: int | None = None, lora_rank: int = 8) -> str:
    """The exact variant a row reports (what is trained, how the sentence embedding is pooled)."""
    n = n_virtual_tokens
    if method not in COMPARED and method != "zero-shot":  # another registered method: its own summary
        return f"{method}: {get_method(method).summary}" + (f", {n} virtual tokens" if n else "")
    return {
        "deep prompt": f"{n} trained keys + values per layer (P-Tuning v2 style), init from a text's own "
        "keys/values, no MLP",
        "deep prompt + MLP": f"{n} tokens, P = MLP(E) while training (Li & Liang's reparameterisation)",
        "soft prompt": f"Lester et al.: {n} input vectors, text init; embedding = mean over the input's own "
        "tokens (pool_prompt=False)",
        "soft prompt + pooled states": f"notebook 05's headline: {n} input vectors, text init; the prompt's "
        "output states averaged into the embedding too (pool_prompt=True)",
        "P-tuning": f"Liu et al. 2021: {n} input vectors = MLP(E) (PEFT's default encoder, chapter 08); "
        "embedding = mean over the input's own tokens",
        "linear probe": "logistic regression (L-BFGS) on the frozen mean-pooled embeddings; C swept instead of lr",
        "LoRA": f"rank {lora_rank}, alpha {2 * lora_rank}, on query and value projections (PEFT)",
        "full fine-tuning": "every encoder weight, the same label-sentence head",
        "zero-shot": "the frozen encoder and the label sentences, nothing trained",
    }[method]


def _outcomes(predictions, labels) -> np.ndarray:
    return (np.asarray(predictions) == np.asarray(list(labels))).astype(np.int8)


def train_method(
    method: str,
    encoder,
    tokenizer,
    label_sentences: Sequence[str],
    train_data,
    select_data,
    *,
    lr: float,
    seed: int = 0,
    max_steps: int = 100,
    batch_size: int = 32,
    n_virtual_tokens: int | None = None,
    init_text: str = "Classify this text",
    lora_rank: int = 8,
    temperature: float = 0.05,
    max_length: int = 64,
    eval_every: int | None = None,
    lr_schedule: str = "cosine",
    warmup: float = 0.05,
    progress: bool = True,
) -> tuple[dict, object]:
    """Train ``method`` at ONE learning rate ``lr`` (for the probe: its C) on a copy of ``encoder``.

    Returns ``(row, predict)``: ``row`` has method, variant, seed, lr, n_trainable, select_accuracy (of
    the best step, chosen on ``select_data`` by ``training.fit``), best_step, steps_run, seconds, peak_mib,
    memory_measure, loss_curve; ``predict(texts) → class ids`` runs the trained model. Nothing here looks at
    evaluation data.
    """
    from sklearn.linear_model import LogisticRegression

    registered, options = method_of(method)
    if not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
        raise TrainConfigError(f"lr (the probe: C) must be a positive number, got {lr!r}")
    seed_everything(seed)
    device = next(encoder.parameters()).device
    model = copy.deepcopy(encoder)
    # the run's settings: the registered method with this row's options (n_virtual_tokens None: the default 20)
    settings = TrainSettings(
        method=registered.name,
        n_virtual_tokens=n_virtual_tokens or TrainSettings.n_virtual_tokens,
        max_steps=max_steps,
        batch_size=batch_size,
        lr=float(lr),
        seed=seed,
        eval_every=eval_every or max(1, max_steps // 3),
        lr_schedule=lr_schedule,
        warmup=warmup,
        max_length=max_length,
        temperature=temperature,
        progress=progress,
        **options,
    ).resolved()
    pool_prompt = settings.pool_prompt
    head = LabelSentences(model, tokenizer, label_sentences, temperature, pool_prompt, max_length)
    (tr_x, tr_y), (se_x, se_y) = train_data, select_data
    row = dict(method=method, variant=variant(method, settings.n_virtual_tokens, lora_rank), seed=seed, lr=float(lr))
    with PeakMemory(device) as mem:
        start = time.perf_counter()
        if registered.trains == "features":  # the linear probe: no gradient steps
            clf = PromptClassifier(model, tokenizer, head, max_length=max_length)
            n_fit = min(len(tr_x), max_steps * batch_size)  # the same number of training examples as the others
            feats = clf.encode_texts(list(tr_x[:n_fit]), use_prompt=False).numpy()
            probe = LogisticRegression(max_iter=2000, C=float(lr)).fit(feats, np.asarray(tr_y[:n_fit]))

            def predict(texts, clf=clf, probe=probe):
                return probe.predict(clf.encode_texts(list(texts), use_prompt=False).numpy())

            row.update(n_trainable=int(probe.coef_.size + probe.intercept_.size), best_step=0, steps_run=0)
            row.update(loss_curve=[], select_accuracy=float(_outcomes(predict(se_x), se_y).mean()))
        else:
            kwargs = dict(init_text=init_text, label_words=None)
            if registered.trains == "prompt":  # a new adapter on the frozen copy
                adapter = registered.factory(model, tokenizer, settings, **kwargs)
                clf = PromptClassifier(model, tokenizer, head, adapter, max_length=max_length)
            else:  # the copy's own weights: LoRA injected, or every weight trainable
                clf = PromptClassifier(model, tokenizer, head, max_length=max_length)
                registered.factory(clf.model, tokenizer, SimpleNamespace(lora_rank=lora_rank), **kwargs)
            result = fit(clf, (tr_x, tr_y), (se_x, se_y), settings, desc=f"{method} (lr {lr:g}, seed {seed})")

            def predict(texts, clf=clf):
                return predict_classes(clf, list(texts))

            predict.classifier = clf  # the trained classifier (run_method's keep_classifier)

            row.update(n_trainable=int(result.n_trainable), best_step=result.best_step, steps_run=result.steps_run)
            row.update(loss_curve=list(result.history["loss"]), select_accuracy=float(result.best_select_accuracy))
        row["seconds"] = time.perf_counter() - start
    row["peak_mib"] = mem.mib
    row["memory_measure"] = mem.method
    return row, predict


def run_method(
    method: str,
    encoder,
    tokenizer,
    label_sentences: Sequence[str],
    train_data,
    select_data,
    eval_data,
    *,
    seeds: Sequence[int] = (0,),
    sweep: Sequence[float] | None = None,
    extra_eval: dict | None = None,
    keep_classifier: bool = False,
    run_dir: str | Path | None = None,
    **train_kwargs,
) -> list[dict]:
    """One row per seed for ``method``: the learning rate (probe: C) is chosen with ``seeds[0]`` from
    ``sweep`` by the best accuracy on ``select_data``; the other seeds train at the chosen value.

    Only the chosen run of each seed is evaluated on ``eval_data``; its row gets ``accuracy``, ``n`` and
    ``correct`` (0/1 per evaluation example, for paired tests) and ``sweep`` ({value: selection accuracy}).
    ``extra_eval`` ({name: (texts, labels)}): more evaluation sets, outcomes in ``row["extra_correct"][name]``;
    ``keep_classifier``: the trained classifier in ``row["classifier"]`` (not for the probe).
    ``run_dir``: a folder where every finished run is kept (``RunStore``), so that a long sweep that was
    stopped continues where it stopped: a rerun with the same settings reads the finished runs back instead
    of training them again. Each run is then evaluated when it finishes (its outcomes are stored with it);
    the choice still reads only the selection accuracies.
    """
    seeds = list(seeds)
    if sweep is None:  # a row of the table: its sweep; another registered method: its default lr alone
        sweep = DEFAULT_SWEEP.get(method) or (method_of(method)[0].default_lr,)
    sweep = list(sweep)
    if not seeds:
        raise TrainConfigError("seeds is empty: give at least one seed")
    if not sweep:
        raise TrainConfigError(f"no learning rates to sweep for {method!r}: pass sweep=[…]")
    data = (method, encoder, tokenizer, label_sentences, train_data, select_data)
    if run_dir is not None:
        if keep_classifier:
            raise TrainConfigError("keep_classifier needs the trained models in memory: run without run_dir")
        store = RunStore(run_dir, *data, eval_data, extra_eval, train_kwargs)
        runs = {float(v): store.run(v, seeds[0]) for v in sweep}  # the sweep, first seed
        chosen = max(runs, key=lambda v: runs[v]["select_accuracy"])  # max keeps the first of equal values
        scores = {v: r["select_accuracy"] for v, r in runs.items()}
        out = [runs[chosen]] + [store.run(chosen, s) for s in seeds[1:]]
        return [r | dict(sweep=dict(scores)) for r in out]
    best_row, best_predict, scores = None, None, {}
    for value in sweep:  # the sweep, first seed; the first best wins ties
        row, predict = train_method(*data, lr=value, seed=seeds[0], **train_kwargs)
        scores[float(value)] = row["select_accuracy"]
        if best_row is None or row["select_accuracy"] > best_row["select_accuracy"]:
            best_row, best_predict = row, predict
        del predict
    chosen = best_row["lr"]
    runs = [(best_row, best_predict)]
    runs += [train_method(*data, lr=chosen, seed=s, **train_kwargs) for s in seeds[1:]]
    rows = []
    for row, predict in runs:
        row = evaluate_run(row, predict, eval_data, extra_eval) | dict(sweep=dict(scores), resumed=False)
        if keep_classifier:
            row["classifier"] = getattr(predict, "classifier", None)
        rows.append(row)
    return rows


def evaluate_run(row: dict, predict, eval_data, extra_eval: dict | None = None) -> dict:
    """``row`` with the trained run's outcomes on ``eval_data``: ``accuracy``, ``n``, ``correct`` (0/1 per
    example, for paired tests) and, for each ``extra_eval`` set, ``extra_correct[name]``."""
    correct = _outcomes(predict(eval_data[0]), eval_data[1])
    row = row | dict(accuracy=float(correct.mean()), n=len(correct), correct=correct)
    if extra_eval:
        row["extra_correct"] = {name: _outcomes(predict(x), y) for name, (x, y) in extra_eval.items()}
    return row


def run_file_name(method: str, lr, seed: int) -> str:
    """The file name of a stored run (``RunStore``): ``soft_prompt-lr0.03-seed0.json``."""
    slug = "".join(c if c.isalnum() else "_" for c in method)
    return f"{slug}-lr{lr if isinstance(lr, str) else format(float(lr), 'g')}-seed{seed}.json"


class RunStore:
    """Finished training runs of one method, kept as JSON files in a folder, so that an interrupted sweep
    continues where it stopped (the full profile of chapter 06 trains for hours on a CPU).

    One file per (learning rate, seed): the run's row, with its outcomes on the evaluation sets, and the
    settings it was trained with: the method, every training option, the label sentences, the model's
    identity (class, parameter count, a hash of all its weights) and a hash of every text and label of the training,
    selection and evaluation data. A file is read back only when all of these are equal; a file of other
    settings is never overwritten: the error names it and the fix.
    """

    def __init__(self, folder, method, encoder, tokenizer, label_sentences, train_data, select_data, eval_data,
                 extra_eval=None, train_kwargs=None):  # fmt: skip
        self.folder = Path(folder)
        self.args = (method, encoder, tokenizer, label_sentences, train_data, select_data)
        self.eval_data, self.extra_eval, self.train_kwargs = eval_data, dict(extra_eval or {}), dict(train_kwargs or {})
        data = [train_data, select_data, eval_data, sorted(self.extra_eval.items())]
        self.settings = dict(
            method=method,
            train_kwargs={k: repr(v) for k, v in sorted(self.train_kwargs.items()) if k != "progress"},
            label_sentences=list(label_sentences),
            model=_model_identity(encoder),
            data_sha256=hashlib.sha256(json.dumps(data, default=_plain).encode()).hexdigest(),
        )

    def path(self, lr: float, seed: int) -> Path:
        return self.folder / run_file_name(self.settings["method"], lr, seed)

    def run(self, lr: float, seed: int) -> dict:
        """The row of the run at (``lr``, ``seed``): read back if it finished before, else trained, evaluated
        and saved (atomically: an interrupted save leaves no half file)."""
        path = self.path(lr, seed)
        settings = self.settings | dict(lr=float(lr), seed=int(seed))
        if path.is_file():
            try:
                saved = _renamed_record(json.loads(path.read_text()))
            except (json.JSONDecodeError, AttributeError) as err:
                raise TrainConfigError(f"{path} is not a readable run record ({err}): delete it to retrain") from err
            if saved.get("settings") != settings:
                changed = sorted(k for k in settings if saved.get("settings", {}).get(k) != settings[k])
                raise TrainConfigError(
                    f"{path} holds a run of other settings (differs in {changed}): pass another run_dir, or "
                    "delete the folder to retrain"
                )
            row = saved["row"]
            row["correct"] = np.asarray(row["correct"], dtype=np.int8)
            if "extra_correct" in row:
                row["extra_correct"] = {k: np.asarray(v, dtype=np.int8) for k, v in row["extra_correct"].items()}
            return row | dict(resumed=True)
        row, predict = train_method(*self.args, lr=lr, seed=seed, **self.train_kwargs)
        row = evaluate_run(row, predict, self.eval_data, self.extra_eval)
        atomic_write_json(path, dict(settings=settings, row=row), default=_plain)
        return row | dict(resumed=False)


def _renamed_record(saved: dict) -> dict:
    """A stored run written before the renames, under today's names: its training options read as settings
    (``project.RENAMED_SETTINGS``), its row as a result (``project.RENAMED_RESULTS``)."""
    settings = dict(saved.get("settings") or {})
    if isinstance(settings.get("train_kwargs"), dict):
        settings["train_kwargs"] = renamed_keys(settings["train_kwargs"], RENAMED_SETTINGS)
    row = renamed_keys(saved["row"], RENAMED_RESULTS) if isinstance(saved.get("row"), dict) else saved.get("row")
    return saved | dict(settings=settings, row=row)


def _plain(obj):
    """JSON for numpy values and arrays (outcomes, labels) and anything else by its repr."""
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return repr(obj)


def _model_identity(model) -> dict:
    """What makes two models the same for a stored run: class, parameter count and a hash of every weight
    (two checkpoints that differ only above the embeddings, e.g. a fine-tuned encoder, differ here)."""
    if not isinstance(model, torch.nn.Module):
        return dict(cls=type(model).__name__)
    from .checkpoint import weights_sha256

    n = sum(p.numel() for p in model.parameters())
    return dict(cls=type(model).__name__, n_parameters=n, weights_sha256=weights_sha256(model))


def merge_lora(model):
    """A copy of ``model`` (with PEFT LoRA layers injected) whose LoRA updates are folded into plain weights:
    W ← W + (α / r) · B A for every adapted ``nn.Linear``; the copy has no LoRA modules, no extra latency."""
    merged = copy.deepcopy(model)
    # [lora-merge]
    for name, module in list(merged.named_modules()):
        if not hasattr(module, "lora_A"):
            continue
        base = module.base_layer  # the frozen nn.Linear: weight (d_out, d_in)
        with torch.no_grad():
            for key in module.lora_A:  # one adapter ("default") in the course
                a, b = module.lora_A[key].weight, module.lora_B[key].weight  # A (r, d_in), B (d_out, r)
                base.weight += module.scaling[key] * (b @ a)  # W + (α/r) B A
        parent_name, _, child = name.rpartition(".")
        setattr(merged.get_submodule(parent_name) if parent_name else merged, child, base)
    # [/lora-merge]
    return merged


def zero_shot_rows(encoder, tokenizer, label_sentences, eval_data, *, seed=0, temperature=0.05, max_length=64):
    """The zero-shot row (nothing trained, so one row: every seed would give the same outcomes)."""
    head = LabelSentences(encoder, tokenizer, label_sentences, temperature, False, max_length)
    clf = PromptClassifier(encoder, tokenizer, head, max_length=max_length)
    correct = _outcomes(predict_classes(clf, list(eval_data[0])), eval_data[1])
    row = dict(method="zero-shot", seed=seed, variant=variant("zero-shot"), n_trainable=0, lr=float("nan"))
    row |= dict(sweep={}, seconds=0.0, peak_mib=0.0, select_accuracy=float("nan"), best_step=0, steps_run=0)
    return [row | dict(loss_curve=[], accuracy=float(correct.mean()), n=len(correct), correct=correct)]


def _fmt_sweep(row: dict) -> str:
    if not row["sweep"]:
        return "—"
    what = "C" if row["method"] == "linear probe" else "lr"
    tried = ", ".join(f"{v:g}: {a:.3f}" for v, a in row["sweep"].items())
    return f"{what} {row['lr']:g} (selection acc. {tried})"


def comparison_table(rows: Sequence[dict], n_model_parameters: int, compared_with: dict | None = None):
    """The comparison as a DataFrame, one line per method (columns are strings where they carry intervals).

    Accuracy: the first seed's, with n and the Wilson interval; mean over seeds: ``stats.seed_interval``;
    paired test: ``stats.paired_test`` of this method minus the compared row, on the first seed's
    outcomes on the same examples (a degenerate pair says so; a row trained at a smoke budget,
    ``stats.smoke_budget`` of its steps, prints the protocol-check line instead of a test); Δ over seeds:
    the seed interval of the per-seed differences (seeds paired by position; a one-run row such as
    zero-shot pairs with every seed).
    """
    import pandas as pd

    compared_with = COMPARED_WITH if compared_with is None else compared_with
    by_method: dict[str, list[dict]] = {}
    for row in rows:
        by_method.setdefault(row["method"], []).append(row)
    order = [m for m in ("zero-shot", *COMPARED_METHODS) if m in by_method]
    order += [m for m in by_method if m not in order]
    lines = []
    for method in order:
        runs = sorted(by_method[method], key=lambda r: r["seed"])
        first = runs[0]
        acc = accuracy_interval(first["correct"])
        other = compared_with.get(method)
        paired = delta_seeds = "—"
        if other in by_method:
            other_runs = sorted(by_method[other], key=lambda r: r["seed"])
            ran = int(first["steps_run"])
            smoke = bool(ran) and smoke_budget(ran)  # the probe (no steps) keeps its test
            paired = str(paired_test(first["correct"], other_runs[0]["correct"], smoke=smoke))
            # seeds paired by position; a single-run row (zero-shot, the deterministic probe) pairs with every seed
            other_acc = [other_runs[min(i, len(other_runs) - 1)]["accuracy"] for i in range(len(runs))]
            paired_runs = runs
            if any(o.get("partial") for o in other_runs):  # a partly recorded method: pair equal seeds only
                by_seed = {o["seed"]: o["accuracy"] for o in other_runs}
                paired_runs = [r for r in runs if r["seed"] in by_seed]
                other_acc = [by_seed[r["seed"]] for r in paired_runs]
            delta_seeds = str(seed_interval([r["accuracy"] - o for r, o in zip(paired_runs, other_acc)]))
        best_of = f"{first['best_step']} / {first['steps_run']}" if first["steps_run"] else "—"
        lines.append(
            {
                "method": method,
                "variant": first["variant"],
                "chosen on the selection split": _fmt_sweep(first),
                "trained params": int(first["n_trainable"]),
                "% of model": 100 * first["n_trainable"] / n_model_parameters,
                "best step / steps": best_of,
                "train time (s)": float(np.mean([r["seconds"] for r in runs])),
                "peak memory (MiB)": float(np.mean([r["peak_mib"] for r in runs])),
                "n": acc.n,
                f"accuracy, seed {first['seed']} [95% Wilson]": str(acc).split(" (n")[0],
                "mean over seeds": str(seed_interval([r["accuracy"] for r in runs])),
                "compared with": other if other in by_method else "—",
                "paired test (first seed)": paired,
                "Δ over seeds": delta_seeds,
            }
        )
    return pd.DataFrame(lines).set_index("method")

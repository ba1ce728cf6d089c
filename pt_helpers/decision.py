"""The decision table of chapter 10: every way to adapt one real LLM to one task, measured alike.

Defined in chapter 10. On one chat model and one task (SmolLM2-135M-Instruct, SST-2 in the chapter), each row
is a method — zero-shot, calibrated k-shot in-context learning, soft prompt, deep prompt, P-tuning, LoRA, an
instruction-tuned LoRA handed in from outside, full fine-tuning when the budget allows — and each column a
fact to decide by:

* accuracy on the same evaluation examples (n, Wilson interval), a paired test (``stats.paired_test``)
  against zero-shot and against the nearest rival (the other row closest in accuracy); a run below
  ``stats.smoke_budget`` steps prints a protocol check instead of a verdict;
* trainable numbers, bytes stored per task (what must be kept to serve the task: the trained tensors, or the
  demonstrations' text), seconds per training step and in total (``training.fit``'s clock, its selection
  checks included), whether one deployment serves many tasks;
* forgetting: accuracy on *another* task after training. Prompt methods train on a frozen model: the base's
  SHA-256 (``checkpoint.weights_sha256``) is asserted unchanged, so the other task's outcomes are the base's.
  LoRA is merged in place (``lora.merge``) and measured, as is the instruction-tuned model.

Every trained row is one ``training.fit`` on the chat classifier of chapter 09 (``chat.chat_classifier``) with
the registered method's own factory (soft, deep, p_tuning; LoRA from ``lora.add_lora``), so nothing here is a
second copy of a method.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from . import chat, comparison, icl, lora, stats  # noqa: F401  (comparison registers the "lora" method)
from .adapters import get_method
from .checkpoint import weights_sha256
from .data import task_info
from .device import release_memory
from .errors import CourseError
from .training import FitResult, TrainSettings, fit

PROMPT_METHODS = {"soft prompt": "soft", "deep prompt": "deep", "P-tuning": "p_tuning"}
SERVES = {
    "zero-shot": "yes: a task is its instruction text",
    "calibrated k-shot ICL": "yes: a task is its demonstrations (a longer context on every request)",
    "soft prompt": "yes: one frozen model, one prompt per request (mixed-task batches, chapter 08)",
    "deep prompt": "yes: one frozen model, one key/value prefix per request",
    "P-tuning": "yes: one frozen model, one prompt per request (the encoder is dropped after training)",
    "LoRA": "one base + one adapter per task while unmerged (batched adapters need a LoRA-aware server); "
    "merged: one model per task",
    "instruction-tuned LoRA": "yes for the tasks of its mixture (one model, an instruction per task); "
    "merged, it is a new model",
    "full fine-tuning": "no: one full copy of the model per task",
}


@dataclass
class Budget:
    """The training budget of every trained row (one setting each, the names of ``TrainSettings``)."""

    max_steps: int = 10
    batch_size: int = 8
    eval_every: int = 5
    n_virtual_tokens: int = 8
    lora_rank: int = 8
    lora_alpha: float | None = None  # None: 2 r
    k_shot: int = 4
    max_length: int = 256
    lr: dict = field(default_factory=dict)  # per row name; a row without one takes its method's default
    seed: int = 0


@dataclass
class MethodRun:
    """One row's measurements. ``correct``: per evaluation example, 1 if right; ``other_correct``: the same on
    the forgetting task; ``base_unchanged``: True / False for rows that train, None otherwise."""

    name: str
    variant: str
    correct: np.ndarray
    other_correct: np.ndarray | None = None
    n_trainable: int = 0
    bytes_per_task: int = 0
    steps_run: int = 0
    seconds: float = 0.0
    serves_many: str = ""
    base_unchanged: bool | None = None
    note: str = ""

    @property
    def seconds_per_step(self) -> float:
        return self.seconds / self.steps_run if self.steps_run else float("nan")


def tensor_bytes(tensors) -> int:
    """Bytes of a collection of tensors as stored (numel × element size)."""
    return int(sum(t.numel() * t.element_size() for t in tensors))


def lora_tensors(model) -> list[torch.Tensor]:
    """The A and B of every ``lora.LoraLinear`` of ``model``: what a LoRA task stores."""
    return [t for m in model.modules() if isinstance(m, lora.LoraLinear) for t in (m.A, m.B)]


def outcomes(classifier, texts: Sequence[str], labels: Sequence[int], batch_size: int = 16) -> np.ndarray:
    """1 where ``classifier`` predicts the label, else 0 (n,)."""
    return (classifier.predict(list(texts), batch_size=batch_size) == np.asarray(list(labels))).astype(np.int8)


def chat_outcomes(model, tokenizer, task: str, texts: Sequence[str], labels: Sequence[int]) -> np.ndarray:
    """Zero-shot outcomes of ``model`` on ``task`` through chapter 09's chat classifier (no prompt)."""
    return outcomes(chat.chat_classifier(model, tokenizer, chat.chat_format(task)), texts, labels)


def settings_for(method: str, task: str, budget: Budget, lr: float | None) -> TrainSettings:
    """The ``TrainSettings`` of one trained row (``method``: a registered method's name)."""
    return TrainSettings(
        task=task, method=method, n_virtual_tokens=budget.n_virtual_tokens, max_steps=budget.max_steps,
        batch_size=budget.batch_size, lr=lr, eval_every=budget.eval_every, eval_batch_size=16, seed=budget.seed,
        progress=False, max_length=budget.max_length,
    ).resolved()  # fmt: skip


def train_prompt(model, tokenizer, task: str, name: str, train, select, budget: Budget):
    """A registered prompt method (``PROMPT_METHODS[name]``) trained by ``fit`` on the frozen ``model``.

    Returns (classifier, FitResult). The method's own factory builds the adapter (one home per method)."""
    method = get_method(PROMPT_METHODS[name])
    settings = settings_for(method.name, task, budget, budget.lr.get(name))
    adapter = method.factory(model, tokenizer, settings, init_text=task_info(task).init_text, label_words=None)
    clf = chat.chat_classifier(model, tokenizer, chat.chat_format(task), adapter, max_length=budget.max_length)
    return clf, fit(clf, train, select, settings, desc=name)


def train_lora(model, tokenizer, task: str, train, select, budget: Budget, r=None, alpha=None, lr=None):
    """LoRA (``lora.add_lora``) on a COPY of ``model``, trained by ``fit``; returns (classifier, FitResult).

    ``r``/``alpha``/``lr`` override the budget's (the rank and α ablation of chapter 10)."""
    r = budget.lora_rank if r is None else r
    alpha = budget.lora_alpha if alpha is None else alpha
    settings = settings_for("lora", task, budget, lr if lr is not None else budget.lr.get("LoRA"))
    clf = chat.chat_classifier(copy.deepcopy(model), tokenizer, chat.chat_format(task), max_length=budget.max_length)
    lora.add_lora(clf.model, r=r, alpha=alpha, seed=budget.seed)  # after the classifier, which freezes its model
    return clf, fit(clf, train, select, settings, desc=f"LoRA r={r}")


def full_finetuning_bytes(n_parameters: int) -> int:
    """Bytes that training every weight with AdamW in float32 holds beside activations: weights, gradients and
    the two moment estimates, 4 numbers × 4 bytes each per parameter."""
    return 16 * int(n_parameters)


def icl_run(model, tokenizer, task: str, pool, texts, labels, budget: Budget) -> MethodRun:
    """Calibrated k-shot in-context learning as a conversation (chapter 09's scorer, chapter 03's calibration)."""
    fmt = chat.chat_format(task)
    demos = icl.sample_demonstrations(pool, budget.k_shot, seed=budget.seed, balanced=True, exclude_texts=list(texts))
    lp = chat.score_chat(model, tokenizer, demos, list(texts), fmt)
    cf = chat.score_chat(model, tokenizer, demos, list(icl.CONTENT_FREE_INPUTS), fmt)
    pred = icl.contextual_calibration(lp, cf).argmax(-1).numpy()
    context, _ = chat.chat_context_and_queries(tokenizer, demos, list(texts)[:1], fmt)
    return MethodRun(
        "calibrated k-shot ICL", f"{budget.k_shot} demonstrations as chat turns, contextual calibration",
        (pred == np.asarray(list(labels))).astype(np.int8), bytes_per_task=len(context.encode("utf-8")),
        serves_many=SERVES["calibrated k-shot ICL"],
    )  # fmt: skip


def _trained_run(name, variant, correct, result: FitResult, stored: int) -> MethodRun:
    return MethodRun(
        name, variant, correct, n_trainable=int(result.n_trainable), bytes_per_task=stored,
        steps_run=int(result.steps_run), seconds=float(result.seconds), serves_many=SERVES[name],
    )  # fmt: skip


def decision_runs(
    model,
    tokenizer,
    splits,
    *,
    budget: Budget,
    forgetting_eval: Callable[[torch.nn.Module], np.ndarray],
    extra_runs: Sequence[MethodRun] = (),
    full_finetuning_limit_bytes: int | None = None,
) -> list[MethodRun]:
    """Every row of the decision table on ``splits`` (``data.task_splits``: train, select, eval).

    ``forgetting_eval(model) → outcomes (m,)`` scores a model on another task (the same m examples each
    time). ``extra_runs``: rows measured elsewhere on the same evaluation examples (chapter 10 §2's
    instruction-tuned LoRA, ``instruction_tuned_run``), so its model need not be held while these train. Full
    fine-tuning runs only when ``full_finetuning_limit_bytes`` is given and its AdamW state
    (``full_finetuning_bytes``) fits under it; otherwise its row says why not."""
    task = splits.task
    train, select = splits.texts_labels("train"), splits.texts_labels("select")
    texts, labels = splits.texts_labels("eval")
    for run in extra_runs:  # checked before anything trains
        if run.correct.size != len(labels):
            raise CourseError(f"{run.name} was scored on {run.correct.size} examples, the table on {len(labels)}")
    base_hash = weights_sha256(model)
    base_other = forgetting_eval(model)
    zero = chat_outcomes(model, tokenizer, task, texts, labels)
    system = chat.chat_format(task).system
    runs = [MethodRun("zero-shot", "the chat model and its instruction, nothing trained", zero, base_other,
                      bytes_per_task=len(system.encode("utf-8")), serves_many=SERVES["zero-shot"])]  # fmt: skip
    runs.append(icl_run(model, tokenizer, task, splits.train, texts, labels, budget))
    runs[-1].other_correct = base_other
    for name in PROMPT_METHODS:
        clf, result = train_prompt(model, tokenizer, task, name, train, select, budget)
        stored = tensor_bytes(clf.adapter.saved_tensors().values())
        variant = f"{budget.n_virtual_tokens} virtual tokens, {get_method(PROMPT_METHODS[name]).summary}"
        run = _trained_run(name, variant, outcomes(clf, texts, labels), result, stored)
        run.base_unchanged = weights_sha256(model) == base_hash  # the prompt trained; the model did not
        if not run.base_unchanged:
            raise CourseError(f"{name} changed the frozen model's weights: a prompt method must leave them alone")
        run.other_correct = base_other  # the base is bit-identical, so its outcomes on the other task are these
        runs.append(run)
        del clf
        release_memory()
    clf, result = train_lora(model, tokenizer, task, train, select, budget)
    r, alpha = budget.lora_rank, budget.lora_alpha or 2 * budget.lora_rank
    run = _trained_run("LoRA", f"rank {r}, α {alpha:g} on {', '.join(lora.lora_targets(model))} (lora.add_lora)",
                       outcomes(clf, texts, labels), result, tensor_bytes(lora_tensors(clf.model)))  # fmt: skip
    run.other_correct, run.base_unchanged = forgetting_eval(lora.merge(clf.model, in_place=True)), False
    runs.append(run)
    del clf
    release_memory()  # hand the trained copy's pages back before the next row
    runs.extend(extra_runs)
    runs.append(_full_finetuning(model, tokenizer, task, train, select, texts, labels, budget, forgetting_eval,
                                 full_finetuning_limit_bytes))  # fmt: skip
    return runs


def instruction_tuned_run(
    tuned, tokenizer, task: str, texts, labels, result: FitResult, forgetting_eval, name="instruction-tuned LoRA"
) -> MethodRun:
    """The row of an instruction-tuned model (LoRA SFT, chapter 10 §2): zero-shot on ``task``'s (texts, labels)
    through the chat classifier, its other-task outcomes, and what it trained (LoRA: float32 A and B)."""
    stored = 4 * int(result.n_trainable)  # the adapter's numbers in float32: what one task mixture stores
    run = _trained_run(name, "LoRA SFT on an instruction mixture (§2), scored zero-shot",
                       chat_outcomes(tuned, tokenizer, task, texts, labels), result, stored)  # fmt: skip
    run.other_correct, run.base_unchanged = forgetting_eval(tuned), False
    return run


def _full_finetuning(model, tokenizer, task, train, select, texts, labels, budget, forgetting_eval, limit):
    n = sum(p.numel() for p in model.parameters())
    need = full_finetuning_bytes(n)
    if limit is None or need > limit:
        why = f"not run: AdamW in float32 holds {need / 2**30:.2f} GiB (16 bytes × {n:,} parameters) before "
        why += "activations" + (f", over this budget's {limit / 2**30:.2f} GiB" if limit else " (no budget given)")
        return MethodRun("full fine-tuning", "every weight", np.zeros(0, np.int8), n_trainable=n,
                         bytes_per_task=4 * n, serves_many=SERVES["full fine-tuning"], note=why)  # fmt: skip
    settings = settings_for("full_finetuning", task, budget, budget.lr.get("full fine-tuning"))
    clf = chat.chat_classifier(copy.deepcopy(model), tokenizer, chat.chat_format(task), max_length=budget.max_length)
    tuned = clf.model.requires_grad_(True)  # after the classifier, which freezes its model
    result = fit(clf, train, select, settings, desc="full fine-tuning")
    run = _trained_run("full fine-tuning", "every weight", outcomes(clf, texts, labels), result, 4 * n)
    run.other_correct, run.base_unchanged = forgetting_eval(tuned), False
    return run


def nearest_rival(runs: Sequence[MethodRun], name: str) -> str | None:
    """The other evaluated row (not zero-shot) whose accuracy is closest to ``name``'s (the first on ties)."""
    by = {r.name: r for r in runs if r.correct.size}
    if name not in by:
        return None
    acc = by[name].correct.mean()
    others = [r for r in by.values() if r.name not in (name, "zero-shot")]
    return min(others, key=lambda r: abs(r.correct.mean() - acc)).name if others else None


def _verdict(runs, a: str, b: str | None) -> str:
    by = {r.name: r for r in runs}
    if b is None or not by[a].correct.size:
        return ""
    smoke = any(stats.smoke_budget(by[x].steps_run) for x in (a, b) if by[x].steps_run)
    test = stats.paired_test(by[a].correct, by[b].correct, smoke=smoke)
    return f"vs {b}: {test.verdict((a, b))}" + ("" if smoke else f"; {test}")


def decision_table(runs: Sequence[MethodRun]) -> pd.DataFrame:
    """One row per method: accuracy (n, Wilson 95 %), the paired verdicts, cost, serving and forgetting."""
    base = next(r for r in runs if r.name == "zero-shot")
    rows = []
    for r in runs:
        rival = nearest_rival(runs, r.name)
        other = ""
        if r.other_correct is not None:
            other = str(stats.accuracy_interval(r.other_correct))
            if r.base_unchanged is False:
                other += " · " + stats.paired_test(r.other_correct, base.other_correct).verdict((r.name, "base"))
            elif r.base_unchanged:
                other += " · base bit-identical (SHA-256)"
        rows.append({
            "method": r.name,
            "variant": r.variant,
            "accuracy": str(stats.accuracy_interval(r.correct)) if r.correct.size else r.note,
            "vs zero-shot": _verdict(runs, r.name, "zero-shot") if r.name != "zero-shot" else "",
            "vs nearest rival": _verdict(runs, r.name, rival),
            "n_trainable": r.n_trainable,
            "bytes per task": r.bytes_per_task,
            "s / step": round(r.seconds_per_step, 3) if r.steps_run else None,
            "s total": round(r.seconds, 1) if r.steps_run else None,
            "serves many tasks": r.serves_many,
            "other task after training": other,
        })  # fmt: skip
    return pd.DataFrame(rows)


def findings(runs: Sequence[MethodRun]) -> dict:
    """The table's numbers as plain JSON values, for the chapter's recorded run."""
    out = {}
    for r in runs:
        acc = stats.accuracy_interval(r.correct) if r.correct.size else None
        other = stats.accuracy_interval(r.other_correct) if r.other_correct is not None else None
        out[r.name] = dict(
            accuracy=acc.value if acc else None, low=acc.low if acc else None, high=acc.high if acc else None,
            n=acc.n if acc else 0, n_trainable=r.n_trainable, bytes_per_task=r.bytes_per_task, steps_run=r.steps_run,
            seconds=round(r.seconds, 2), other_accuracy=other.value if other else None,
            base_unchanged=r.base_unchanged, note=r.note,
        )  # fmt: skip
    return out

"""ONE training loop for every prompt method, notebook and the command line (taught in chapter 05).

``fit(classifier, train_data, select_data, settings)`` trains the parameters of ``classifier`` that
require grad (a prompt adapter's, or a LoRA's / the whole model's in the baselines) with cross-entropy on
its (B, C) logits:

* the learning rate warms up linearly over ``warmup`` × ``max_steps`` steps, then follows
  ``lr_schedule`` (``"constant"``, or ``"linear"`` / ``"cosine"`` decay to 0 at the last step);
* every ``eval_every`` steps and at the end it measures accuracy on ``select_data`` — examples held out
  from the *training* data, never the evaluation split — and restores the best parameters at the end;
* bf16 autocast on CUDA (``amp``), gradient accumulation (``grad_accum_steps`` micro-batches per step);
* with an ``accelerate.Accelerator`` (the CLI under ``accelerate launch``) each process takes an equal
  share of every global batch and DDP averages the gradients, so one process and k processes take the
  same optimisation steps (up to float rounding).

``TrainSettings`` holds every setting of a run. Its field names are the notebook parameters, the CLI flags
(``n_virtual_tokens`` ↔ ``--n-virtual-tokens``) and the keys of the saved ``train_config.json``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.nn.functional as F

from . import p_tuning, prefix, soft_prompt  # noqa: F401  (importing them registers the course's methods)
from .adapters import METHODS as REGISTRY
from .adapters import get_method, method_names, option
from .classifiers import autocast_for, evaluate_classifier
from .data import task_info
from .device import seed_everything
from .errors import CheckpointError, PromptError, TrainConfigError
from .project import atomic_write_json

LR_SCHEDULES = ("constant", "linear", "cosine")
OPTIMIZERS = ("adamw", "adafactor")


def _method_option(cls, name: str):
    """A TrainSettings field that IS a method's own setting: default and help read from the method's options."""
    f = next(f for f in fields(cls) if f.name == name)
    return field(default=f.default, metadata=dict(f.metadata, method_option=True))


@dataclass
class TrainSettings:
    """Every setting of a training run: one name each in code, notebooks, CLI flags and saved JSON.

    Each field's ``metadata["help"]`` is the CLI's help. The method-specific fields (``pool_prompt``,
    ``reparameterize``…) are declared by their method (``options`` of its registry entry) and only read here."""

    model: str = option(
        "sentence-transformers/all-MiniLM-L6-v2",
        "model name or folder; causal LMs get label words, encoders label sentences (read from the config)",
    )
    task: str = option("sst2", "task: a name of data.TASKS (sst2, trec, agnews, cb, rte)")
    method: str = option("soft", "the training method, a name of the method registry (adapters.METHODS)")
    n_virtual_tokens: int = option(20, "number of virtual tokens")
    init: str | None = option(None, "the prompt's initialisation (None: the method's default)")
    p_tuning_encoder: str = _method_option(p_tuning.PTuningOptions, "p_tuning_encoder")
    reparameterize: bool = _method_option(prefix.DeepPromptOptions, "reparameterize")
    mlp_hidden: int = _method_option(prefix.DeepPromptOptions, "mlp_hidden")
    init_std: float = _method_option(prefix.DeepPromptOptions, "init_std")
    pool_prompt: bool = _method_option(soft_prompt.SoftPromptOptions, "pool_prompt")
    optimizer: str = option("adamw", "adamw or adafactor", OPTIMIZERS)
    lr: float | None = option(None, "peak learning rate (None: the method's default)")
    weight_decay: float = option(0.0, "weight decay of the optimiser")
    lr_schedule: str = option(
        "cosine", "after the warm-up: constant, or linear / cosine decay to 0 at the last step", LR_SCHEDULES
    )
    warmup: float = option(0.05, "fraction of --max-steps spent warming the learning rate up linearly from 0")
    batch_size: int = option(32, "GLOBAL batch size, split evenly over the processes of accelerate launch")
    grad_accum_steps: int = option(1, "micro-batches per optimisation step (gradient accumulation)")
    max_steps: int = option(200, "optimisation steps")
    eval_every: int = option(50, "steps between accuracy checks on the selection split (the best step is kept)")
    select_size: int = option(300, "training examples held out to choose the best step (never the evaluation split)")
    train_size: int = option(0, "training examples trained on, after the selection split (0 = all the rest)")
    eval_size: int = option(0, "seeded subset of the evaluation split (0 = all; SST-2 dev, TREC test)")
    temperature: float = option(0.05, "encoders: cosine similarity / temperature gives the logits")
    max_length: int = option(64, "truncate inputs to this many tokens")
    eval_batch_size: int = option(64, "batch size of the accuracy checks")
    seed: int = option(0, "seed of the prompt initialisation, the selection split and the data order")
    amp: bool = option(True, "bf16 autocast on CUDA (--no-amp: float32)")
    output_dir: str = option("runs/prompt", "folder for the prompt, train_config.json and metrics.json")
    save_every: int = option(50, "steps between saves of the training state in --output-dir (0 = never); see --resume")
    resume: bool = option(False, "continue the unfinished run in --output-dir from its last saved training state")
    overwrite: bool = option(
        False, "replace another run's files in --output-dir (the old run stays until the new one has finished)"
    )
    cpu: bool = option(False, "run on the CPU even when a GPU is present")
    progress: bool = option(True, "show a progress bar (--no-progress to hide it)")

    def resolved(self) -> TrainSettings:
        """A copy with the method-dependent defaults filled in and every value checked."""
        s = copy.deepcopy(self)
        task_info(s.task)  # an unknown task names the valid ones
        if s.method not in REGISTRY:
            raise TrainConfigError(f"method must be one of {method_names()}, got {s.method!r}")
        method = get_method(s.method)
        names = ("n_virtual_tokens", "batch_size", "max_steps", "eval_every", "grad_accum_steps", "eval_batch_size")
        positive = {name: getattr(s, name) for name in (*names, "max_length")}
        options = method.option_values(s)  # the method's own settings (an integer one is checked here too)
        positive |= {f.name: options[f.name] for f in method.option_fields() if f.type in (int, "int")}
        for name, value in positive.items():
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise TrainConfigError(f"{name} must be a positive integer, got {value!r}")
        for name in ("select_size", "train_size", "eval_size", "save_every"):
            value = getattr(s, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise TrainConfigError(f"{name} must be an integer ≥ 0 (0 = all), got {value!r}")
        if s.lr is not None and not (isinstance(s.lr, (int, float)) and s.lr > 0 and math.isfinite(s.lr)):
            raise TrainConfigError(f"lr must be a positive number (or None for the method's default), got {s.lr!r}")
        if not (isinstance(s.temperature, (int, float)) and s.temperature > 0):
            raise TrainConfigError(f"temperature must be > 0 (logits are cosine / temperature), got {s.temperature!r}")
        if not (isinstance(s.warmup, (int, float)) and 0 <= s.warmup < 1):
            raise TrainConfigError(f"warmup is a fraction of max_steps in [0, 1), got {s.warmup!r}")
        if s.weight_decay < 0:
            raise TrainConfigError(f"weight_decay must be ≥ 0, got {s.weight_decay!r}")
        if s.lr_schedule not in LR_SCHEDULES:
            raise TrainConfigError(f"lr_schedule must be one of {LR_SCHEDULES}, got {s.lr_schedule!r}")
        if s.optimizer not in OPTIMIZERS:
            raise TrainConfigError(f"optimizer must be one of {OPTIMIZERS}, got {s.optimizer!r}")
        if s.batch_size % s.grad_accum_steps:
            raise TrainConfigError(
                f"batch_size {s.batch_size} does not split into grad_accum_steps "
                f"{s.grad_accum_steps} equal micro-batches"
            )
        for f in fields(self):  # a value outside its choices, or another method's option given
            value, choices = getattr(s, f.name), f.metadata.get("choices")
            if choices and value not in choices:
                raise TrainConfigError(f"{f.name} must be one of {choices}, got {value!r}")
            if f.metadata.get("method_option") and value != f.default and f.name not in method.option_values(s):
                owners = [m.name for m in REGISTRY.values() if f.name in m.option_values(s)]
                raise TrainConfigError(
                    f"{f.name} applies to method {' or '.join(map(repr, owners))} only (method is {s.method!r})"
                )
        s.init = s.init if s.init is not None else method.default_init
        if method.inits and s.init not in method.inits:
            raise TrainConfigError(f"init {s.init!r} is not one of {method.inits} (method {s.method!r})")
        if not method.inits and s.init is not None:
            raise TrainConfigError(f"method {s.method!r} has no init to choose; leave init unset")
        s.lr = float(s.lr) if s.lr is not None else method.default_lr
        return s

    @property
    def warmup_steps(self) -> int:
        return int(self.warmup * self.max_steps)

    def run_identity(self) -> dict:
        """The settings that decide what a run computes (not where it writes or how it reports)."""
        d = asdict(self)
        for key in RUN_CONTROL:
            d.pop(key)
        return d


RUN_CONTROL = ("output_dir", "save_every", "resume", "overwrite", "progress", "eval_batch_size")


def lr_at(step: int, total: int, lr: float, warmup_steps: int = 0, schedule: str = "constant") -> float:
    """Learning rate of step ``step`` (0-based) out of ``total``: linear warm-up to ``lr`` over
    ``warmup_steps``, then constant, or decaying to 0 at ``total`` (``"linear"`` or ``"cosine"``)."""
    if warmup_steps and step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return lr
    progress = min(1.0, (step - warmup_steps) / max(1, total - warmup_steps))
    if schedule == "linear":
        return lr * (1.0 - progress)
    return lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_optimizer(params, name: str = "adamw", lr: float = 1e-2, weight_decay: float = 0.0):
    """AdamW, or Adafactor as Lester et al. used it (fixed lr, no relative step, no parameter scaling)."""
    params = [p for p in params if p.requires_grad]
    if not params:
        raise PromptError("no trainable parameters: did you freeze everything, prompt included?")
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "adafactor":
        from transformers.optimization import Adafactor

        return Adafactor(
            params, lr=lr, weight_decay=weight_decay, scale_parameter=False, relative_step=False, warmup_init=False
        )
    raise PromptError(f"unknown optimizer {name!r}; choose one of {OPTIMIZERS}")


def batch_indices(n_examples: int, n_steps: int, batch_size: int, seed: int) -> list[list[int]]:
    """Example indices of every step: epoch after epoch a seeded permutation, cut into batches (the last
    batch of an epoch may be smaller). The same on every process, so processes agree on each batch."""
    gen = torch.Generator().manual_seed(int(seed))
    batches, order, pos = [], [], 0
    while len(batches) < n_steps:
        if pos >= len(order):
            order, pos = torch.randperm(n_examples, generator=gen).tolist(), 0
        batches.append(order[pos : pos + batch_size])
        pos += batch_size
    return batches


@dataclass
class FitResult:
    """What ``fit`` returns. ``history``: ``step``, ``loss``, ``lr`` (per step), ``eval_step``,
    ``select_accuracy`` and ``train_accuracy`` (running, per evaluation). ``steps_run``: the optimisation steps
    the returned run took (the budget is ``TrainSettings.max_steps``; ``fit`` runs all of them and keeps the
    best step's parameters, so today the two are equal); ``n_trainable``: the number of trained numbers."""

    history: dict = field(default_factory=dict)
    best_select_accuracy: float = float("nan")  # of the returned (best) parameters
    best_step: int = 0
    steps_run: int = 0
    seconds: float = 0.0
    n_trainable: int = 0


STATE_DIR = "training_state"
STATE_TENSORS = "state.safetensors"
STATE_JSON = "state.json"


def save_training_state(
    folder: str | Path, settings: TrainSettings, step: int, params, opt, best, hist: dict, running: tuple[int, int]
) -> Path:
    """Everything ``fit`` needs to continue after ``step``: trained parameters, optimiser state, best so far.

    Tensors go to safetensors (no pickles), the rest to JSON. The pair is written into a fresh folder that
    then replaces ``<folder>/training_state`` by renames, so a kill at any moment leaves one complete state
    (the new one, or the previous one as ``.training_state.old``).
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    new, cur, old = folder / f".{STATE_DIR}.new", folder / STATE_DIR, folder / f".{STATE_DIR}.old"
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir(parents=True)
    tensors = {f"param.{i}": p.detach().cpu().contiguous() for i, p in enumerate(params)}
    tensors.update({f"best.{i}": b.detach().cpu().contiguous() for i, b in enumerate(best[2])})
    opt_state = opt.state_dict()
    scalars = {}
    for idx, entry in opt_state["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"opt.{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{key}"] = value
    save_file(tensors, str(new / STATE_TENSORS))
    atomic_write_json(
        new / STATE_JSON,
        dict(
            step=step,
            best_accuracy=best[0],
            best_step=best[1],
            history=hist,
            running=list(running),
            optimizer_scalars=scalars,
            param_groups=opt_state["param_groups"],
            n_params=len(params),
            settings=settings.run_identity(),
        ),
    )
    shutil.rmtree(old, ignore_errors=True)
    if cur.exists():
        os.replace(cur, old)
    os.replace(new, cur)
    shutil.rmtree(old, ignore_errors=True)
    return cur


def find_training_state(folder: str | Path) -> Path | None:
    """The last complete training state in ``folder`` (the previous one if a save was cut off), or None."""
    for name in (STATE_DIR, f".{STATE_DIR}.old"):
        path = Path(folder) / name
        if (path / STATE_JSON).is_file() and (path / STATE_TENSORS).is_file():
            return path
    return None


def load_training_state(path: Path, settings: TrainSettings, params, opt):
    """Restore what ``save_training_state`` wrote into ``params`` and ``opt``; returns (step, best, hist, running)."""
    from safetensors.torch import load_file

    try:
        meta = json.loads((path / STATE_JSON).read_text())
        tensors = load_file(str(path / STATE_TENSORS))
    except Exception as exc:  # noqa: BLE001  (any damage means the same thing to the user)
        raise CheckpointError(
            f"the training state in {path} cannot be read ({type(exc).__name__}: {exc}); start again with --overwrite"
        ) from exc
    if meta.get("settings") != settings.run_identity():
        changed = sorted(k for k, v in settings.run_identity().items() if meta.get("settings", {}).get(k) != v)
        raise CheckpointError(
            f"the training state in {path} was written by a run with other settings ({changed}); "
            "resume with the same settings, or start again with --overwrite"
        )
    if meta["n_params"] != len(params):
        raise CheckpointError(
            f"the training state in {path} holds {meta['n_params']} trained tensors, this model "
            f"{len(params)}: it belongs to another run"
        )
    with torch.no_grad():
        for i, p in enumerate(params):
            p.copy_(tensors[f"param.{i}"])
    best = (meta["best_accuracy"], meta["best_step"], [tensors[f"best.{i}"].to(p.device) for i, p in enumerate(params)])
    state: dict = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value.to(params[int(idx)].device)
    for key, value in meta["optimizer_scalars"].items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    return meta["step"], best, meta["history"], tuple(meta["running"])


def _split(items, world: int, rank: int):
    """This process's contiguous share of a global batch."""
    per = math.ceil(len(items) / world)
    return items[rank * per : (rank + 1) * per]


def fit(
    classifier,
    train_data: tuple[Sequence[str], Sequence[int]],
    select_data: tuple[Sequence[str], Sequence[int]],
    settings: TrainSettings,
    *,
    accelerator=None,
    desc: str = "training",
    state_dir: str | Path | None = None,
    extra_loss=None,
) -> FitResult:
    """Train ``classifier`` (``forward(ids, mask) → (B, C)``, ``tokenize(texts)``); see the module docstring.

    ``train_data`` and ``select_data``: (texts, labels). Returns a ``FitResult``; the classifier holds the
    parameters of the best selection accuracy (the later step on ties is not preferred: the first best wins).
    With ``state_dir``, the training state is saved there every ``settings.save_every`` steps, and with
    ``settings.resume`` training continues from the last saved state — reaching the same parameters as an
    uninterrupted run, because the data order, the learning rate and the optimiser state are all restored.
    ``extra_loss``: an optional callable ``() → scalar tensor`` added to every step's loss (e.g. chapter 08's
    pull of a prompt toward a chosen reading); None (the default) trains on the cross-entropy alone.
    """
    from tqdm.auto import tqdm

    s = settings.resolved()
    train_texts, train_labels = list(train_data[0]), torch.as_tensor(list(train_data[1]))
    select_texts, select_labels = list(select_data[0]), list(select_data[1])
    if not train_texts:
        raise TrainConfigError("no training examples: train_data is empty")
    if not select_texts:
        raise TrainConfigError(
            "no selection examples: hold out some training examples (select_data) to choose the best step"
        )
    seed_everything(s.seed)
    params = [p for p in classifier.parameters() if p.requires_grad]
    opt = make_optimizer(params, s.optimizer, s.lr, s.weight_decay)
    world, rank, model = 1, 0, classifier
    if accelerator is not None:
        world, rank = accelerator.num_processes, accelerator.process_index
        if s.batch_size % (world * s.grad_accum_steps):
            raise TrainConfigError(
                f"batch_size {s.batch_size} does not split evenly over {world} processes × "
                f"{s.grad_accum_steps} micro-batches; use a multiple of {world * s.grad_accum_steps}"
            )
        model, opt = accelerator.prepare(classifier, opt)
    device = classifier.device
    hist = dict(step=[], loss=[], lr=[], eval_step=[], select_accuracy=[], train_accuracy=[])
    best = (-1.0, 0, [p.detach().clone() for p in params])
    correct_run = seen_run = done = 0
    saved = find_training_state(state_dir) if (state_dir is not None and s.resume) else None
    if saved is not None:
        done, best, hist, (correct_run, seen_run) = load_training_state(saved, s, params, opt)
    start = time.perf_counter()
    classifier.train()
    show = s.progress and rank == 0
    bar = tqdm(total=s.max_steps, initial=done, desc=desc, disable=not show, mininterval=2.0)
    batches = batch_indices(len(train_texts), s.max_steps, s.batch_size, s.seed)
    # [training-loop]
    for step, idx in enumerate(batches, 1):
        if step <= done:  # resumed: these steps are in the saved state
            continue
        for g in opt.param_groups:
            g["lr"] = lr_at(step - 1, s.max_steps, s.lr, s.warmup_steps, s.lr_schedule)
        mine = _split(idx, world, rank)  # this process's share of the global batch
        micro = [mine[i :: s.grad_accum_steps] for i in range(s.grad_accum_steps)]
        opt.zero_grad(set_to_none=True)
        step_loss = 0.0
        for m, chunk in enumerate(micro):
            ids, mask = classifier.tokenize([train_texts[i] for i in chunk])
            y = train_labels[chunk].to(device)
            sync = (
                accelerator.no_sync(model)
                if accelerator is not None and m < len(micro) - 1
                else contextlib.nullcontext()
            )
            with sync:
                with autocast_for(device, s.amp):
                    logits = model(ids, mask)
                loss = F.cross_entropy(logits.float(), y) * len(chunk) / len(mine)  # mean over this share
                if extra_loss is not None:  # an added term of the objective (None: cross-entropy only)
                    loss = loss + extra_loss() * len(chunk) / len(mine)
                (accelerator.backward(loss) if accelerator is not None else loss.backward())
            step_loss += loss.item()
            correct_run += int((logits.argmax(-1) == y).sum())
            seen_run += len(y)
        opt.step()
        if accelerator is not None:
            step_loss = float(accelerator.reduce(torch.tensor(step_loss, device=device), reduction="mean"))
        hist["step"].append(step)
        hist["loss"].append(step_loss)
        hist["lr"].append(opt.param_groups[0]["lr"])
        bar.update(1)
        if step % s.eval_every == 0 or step == s.max_steps:
            acc = evaluate_classifier(classifier, select_texts, select_labels, s.eval_batch_size)
            classifier.train()
            hist["eval_step"].append(step)
            hist["select_accuracy"].append(acc)
            hist["train_accuracy"].append(correct_run / max(1, seen_run))
            correct_run = seen_run = 0
            bar.set_postfix(loss=f"{step_loss:.3f}", select=f"{acc:.3f}")
            if acc > best[0]:
                best = (acc, step, [p.detach().clone() for p in params])
        if state_dir is not None and s.save_every and step % s.save_every == 0 and step < s.max_steps and rank == 0:
            save_training_state(state_dir, s, step, params, opt, best, hist, (correct_run, seen_run))
    # [/training-loop]
    bar.close()
    with torch.no_grad():
        for p, b in zip(params, best[2]):
            p.copy_(b)
    classifier.eval()
    return FitResult(
        history=hist,
        best_select_accuracy=best[0],
        best_step=best[1],
        steps_run=len(batches),
        seconds=time.perf_counter() - start,
        n_trainable=sum(p.numel() for p in params),
    )

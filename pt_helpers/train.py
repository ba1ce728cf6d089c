"""Train a soft, deep or P-tuning prompt from the command line, on one process or many (``accelerate launch``).

Taught in chapter 06. The same ``training.fit`` as notebooks 05–07, the same checkpoint format
(``pt_helpers.checkpoint``), and the flags are the fields of ``training.TrainSettings``:

    python -m pt_helpers.train --help
    python -m pt_helpers.train --model sentence-transformers/all-MiniLM-L6-v2 --task sst2 \\
        --method deep --n-virtual-tokens 10 --max-steps 300 --output-dir runs/sst2-deep
    python -m pt_helpers.train --config my_run.yaml --seed 2          # YAML gives defaults, flags win
    accelerate launch --multi_gpu --num_processes 4 -m pt_helpers.train --config my_run.yaml
    accelerate launch --multi_gpu --num_processes 2 -m pt_helpers.train --cpu ...   # 2 CPU processes (gloo)

(With accelerate 1.15, ``accelerate launch --cpu --num_processes 2`` starts a single process: several CPU
processes need MPI (``--mpirun_hostfile``). On a machine without GPUs, ``--multi_gpu`` plus this script's
``--cpu`` flag starts them through torch's elastic launcher instead; so does ``torchrun --nproc_per_node 2``.)

Whether the model is a causal LM (label words) or a sentence encoder (label sentences) is read from its
config, never from its name: ``--model`` may be any folder. Under ``accelerate launch`` every *global*
batch of ``--batch-size`` examples is split evenly over the processes and DDP averages the gradients, so
one process with batch B and k processes with the same B take the same optimisation steps (up to float
rounding); only the main process writes files.

Outputs in ``--output-dir``: the prompt (``adapter.safetensors`` + ``adapter_config.json``, see
``pt_helpers.checkpoint``), ``train_config.json`` (every setting, the same keys as the flags) and
``metrics.json`` (loss per step, selection and evaluation accuracy, model kind and head, time).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import typing
from collections.abc import Sequence
from dataclasses import asdict, fields
from pathlib import Path

from .checkpoint import CONFIG_FILE, TENSORS_FILE, save_prompt
from .classifiers import classifier_for, evaluate_classifier
from .data import load_task, subsample, task_info
from .device import seed_everything
from .errors import TrainConfigError
from .frozen import count_trainable, model_kind
from .models import load_model
from .p_tuning import ENCODER_TYPES, make_p_tuning
from .prefix import make_prefix
from .project import atomic_write_json
from .soft_prompt import make_prompt
from .training import (
    DEFAULT_INIT,
    DEFAULT_LR,
    LR_SCHEDULES,
    METHODS,
    OPTIMIZERS,
    STATE_DIR,
    VALID_INITS,
    TrainSettings,
    fit,
    split_for_selection,
)

HELP = {
    "model": "model name or folder; causal LMs get label words, encoders label sentences (read from the config)",
    "task": "task: one with a verbaliser in data.TASKS (sst2, trec)",
    "method": "soft: trainable vectors at the input only (Lester et al. 2021); deep: trainable keys/values "
    "at every layer (prefix tuning / P-Tuning v2); p_tuning: input vectors produced by a small encoder (Liu et al. "
    "2021, chapter 08; the saved prompt is P)",
    "n_virtual_tokens": "number of virtual tokens",
    "init": "; ".join(f"{m}: {'|'.join(VALID_INITS[m])} (default {DEFAULT_INIT[m]})" for m in METHODS),
    "p_tuning_encoder": "p_tuning only: the encoder of E, mlp or lstm",
    "reparameterize": "deep only: train P = MLP(E) (Li & Liang 2021); the saved prefix is P",
    "mlp_hidden": "hidden width of the reparameterisation MLP",
    "pool_prompt": "encoders, soft only: also average the prompt's own output states into the embedding",
    "optimizer": "adamw or adafactor",
    "lr": "peak learning rate (default " + ", ".join(f"{DEFAULT_LR[m]:g} {m}" for m in METHODS) + ")",
    "weight_decay": "weight decay of the optimiser",
    "lr_schedule": "after the warm-up: constant, or linear / cosine decay to 0 at the last step",
    "warmup": "fraction of --max-steps spent warming the learning rate up linearly",
    "batch_size": "GLOBAL batch size, split evenly over the processes of accelerate launch",
    "grad_accum_steps": "micro-batches per optimisation step (gradient accumulation)",
    "max_steps": "optimisation steps",
    "eval_every": "steps between accuracy checks on the selection split (the best step is kept)",
    "select_size": "training examples held out to choose the best step (never the evaluation split)",
    "train_size": "seeded subset of the training split (0 = all)",
    "eval_size": "seeded subset of the evaluation split (0 = all; SST-2 dev, TREC test)",
    "temperature": "encoders: cosine similarity / temperature gives the logits",
    "max_length": "truncate inputs to this many tokens",
    "eval_batch_size": "batch size of the accuracy checks",
    "seed": "seed of the prompt initialisation, the selection split and the data order",
    "amp": "bf16 autocast on CUDA (--no-amp: float32)",
    "output_dir": "folder for the prompt, train_config.json and metrics.json",
    "save_every": "steps between saves of the training state in --output-dir (0 = never); see --resume",
    "resume": "continue the unfinished run in --output-dir from its last saved training state",
    "overwrite": "replace another run's files in --output-dir",
    "cpu": "run on the CPU even when a GPU is present",
    "progress": "show a progress bar (--no-progress to hide it)",
}
CHOICES = {"method": METHODS, "optimizer": OPTIMIZERS, "lr_schedule": LR_SCHEDULES, "p_tuning_encoder": ENCODER_TYPES}


def build_adapter(settings: TrainSettings, model, tokenizer):
    """A new prompt adapter of ``settings.method`` for ``model``, initialised from the task's texts."""
    info = task_info(settings.task)
    if settings.method == "soft":
        return make_prompt(
            model,
            tokenizer,
            settings.n_virtual_tokens,
            settings.init,
            seed=settings.seed,
            text=info.init_text,
            label_words=list(info.label_words or info.label_names),
        )
    if settings.method == "p_tuning":
        return make_p_tuning(
            model, tokenizer, settings.n_virtual_tokens, encoder_type=settings.p_tuning_encoder, seed=settings.seed
        )
    return make_prefix(
        model,
        tokenizer,
        settings.n_virtual_tokens,
        init=settings.init,
        init_text=info.init_text,
        reparameterize=settings.reparameterize,
        mlp_hidden=settings.mlp_hidden,
    )


def build_classifier(settings: TrainSettings, model, tokenizer):
    """The trainable classifier of ``settings`` on a loaded model: frozen model + new adapter + the task's head."""
    task_info(settings.task).check_verbalizer(model_kind(model))
    return classifier_for(
        model,
        tokenizer,
        settings.task,
        build_adapter(settings, model, tokenizer),
        temperature=settings.temperature,
        pool_prompt=settings.pool_prompt,
        max_length=settings.max_length,
    )


def texts_labels(task: str, split: str, size: int, seed: int) -> tuple[list[str], list[int]]:
    """Texts and labels of a seeded subset (``size`` 0 = all) of one split."""
    ds = subsample(load_task(task, split), size or None, seed=seed)
    return list(ds["text"]), list(ds["label"])


RUN_FILES = (
    TENSORS_FILE,
    CONFIG_FILE,
    "train_config.json",
    "metrics.json",
    STATE_DIR,
    f".{STATE_DIR}.old",
    f".{STATE_DIR}.new",
)


def prepare_output_dir(s: TrainSettings) -> Path:
    """Check ``s.output_dir`` BEFORE any model is loaded: a folder we may write, empty or holding a run of the
    same settings (continued with ``--resume``); another run's files are replaced only with ``--overwrite``."""
    out = Path(s.output_dir)
    if out.exists() and not out.is_dir():
        raise TrainConfigError(f"--output-dir {out} is a file; give a folder (it will be created)")
    previous = out / "train_config.json"
    if out.is_dir() and any(out.iterdir()):
        if s.overwrite:
            for name in RUN_FILES:  # no stale file of another run stays beside the new one
                path = out / name
                shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        else:
            try:
                same = previous.is_file() and json.loads(previous.read_text()).get("run_identity") == s.run_identity()
            except json.JSONDecodeError:
                same = False
            if not same:
                raise TrainConfigError(
                    f"--output-dir {out} already holds other files or another run's output; choose "
                    "another folder, or pass --overwrite to replace that run"
                )
            if (out / "metrics.json").is_file() and not s.resume:
                raise TrainConfigError(
                    f"--output-dir {out} holds a finished run of these settings; pass --overwrite to train it again"
                )
            if not s.resume:
                raise TrainConfigError(
                    f"--output-dir {out} holds an unfinished run of these settings: pass --resume to "
                    "continue it from its last saved step, or --overwrite to start again"
                )
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        raise TrainConfigError(
            f"cannot write into --output-dir {out} ({exc.strerror}); choose a folder you may write to"
        ) from exc
    return out


def train(settings: TrainSettings) -> dict:
    """Train the prompt of ``settings`` (under ``accelerate launch`` or not); write the files; return the metrics.

    Every setting and the output folder are checked before a model is loaded. The training state is saved
    every ``save_every`` steps, so a run that was stopped (Ctrl-C, a kill) continues with ``--resume``.
    """
    from accelerate import Accelerator

    s = settings.resolved()
    info = task_info(s.task)
    accelerator = Accelerator(cpu=s.cpu)
    out = prepare_output_dir(s) if accelerator.is_main_process else Path(s.output_dir)
    accelerator.wait_for_everyone()
    world = accelerator.num_processes
    if s.batch_size % (world * s.grad_accum_steps):
        raise TrainConfigError(
            f"--batch-size {s.batch_size} does not split evenly over {world} processes × "
            f"{s.grad_accum_steps} micro-batches; use a multiple of {world * s.grad_accum_steps}"
        )
    loaded = load_model(s.model, "auto", device=accelerator.device, verbose=accelerator.is_main_process)
    model, tokenizer = loaded
    seed_everything(s.seed)  # the same prompt initialisation on every process
    classifier = build_classifier(s, model, tokenizer)
    n_trainable = count_trainable(classifier)
    train_data, select_data = split_for_selection(
        *texts_labels(s.task, "train", s.train_size, s.seed), s.select_size, s.seed
    )
    if accelerator.is_main_process:  # written first, so an interrupted run can be recognised and resumed
        atomic_write_json(out / "train_config.json", dict(asdict(s), run_identity=s.run_identity()))
    try:
        result = fit(
            classifier, train_data, select_data, s, accelerator=accelerator, desc=f"{s.method} prompt", state_dir=out
        )
    except KeyboardInterrupt:
        if accelerator.is_main_process:
            print(
                f"\ninterrupted: the last saved training state is in {out}; continue with the same command plus "
                "--resume",
                file=sys.stderr,
            )
        raise
    kind = model_kind(model)
    metrics = dict(
        method=s.method,
        task=s.task,
        model=s.model,
        model_kind=kind,
        head="label words" if kind == "causal" else "label sentences",
        model_family=model.config.model_type,
        pretrained=loaded.is_pretrained,
        n_trainable=n_trainable,
        n_model_parameters=loaded.n_parameters,
        steps=result.steps,
        best_step=result.best_step,
        select_accuracy=result.best_select_accuracy,
        num_processes=world,
        global_batch_size=s.batch_size,
        train_seconds=result.seconds,
        loss=result.history["loss"],
        lr=result.history["lr"],
        final_loss=result.history["loss"][-1] if result.history["loss"] else float("nan"),
    )
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        eval_texts, eval_labels = texts_labels(s.task, info.eval_split, s.eval_size, 0)
        metrics["eval_split"] = info.eval_split
        metrics["accuracy"] = evaluate_classifier(classifier, eval_texts, eval_labels, s.eval_batch_size)
        save_prompt(classifier.adapter, out, model, tokenizer, base_model=s.model, task=s.task, seed=s.seed)
        atomic_write_json(out / "metrics.json", metrics)  # last: its presence marks a finished run
        for name in (STATE_DIR, f".{STATE_DIR}.old"):
            shutil.rmtree(out / name, ignore_errors=True)
        print(
            f"{s.method} prompt · {kind} model, {metrics['head']} · {n_trainable:,} trained parameters · "
            f"{world} process(es) · {result.steps} steps in {result.seconds:.1f} s · best step {result.best_step} "
            f"(selection accuracy {result.best_select_accuracy:.3f}) · {metrics['eval_split']} accuracy "
            f"{metrics['accuracy']:.3f} → {out}"
        )
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return metrics


# ----------------------------------------------------------------------------------------------
# The command line: one flag per TrainSettings field
# ----------------------------------------------------------------------------------------------


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _caster(name: str):
    hint = typing.get_type_hints(TrainSettings)[name]
    base = next((t for t in typing.get_args(hint) if t is not type(None)), hint)
    return base  # int, float, str or bool


def build_parser(only_given: bool = False) -> argparse.ArgumentParser:
    """The CLI: one flag per ``TrainSettings`` field, plus ``--config FILE.yaml``. With ``only_given`` the
    parsed namespace holds only the flags typed on the command line (no defaults)."""
    parser = argparse.ArgumentParser(
        prog="python -m pt_helpers.train",
        description="Train a soft or deep prompt on a frozen model. Settings come from --config (YAML) and "
        "flags (flags win). Runs unchanged under `accelerate launch` (data parallel; the "
        "--batch-size is global).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--config", help="YAML file of settings (keys = the flag names, with _ or -)")
    for f in fields(TrainSettings):
        default = argparse.SUPPRESS if only_given else f.default
        if _caster(f.name) is bool:
            parser.add_argument(
                _flag(f.name), action=argparse.BooleanOptionalAction, default=default, help=HELP[f.name]
            )
        else:
            parser.add_argument(
                _flag(f.name), type=_caster(f.name), default=default, help=HELP[f.name], choices=CHOICES.get(f.name)
            )
    return parser


def parse_config(argv: Sequence[str] | None = None) -> TrainSettings:
    """Flags (and the YAML file of ``--config``) → checked ``TrainSettings``: the YAML file gives defaults,
    flags typed on the command line win; unknown keys and values of the wrong type are clear errors."""
    given = vars(build_parser(only_given=True).parse_args(argv))
    from_file: dict = {}
    if given.get("config"):
        import yaml

        path = Path(given["config"])
        if not path.is_file():
            raise TrainConfigError(f"--config {path} not found")
        try:
            from_file = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise TrainConfigError(f"--config {path} is not valid YAML: {exc}") from exc
        if not isinstance(from_file, dict):
            raise TrainConfigError(
                f"--config {path} must be a mapping of setting: value, got a {type(from_file).__name__}"
            )
        known = {f.name for f in fields(TrainSettings)}
        from_file = {str(k).replace("-", "_"): v for k, v in from_file.items()}
        unknown = sorted(set(from_file) - known)
        if unknown:
            raise TrainConfigError(f"unknown keys {unknown} in {path}; valid keys: {sorted(known)}")
        for name, value in from_file.items():  # YAML reads 3e-2 as a string: numbers written so are numbers
            if isinstance(value, str) and _caster(name) in (int, float):
                try:
                    from_file[name] = _caster(name)(value)
                except ValueError:
                    raise TrainConfigError(
                        f"{name}: {value!r} in {path} is not a number ({_caster(name).__name__} expected)"
                    ) from None
    given.pop("config", None)
    return TrainSettings(**{**from_file, **given}).resolved()


def main(argv: Sequence[str] | None = None) -> dict:
    """Entry point of ``python -m pt_helpers.train``."""
    return train(parse_config(argv))


if __name__ == "__main__":
    main()

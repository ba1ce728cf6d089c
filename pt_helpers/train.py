"""Train a prompt of any registered method (soft, deep, P-tuning, …) from the command line, on one process or
many (``accelerate launch``).

Taught in chapter 06. The same ``training.fit`` as notebooks 05–07, the same checkpoint format
(``pt_helpers.checkpoint``), the same splits (``data.task_splits``), and the flags are the fields of
``training.TrainSettings`` (their help is the fields' metadata; ``--method`` lists the method registry,
``adapters.METHODS``):

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
``metrics.json`` (loss per step, selection and evaluation accuracy, model kind and head, time). With
``--overwrite`` over a previous run the new run is written to ``--output-dir/.new_run`` and swapped in by
renames only once it has finished: an interrupted run leaves the previous one as it was.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import typing
from collections.abc import Sequence
from dataclasses import asdict, fields
from pathlib import Path

from .adapters import get_method, method_names
from .checkpoint import CONFIG_FILE, TENSORS_FILE, save_prompt
from .classifiers import classifier_for, evaluate_classifier
from .data import task_info, task_splits
from .device import seed_everything
from .errors import TrainConfigError
from .frozen import count_trainable, model_kind
from .models import load_model
from .project import RENAMED_SETTINGS, atomic_write_json
from .training import STATE_DIR, TrainSettings, fit


def help_for(name: str) -> str:
    """The CLI help of setting ``name``: its field's ``metadata["help"]``; --method, --init and --lr list
    what the method registry holds today (so a newly registered method shows up without editing this file)."""
    if name == "method":
        return "; ".join(f"{m}: {get_method(m).summary}" for m in method_names("prompt"))
    if name == "init":
        return "; ".join(
            f"{m}: {'|'.join(get_method(m).inits)} (default {get_method(m).default_init})"
            for m in method_names("prompt")
        )
    if name == "lr":
        return (
            "peak learning rate (default "
            + ", ".join(f"{get_method(m).default_lr:g} {m}" for m in method_names("prompt"))
            + ")"
        )
    return next(f for f in fields(TrainSettings) if f.name == name).metadata["help"]


def choices_for(name: str) -> tuple | None:
    """The valid values of setting ``name`` (--method: the registered prompt methods), or None."""
    if name == "method":
        return method_names("prompt")
    return next(f for f in fields(TrainSettings) if f.name == name).metadata.get("choices")


def build_adapter(settings: TrainSettings, model, tokenizer):
    """A new prompt adapter of ``settings.method`` for ``model``, built by the method's registered factory
    and initialised from the task's texts (its ``init_text``, its label words)."""
    info = task_info(settings.task)
    method = get_method(settings.method)
    if method.trains != "prompt":
        raise TrainConfigError(
            f"method {settings.method!r} trains the model's {method.trains}, not a prompt: the command line trains "
            f"and saves prompts ({', '.join(method_names('prompt'))})"
        )
    return method.factory(
        model, tokenizer, settings, init_text=info.init_text, label_words=list(info.label_words or info.label_names)
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


RUN_FILES = (
    TENSORS_FILE,
    CONFIG_FILE,
    "train_config.json",
    "metrics.json",  # last: its presence marks a finished run (the swap below moves it last)
    STATE_DIR,
    f".{STATE_DIR}.old",
    f".{STATE_DIR}.new",
)
NEW_RUN = ".new_run"  # --overwrite: the new run is written here, beside the previous run, until it has finished
OLD_RUN = ".old_run"  # the previous run's files while the two are swapped
SWAP_MARK = ".moved"  # in .old_run once every file of the previous run is there


def _move_run_files(src: Path, dst: Path) -> None:
    dst.mkdir(exist_ok=True)
    for name in sorted(RUN_FILES, key=lambda n: n == "metrics.json"):  # metrics.json last
        if (src / name).exists():
            os.replace(src / name, dst / name)


def swap_in_new_run(out: Path) -> None:
    """Replace the previous run in ``out`` by the finished one in ``out/.new_run``, by renames: the old files go
    to ``.old_run`` (then marked complete), the new ones into ``out`` (``metrics.json`` last), then ``.old_run``
    is deleted. A kill at any moment leaves folders that ``recover_swap`` completes or undoes."""
    shutil.rmtree(out / OLD_RUN, ignore_errors=True)
    _move_run_files(out, out / OLD_RUN)
    (out / OLD_RUN / SWAP_MARK).touch()  # every old file is in .old_run: the new ones may move in
    _move_run_files(out / NEW_RUN, out)
    shutil.rmtree(out / NEW_RUN, ignore_errors=True)
    shutil.rmtree(out / OLD_RUN, ignore_errors=True)


def recover_swap(out: Path) -> None:
    """After a swap that was cut off: finish it if the new run's ``metrics.json`` arrived, else put the old run
    back (the new run's files go back to ``.new_run``)."""
    old = out / OLD_RUN
    if not old.is_dir():
        return
    if not (old / SWAP_MARK).exists():  # cut off while the old files were moved aside: only old files anywhere
        _move_run_files(old, out)
    elif (out / "metrics.json").is_file():  # the new run was moved in completely
        shutil.rmtree(out / NEW_RUN, ignore_errors=True)
    else:  # half of the new run is in out: back to .new_run, the old run back in place
        _move_run_files(out, out / NEW_RUN)
        _move_run_files(old, out)
    shutil.rmtree(old)


def prepare_output_dir(s: TrainSettings) -> Path:
    """Check ``s.output_dir`` BEFORE any model is loaded: a folder we may write, empty or holding a run of the
    same settings (continued with ``--resume``); another run's files are replaced only with ``--overwrite``,
    and then only once the new run has finished (it is written to ``.new_run`` meanwhile: see ``train``)."""
    out = Path(s.output_dir)
    if out.exists() and not out.is_dir():
        raise TrainConfigError(f"--output-dir {out} is a file; give a folder (it will be created)")
    if out.is_dir():
        recover_swap(out)
    previous = out / "train_config.json"
    if out.is_dir() and any(p.name != NEW_RUN for p in out.iterdir()):
        if s.overwrite:
            shutil.rmtree(out / NEW_RUN, ignore_errors=True)  # an earlier --overwrite run that never finished
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
    # --overwrite over a previous run: the new run is written beside it, and swapped in once it has finished
    staged = s.overwrite and any((out / name).exists() for name in RUN_FILES)
    work = out / NEW_RUN if staged else out
    if accelerator.is_main_process:
        work.mkdir(exist_ok=True)
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
    splits = task_splits(s.task, s.select_size, s.train_size, s.eval_size, seed=s.seed)
    train_data, select_data = splits.texts_labels("train"), splits.texts_labels("select")
    if accelerator.is_main_process:  # written first, so an interrupted run can be recognised and resumed
        atomic_write_json(work / "train_config.json", dict(asdict(s), run_identity=s.run_identity()))
    try:
        result = fit(
            classifier, train_data, select_data, s, accelerator=accelerator, desc=f"{s.method} prompt", state_dir=work
        )
    except KeyboardInterrupt:
        if accelerator.is_main_process:
            print(
                (
                    f"\ninterrupted: the previous run in {out} is kept; rerun with --overwrite to start again"
                    if staged
                    else f"\ninterrupted: the last saved training state is in {out}; continue with the same "
                    "command plus --resume"
                ),
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
        steps_run=result.steps_run,
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
        metrics["eval_split"] = info.eval_split
        metrics["accuracy"] = evaluate_classifier(classifier, *splits.texts_labels("eval"), s.eval_batch_size)
        save_prompt(classifier.adapter, work, model, tokenizer, base_model=s.model, task=s.task, seed=s.seed)
        atomic_write_json(work / "metrics.json", metrics)  # last: its presence marks a finished run
        for name in (STATE_DIR, f".{STATE_DIR}.old"):
            shutil.rmtree(work / name, ignore_errors=True)
        if staged:  # only now does the previous run go
            swap_in_new_run(out)
        print(
            f"{s.method} prompt · {kind} model, {metrics['head']} · {n_trainable:,} trained parameters · "
            f"{world} process(es) · {result.steps_run} steps in {result.seconds:.1f} s · best step {result.best_step} "
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
        description="Train a prompt (any registered method) on a frozen model. Settings come from --config (YAML) and "
        "flags (flags win). Runs unchanged under `accelerate launch` (data parallel; the "
        "--batch-size is global).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--config", help="YAML file of settings (keys = the flag names, with _ or -)")
    for f in fields(TrainSettings):
        default = argparse.SUPPRESS if only_given else f.default
        if _caster(f.name) is bool:
            parser.add_argument(
                _flag(f.name), action=argparse.BooleanOptionalAction, default=default, help=help_for(f.name)
            )
        else:
            parser.add_argument(
                _flag(f.name), type=_caster(f.name), default=default, help=help_for(f.name), choices=choices_for(f.name)
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
            renamed = [f"{k} → {RENAMED_SETTINGS[k]}" for k in unknown if k in RENAMED_SETTINGS]  # say the new name
            hint = f" (renamed: {', '.join(renamed)})" if renamed else ""
            raise TrainConfigError(f"unknown keys {unknown} in {path}{hint}; valid keys: {sorted(known)}")
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

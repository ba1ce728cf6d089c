"""Tests of the training CLI ``python -m pt_helpers.train``: flags, YAML, outputs, and data parallelism.

The two-process test launches ``accelerate launch --multi_gpu --num_processes 2`` on a CPU-only
machine: accelerate 1.15 then starts two gloo processes with torch's elastic launcher
(``accelerate launch --cpu --num_processes 2`` starts ONE process; CPU multi-process needs mpirun).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from pt_helpers.checkpoint import CONFIG_FILE, TENSORS_FILE, load_prompt
from pt_helpers.classifiers import classifier_for, evaluate_classifier
from pt_helpers.data import TASKS, task_info, task_splits
from pt_helpers.errors import CourseError, TrainConfigError
from pt_helpers.models import load_model
from pt_helpers.prefix import text_key_values
from pt_helpers.train import build_parser, main, parse_config
from pt_helpers.training import TrainSettings

TINY = [
    "--model",
    "bert",
    "--task",
    "sst2",
    "--method",
    "deep",
    "--n-virtual-tokens",
    "2",
    "--max-steps",
    "3",
    "--batch-size",
    "4",
    "--train-size",
    "16",
    "--eval-size",
    "8",
    "--max-length",
    "16",
    "--cpu",
    "--no-progress",
    "--select-size",
    "4",
    "--eval-every",
    "1",
]


pytestmark = pytest.mark.usefixtures("random_fallback")


def test_help_lists_every_setting():
    text = build_parser().format_help()
    for flag in (
        "--method",
        "--n-virtual-tokens",
        "--reparameterize",
        "--batch-size",
        "--config",
        "--output-dir",
        "--lr-schedule",
        "--warmup",
        "--max-steps",
        "--select-size",
        "--grad-accum-steps",
    ):
        assert flag in text


def test_yaml_gives_defaults_and_flags_win(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"method": "deep", "n-virtual-tokens": 7, "lr": 0.5, "task": "trec"}))
    cfg = parse_config(["--config", str(path), "--lr", "0.1"])
    assert (cfg.method, cfg.n_virtual_tokens, cfg.lr, cfg.task) == ("deep", 7, 0.1, "trec")
    path.write_text(yaml.safe_dump({"steps": 7}))  # a retired name: the error says what it is called now
    with pytest.raises(TrainConfigError, match=r"unknown keys \['steps'\] in .*\(renamed: steps → max_steps\)"):
        parse_config(["--config", str(path)])
    path.write_text(yaml.safe_dump({"n_virtual_token": 7}))
    with pytest.raises(TrainConfigError, match="unknown keys"):
        parse_config(["--config", str(path)])
    with pytest.raises(TrainConfigError, match="not found"):
        parse_config(["--config", str(tmp_path / "missing.yaml")])


def test_bad_settings_are_clear_errors():
    with pytest.raises(TrainConfigError, match="deep' only"):
        TrainSettings(method="soft", reparameterize=True).resolved()
    with pytest.raises(TrainConfigError, match="positive"):
        TrainSettings(n_virtual_tokens=0).resolved()
    with pytest.raises(TrainConfigError, match="method"):
        TrainSettings(method="shallow").resolved()
    with pytest.raises(CourseError, match="valid tasks"):
        parse_config(["--task", "imdb"])
    with pytest.raises(TrainConfigError, match="lr"):
        TrainSettings(lr=-0.1).resolved()
    with pytest.raises(TrainConfigError, match="init"):
        TrainSettings(method="deep", init="vocab").resolved()
    assert TrainSettings(method="deep").resolved().init == "text"
    assert TrainSettings(method="deep").resolved().lr == 1e-2
    assert TrainSettings(method="p_tuning").resolved().init == "random"  # P-tuning's E has no text init
    with pytest.raises(TrainConfigError, match="init"):
        TrainSettings(method="p_tuning", init="text").resolved()
    with pytest.raises(TrainConfigError, match="p_tuning_encoder"):
        TrainSettings(method="p_tuning", p_tuning_encoder="gru").resolved()


def _run_two_processes(out_dir):
    launcher = shutil.which("accelerate") or os.path.join(os.path.dirname(sys.executable), "accelerate")
    env = dict(os.environ, OMP_NUM_THREADS="1", PT_RANDOM_FALLBACK="1", HF_HUB_OFFLINE="1")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    cmd = [
        launcher,
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        "29517",
        "-m",
        "pt_helpers.train",
        *TINY,
        "--output-dir",
        str(out_dir),
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]


def test_two_processes_give_the_same_prompt_as_one(tmp_path):
    """Same global batch (4) on 1 process and on 2 (2 + 2 examples, DDP-averaged gradients): same prefix."""
    one = main([*TINY, "--output-dir", str(tmp_path / "one")])
    assert one["num_processes"] == 1 and one["steps_run"] == 3
    _run_two_processes(tmp_path / "two")
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert two["num_processes"] == 2 and two["steps_run"] == 3 and two["global_batch_size"] == 4
    # losses ~0.7 summed in another order over two processes: float32 round-off, relative
    assert two["loss"] == pytest.approx(one["loss"], rel=1e-5, abs=1e-6)
    assert two["best_step"] == one["best_step"]
    p1 = load_file(str(tmp_path / "one" / TENSORS_FILE))["prefix"]
    p2 = load_file(str(tmp_path / "two" / TENSORS_FILE))["prefix"]
    # Adam moves every coordinate by about lr per step; the two runs differ by float rounding only
    lr = json.loads((tmp_path / "one" / "train_config.json").read_text())["lr"]
    assert (p1 - p2).abs().max().item() < 0.01 * lr * 3
    # and the prompt really moved away from its initialisation (else the comparison would be empty)
    model, tok = load_model("bert", "encoder", allow_random=True, verbose=False)
    init = text_key_values(model, tok, task_info("sst2").init_text, 2)
    assert (p1 - init).abs().max().item() > 0.5 * lr  # at least one Adam step of ~lr (the best step may be 1)
    for name in (CONFIG_FILE, "train_config.json", "metrics.json"):
        assert (tmp_path / "two" / name).is_file()


def test_soft_prompt_run_writes_prompt_and_metrics(tmp_path):
    out = tmp_path / "soft"
    metrics = main([*TINY[:5], "soft", *TINY[6:], "--n-virtual-tokens", "3", "--output-dir", str(out)])
    assert metrics["method"] == "soft" and metrics["n_trainable"] == 3 * 256
    assert metrics["model_kind"] == "encoder" and metrics["head"] == "label sentences"
    assert load_file(str(out / TENSORS_FILE))["prompt"].shape == (3, 256)
    config = json.loads((out / CONFIG_FILE).read_text())
    assert config["n_virtual_tokens"] == 3 and config["method"] == "soft" and config["model_kind"] == "encoder"
    saved = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= saved["accuracy"] <= 1.0 and len(saved["loss"]) == 3
    # the same schedule as notebook 05: warm-up, then cosine decay towards 0
    settings = json.loads((out / "train_config.json").read_text())
    assert settings["lr_schedule"] == "cosine" and saved["lr"][-1] < saved["lr"][0] + 1e-12


def test_p_tuning_run_trains_the_encoder_and_saves_only_p(tmp_path):
    """--method p_tuning: E and the encoder are trained (more than n·d numbers); the checkpoint keeps P (as PEFT)
    and reloads as a prompt that gives the run's own predictions."""
    out = tmp_path / "pt"
    argv = [*TINY[:5], "p_tuning", *TINY[6:], "--n-virtual-tokens", "3", "--p-tuning-encoder", "lstm"]
    metrics = main([*argv, "--output-dir", str(out)])
    assert metrics["method"] == "p_tuning" and metrics["n_trainable"] > 3 * 256
    assert set(load_file(str(out / TENSORS_FILE))) == {"prompt"}
    assert load_file(str(out / TENSORS_FILE))["prompt"].shape == (3, 256)
    config = json.loads((out / CONFIG_FILE).read_text())
    assert config["method"] == "p_tuning" and config["adapter"]["p_tuning_encoder"] == "lstm"
    settings = json.loads((out / "train_config.json").read_text())
    assert settings["method"] == "p_tuning" and settings["init"] == "random" and settings["p_tuning_encoder"] == "lstm"
    # the reloaded P (no encoder) scores the evaluation examples exactly as the trained run did
    bert = load_model("bert", "auto", allow_random=True, verbose=False)
    clf = classifier_for(
        bert.model, bert.tokenizer, "sst2", load_prompt(out, bert.model, bert.tokenizer), max_length=16
    )
    assert evaluate_classifier(clf, *task_splits("sst2", 4, 16, 8).texts_labels("eval")) == metrics["accuracy"]


def test_label_words_are_one_gpt2_token_each():
    from transformers import AutoTokenizer

    from pt_helpers.data import TASKS
    from pt_helpers.lm import label_token_ids
    from pt_helpers.models import GPT2_TOKENIZER_DIR
    from pt_helpers.scoring import as_continuation

    tok = AutoTokenizer.from_pretrained(str(GPT2_TOKENIZER_DIR))
    for info in TASKS.values():
        if info.label_words:
            words = [as_continuation(w) for w in info.label_words]
            assert len(label_token_ids(tok, words)) == len(info.label_sentences) == len(info.label_names)


def test_a_causal_folder_with_any_name_trains_as_a_causal_lm(tmp_path, two_step_train_argv):
    """The kind comes from the config: a tiny random Llama in a folder called my-lm trains with label words."""
    llama = load_model("meta-llama/Llama-3.2-1B", allow_random=True, verbose=False)
    folder = tmp_path / "my-lm"
    llama.model.save_pretrained(folder)
    llama.tokenizer.save_pretrained(folder)
    out = tmp_path / "run"
    metrics = main(two_step_train_argv(folder, "deep", out))
    assert metrics["model_kind"] == "causal" and metrics["head"] == "label words"
    assert metrics["model_family"] == "llama" and metrics["steps_run"] == 2
    config = json.loads((out / CONFIG_FILE).read_text())
    assert config["model_kind"] == "causal" and config["method"] == "deep"


# --- work is never lost or mixed up ----------------------------------------------------------------

RESUMABLE = [
    *TINY[: TINY.index("--max-steps") + 1],
    "60",
    *TINY[TINY.index("--max-steps") + 2 :],
    "--save-every",
    "1",
    "--eval-every",
    "20",
]


def _cli(args, **kwargs):
    env = dict(os.environ, OMP_NUM_THREADS="1", PT_RANDOM_FALLBACK="1", HF_HUB_OFFLINE="1")
    return subprocess.Popen(
        [sys.executable, "-m", "pt_helpers.train", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def sigkill_once_saved(proc: subprocess.Popen, state: Path, step: int, timeout: float = 180) -> None:
    """SIGKILL ``proc`` (a training run) once the training state it saves at ``state`` has reached ``step``,
    or after ``timeout`` seconds; a run that ends by itself before that is a failure (its stderr is shown)."""
    import signal
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if json.loads(state.read_text())["step"] >= step:
                break
        except (OSError, ValueError, KeyError):  # not written yet, or caught between its writes
            pass
        assert proc.poll() is None, "the run ended before it could be killed: " + proc.stderr.read()[-2000:]
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)  # for real: no handler runs, nothing is flushed
    proc.wait(timeout=30)


def test_sigkill_then_resume_reaches_the_same_prompt_as_an_uninterrupted_run(tmp_path):
    import torch

    whole = tmp_path / "whole"
    assert _cli([*RESUMABLE, "--output-dir", str(whole)]).wait(timeout=240) == 0
    cut = tmp_path / "cut"
    proc = _cli([*RESUMABLE, "--output-dir", str(cut)])
    sigkill_once_saved(proc, cut / "training_state" / "state.json", step=5)  # kill it for real mid-run
    assert not (cut / "metrics.json").exists()
    again = _cli([*RESUMABLE, "--output-dir", str(cut)])  # without --resume: refused, nothing touched
    _, err = again.communicate(timeout=240)
    assert again.returncode != 0 and "--resume" in err
    resumed = _cli([*RESUMABLE, "--output-dir", str(cut), "--resume"])
    _, err = resumed.communicate(timeout=240)
    assert resumed.returncode == 0, err[-3000:]
    a = load_file(str(whole / TENSORS_FILE))["prefix"]
    b = load_file(str(cut / TENSORS_FILE))["prefix"]
    # the same data order, learning rates and optimiser state: the same float operations, bit for bit
    assert torch.equal(a, b)
    m_whole, m_cut = (json.loads((d / "metrics.json").read_text()) for d in (whole, cut))
    assert m_cut["loss"] == m_whole["loss"] and m_cut["best_step"] == m_whole["best_step"]
    assert not (cut / "training_state").exists()  # a finished run keeps no training state


def test_output_dir_is_checked_before_any_model_is_loaded(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(TrainConfigError, match="is a file"):
        main([*TINY, "--output-dir", str(a_file)])
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(TrainConfigError, match="--overwrite"):
        main([*TINY, "--output-dir", str(other)])
    run = tmp_path / "run"
    main([*TINY, "--output-dir", str(run)])
    with pytest.raises(TrainConfigError, match="finished run"):
        main([*TINY, "--output-dir", str(run)])
    soft = [*TINY[:5], "soft", *TINY[6:]]
    with pytest.raises(TrainConfigError, match="another run"):
        main([*soft, "--output-dir", str(run)])
    main([*soft, "--output-dir", str(run), "--overwrite"])  # a soft run replaces the deep one entirely
    config = json.loads((run / CONFIG_FILE).read_text())
    assert config["method"] == "soft" and set(load_file(str(run / TENSORS_FILE))) == {"prompt"}


# --- every task trains from the command line ---------------------------------------------------------------


@pytest.mark.parametrize("task", sorted(TASKS))
def test_every_task_trains_from_the_command_line(task, tmp_path):
    """Two steps on each task of TaskInfo, pair tasks (CB, RTE) included: their premise and hypothesis are
    joined once (data.PAIR_TEXT) before the classifier sees them."""
    argv = [*TINY[:3], task, *TINY[4:5], "soft", *TINY[6:]]
    argv[argv.index("--max-steps") + 1] = "2"
    metrics = main([*argv, "--output-dir", str(tmp_path / task)])
    assert metrics["task"] == task and metrics["steps_run"] == 2 and len(metrics["loss"]) == 2
    assert metrics["eval_split"] == task_info(task).eval_split and 0.0 <= metrics["accuracy"] <= 1.0


# --- --overwrite keeps the previous run until the new one has finished ---------------------------------------


def _run_files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_an_overwrite_run_killed_mid_training_leaves_the_previous_run_intact(tmp_path):
    run = tmp_path / "run"
    soft = [*TINY[:5], "soft", *TINY[6:]]
    main([*soft, "--output-dir", str(run)])
    before = _run_files(run)
    assert {"metrics.json", TENSORS_FILE, CONFIG_FILE, "train_config.json"} <= set(before)
    proc = _cli([*RESUMABLE, "--output-dir", str(run), "--overwrite"])  # a deep run of 60 steps over it
    sigkill_once_saved(proc, run / ".new_run" / "training_state" / "state.json", step=3)  # killed while training
    assert _run_files(run) == before  # the soft run, byte for byte
    bert = load_model("bert", "encoder", allow_random=True, verbose=False)
    assert load_prompt(run, bert.model, bert.tokenizer).method == "soft"
    with pytest.raises(TrainConfigError, match="finished run"):  # still recognised as the finished soft run
        main([*soft, "--output-dir", str(run)])


def test_an_overwrite_run_that_fails_keeps_the_previous_run_and_a_finished_one_replaces_it(tmp_path, monkeypatch):
    from pt_helpers import train as train_module

    run = tmp_path / "run"
    soft = [*TINY[:5], "soft", *TINY[6:]]
    main([*soft, "--output-dir", str(run)])
    before = _run_files(run)

    def broken_fit(*args, **kwargs):
        raise RuntimeError("injected failure during fit")

    with monkeypatch.context() as m:
        m.setattr(train_module, "fit", broken_fit)
        with pytest.raises(RuntimeError, match="injected"):
            main([*TINY, "--output-dir", str(run), "--overwrite"])
    assert _run_files(run) == before
    main([*TINY, "--output-dir", str(run), "--overwrite"])  # a finished deep run replaces the soft one
    assert json.loads((run / CONFIG_FILE).read_text())["method"] == "deep"
    assert set(load_file(str(run / TENSORS_FILE))) == {"prefix"} and not (run / ".new_run").exists()
    assert not (run / ".old_run").exists()


def test_a_swap_cut_off_anywhere_leaves_one_whole_run(tmp_path, monkeypatch):
    """A kill after any rename of the swap (simulated: os.replace fails after k renames): recover_swap, which the
    next run calls first, gives back the whole old run (the new one stays in .new_run) or the whole new run."""
    from pt_helpers import train as train_module

    names = (TENSORS_FILE, CONFIG_FILE, "train_config.json", "metrics.json")
    real_replace = os.replace
    for k in range(2 * len(names) + 1):
        out = tmp_path / f"cut{k}"
        (out / train_module.NEW_RUN).mkdir(parents=True)
        for name in names:
            (out / name).write_text("old")
            (out / train_module.NEW_RUN / name).write_text("new")
        calls = []

        def replace(src, dst, calls=calls, k=k):
            if len(calls) == k:
                raise KeyboardInterrupt("killed")
            calls.append(src)
            real_replace(src, dst)

        monkeypatch.setattr(train_module.os, "replace", replace)
        finished = True
        try:
            train_module.swap_in_new_run(out)
        except KeyboardInterrupt:
            finished = False
        monkeypatch.setattr(train_module.os, "replace", real_replace)
        train_module.recover_swap(out)
        contents = {(out / name).read_text() for name in names}
        assert contents in ({"old"}, {"new"}), (k, contents)
        assert not (out / train_module.OLD_RUN).exists()
        if contents == {"old"}:  # undone: the finished new run is still whole in .new_run
            assert {(out / train_module.NEW_RUN / n).read_text() for n in names} == {"new"}, k
        assert finished == (k == 2 * len(names))  # 8 renames in all: only the last k lets the swap finish
        if finished:
            assert contents == {"new"} and not (out / train_module.NEW_RUN).exists()

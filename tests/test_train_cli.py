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

import pytest
import yaml
from safetensors.torch import load_file

from pt_helpers.models import load_model
from pt_helpers.prefix import text_key_values
from pt_helpers.train import (INIT_TEXTS, TrainConfig, TrainConfigError, build_parser, main, parse_config,
                              step_order)

TINY = ["--model", "bert", "--task", "sst2", "--method", "deep", "--n-virtual-tokens", "2", "--max-steps", "3",
        "--batch-size", "4", "--train-size", "16", "--eval-size", "8", "--max-length", "16", "--cpu",
        "--no-progress"]


@pytest.fixture(autouse=True)
def _random_fallback(monkeypatch):
    monkeypatch.setenv("PT_RANDOM_FALLBACK", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_help_lists_every_setting():
    text = build_parser().format_help()
    for flag in ("--method", "--n-virtual-tokens", "--reparameterize", "--batch-size", "--config", "--output-dir"):
        assert flag in text


def test_yaml_gives_defaults_and_flags_win(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"method": "deep", "n-virtual-tokens": 7, "lr": 0.5, "task": "trec"}))
    cfg = parse_config(["--config", str(path), "--lr", "0.1"])
    assert (cfg.method, cfg.n_virtual_tokens, cfg.lr, cfg.task) == ("deep", 7, 0.1, "trec")
    path.write_text(yaml.safe_dump({"n_virtual_token": 7}))
    with pytest.raises(TrainConfigError, match="unknown keys"):
        parse_config(["--config", str(path)])
    with pytest.raises(TrainConfigError, match="not found"):
        parse_config(["--config", str(tmp_path / "missing.yaml")])


def test_bad_settings_are_clear_errors():
    with pytest.raises(TrainConfigError, match="deep only"):
        TrainConfig(method="soft", reparameterize=True).resolved()
    with pytest.raises(TrainConfigError, match="positive"):
        TrainConfig(n_virtual_tokens=0).resolved()
    with pytest.raises(TrainConfigError, match="--method"):
        TrainConfig(method="shallow").resolved()
    with pytest.raises(SystemExit):  # argparse rejects an unknown task with the valid choices
        parse_config(["--task", "imdb"])
    assert TrainConfig(method="deep").resolved().init == "text"


def test_step_order_covers_epochs_deterministically():
    a = step_order(10, 4, 4, seed=3)
    assert a == step_order(10, 4, 4, seed=3) and len(a) == 16
    assert sorted(a[:10]) == list(range(10))          # the first epoch is a permutation


def _run_two_processes(out_dir):
    launcher = shutil.which("accelerate") or os.path.join(os.path.dirname(sys.executable), "accelerate")
    env = dict(os.environ, OMP_NUM_THREADS="1", PT_RANDOM_FALLBACK="1", HF_HUB_OFFLINE="1")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    cmd = [launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision",
           "no", "--dynamo_backend", "no", "--main_process_port", "29517", "-m", "pt_helpers.train", *TINY,
           "--output-dir", str(out_dir)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]


def test_two_processes_give_the_same_prompt_as_one(tmp_path):
    """Same global batch (4) on 1 process and on 2 (2 + 2 examples, DDP-averaged gradients): same prefix."""
    one = main([*TINY, "--output-dir", str(tmp_path / "one")])
    assert one["num_processes"] == 1 and one["steps"] == 3
    _run_two_processes(tmp_path / "two")
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert two["num_processes"] == 2 and two["steps"] == 3 and two["global_batch_size"] == 4
    assert two["loss"] == pytest.approx(one["loss"], abs=1e-5)
    p1 = load_file(str(tmp_path / "one" / "prefix.safetensors"))["prefix"]
    p2 = load_file(str(tmp_path / "two" / "prefix.safetensors"))["prefix"]
    # Adam moves every coordinate by about lr per step; the two runs differ by float rounding only
    lr = json.loads((tmp_path / "one" / "train_config.json").read_text())["lr"]
    assert (p1 - p2).abs().max().item() < 0.01 * lr * 3
    # and the prompt really moved away from its initialisation (else the comparison would be empty)
    model, tok = load_model("bert", "encoder", allow_random=True, verbose=False)
    init = text_key_values(model, tok, INIT_TEXTS["sst2"], 2)
    assert (p1 - init).abs().max().item() > lr
    for name in ("prefix_config.json", "train_config.json", "metrics.json"):
        assert (tmp_path / "two" / name).is_file()


def test_soft_prompt_run_writes_prompt_and_metrics(tmp_path):
    out = tmp_path / "soft"
    metrics = main([*TINY[:5], "soft", *TINY[6:], "--n-virtual-tokens", "3", "--output-dir", str(out)])
    assert metrics["method"] == "soft" and metrics["n_trainable"] == 3 * 256
    assert load_file(str(out / "prompt.safetensors"))["prompt"].shape == (3, 256)
    assert json.loads((out / "prompt.json").read_text())["n_virtual_tokens"] == 3
    saved = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= saved["accuracy"] <= 1.0 and len(saved["loss"]) == 3


def test_label_words_are_one_gpt2_token_each():
    from pt_helpers.lm import label_token_ids
    from pt_helpers.train import LABEL_SENTENCES, LABEL_WORDS

    from transformers import AutoTokenizer
    from pt_helpers.models import GPT2_TOKENIZER_DIR

    tok = AutoTokenizer.from_pretrained(str(GPT2_TOKENIZER_DIR))
    for task, words in LABEL_WORDS.items():
        assert len(label_token_ids(tok, words)) == len(LABEL_SENTENCES[task])

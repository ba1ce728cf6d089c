"""SmolLM2-135M-Instruct for the tests: loaded once per test session (a load costs 1-40 s), or a skip reason.

Not a test module (no ``test_`` prefix); the test modules that need the real model import it. The model is
shared: a test that trains or wraps it deep-copies it first (``PromptedModel`` freezes what it wraps).
"""

from __future__ import annotations

import functools

import pytest

from pt_helpers.models import SMOLLM2_NAME, SMOLLM2_PACKAGE, _smollm2_package_dir

NOT_INSTALLED = f"{SMOLLM2_PACKAGE} is not installed (make install installs it, --no-deps)"


def installed() -> bool:
    return _smollm2_package_dir() is not None


needs_smollm2 = pytest.mark.skipif(not installed(), reason=NOT_INSTALLED)


@functools.cache
def smollm2():
    """The resolver's SmolLM2 (``load_model`` with the random fallback off), once per session."""
    from pt_helpers.models import load_model

    return load_model(SMOLLM2_NAME, allow_random=False, verbose=False)


@functools.cache
def smollm2_direct():
    """transformers' own GGUF load of the package's file, bypassing the resolver and its float32 cache."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pt_helpers.models import SMOLLM2_GGUF

    folder = str(_smollm2_package_dir())
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=SMOLLM2_GGUF).eval()
    return model, AutoTokenizer.from_pretrained(folder, gguf_file=SMOLLM2_GGUF)

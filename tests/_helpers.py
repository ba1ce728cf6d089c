"""Helpers shared by the test modules: one comparison, one padded batch, one hub name per causal family.

Not a test module (no ``test_`` prefix); test modules import it as ``from _helpers import ...`` (pytest puts
``tests/`` on the path, as for ``_smollm2``).
"""

from __future__ import annotations

import torch
from torch.testing import assert_close

# The course's sentences for mechanics tests: a long, a one-word and a medium sentence, so a batch pads.
TEXTS = ["a gripping, beautifully acted film", "dull", "the plot goes nowhere and the jokes fall flat"]

# Tolerances. Two code paths computing the same function in float32 differ by round-off, which grows with the
# magnitude of what flows through the sums: rtol plus an atol of rtol × the largest magnitude compared.
# Outputs and losses get RTOL; gradients sum many terms (batch × tokens × heads), so they get GRAD_RTOL. An
# off-by-one position or a missing virtual token changes values by ~1e-1: far outside either.
RTOL, GRAD_RTOL = 1e-5, 1e-4

# ``close``'s scale is the largest |expected|, but at least ``floor``. Which floor is right depends on the size of
# the terms summed into what is compared, not on the size of the result (measured with the tests that use it):
# * 1 (the default) for outputs and losses: logits and hidden states are sums of terms of size ~1 (layer-normed
#   states times weights), so their round-off is ~1e-7 absolute even where the result is near 0. Also for the
#   soft prompt's gradient in tests/test_family_matrix.py and test_soft_prompt.py: with the shared prompt cache
#   it is a sum of per-example gradients taken in another order than PEFT's, and at a trained model's
#   magnitudes it differs by up to 5.1e-5 on a gradient whose largest entry is 0.44 (GPT-2 stand-in, measured
#   on this CPU): 1.14 × rtol × its own scale. Scaled to the gradient alone it passes only through
#   assert_close's per-element rtol, with no margin for another machine's order of summation; the floor of 1
#   leaves a 2× margin, and a real bug (virtual tokens out of order, a token missing) changes it by ~1e-1.
# * OWN_SCALE (tiny: only guards against an all-zero expectation) for P-tuning's gradients and stored tensors
#   (tests/test_p_tuning.py): E's gradient is ~1e-3 (largest entry 9.7e-4 on the GPT-2 stand-in) and differs
#   from PEFT's by ~3e-9, so its round-off follows its own scale; a floor of 1 would give an atol of 1e-4, a
#   tenth of the whole gradient: E's gradient multiplied by 1.1 passes with floor 1 and fails with OWN_SCALE.
OWN_SCALE = 1e-6


def close(actual, expected, rtol=RTOL, what="", floor=1.0):
    """``assert_close`` with rtol and an atol of rtol × (the largest |expected|, at least ``floor``): float32
    round-off grows with the magnitude compared (see above for which floor fits what)."""
    scale = max(float(torch.as_tensor(expected).detach().abs().max()), floor)
    assert_close(actual, expected, rtol=rtol, atol=rtol * scale, msg=lambda m: f"{what}: {m}")


def batch(tok, texts=TEXTS, side="right"):
    """``(ids, mask, labels)`` of ``texts`` padded on ``side``; labels = ids with −100 on padding (ignored).

    The tokenizer's own ``padding_side`` is restored afterwards (fixtures share tokenizers across tests).
    """
    old = tok.padding_side
    tok.padding_side = side
    try:
        enc = tok(texts, return_tensors="pt", padding=True)
    finally:
        tok.padding_side = old
    ids, mask = enc["input_ids"], enc["attention_mask"]
    return ids, mask, ids.masked_fill(mask == 0, -100)


# One hub name per causal family, as a student would type it. Offline, the name alone decides the random
# stand-in's family (``pt_helpers.models.KNOWN_NAMES``, the package's table of names, which
# tests/test_model_families.py checks these against); ``family: name`` keys are transformers' model_type.
CAUSAL_NAMES = {
    "gpt2": "openai-community/gpt2",
    "gpt_neox": "EleutherAI/pythia-70m",
    "opt": "facebook/opt-125m",
    "llama": "meta-llama/Llama-3.2-1B",
    "mistral": "mistralai/Mistral-7B-v0.1",
    "qwen2": "Qwen/Qwen2.5-0.5B",
    "gemma2": "google/gemma-2-2b",
    "phi3": "microsoft/Phi-3-mini-4k-instruct",
}

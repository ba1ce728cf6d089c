"""Tests of pt_helpers.classifiers (frozen model + adapter + head). The label-word head reads one position,
and the engine computes the LM head there only (issue 27).

``LabelWords.logits_to_keep = 1`` makes ``PromptedModel`` pass transformers' ``logits_to_keep=1``: the class
logits must be what the full (B, T, V) logits gave, and the LM head must see one position, not T. Prediction
is a scorer: ``predict_classes`` builds no autograd graph, even with a trainable prompt.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from pt_helpers import chat
from pt_helpers.classifiers import label_word_classifier, predict_classes
from pt_helpers.errors import CourseError
from pt_helpers.models import random_model
from pt_helpers.soft_prompt import make_prompt

TEXTS = ["the plot goes nowhere", "great fun", "not bad at all, really, and long enough to pad the others"]

# The head on one position vs slicing the head's output over all positions: the same float32 matmul on the
# same hidden state, up to the BLAS kernel's blocking (a few ulp). rtol 1e-5 with an atol of 1e-5 × the largest
# |logit| (at least 1); a wrong position (e.g. a padding column, or the token before) moves a logit by ~1e-1 of
# its size on these stand-ins.
RTOL = 1e-5


def close(actual, expected):
    scale = max(float(expected.abs().max()), 1.0)
    assert_close(actual, expected, rtol=RTOL, atol=RTOL * scale)


def all_positions_logits(clf, ids, mask):
    """The old behaviour: every position's logits, then the head reads the last column."""
    with torch.no_grad():
        out = clf.prompted(ids, mask, logits_to_keep=0)
    assert out.logits.shape[1] == ids.shape[1]
    return clf.head(out)


def head_positions(clf, ids, mask):
    """Class logits through the classifier, and the number of positions the LM head was run on."""
    seen = []
    hook = clf.model.get_output_embeddings().register_forward_hook(lambda m, i, o: seen.append(i[0].shape[1]))
    try:
        with torch.no_grad():
            logits = clf(ids, mask)
    finally:
        hook.remove()
    return logits, seen


@pytest.mark.parametrize("adapter", ["none", "cached", "concatenated"])
def test_label_words_keep_one_position_and_the_same_logits(tiny_gpt2, gpt2_tokenizer, adapter):
    model = copy.deepcopy(tiny_gpt2)
    prompt = None if adapter == "none" else make_prompt(model, gpt2_tokenizer, 4, "vocab", seed=0)
    clf = label_word_classifier(model, gpt2_tokenizer, ["negative", "positive"], prompt=prompt)
    clf.prompted.share_prompt_cache = adapter != "concatenated"
    ids, mask = clf.tokenize(TEXTS)
    assert ids.shape[1] > 1 and (mask == 0).any()  # left padding present: the last column must be the one read
    logits, seen = head_positions(clf, ids, mask)
    # the head ran on the last real position only (the soft prompt's own pass keeps 1 as before)
    assert seen and seen[-1] == 1, seen
    expected = all_positions_logits(clf, ids, mask)
    close(logits, expected)
    assert np.array_equal(clf.predict(TEXTS), expected.argmax(-1).numpy())


@pytest.mark.parametrize("placement", chat.PLACEMENTS)
def test_chat_classifier_keeps_one_position_on_a_llama(placement):
    loaded = random_model("HuggingFaceTB/SmolLM2-135M-Instruct", seed=0)
    chat.add_chat_template(loaded, seed=0)
    model, tok = loaded
    fmt = chat.chat_format("sst2")
    clf = chat.chat_classifier(model, tok, fmt, make_prompt(model, tok, 3, "vocab", seed=0), placement=placement)
    ids, mask = clf.tokenize(TEXTS)
    logits, seen = head_positions(clf, ids, mask)
    assert seen[-1] == 1, seen
    close(logits, all_positions_logits(clf, ids, mask))


def test_predict_classes_builds_no_graph(tiny_gpt2, gpt2_tokenizer):
    model = copy.deepcopy(tiny_gpt2)
    prompt = make_prompt(model, gpt2_tokenizer, 4, "vocab", seed=0)
    clf = label_word_classifier(model, gpt2_tokenizer, ["negative", "positive"], prompt=prompt)
    assert prompt.weight.requires_grad  # a trainable prompt: without no_grad its outputs would carry a graph
    outputs = []
    hook = clf.register_forward_hook(lambda m, i, o: outputs.append(o))
    try:
        predict_classes(clf, TEXTS, batch_size=2)  # called directly, not through PromptClassifier.predict
    finally:
        hook.remove()
    assert len(outputs) == 2 and not any(o.requires_grad or o.grad_fn is not None for o in outputs)
    # the same classifier in training still builds one: the no-graph result is predict_classes' doing
    assert clf(*clf.tokenize(TEXTS)).requires_grad


def test_logits_to_keep_with_labels_is_refused(tiny_gpt2, gpt2_tokenizer):
    clf = label_word_classifier(copy.deepcopy(tiny_gpt2), gpt2_tokenizer, ["negative", "positive"])
    ids, mask = clf.tokenize(TEXTS)
    with pytest.raises(CourseError, match="logits_to_keep=0"):
        clf.prompted(ids, mask, labels=ids, logits_to_keep=1)
    with pytest.raises(CourseError, match="integer ≥ 0"):
        clf.prompted(ids, mask, logits_to_keep=-1)

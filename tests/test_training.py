"""Tests of pt_helpers.training: the learning-rate schedule, the order of the batches, fit's settings checks.

fit itself is exercised through every method's tests (tests/test_soft_prompt.py, test_prefix.py,
test_p_tuning.py) and the train CLI's (tests/test_train_cli.py); the settings' own checks are there too.
"""

from __future__ import annotations

import pytest

from pt_helpers.classifiers import label_sentence_classifier
from pt_helpers.errors import TrainConfigError
from pt_helpers.soft_prompt import make_prompt
from pt_helpers.training import TrainSettings, batch_indices, fit, lr_at


@pytest.mark.parametrize("schedule", ["constant", "linear", "cosine"])
def test_lr_schedule_warms_up_then_decays(schedule):
    lrs = [lr_at(step, 100, 0.1, warmup_steps=10, schedule=schedule) for step in range(100)]
    assert lrs[0] == pytest.approx(0.01) and lrs[9] == pytest.approx(0.1)
    assert all(a <= b + 1e-12 for a, b in zip(lrs[:10], lrs[1:10]))  # warm-up rises
    if schedule == "constant":
        assert lrs[-1] == pytest.approx(0.1)
    else:
        assert all(a >= b - 1e-12 for a, b in zip(lrs[10:], lrs[11:]))  # then never rises
        assert lrs[-1] < 0.01 and lrs[55] == pytest.approx(0.05, abs=1e-9)


def test_unknown_lr_schedule_is_a_clear_error(random_bert):
    model, tok = random_bert
    clf = label_sentence_classifier(model, tok, ["bad", "good"], prompt=make_prompt(model, tok, 2, "vocab"))
    with pytest.raises(TrainConfigError, match="lr_schedule"):
        fit(clf, (["x"], [0]), (["x"], [0]), TrainSettings(max_steps=1, lr_schedule="step", progress=False))


def test_batch_indices_cover_epochs_deterministically():
    a = batch_indices(10, 4, 4, seed=3)
    assert a == batch_indices(10, 4, 4, seed=3) and [len(b) for b in a] == [4, 4, 2, 4]
    assert sorted(a[0] + a[1] + a[2]) == list(range(10))  # the first epoch is a permutation

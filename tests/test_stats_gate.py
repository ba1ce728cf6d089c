"""stats.no_verdict_unless_working: a verdict that presupposes a working prompt is drawn only when it works."""

import numpy as np

from pt_helpers.stats import PROTOCOL_CHECK, no_verdict_unless_working, paired_test


def _pair(only_a: int, only_b: int, both: int = 20):
    a = np.array([1] * only_a + [0] * only_b + [1] * both)
    b = np.array([0] * only_a + [1] * only_b + [1] * both)
    return a, b


def test_a_prompt_clearly_above_zero_shot_allows_the_verdict():
    assert no_verdict_unless_working(paired_test(*_pair(15, 0)), "the ensemble") is None


def test_a_prompt_no_better_or_worse_than_zero_shot_gives_the_reason():
    for only_a, only_b in ((3, 2), (0, 15)):
        reason = no_verdict_unless_working(paired_test(*_pair(only_a, only_b)), "the ensemble")
        assert reason.startswith("no verdict on the ensemble") and "selection split" in reason


def test_a_smoke_budget_never_establishes_a_working_prompt():
    reason = no_verdict_unless_working(paired_test(*_pair(15, 0), smoke=True), "transfer")
    assert PROTOCOL_CHECK in reason

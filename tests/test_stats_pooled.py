"""Tests of stats.pooled_paired_test: one paired test pooled over runs that share their examples."""

from __future__ import annotations

import numpy as np
import pytest

from pt_helpers.errors import CourseError
from pt_helpers.stats import paired_test, pooled_paired_test


def _arms(rng, n_runs: int, n: int, shift: float = 0.0):
    """Correlated runs: each example has its own difficulty, shared by every run and both arms."""
    easy = rng.uniform(0.2, 0.9, size=n)  # (n,) per-example chance of being right
    a = rng.uniform(size=(n_runs, n)) < np.clip(easy + shift, 0, 1)
    b = rng.uniform(size=(n_runs, n)) < easy
    return a.astype(int), b.astype(int)


def test_difference_and_counts_are_the_runs_average():
    rng = np.random.default_rng(0)
    a, b = _arms(rng, 4, 60, shift=0.1)
    res = pooled_paired_test(a, b)
    assert res.n == 60 and res.n_runs == 4
    assert res.only_a == int(((a == 1) & (b == 0)).sum()) and res.only_b == int(((b == 1) & (a == 0)).sum())
    # the pooled Δ is the mean of the per-run accuracy differences (exact arithmetic on counts / (R·n))
    assert res.difference == pytest.approx(np.mean([x.mean() - y.mean() for x, y in zip(a, b)]), abs=1e-12)
    one = pooled_paired_test(a[0], b[0])  # a 1-D array is one run
    assert one.n_runs == 1 and one.difference == pytest.approx(paired_test(a[0], b[0]).difference, abs=1e-12)


def test_repeating_a_run_adds_no_evidence_where_concatenation_would():
    """The unit is the example: the same run counted five times is one run's evidence, not five."""
    rng = np.random.default_rng(1)
    a, b = _arms(rng, 1, 80, shift=0.08)
    once, five = pooled_paired_test(a, b), pooled_paired_test(np.tile(a, (5, 1)), np.tile(b, (5, 1)))
    assert five.p_value == pytest.approx(once.p_value, rel=1e-9)
    concatenated = paired_test(np.tile(a, 5).ravel(), np.tile(b, 5).ravel())  # what pooling must NOT do
    assert concatenated.p_value < once.p_value


def test_interval_excludes_zero_exactly_when_p_is_below_alpha():
    rng = np.random.default_rng(2)
    for shift in np.linspace(-0.15, 0.15, 31):
        res = pooled_paired_test(*_arms(rng, 3, 50, shift=float(shift)))
        if res.p_value != 0.05:
            assert (res.low > 0 or res.high < 0) == (res.p_value < 0.05)


def test_false_positive_rate_under_no_difference_is_near_alpha():
    """Both arms drawn alike (runs correlated through each example's difficulty): about 5 % rejections."""
    rng = np.random.default_rng(3)
    rejected = [pooled_paired_test(*_arms(rng, 5, 64)).p_value < 0.05 for _ in range(400)]
    # 400 trials at 5 %: binomial sd ≈ 1.1 %, so [2 %, 9 %] is about ±3 sd
    assert 0.02 <= np.mean(rejected) <= 0.09


def test_a_real_difference_is_found_and_worded_like_paired_test():
    rng = np.random.default_rng(4)
    res = pooled_paired_test(*_arms(rng, 5, 200, shift=0.15), names=("calibrated", "raw"))
    assert res.p_value < 1e-6 and res.verdict() == "calibrated higher (p < 0.05)"
    assert res.verdict(("B", "A")) == "B higher (p < 0.05)"  # names given to verdict win
    flat = pooled_paired_test(*_arms(rng, 2, 40))
    if flat.p_value >= 0.05:
        assert flat.verdict().startswith("no detectable difference (p ≥ 0.05, n = 40)")


def test_identical_arms_are_degenerate():
    a = np.array([[1, 0, 1, 1], [0, 0, 1, 1]])
    res = pooled_paired_test(a, a.copy())
    assert res.degenerate and res.p_value == 1.0 and res.verdict().startswith("degenerate")
    assert "degenerate" in str(res)


def test_bad_inputs_name_the_problem():
    with pytest.raises(CourseError, match="SAME runs and examples"):
        pooled_paired_test(np.ones((2, 5)), np.ones((3, 5)))
    with pytest.raises(CourseError, match="0/1"):
        pooled_paired_test([[0, 2, 1]], [[0, 1, 1]])
    with pytest.raises(CourseError, match="at least 2 examples"):
        pooled_paired_test([[1]], [[0]])


def test_too_few_separating_examples_get_no_rank():
    """4 vs 0 discordant examples: the t approximation gives p ≈ 0.04, McNemar's exact p is 0.125."""
    a, b = np.ones(16, dtype=int), np.ones(16, dtype=int)
    b[:4] = 0
    res = pooled_paired_test(a, b, names=("calibrated", "raw"))
    assert res.p_value < 0.05 and paired_test(a, b).p_value > 0.1
    assert res.n_separating == 4 and res.verdict().startswith("too few separating examples (4 < 10)")

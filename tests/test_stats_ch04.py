"""stats.paired_mean_test (chapter 04: per-example ROUGE of two summarisers): the paired t-test and its interval."""

import numpy as np
import pytest
from scipy import stats as st

from pt_helpers.errors import CourseError
from pt_helpers.stats import paired_mean_test


def test_paired_mean_test_matches_a_one_sample_t_test_of_the_differences():
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 1, 40)
    b = np.clip(a - 0.1 + rng.normal(0, 0.1, 40), 0, 1)
    res = paired_mean_test(a, b)
    d = a - b
    ref = st.ttest_1samp(d, 0.0)
    half = st.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / np.sqrt(d.size)
    # float64 sums of 40 numbers ≤ 1: agreement to ~1e-15; 1e-12 leaves room, a wrong ddof moves it by ~1 %
    assert res.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert res.difference == pytest.approx(d.mean(), abs=1e-12)
    assert (res.low, res.high) == pytest.approx((d.mean() - half, d.mean() + half), abs=1e-12)
    assert res.p_value < 0.05 and res.low > 0
    assert res.verdict(("a", "b")) == "a higher (p < 0.05)"
    assert res.verdict(("b", "a")) == "b higher (p < 0.05)"  # the names follow the arguments' order


def test_one_decision_rule_the_interval_excludes_zero_exactly_when_p_is_below_alpha():
    rng = np.random.default_rng(1)
    for _ in range(300):
        n = int(rng.integers(5, 60))
        a, b = rng.uniform(0, 1, n), rng.uniform(0, 1, n) + rng.normal(0, 0.05)
        res = paired_mean_test(a, b)
        assert (res.p_value < 0.05) == (res.low > 0 or res.high < 0)


def test_no_difference_is_not_ranked_and_equal_scores_are_degenerate():
    rng = np.random.default_rng(2)
    a = rng.uniform(0, 1, 30)
    b = a + rng.normal(0, 0.2, 30) * np.array([1, -1] * 15)  # symmetric noise: no mean shift to speak of
    res = paired_mean_test(a, b)
    if res.p_value >= 0.05:
        assert res.verdict() == "no detectable difference (p ≥ 0.05, n = 30): these data cannot rank them"
    same = paired_mean_test(a, a)
    assert same.degenerate and same.p_value == 1.0 and same.verdict() == "degenerate: no example separates them"
    shifted = paired_mean_test(a + 0.1, a)  # every example exactly 0.1 higher: no noise in the difference
    assert not shifted.degenerate and shifted.p_value == 0.0 and shifted.difference == pytest.approx(0.1)


def test_coverage_of_the_t_interval_is_about_95_percent():
    """Known coverage: differences drawn from a normal with mean 0.05; 2,000 intervals on n = 20."""
    rng = np.random.default_rng(3)
    hits = 0
    for _ in range(2000):
        b = rng.uniform(0, 1, 20)
        a = b + 0.05 + rng.normal(0, 0.1, 20)
        res = paired_mean_test(a, b)
        hits += res.low <= 0.05 <= res.high
    # binomial standard error of a 95 % rate over 2,000 trials ≈ 0.005: ±0.015 is 3 standard errors
    assert abs(hits / 2000 - 0.95) < 0.015


@pytest.mark.parametrize(
    "a, b, match",
    [([0.1, 0.2], [0.1], "SAME examples"), ([0.1], [0.2], "at least 2"), ([0.1, np.nan], [0.1, 0.2], "finite")],
)
def test_bad_inputs_are_named(a, b, match):
    with pytest.raises(CourseError, match=match):
        paired_mean_test(a, b)

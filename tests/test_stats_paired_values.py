"""stats.paired_values_test: the exact sign test for paired continuous values and its median interval."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as st

from pt_helpers.errors import CourseError
from pt_helpers.stats import paired_values_test


def test_all_higher_known_p_and_order_statistic_interval():
    rng = np.random.default_rng(0)
    b = rng.normal(size=10)
    d = np.arange(1, 11) / 10.0  # ten positive differences 0.1 … 1.0
    res = paired_values_test(b + d, b)
    assert res.n_higher == 10 and res.n_lower == 0 and res.n_tied == 0
    assert res.p_value == pytest.approx(2 / 2**10)  # both tails of Binomial(10, ½) at 0 and 10
    # P(Bin(10, ½) ≤ 1) = 11/1024 ≤ 0.025 < P(Bin ≤ 2) = 56/1024: k − 1 = 1, so [d_(2), d_(9)]
    assert (res.low, res.high) == pytest.approx((0.2, 0.9))
    assert res.median_difference == pytest.approx(0.55)
    assert res.verdict(("shuffled", "real")).startswith("shuffled higher")


@pytest.mark.parametrize("seed", range(20))
def test_interval_is_the_inverted_sign_test(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(6, 40))
    a, b = rng.normal(size=n), rng.normal(loc=rng.normal() * 0.5, size=n)
    res = paired_values_test(a, b)
    d = a - b
    # a shift μ inside the interval is not rejected by the sign test on d − μ, one just outside is
    for mu, inside in [
        (res.low + 1e-9, True),
        (res.high - 1e-9, True),
        (res.low - 1e-9, False),
        (res.high + 1e-9, False),
    ]:
        p = st.binomtest(int((d - mu > 0).sum()), int((d - mu != 0).sum()), 0.5).pvalue
        assert (p > 0.05) == inside, (seed, mu, p)
    # one decision rule: the interval excludes 0 exactly when p ≤ 0.05
    assert (res.low > 0 or res.high < 0) == (res.p_value <= 0.05)


def test_coverage_of_the_median_interval_on_a_skewed_distribution():
    rng = np.random.default_rng(1)
    n, reps, true_median = 15, 2000, np.log(2)  # Exp(1) has median log 2
    covered = 0
    for _ in range(reps):
        d = rng.exponential(size=n)
        res = paired_values_test(d, np.zeros(n))
        covered += res.low <= true_median <= res.high
    # exact coverage at n = 15 is 1 − 2·P(Bin(15, ½) ≤ 3) = 0.9648; 2000 draws: ± 0.01 (2.5 standard errors)
    assert abs(covered / reps - 0.9648) < 0.011


def test_ties_are_dropped_and_counted_and_small_n_has_no_interval():
    res = paired_values_test([1.0, 2.0, 3.0, 5.0], [1.0, 1.0, 1.0, 1.0])
    assert res.n == 4 and res.n_tied == 1 and res.n_higher == 3
    assert res.low == -np.inf and res.high == np.inf  # 3 untied pairs: no 95 % interval exists
    assert "1 tied" in str(res)
    assert paired_values_test([1.0, 2.0], [1.0, 2.0]).verdict().startswith("degenerate")


def test_no_difference_is_said_so():
    rng = np.random.default_rng(3)
    a = rng.normal(size=30)
    res = paired_values_test(a, a.copy())
    assert res.verdict().startswith("degenerate")
    b = a + np.where(np.arange(30) % 2 == 0, 1.0, -1.0)  # 15 higher, 15 lower
    res = paired_values_test(a, b)
    assert res.p_value == pytest.approx(1.0) and res.verdict().startswith("no detectable difference")
    assert res.low < 0 < res.high


@pytest.mark.parametrize(
    "a, b, words",
    [
        ([1.0, 2.0], [1.0], "same length"),
        ([], [], "non-empty"),
        ([[1.0, 2.0]], [[1.0, 2.0]], "1-D"),
        ([1.0, float("nan")], [1.0, 2.0], "finite"),
    ],
)
def test_bad_inputs_name_the_problem(a, b, words):
    with pytest.raises(CourseError, match=words):
        paired_values_test(a, b)


def test_bad_confidence():
    with pytest.raises(CourseError, match="confidence"):
        paired_values_test([1.0, 2.0], [0.0, 0.0], confidence=95)

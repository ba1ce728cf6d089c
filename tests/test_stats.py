"""pt_helpers.stats on cases whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from pt_helpers.errors import CourseError
from pt_helpers.stats import (
    PROTOCOL_CHECK,
    accuracy_interval,
    paired_test,
    seed_interval,
    smoke_budget,
    split_half_selection,
    spread_test,
)


def test_wilson_interval_matches_the_textbook_value():
    acc = accuracy_interval([1] * 8 + [0] * 2)
    # Wilson 95 % interval for 8 / 10 (Newcombe 1998, Table I style): [0.4902, 0.9433]
    assert (acc.value, acc.n) == (0.8, 10)
    assert acc.low == pytest.approx(0.4902, abs=1e-4) and acc.high == pytest.approx(0.9433, abs=1e-4)
    assert "n = 10" in str(acc)
    everything = accuracy_interval([1] * 20)
    assert everything.high == pytest.approx(1.0) and everything.low < 1.0  # never a zero-width interval


def test_paired_test_is_mcnemars_exact_binomial_test_on_the_discordant_pairs():
    test = paired_test([1, 1, 1, 0, 1], [0, 0, 0, 0, 1])
    assert (test.only_a, test.only_b, test.n) == (3, 0, 5)
    assert test.p_value == pytest.approx(2 * 0.5**3)  # two-sided exact: 0.25
    assert paired_test([1, 0, 1], [1, 0, 1]).p_value == 1.0  # no discordant pair: no evidence


def test_paired_test_of_identical_and_clearly_different_methods():
    same = paired_test([1, 0, 1, 1] * 10, [1, 0, 1, 1] * 10)
    assert same.difference == 0 and same.low == same.high == 0 and same.p_value == 1.0
    better = paired_test([1] * 40, [1, 0] * 20)
    # 20 discordant examples, all A's: the Clopper–Pearson lower bound for π is 0.025^(1/20) = 0.8316, so the
    # interval of Δ = (m/n)(2π − 1) = 0.5 (2π − 1) is [0.3316, 0.5]; p = 2 · 0.5^20
    assert better.difference == pytest.approx(0.5) and better.p_value == pytest.approx(2 * 0.5**20)
    assert better.low == pytest.approx(0.5 * (2 * 0.025 ** (1 / 20) - 1), rel=1e-9) and better.high == 0.5
    with pytest.raises(CourseError, match="SAME examples"):
        paired_test([1, 0], [1, 0, 1])


def _discordant(only_a: int, only_b: int, n: int):
    """0/1 outcomes of two methods on n examples with the given discordant counts (the rest both right)."""
    a, b = np.ones(n, dtype=int), np.ones(n, dtype=int)
    b[:only_a] = 0
    a[only_a : only_a + only_b] = 0
    return a, b


def test_the_interval_and_the_p_value_never_disagree():
    """One decision rule: for every discordant split (b, c) with b + c ≤ 60 the interval excludes 0 exactly
    when p < 0.05 (the interval is the test inverted)."""
    for m in range(1, 61):
        for b in range(m + 1):
            t = paired_test(*_discordant(b, m - b, 100))
            assert (t.low > 0 or t.high < 0) == (t.p_value < 0.05), (b, m - b, t)
            assert t.low <= t.difference <= t.high


def test_the_old_pairing_of_a_bootstrap_interval_with_mcnemar_disagreed():
    """The disagreement the review found, rebuilt: 12 vs 4 discordant of 100. A paired percentile bootstrap of
    the difference (the old ``paired_bootstrap``'s interval) excludes 0 while McNemar's exact p is 0.077 — two
    rules, two verdicts. The matched interval agrees with the test."""
    import scipy.stats as st

    a, b = _discordant(12, 4, 100)
    diff = a.astype(float) - b
    boot = st.bootstrap((diff,), np.mean, method="percentile", random_state=np.random.default_rng(0))
    t = paired_test(a, b)
    assert boot.confidence_interval.low > 0 and t.p_value == pytest.approx(0.0768, abs=1e-4)
    assert t.low < 0 < t.high


def test_paired_test_interval_covers_the_true_difference():
    """Known coverage: draw n paired outcomes with P(only A right) = p10, P(only B right) = p01, many times;
    the 95 % interval must cover Δ = p10 − p01 at least ≈ 95 % of the time. Clopper–Pearson is conservative
    given m, so the floor is 0.95 minus 3.5 Monte-Carlo standard errors (√(0.95 · 0.05 / 2000) = 0.0049)."""
    rng = np.random.default_rng(0)
    for p10, p01, n in ((0.10, 0.05, 200), (0.02, 0.01, 300)):
        hits = 0
        for _ in range(2000):
            cells = rng.multinomial(n, [p10, p01, 1 - p10 - p01])
            t = paired_test(*_discordant(int(cells[0]), int(cells[1]), n))
            hits += t.low <= p10 - p01 <= t.high
        assert hits / 2000 >= 0.95 - 3.5 * 0.0049, (p10, p01, n, hits / 2000)


def test_a_smoke_budget_prints_no_test():
    a, b = _discordant(9, 2, 80)
    smoke = paired_test(a, b, smoke=True)
    assert str(smoke).startswith(PROTOCOL_CHECK) and "p =" not in str(smoke) and "n = 80" in str(smoke)
    assert "p = " in str(paired_test(a, b))
    # the quick profiles of 06, 07, 08 (6, 16, 12 steps) are smoke budgets; 05's (100 steps) is not
    assert all(smoke_budget(s) for s in (6, 12, 16)) and not smoke_budget(100)
    with pytest.raises(CourseError, match="steps"):
        smoke_budget(None)


def test_seed_interval_never_reports_a_spread_for_one_seed():
    one = seed_interval([0.81])
    assert one.std is None and "n/a (1 seed)" in str(one)
    three = seed_interval([0.80, 0.82, 0.81])
    assert three.mean == pytest.approx(0.81) and three.std == pytest.approx(0.01)
    half = 4.302653 * 0.01 / np.sqrt(3)  # t(0.975, 2 degrees of freedom) = 4.302653 (any t table)
    assert three.low == pytest.approx(0.81 - half, abs=1e-6) and three.high == pytest.approx(0.81 + half, abs=1e-6)
    label = str(three)  # says what the interval covers, and shows the seeds
    assert "95 % t-interval" in label and "3 seeds" in label and "0.800, 0.820, 0.810" in label
    assert seed_interval([0.7, 0.7]).low == seed_interval([0.7, 0.7]).high == pytest.approx(0.7)
    with pytest.raises(CourseError, match="finite"):
        seed_interval([0.8, float("nan")])


def _coverage(interval, k: int, n_draws: int, seed: int = 0) -> float:
    """Share of n_draws samples of k values from N(0.8, 0.02²) whose interval covers the mean 0.8."""
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(n_draws):
        s = interval(rng.normal(0.8, 0.02, size=k).tolist())
        hits += s.low <= 0.8 <= s.high
    return hits / n_draws


@pytest.mark.parametrize("k", [3, 5])
def test_seed_interval_has_its_stated_coverage(k):
    """An interval that says 95 % must cover the true mean 95 % of the time. Each seed's result is modelled as
    a draw from a known normal (the t-interval's assumption). 4,000 samples: the Monte-Carlo standard error of
    a 95 % coverage is √(0.95 · 0.05 / 4000) = 0.0034, so ± 0.015 is 4.4 standard errors (a false failure
    about 1 in 100,000), while the old percentile bootstrap over 3 seeds — exactly [min, max], coverage
    1 − 2 · ½³ = 75 % — misses by 0.20 and fails."""
    assert abs(_coverage(seed_interval, k, 4000) - 0.95) < 0.015


def test_spread_test_separates_noise_from_a_real_difference():
    rng = np.random.default_rng(0)
    identical = np.tile(rng.random(50) < 0.6, (5, 1))
    assert spread_test(identical, n_resamples=199).p_value == 1.0  # spread 0: nothing to explain
    real = np.stack([np.ones(60), np.zeros(60), *(rng.random((3, 60)) < 0.5)])
    assert spread_test(real, n_resamples=199).p_value <= 0.01
    # pure noise: 21 variants at n = 40 spread by ~0.3 (several standard errors) by chance alone
    p_values = [spread_test(rng.random((21, 40)) < 0.5, n_resamples=199, seed=s).p_value for s in range(20)]
    assert np.mean(np.array(p_values) < 0.05) <= 0.2


def test_spread_test_at_full_dev_size_stays_small_and_equals_the_unbatched_test():
    """9,999 shuffles of 21 variants × 872 examples held several GB at once (notebook 04 at n = 872); batched,
    the peak of numpy's allocations stays far below that, and the p-value is scipy's unbatched one."""
    import tracemalloc

    import scipy.stats as st

    rng = np.random.default_rng(3)
    big = rng.random((21, 872)) < 0.6
    tracemalloc.start()
    spread_test(big)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 600 * 2**20, f"spread_test allocated {peak / 2**20:.0f} MiB at its peak"
    small = (rng.random((6, 30)) < 0.5).astype(float)

    def spread(*samples, axis=-1):
        acc = np.stack([x.mean(axis=axis) for x in samples])
        return acc.max(axis=0) - acc.min(axis=0)

    unbatched = st.permutation_test(
        tuple(small), spread, permutation_type="samples", n_resamples=999, alternative="greater",
        vectorized=True, random_state=np.random.default_rng(0),
    )  # fmt: skip
    assert spread_test(small, n_resamples=999, seed=0).p_value == unbatched.pvalue  # the same shuffles


def test_bad_outcomes_are_clear_errors():
    with pytest.raises(CourseError, match="0/1"):
        accuracy_interval([0.3, 0.7])
    with pytest.raises(CourseError, match="non-empty"):
        accuracy_interval([])
    with pytest.raises(CourseError, match="variants"):
        spread_test([[1, 0, 1]])


def test_a_comparison_no_example_separates_is_labelled_degenerate():
    same = paired_test([1, 0, 1, 1] * 10, [1, 0, 1, 1] * 10)
    assert same.degenerate and "degenerate" in str(same) and "Δ" not in str(same)
    assert not paired_test([1, 0, 1, 1], [1, 1, 1, 1]).degenerate


def test_split_half_selection_finds_a_real_gap_and_not_noise():
    rng = np.random.default_rng(1)
    noise = rng.random((21, 200)) < 0.55  # 21 exchangeable variants: the selected gap must not survive
    sel = split_half_selection(noise, n_resamples=2000)
    assert sel.selection_spread > 0.1 and sel.held_out.p_value > 0.05 and sel.held_out.n + sel.n_selection == 200
    real = np.vstack([rng.random((3, 200)) < 0.5, rng.random((1, 200)) < 0.95])
    sel = split_half_selection(real, n_resamples=2000)
    assert sel.best == 3 and sel.held_out.difference > 0.25 and sel.held_out.p_value < 1e-3
    with pytest.raises(CourseError, match="variants"):
        split_half_selection(np.ones((1, 10)))


def test_verdict_ranks_only_what_the_test_decides():
    """One wording for every paired comparison (icl's tables, chat's lines): rank at p < alpha, else say why not."""
    a = [1] * 40
    assert paired_test(a, [1] * 10 + [0] * 30).verdict(("A", "B")) == "A higher (p < 0.05)"
    assert paired_test([1] * 10 + [0] * 30, a).verdict(("B", "A")) == "A higher (p < 0.05)"
    undecided = paired_test(a, [1] * 37 + [0] * 3).verdict(("A", "B"))  # 3 discordant: p = 0.25
    assert undecided.startswith("no detectable difference") and "n = 40" in undecided
    assert paired_test(a, a).verdict().startswith("degenerate")
    assert paired_test(a, [0] * 40, smoke=True).verdict() == PROTOCOL_CHECK

"""pt_helpers.stats on cases whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from pt_helpers.errors import CourseError
from pt_helpers.stats import (
    accuracy_interval,
    mcnemar_exact,
    paired_bootstrap,
    seed_interval,
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


def test_mcnemar_exact_is_a_binomial_test_on_the_discordant_pairs():
    test = mcnemar_exact([1, 1, 1, 0, 1], [0, 0, 0, 0, 1])
    assert (test.only_a, test.only_b, test.n) == (3, 0, 5)
    assert test.p_value == pytest.approx(2 * 0.5**3)  # two-sided exact: 0.25
    assert mcnemar_exact([1, 0, 1], [1, 0, 1]).p_value == 1.0  # no discordant pair: no evidence


def test_paired_bootstrap_of_identical_and_clearly_different_methods():
    same = paired_bootstrap([1, 0, 1, 1] * 10, [1, 0, 1, 1] * 10)
    assert same.difference == 0 and same.low == same.high == 0 and same.p_value == 1.0
    better = paired_bootstrap([1] * 40, [1, 0] * 20, n_resamples=2000)
    assert better.difference == pytest.approx(0.5)
    assert 0.3 < better.low < 0.5 < better.high < 0.7 and better.p_value < 1e-5
    with pytest.raises(CourseError, match="SAME examples"):
        paired_bootstrap([1, 0], [1, 0, 1])


def test_seed_interval_never_reports_a_spread_for_one_seed():
    one = seed_interval([0.81])
    assert one.std is None and "n/a (1 seed)" in str(one)
    three = seed_interval([0.80, 0.82, 0.81], n_resamples=2000)
    assert three.mean == pytest.approx(0.81) and three.std == pytest.approx(0.01)
    assert 0.80 <= three.low <= 0.81 <= three.high <= 0.82


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
    same = paired_bootstrap([1, 0, 1, 1] * 10, [1, 0, 1, 1] * 10)
    assert same.degenerate and "degenerate" in str(same) and "Δ" not in str(same)
    assert not paired_bootstrap([1, 0, 1, 1], [1, 1, 1, 1]).degenerate


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

"""stats.interaction_test: the per-example short → long interaction of chapter 07 (issue 28, item 5)."""

import numpy as np
import pytest

from pt_helpers.errors import CourseError
from pt_helpers.stats import PROTOCOL_CHECK, interaction_test


def _draw(rng, n, p_a, p_b):
    return (rng.random(n) < p_a).astype(int), (rng.random(n) < p_b).astype(int)


def test_the_statistic_is_the_difference_of_the_two_gaps():
    a1, b1 = [1, 1, 1, 0], [1, 0, 0, 0]  # gap +0.5
    a2, b2 = [1, 0, 0, 1, 1], [1, 1, 0, 1, 1]  # gap −0.2
    t = interaction_test(a1, b1, a2, b2, n_resamples=999)
    assert (t.gap_1, t.gap_2, t.difference) == pytest.approx((0.5, -0.2, 0.7), abs=1e-12)
    assert (t.n_1, t.n_2, t.n_separating) == (4, 5, 3)


def test_the_interval_covers_the_true_interaction_about_95_percent_of_the_time():
    """Known coverage: set 1 has A right with p 0.8 and B with 0.7 (gap 0.1), set 2 both 0.75 (gap 0); true
    interaction 0.1. 200 data sets of 200 + 200 examples; the share of intervals that cover 0.1 must be within
    about 3 binomial standard errors (0.015 for 200 draws) of 0.95 — percentile intervals of means at this n are
    close to nominal."""
    rng = np.random.default_rng(1)
    covered = []
    for k in range(200):
        t = interaction_test(*_draw(rng, 200, 0.8, 0.7), *_draw(rng, 200, 0.75, 0.75), n_resamples=999, seed=k)
        covered.append(t.low <= 0.1 <= t.high)
    assert 0.90 <= np.mean(covered) <= 0.99


def test_p_below_alpha_matches_an_interval_that_excludes_zero():
    rng = np.random.default_rng(2)
    for k, shift in enumerate((0.0, 0.05, 0.1, 0.2, 0.3)):
        t = interaction_test(*_draw(rng, 150, 0.6 + shift, 0.6), *_draw(rng, 150, 0.6, 0.6), n_resamples=1999, seed=k)
        assert (t.p_value < 0.05) == (t.low > 0 or t.high < 0) or abs(t.p_value - 0.05) < 0.01


def test_degenerate_smoke_and_bad_inputs():
    same = [1, 0, 1, 1]
    t = interaction_test(same, same, same[:3], same[:3], n_resamples=99)
    assert t.degenerate and t.p_value == 1.0 and "degenerate" in t.verdict(("short", "long"))
    always = interaction_test([1, 1], [0, 0], [1, 1], [0, 0], n_resamples=99)  # separated, interaction exactly 0
    assert not always.degenerate and always.difference == 0 and "no detectable" in always.verdict()
    assert str(interaction_test([1, 0], [0, 0], [1], [1], n_resamples=99, smoke=True)).startswith(PROTOCOL_CHECK)
    with pytest.raises(CourseError, match="SAME examples"):
        interaction_test([1, 0], [1], [1], [1])
    with pytest.raises(CourseError, match="n_resamples"):
        interaction_test([1], [1], [1], [1], n_resamples=10)

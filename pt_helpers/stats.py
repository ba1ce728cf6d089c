"""Statistics that say how sure a comparison is, on top of ``scipy.stats`` (no hand-written distributions).

Used wherever the course ranks two numbers (chapters 03–08):

* ``accuracy_interval`` — an accuracy with n and its Wilson score interval (``scipy.stats.binomtest``);
* ``paired_test`` — THE course's one decision rule for two methods on the SAME examples: McNemar's exact test
  (McNemar 1947, exact form: a binomial test on the examples where exactly one method is right) with the
  interval that matches it — the Clopper–Pearson interval of the discordant split, written as a difference in
  accuracy. The interval excludes 0 exactly when p < 1 − confidence, so the two can never disagree (a
  percentile-bootstrap interval beside a McNemar p-value once excluded 0 while p was 0.057);
* ``seed_interval`` — the mean over seeds with a Student-t interval, and the seeds themselves; one seed is
  "n/a (1 seed)" (a percentile bootstrap over 3 seeds is exactly [min, max] and covers the mean 75 % of the
  time, not 95 %: ``tests/test_stats.py`` measures both);
* ``spread_test`` — is the best-minus-worst spread over several variants (templates, verbalisers …)
  more than noise? A permutation test that shuffles which variant each example's outcome belongs to;
* ``split_half_selection`` — pick the best and the worst variant on one half of the examples and test
  them, paired, on the other half (a selection is evaluated on data it did not see).

A ``PairedTest`` whose two arms are right and wrong on exactly the same examples is *degenerate*: the data
cannot tell them apart (for instance a random-weight model that ignores what the two arms change). It says
so instead of printing a difference of zero that reads like a finding. A ``PairedTest`` made with
``smoke=True`` (a budget of a handful of steps, run to check that the code works) prints
``PROTOCOL_CHECK`` and the two accuracies instead of a p-value: at such a budget a "significant" difference
says which method moved faster from its start, not which is better.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as st

from .errors import CourseError


def _outcomes(correct, what: str = "correct") -> np.ndarray:
    arr = np.asarray(correct)
    if arr.ndim != 1 or arr.size == 0:
        raise CourseError(f"{what} must be a non-empty 1-D array of 0/1 (one per example), got shape {arr.shape}")
    if not np.isin(arr, (0, 1, True, False)).all():
        raise CourseError(f"{what} must hold 0/1 or booleans (was each example right?), got other values")
    return arr.astype(bool)


@dataclass(frozen=True)
class Accuracy:
    """An accuracy with its sample size and a confidence interval."""

    value: float
    n: int
    low: float
    high: float
    confidence: float = 0.95

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}] (n = {self.n})"


def accuracy_interval(correct, confidence: float = 0.95) -> Accuracy:
    """Accuracy of 0/1 outcomes (n,) with the Wilson score interval (good at small n and near 0 or 1)."""
    c = _outcomes(correct)
    ci = st.binomtest(int(c.sum()), c.size).proportion_ci(confidence_level=confidence, method="wilson")
    return Accuracy(float(c.mean()), int(c.size), float(ci.low), float(ci.high), confidence)


PROTOCOL_CHECK = "protocol check — no test at this budget"
SMOKE_STEPS = 50  # fewer training steps than this: a smoke budget (see ``smoke_budget``)


def smoke_budget(steps_run: int) -> bool:
    """True when a training run of ``steps_run`` optimiser steps only checks that the code runs.

    The course's quick profiles train 6 (chapter 06), 12 (08) and 16 (07) steps to fit CI's two CPU cores: at
    such a budget a paired test ranks methods by how fast they leave their starting point (06's 6-step table
    once ranked the deep prompt above full fine-tuning on SST-2 and below it on TREC, both at p < 0.01). The
    smallest budget whose results the course quotes is chapter 05's 100 steps; 50 sits between the two.
    Decided from the steps actually run, not from the profile's name (a reader may override them).
    """
    if isinstance(steps_run, bool) or not isinstance(steps_run, (int, np.integer)) or steps_run < 0:
        raise CourseError(f"steps_run must be a whole number of training steps ≥ 0, got {steps_run!r}")
    return int(steps_run) < SMOKE_STEPS


def verdict_words(
    names: tuple[str, str],
    a_higher: bool,
    p_value: float,
    n: int,
    alpha: float = 0.05,
    degenerate: str | None = None,
    smoke: bool = False,
) -> str:
    """The course's one wording of a paired verdict, for every paired test here: the arm the data rank higher at
    level ``alpha``, or no detectable difference at this n, or nothing (``degenerate``: why no pair separates the
    arms; ``smoke``: a smoke budget's protocol check). Defined in chapter 03."""
    if smoke:
        return PROTOCOL_CHECK
    if degenerate:
        return f"degenerate: {degenerate}"
    if p_value < alpha:
        return f"{names[0] if a_higher else names[1]} higher (p < {alpha:g})"
    return f"no detectable difference (p ≥ {alpha:g}, n = {n}): these data cannot rank them"


@dataclass(frozen=True)
class PairedTest:
    """Two methods on the same n examples: accuracies, their difference and how sure it is."""

    accuracy_a: float
    accuracy_b: float
    n: int
    only_a: int  # examples A gets right and B wrong
    only_b: int  # examples B gets right and A wrong
    p_value: float
    difference: float  # accuracy_a - accuracy_b
    low: float = float("nan")
    high: float = float("nan")
    test: str = ""
    smoke: bool = False  # a smoke budget: print the accuracies, no test (see PROTOCOL_CHECK)

    @property
    def degenerate(self) -> bool:
        """True when no example separates the arms: both right, or both wrong, on every example."""
        return self.only_a + self.only_b == 0

    def verdict(self, names: tuple[str, str] = ("A", "B"), alpha: float = 0.05) -> str:
        """What the test lets a sentence say, the course's one wording of it: the arm the data rank higher
        at level ``alpha``, or no detectable difference at this n, or nothing (a degenerate pair, or a smoke
        budget's protocol check)."""
        degenerate = "no example separates them" if self.degenerate else None
        return verdict_words(names, self.difference > 0, self.p_value, self.n, alpha, degenerate, self.smoke)

    def __str__(self) -> str:
        if self.smoke:
            return f"{PROTOCOL_CHECK} (accuracies {self.accuracy_a:.3f} vs {self.accuracy_b:.3f}, n = {self.n})"
        if self.degenerate:
            return (
                f"degenerate comparison: both arms right on the same {round(self.accuracy_a * self.n)} of "
                f"{self.n} examples (accuracy {self.accuracy_a:.3f}); no example separates them, so the data say "
                "nothing about which is better"
            )
        ci = f" [{self.low:+.3f}, {self.high:+.3f}]" if np.isfinite(self.low) else ""
        return (
            f"Δ = {self.difference:+.3f}{ci} (n = {self.n}, {self.only_a} vs {self.only_b} discordant), "
            f"p = {self.p_value:.3g} ({self.test})"
        )


def _pair(correct_a, correct_b) -> tuple[np.ndarray, np.ndarray]:
    a, b = _outcomes(correct_a, "correct_a"), _outcomes(correct_b, "correct_b")
    if a.shape != b.shape:
        raise CourseError(f"a paired test needs both methods on the SAME examples: got {a.size} and {b.size} outcomes")
    return a, b


def paired_test(correct_a, correct_b, *, confidence: float = 0.95, smoke: bool = False) -> PairedTest:
    """Two methods on the same examples: McNemar's exact test and the interval that matches it.

    Only the m = b + c discordant examples carry evidence (b: A right and B wrong; c: the reverse). Under "no
    difference" each is A's with probability ½, so b ~ Binomial(m, ½) given m: the exact two-sided p-value
    (``scipy.stats.binomtest``; for π = ½ the binomial is symmetric, so it is twice the smaller tail). The
    interval: Clopper–Pearson for π = P(a discordant example is A's) — the set of π that the equal-tailed
    binomial test (twice the smaller tail) does not reject at level 1 − confidence, which at π = ½ is this test —
    written on the scale of the accuracy difference,
    Δ = (b − c)/n = (m/n)(2π − 1), with m/n as observed (conditional on m). Hence the interval excludes 0 if
    and only if p < 1 − confidence — one decision rule. ``smoke=True``: the same numbers, printed as a
    protocol check without the test.
    """
    a, b = _pair(correct_a, correct_b)
    only_a, only_b = int((a & ~b).sum()), int((b & ~a).sum())
    m, n = only_a + only_b, a.size
    if m == 0:
        p, low, high = 1.0, 0.0, 0.0
    else:
        res = st.binomtest(only_a, m, 0.5)
        ci = res.proportion_ci(confidence_level=confidence, method="exact")  # Clopper–Pearson
        p, low, high = float(res.pvalue), m / n * (2 * ci.low - 1), m / n * (2 * ci.high - 1)
    return PairedTest(
        float(a.mean()),
        float(b.mean()),
        n,
        only_a,
        only_b,
        p,
        (only_a - only_b) / n,  # = accuracy_a − accuracy_b, computed as the interval's endpoints are
        float(low),
        float(high),
        test="McNemar exact",
        smoke=smoke,
    )


@dataclass(frozen=True)
class SeedSummary:
    """A mean over seeds with a Student-t interval and the seeds' values; one seed has no spread to report."""

    mean: float
    n_seeds: int
    std: float | None
    low: float | None
    high: float | None
    values: tuple[float, ...] = ()
    confidence: float = 0.95

    def __str__(self) -> str:
        if self.n_seeds < 2:
            return f"{self.mean:.3f} (spread n/a (1 seed))"
        seeds = ", ".join(f"{v:.3f}" for v in self.values)
        return (
            f"{self.mean:.3f} ± {self.std:.3f} std, {100 * self.confidence:g} % t-interval of the mean "
            f"[{self.low:.3f}, {self.high:.3f}] over {self.n_seeds} seeds ({seeds})"
        )


def seed_interval(values: Sequence[float], *, confidence: float = 0.95) -> SeedSummary:
    """Mean of one number per seed, its std (ddof = 1) and the Student-t interval of the mean.

    mean ± t_{k−1, (1+confidence)/2} · s/√k (``scipy.stats.t``): exact coverage when the seeds' values are
    independent draws from one normal distribution, whatever k ≥ 2 (wide at k = 2 or 3, as it should be). The
    percentile bootstrap this replaced is exactly [min, max] at k = 3: coverage 1 − 2·(½)³ = 75 %. One seed:
    spread None.
    """
    v = np.asarray(values, dtype=float)
    if v.ndim != 1 or v.size == 0:
        raise CourseError("values must be a non-empty list of one number per seed")
    if not np.isfinite(v).all():
        raise CourseError(f"values must be finite numbers (one per seed), got {v.tolist()}")
    if v.size == 1:
        return SeedSummary(float(v[0]), 1, None, None, None, (float(v[0]),), confidence)
    mean, sem = float(v.mean()), float(st.sem(v))  # sem = s / √k, with s the ddof = 1 std
    if sem == 0:  # every seed gave the same number: the interval is that point
        low = high = mean
    else:
        low, high = (float(x) for x in st.t.interval(confidence, v.size - 1, loc=mean, scale=sem))
    return SeedSummary(mean, int(v.size), float(v.std(ddof=1)), low, high, tuple(float(x) for x in v), confidence)


@dataclass(frozen=True)
class SpreadTest:
    """The best-minus-worst accuracy over variants, and how often shuffling gives one as large."""

    spread: float
    n_variants: int
    n: int
    p_value: float

    def __str__(self) -> str:
        return (
            f"spread {self.spread:.3f} over {self.n_variants} variants (n = {self.n}), "
            f"permutation p = {self.p_value:.3g}"
        )


def spread_test(correct, *, n_resamples: int = 9_999, seed: int = 0) -> SpreadTest:
    """Permutation test of max − min accuracy over V variants scored on the same n examples.

    ``correct``: (V, n) 0/1. Under "the variants are exchangeable", each example's V outcomes can be shuffled
    among the variants; the p-value is the share of shuffles whose spread is at least the observed one. The
    range of many noisy accuracies is several standard errors wide by chance alone: this test accounts for it.
    """
    c = np.asarray(correct)
    if c.ndim != 2 or c.shape[0] < 2 or c.shape[1] == 0:
        raise CourseError(f"correct must be (variants ≥ 2, examples ≥ 1) of 0/1, got shape {c.shape}")
    c = np.stack([_outcomes(row, "each variant's outcomes") for row in c]).astype(float)

    def spread(*samples, axis=-1):
        acc = np.stack([x.mean(axis=axis) for x in samples])  # (V, …) accuracies
        return acc.max(axis=0) - acc.min(axis=0)

    # "samples": each example's V outcomes are permuted among the variants (a paired, V-sample design).
    # batch: shuffles per vectorised call, so that one call holds about 5e6 float64 values (40 MB): all 9,999 at
    # once held 9,999 × V × n values, several GB at V = 21, n = 872. Same shuffles, same p-value (the random
    # stream is drawn in the same order).
    res = st.permutation_test(
        tuple(c),
        spread,
        permutation_type="samples",
        n_resamples=n_resamples,
        alternative="greater",
        vectorized=True,
        random_state=np.random.default_rng(seed),
        batch=max(1, int(5e6 // c.size)),
    )
    return SpreadTest(float(res.statistic), int(c.shape[0]), int(c.shape[1]), float(res.pvalue))


@dataclass(frozen=True)
class SplitHalfSelection:
    """Best and worst variant chosen on the selection half, compared on the held-out half."""

    best: int  # index of the variant best on the selection half
    worst: int  # index of the variant worst on the selection half
    selection_spread: float  # best − worst accuracy on the selection half (optimistic: it was maximised there)
    held_out: PairedTest  # best vs worst on the other half, paired
    n_selection: int

    def __str__(self) -> str:
        return (
            f"chosen on {self.n_selection} examples: variant {self.best} best, {self.worst} worst "
            f"(spread there {self.selection_spread:.3f}); on the other {self.held_out.n}: {self.held_out}"
        )


def split_half_selection(correct, *, seed: int = 0, n_resamples: int | None = None) -> SplitHalfSelection:
    """Select best and worst of V variants on a random half of the n examples, test them on the other half.

    ``correct``: (V, n) 0/1 outcomes of every variant on the same examples. The spread measured where it was
    selected is biased upwards; the held-out paired test (``paired_test``) is what survives selection.
    ``n_resamples`` is accepted for callers of the bootstrap version and has no effect (the test is exact).
    """
    c = np.asarray(correct)
    if c.ndim != 2 or c.shape[0] < 2 or c.shape[1] < 4:
        raise CourseError(f"correct must be (variants ≥ 2, examples ≥ 4) of 0/1, got shape {c.shape}")
    c = np.stack([_outcomes(row, "each variant's outcomes") for row in c])
    order = np.random.default_rng(seed).permutation(c.shape[1])
    select, test = order[: c.shape[1] // 2], order[c.shape[1] // 2 :]
    acc = c[:, select].mean(axis=1)
    best, worst = int(np.argmax(acc)), int(np.argmin(acc))
    held_out = paired_test(c[best, test], c[worst, test])
    return SplitHalfSelection(best, worst, float(acc[best] - acc[worst]), held_out, int(select.size))


# ---------------------------------------------------------------------------------------------------
# Paired continuous values (chapter 01): the exact sign test and the interval for the median difference
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PairedValuesTest:
    """Two measurements of the same n items (a perplexity per sentence, twice): how sure "A > B" is.

    Defined in chapter 01. The summary is the median of the differences a − b, with the distribution-free
    interval that matches the exact sign test (see ``paired_values_test``); tied pairs (a == b) carry no sign
    and are left out of both, and counted.
    """

    median_difference: float  # median of the untied differences a − b
    low: float
    high: float
    n: int  # pairs given
    n_higher: int  # a > b
    n_lower: int  # a < b
    p_value: float
    confidence: float = 0.95
    test: str = "exact sign test"

    @property
    def n_tied(self) -> int:
        return self.n - self.n_higher - self.n_lower

    def verdict(self, names: tuple[str, str] = ("A", "B"), alpha: float = 0.05) -> str:
        """The arm the data rank higher at level ``alpha``, or no detectable difference at this n."""
        degenerate = "every pair is tied" if self.n_higher + self.n_lower == 0 else None
        return verdict_words(names, self.n_higher > self.n_lower, self.p_value, self.n, alpha, degenerate)

    def __str__(self) -> str:
        ties = f", {self.n_tied} tied" if self.n_tied else ""
        return (
            f"median Δ = {self.median_difference:+.4g}, {100 * self.confidence:g} % interval "
            f"[{self.low:+.4g}, {self.high:+.4g}] (n = {self.n}: {self.n_higher} higher, {self.n_lower} lower{ties}), "
            f"p = {self.p_value:.3g} ({self.test})"
        )


def paired_values_test(values_a, values_b, *, confidence: float = 0.95) -> PairedValuesTest:
    """Paired continuous values (one pair per item): the exact sign test and its interval for the median
    difference. Defined in chapter 01 (real vs shuffled sentences, one start token vs another).

    The differences d = a − b; ties (d = 0) are dropped, m remain. Under "the median difference is 0" each
    untied d is positive with probability ½, so the count of positives is Binomial(m, ½): the exact two-sided
    p-value (``scipy.stats.binomtest``). The interval [d_(k), d_(m+1−k)] (order statistics of the untied d) is
    the set of medians μ that the same test, applied to d − μ, does not reject: k is the largest integer with
    P(Binomial(m, ½) ≤ k − 1) ≤ (1 − confidence)/2, so it covers the median with probability ≥ confidence for
    any continuous distribution (no normality, no symmetry assumed), and it excludes 0 exactly when
    p ≤ 1 − confidence. Below 6 untied pairs no 95 % interval exists: (−inf, inf). (Wilcoxon's signed-rank
    test is more powerful when d is symmetric; the sign test needs no symmetry — per-sentence perplexities
    are skewed.)
    """
    a, b = np.asarray(values_a, dtype=float), np.asarray(values_b, dtype=float)
    if a.ndim != 1 or a.size == 0 or a.shape != b.shape:
        raise CourseError(
            f"a paired test needs two non-empty 1-D arrays of the same length (one value per item, in the same "
            f"order), got shapes {a.shape} and {b.shape}"
        )
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise CourseError("values_a and values_b must be finite numbers (a nan or inf has no sign)")
    if not 0 < confidence < 1:
        raise CourseError(f"confidence must be in (0, 1), got {confidence!r}")
    d = a - b
    d = np.sort(d[d != 0])
    m, higher = int(d.size), int((d > 0).sum())
    if m == 0:
        return PairedValuesTest(0.0, 0.0, 0.0, int(a.size), 0, 0, 1.0, confidence)
    p = float(st.binomtest(higher, m, 0.5).pvalue)
    k = int(st.binom.ppf((1 - confidence) / 2, m, 0.5))  # smallest k with P(Bin ≤ k) ≥ α/2 ...
    if st.binom.cdf(k, m, 0.5) > (1 - confidence) / 2:  # ... so P(Bin ≤ k − 1) ≤ α/2 holds for this k
        k -= 1
    k += 1  # as a 1-based order statistic: P(Bin(m, ½) ≤ k − 1) ≤ α/2
    low, high = (float(d[k - 1]), float(d[m - k])) if k >= 1 else (-np.inf, np.inf)
    return PairedValuesTest(float(np.median(d)), low, high, int(a.size), higher, m - higher, p, confidence)


# ---- paired continuous scores (chapter 04: per-example ROUGE) ---------------------------------------------------


@dataclass(frozen=True)
class PairedMeanTest:
    """Two methods' continuous scores (e.g. ROUGE-L F1) on the same n examples: means, mean difference, its
    Student-t interval and the matching paired t-test."""

    mean_a: float
    mean_b: float
    n: int
    difference: float  # mean of (a − b) = mean_a − mean_b
    low: float
    high: float
    p_value: float
    test: str = "paired t"

    @property
    def degenerate(self) -> bool:
        """True when every example gives both methods the same score: nothing separates them."""
        return self.low == self.high == self.difference == 0.0 and self.p_value == 1.0

    def verdict(self, names: tuple[str, str] = ("A", "B"), alpha: float = 0.05) -> str:
        """The course's wording of a paired verdict (as ``PairedTest.verdict``): rank only when p < alpha."""
        degenerate = "no example separates them" if self.degenerate else None
        return verdict_words(names, self.difference > 0, self.p_value, self.n, alpha, degenerate)

    def __str__(self) -> str:
        return (
            f"Δ mean = {self.difference:+.3f} [{self.low:+.3f}, {self.high:+.3f}] (n = {self.n}), "
            f"p = {self.p_value:.3g} ({self.test})"
        )


def paired_mean_test(scores_a, scores_b, *, confidence: float = 0.95) -> PairedMeanTest:
    """Two methods' continuous scores on the SAME examples: the paired t-test and the interval that matches it.

    Defined in chapter 04 (ROUGE of two summarisers, per document). The per-example differences d_i = a_i − b_i
    are the data: mean d̄, Student-t interval d̄ ± t_{n−1} s_d/√n and the two-sided one-sample t-test of
    "mean difference 0" (``scipy.stats.ttest_rel``, whose ``confidence_interval`` is that interval), so the
    interval excludes 0 exactly when p < 1 − confidence — one decision rule, as ``paired_test``'s. The t-test is
    about the *mean* difference; with bounded scores and a few dozen examples its normal approximation is
    rough, which is why ``n`` is printed beside it. Identical scores on every example: degenerate (p = 1).
    """
    a = np.asarray(scores_a, dtype=float)
    b = np.asarray(scores_b, dtype=float)
    if a.ndim != 1 or a.shape != b.shape:
        raise CourseError(
            f"a paired test needs both methods' scores on the SAME examples: got shapes {a.shape} and {b.shape}"
        )
    if a.size < 2:
        raise CourseError(f"a paired t-test needs at least 2 examples, got {a.size}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise CourseError("scores must be finite numbers, one per example")
    d = a - b
    # no spread in the differences beyond float64 rounding (a + 0.1 − a is not exactly 0.1 everywhere): the t
    # statistic is undefined (scipy would divide rounding noise by rounding noise)
    if np.ptp(d) <= 1e-12 * max(1.0, float(np.abs(d).max())):
        if np.abs(d).max() <= 1e-12:
            return PairedMeanTest(float(a.mean()), float(b.mean()), int(a.size), 0.0, 0.0, 0.0, 1.0)
        shift = float(d.mean())  # every example moves by the same nonzero amount: no sampling noise in it
        return PairedMeanTest(float(a.mean()), float(b.mean()), int(a.size), shift, shift, shift, 0.0)
    res = st.ttest_rel(a, b)
    ci = res.confidence_interval(confidence_level=confidence)
    return PairedMeanTest(
        float(a.mean()), float(b.mean()), int(a.size), float(d.mean()), float(ci.low), float(ci.high), float(res.pvalue)
    )


# ---------------------------------------------------------------------------------------------------
# One pooled paired test over several runs on the same examples (issue 28 item 5; taught in chapter 03)
# ---------------------------------------------------------------------------------------------------


POOLED_MIN_EXAMPLES = 10  # examples with a non-zero run-averaged difference the t approximation needs


@dataclass(frozen=True)
class PooledPairedTest:
    """Two arms compared over R runs (prompts, demonstration sets, orders …) on the SAME n examples, pooled.

    The unit is the example: ``n`` examples, each with its run-averaged difference. ``only_a`` / ``only_b``
    count (run, example) pairs where exactly one arm is right, summed over the runs.
    """

    accuracy_a: float  # mean over runs and examples
    accuracy_b: float
    n: int  # examples: the independent units of the test
    n_runs: int
    only_a: int
    only_b: int
    p_value: float
    difference: float  # accuracy_a − accuracy_b, averaged over the runs
    low: float
    high: float
    test: str = "paired t over examples of the run-averaged difference"
    smoke: bool = False
    names: tuple[str, str] = ("A", "B")  # the arms, for the verdict
    n_separating: int = 0  # examples whose run-averaged difference is not 0: the ones that carry evidence

    @property
    def degenerate(self) -> bool:
        """True when no (run, example) pair separates the arms."""
        return self.only_a + self.only_b == 0

    def verdict(self, names: tuple[str, str] | None = None, alpha: float = 0.05) -> str:
        """The course's one wording of a paired verdict (``PairedTest.verdict``), naming the arms; no verdict when
        fewer than ``POOLED_MIN_EXAMPLES`` examples separate the arms (the t approximation would rank too soon)."""
        if not self.degenerate and not self.smoke and self.n_separating < POOLED_MIN_EXAMPLES:
            return (
                f"too few separating examples ({self.n_separating} < {POOLED_MIN_EXAMPLES}) for the pooled test: "
                "compare run by run with paired_test"
            )
        return PairedTest.verdict(self, names or self.names, alpha)

    def __str__(self) -> str:
        if self.degenerate:
            return f"degenerate: over {self.n_runs} runs × {self.n} examples no pair separates the arms"
        return (
            f"pooled over {self.n_runs} runs: Δ = {self.difference:+.3f} [{self.low:+.3f}, {self.high:+.3f}] "
            f"(n = {self.n} examples, {self.only_a} vs {self.only_b} discordant run-example pairs), "
            f"p = {self.p_value:.3g} ({self.test})"
        )


def pooled_paired_test(
    correct_a, correct_b, *, confidence: float = 0.95, smoke: bool = False, names: tuple[str, str] = ("A", "B")
) -> PooledPairedTest:
    """ONE paired test of arm A against arm B pooled over R runs that share the same n examples.

    ``correct_a``, ``correct_b``: (R, n) 0/1 — run r's outcome on example i (a 1-D array is one run). For each
    example, d_i = mean over runs of (a_ri − b_ri) ∈ [−1, 1]; the pooled difference Δ = mean_i d_i is the
    accuracy difference averaged over the runs. The test is Student's paired t on the n values d_i
    (``scipy.stats.ttest_1samp``) with the t-interval that matches it (it excludes 0 exactly when
    p < 1 − confidence: one decision rule, as in ``paired_test``).

    What pooling assumes: (1) the examples are independent draws — the unit of evidence is the example, NOT the
    (run, example) pair: one example's outcomes over the runs may be correlated in any way (the same hard
    review fools every prompt), so concatenating the R·n pairs into one McNemar test would count one example R
    times and overstate n; (2) the runs are fixed: the verdict is about these R runs on average (these
    demonstration sets, these orders), not about a new one drawn at random, for which the runs themselves
    would have to be the units; (3) enough examples separate the arms for the mean of the bounded d_i to be near
    normal: with fewer than ``POOLED_MIN_EXAMPLES`` non-zero d_i the verdict declines to rank (for one run the
    t-test is then McNemar's asymptotic test, too eager at 4 vs 0; ``paired_test`` is exact).
    """
    a = np.atleast_2d(np.asarray(correct_a))
    b = np.atleast_2d(np.asarray(correct_b))
    if a.shape != b.shape or a.ndim != 2:
        raise CourseError(
            f"a pooled paired test needs both arms on the SAME runs and examples, (runs, examples) each: got "
            f"shapes {np.asarray(correct_a).shape} and {np.asarray(correct_b).shape}"
        )
    a = np.stack([_outcomes(row, "correct_a (each run)") for row in a])
    b = np.stack([_outcomes(row, "correct_b (each run)") for row in b])
    n_runs, n = a.shape
    if n < 2:
        raise CourseError(f"a pooled test over examples needs at least 2 examples, got {n}")
    d = (a.astype(float) - b.astype(float)).mean(axis=0)  # (n,) run-averaged difference per example
    only_a, only_b = int((a & ~b).sum()), int((b & ~a).sum())
    mean = float(d.mean())
    if float(d.std()) == 0.0:  # every example has the same difference: no spread to test against
        p, low, high = (1.0 if mean == 0 else 0.0), mean, mean
    else:
        res = st.ttest_1samp(d, 0.0)
        ci = res.confidence_interval(confidence_level=confidence)
        p, low, high = float(res.pvalue), float(ci.low), float(ci.high)
    return PooledPairedTest(
        float(a.mean()),
        float(b.mean()),
        int(n),
        int(n_runs),
        only_a,
        only_b,
        p,
        mean,
        low,
        high,
        smoke=smoke,
        names=tuple(names),
        n_separating=int((d != 0).sum()),
    )


# ---------------------------------------------------------------------------------------------------
# A verdict that presupposes a working prompt (chapter 08)
# ---------------------------------------------------------------------------------------------------


def no_verdict_unless_working(working: PairedTest, what: str, alpha: float = 0.05) -> str | None:
    """None when ``what`` (a trained prompt) beats its baseline, else the sentence saying why no verdict is drawn.

    Defined in chapter 08. Some verdicts presuppose a prompt that works — "the ensemble beats its best member",
    "transfer from RTE helps on CB", "the wayward prompt solves the task as well": with a prompt no better than
    zero-shot they compare noise. ``working`` is ``paired_test(prompt, baseline)`` on the *selection* split (data
    the verdict itself is not drawn on); the prompt works when it is higher there at ``alpha``. A smoke budget
    (``working.smoke``) never establishes it.
    """
    if working.smoke:
        return f"no verdict on {what}: {PROTOCOL_CHECK} (a verdict here presupposes a prompt shown to work)"
    if working.p_value < alpha and working.difference > 0:
        return None
    return (
        f"no verdict on {what}: it presupposes a working prompt, and on the selection split the prompt is not "
        f"higher than zero-shot (Δ = {working.difference:+.3f}, p = {working.p_value:.3g}, n = {working.n})"
    )


# ---------------------------------------------------------------------------------------------------
# An interaction per example: does a gap between two methods change from one test set to another? (chapter 07)
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InteractionTest:
    """(A − B on set 1) − (A − B on set 2), with a paired bootstrap within each set."""

    difference: float  # gap_1 − gap_2
    gap_1: float  # accuracy of A − accuracy of B on set 1
    gap_2: float
    n_1: int
    n_2: int
    low: float
    high: float
    p_value: float
    n_resamples: int
    confidence: float = 0.95
    smoke: bool = False
    n_separating: int = 0  # examples, over both sets, where A and B differ

    @property
    def degenerate(self) -> bool:
        """True when no example of either set separates A from B."""
        return self.n_separating == 0

    def verdict(self, names: tuple[str, str] = ("set 1", "set 2"), alpha: float = 0.05) -> str:
        """The course's one wording: which set's gap is the larger at level ``alpha``, or no detectable change."""
        degenerate = "no example of either set separates the two methods" if self.degenerate else None
        words = [f"the gap on {n}" for n in names]
        return verdict_words(tuple(words), self.difference > 0, self.p_value, self.n_1 + self.n_2, alpha, degenerate,
                             self.smoke)  # fmt: skip

    def __str__(self) -> str:
        sets = f"gaps {self.gap_1:+.3f} (n = {self.n_1}) and {self.gap_2:+.3f} (n = {self.n_2})"
        if self.smoke:
            return f"{PROTOCOL_CHECK} ({sets})"
        return (
            f"interaction Δ = {self.difference:+.3f} [{self.low:+.3f}, {self.high:+.3f}] ({sets}; "
            f"{100 * self.confidence:g} % paired bootstrap within each set, {self.n_resamples:,} resamples), "
            f"p = {self.p_value:.3g}"
        )


def interaction_test(a_1, b_1, a_2, b_2, *, n_resamples: int = 9_999, seed: int = 0, confidence: float = 0.95,
                     smoke: bool = False) -> InteractionTest:  # fmt: skip
    """Does method A's accuracy gap over B differ between two test sets? Per example, not over seeds.

    Defined in chapter 07 (a soft prompt vs full fine-tuning on short and on long sentences). ``a_1``, ``b_1``: the
    two methods' 0/1 outcomes on the SAME examples of set 1; ``a_2``, ``b_2``: on set 2 (other examples). The
    statistic is (mean a_1 − mean b_1) − (mean a_2 − mean b_2). Each resample draws set 1's examples with
    replacement, keeping each example's (A, B) pair together, and set 2's independently the same way — the two
    sets are independent samples, the two methods on one example are not. Interval: the percentile interval of
    the resampled statistic (order statistics, no interpolation); p-value: twice the smaller share of resamples
    at or beyond 0 on either side (at most 1), so the interval excludes 0 when p < 1 − confidence, up to the
    resampling's discreteness. ``smoke=True``: the gaps, printed as a protocol check.
    """
    a1, b1 = _pair(a_1, b_1)
    a2, b2 = _pair(a_2, b_2)
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int) or n_resamples < 99:
        raise CourseError(f"n_resamples must be a whole number ≥ 99, got {n_resamples!r}")
    d1, d2 = a1.astype(float) - b1, a2.astype(float) - b2  # per-example differences: −1, 0 or 1
    rng = np.random.default_rng(seed)
    boot = np.empty(n_resamples)
    for start in range(0, n_resamples, 1000):  # in blocks: n_resamples × n indices at once would be large
        k = min(1000, n_resamples - start)
        boot[start : start + k] = d1[rng.integers(0, d1.size, (k, d1.size))].mean(1) - d2[
            rng.integers(0, d2.size, (k, d2.size))
        ].mean(1)
    alpha = 1 - confidence
    ordered = np.sort(boot)
    low = float(ordered[max(0, int(np.floor(alpha / 2 * n_resamples)) - 1)])
    high = float(ordered[min(n_resamples - 1, int(np.ceil((1 - alpha / 2) * n_resamples)) - 1)])
    p = min(1.0, 2 * min(float((boot <= 0).mean()), float((boot >= 0).mean())))
    gap_1, gap_2 = float(d1.mean()), float(d2.mean())
    return InteractionTest(gap_1 - gap_2, gap_1, gap_2, int(d1.size), int(d2.size), low, high, p, n_resamples,
                           confidence, smoke, int((d1 != 0).sum() + (d2 != 0).sum()))  # fmt: skip

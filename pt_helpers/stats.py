"""Statistics that say how sure a comparison is, on top of ``scipy.stats`` (no hand-written distributions).

Used wherever the course ranks two numbers (chapters 03–08):

* ``accuracy_interval`` — an accuracy with n and its Wilson score interval (``scipy.stats.binomtest``);
* ``mcnemar_exact`` — two methods on the SAME examples: an exact binomial test on the examples where
  exactly one of them is right (McNemar 1947, exact form);
* ``paired_bootstrap`` — the difference of two methods' accuracies on the same examples, with a
  bootstrap interval (``scipy.stats.bootstrap``, paired: both methods resampled together);
* ``seed_interval`` — the mean over seeds with a bootstrap interval; one seed is "n/a (1 seed)";
* ``spread_test`` — is the best-minus-worst spread over several variants (templates, verbalisers …)
  more than noise? A permutation test that shuffles which variant each example's outcome belongs to;
* ``split_half_selection`` — pick the best and the worst variant on one half of the examples and test
  them, paired, on the other half (a selection is evaluated on data it did not see).

A ``PairedTest`` whose two arms are right and wrong on exactly the same examples is *degenerate*: the data
cannot tell them apart (for instance a random-weight model that ignores what the two arms change). It says
so instead of printing a difference of zero that reads like a finding.
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

    @property
    def degenerate(self) -> bool:
        """True when no example separates the arms: both right, or both wrong, on every example."""
        return self.only_a + self.only_b == 0

    def __str__(self) -> str:
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


def mcnemar_exact(correct_a, correct_b) -> PairedTest:
    """McNemar's exact test: under "no difference", each discordant example is A's or B's with probability ½."""
    a, b = _pair(correct_a, correct_b)
    only_a, only_b = int((a & ~b).sum()), int((b & ~a).sum())
    p = 1.0 if only_a + only_b == 0 else float(st.binomtest(only_a, only_a + only_b, 0.5).pvalue)
    return PairedTest(
        float(a.mean()), float(b.mean()), a.size, only_a, only_b, p, float(a.mean() - b.mean()), test="McNemar exact"
    )


def _bootstrap_mean_interval(values: np.ndarray, confidence: float, n_resamples: int, seed: int):
    """(low, high) percentile-bootstrap interval of the mean; values without variation give the point itself."""
    if np.all(values == values[0]):
        return float(values[0]), float(values[0])
    res = st.bootstrap(
        (values,),
        np.mean,
        n_resamples=n_resamples,
        confidence_level=confidence,
        method="percentile",
        random_state=np.random.default_rng(seed),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def paired_bootstrap(
    correct_a, correct_b, *, n_resamples: int = 10_000, confidence: float = 0.95, seed: int = 0
) -> PairedTest:
    """The accuracy difference A − B with a paired bootstrap interval (examples resampled, both methods
    together), and McNemar's exact p-value for the same pairs."""
    a, b = _pair(correct_a, correct_b)
    diff = a.astype(float) - b.astype(float)
    mc = mcnemar_exact(a, b)
    low, high = _bootstrap_mean_interval(diff, confidence, n_resamples, seed)
    return PairedTest(
        mc.accuracy_a,
        mc.accuracy_b,
        mc.n,
        mc.only_a,
        mc.only_b,
        mc.p_value,
        mc.difference,
        low,
        high,
        test="paired bootstrap + McNemar exact",
    )


@dataclass(frozen=True)
class SeedSummary:
    """A mean over seeds with a bootstrap interval; with one seed there is no spread to report."""

    mean: float
    n_seeds: int
    std: float | None
    low: float | None
    high: float | None

    def __str__(self) -> str:
        if self.n_seeds < 2:
            return f"{self.mean:.3f} (spread n/a (1 seed))"
        return f"{self.mean:.3f} ± {self.std:.3f} std [{self.low:.3f}, {self.high:.3f}] over {self.n_seeds} seeds"


def seed_interval(
    values: Sequence[float], *, confidence: float = 0.95, n_resamples: int = 10_000, seed: int = 0
) -> SeedSummary:
    """Mean of one number per seed, its std and a bootstrap interval of the mean; one seed: spread None."""
    v = np.asarray(values, dtype=float)
    if v.ndim != 1 or v.size == 0:
        raise CourseError("values must be a non-empty list of one number per seed")
    if v.size == 1:
        return SeedSummary(float(v[0]), 1, None, None, None)
    low, high = _bootstrap_mean_interval(v, confidence, n_resamples, seed)
    return SeedSummary(float(v.mean()), int(v.size), float(v.std(ddof=1)), low, high)


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


def split_half_selection(correct, *, seed: int = 0, n_resamples: int = 10_000) -> SplitHalfSelection:
    """Select best and worst of V variants on a random half of the n examples, test them on the other half.

    ``correct``: (V, n) 0/1 outcomes of every variant on the same examples. The spread measured where it was
    selected is biased upwards; the held-out paired test (``paired_bootstrap``) is what survives selection.
    """
    c = np.asarray(correct)
    if c.ndim != 2 or c.shape[0] < 2 or c.shape[1] < 4:
        raise CourseError(f"correct must be (variants ≥ 2, examples ≥ 4) of 0/1, got shape {c.shape}")
    c = np.stack([_outcomes(row, "each variant's outcomes") for row in c])
    order = np.random.default_rng(seed).permutation(c.shape[1])
    select, test = order[: c.shape[1] // 2], order[c.shape[1] // 2 :]
    acc = c[:, select].mean(axis=1)
    best, worst = int(np.argmax(acc)), int(np.argmin(acc))
    held_out = paired_bootstrap(c[best, test], c[worst, test], n_resamples=n_resamples, seed=seed)
    return SplitHalfSelection(best, worst, float(acc[best] - acc[worst]), held_out, int(select.size))

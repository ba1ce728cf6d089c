"""Checkers for the chapter exercises: ``from pt_helpers.exercises import ch01; ch01.check_1(answer)``.

Every checker returns a :class:`Feedback` that says "correct" or what is wrong, never just False.
One module per chapter (``ch01``, ``ch02``, …); each is tested against its reference solutions.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Feedback:
    """The verdict of a checker: ``correct`` and a message for the learner."""

    correct: bool
    message: str

    def __bool__(self) -> bool:
        return self.correct

    def __str__(self) -> str:
        return ("✅ correct — " if self.correct else "❌ not yet — ") + self.message

    def _repr_markdown_(self) -> str:  # shown as the cell's result in Jupyter
        return str(self)

    __repr__ = __str__


def correct(message: str = "well done.") -> Feedback:
    return Feedback(True, message)


def wrong(message: str) -> Feedback:
    return Feedback(False, message)


def close(value, expected, *, atol: float = 1e-4, rtol: float = 0.0, what: str = "your value") -> Feedback:
    """Compare a number (or array) to the expected one within ``atol + rtol · |expected|``, with a helpful
    message (rtol for values whose float32 round-off grows with their size, such as log-probabilities)."""
    import numpy as np

    try:
        value_arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        return wrong(f"{what} should be a number or an array of numbers, got {type(value).__name__}.")
    expected_arr = np.asarray(expected, dtype=float)
    if value_arr.shape != expected_arr.shape:
        return wrong(f"{what} has shape {value_arr.shape}, expected {expected_arr.shape}.")
    if np.allclose(value_arr, expected_arr, atol=atol, rtol=rtol):
        return correct(f"{what} matches to within {atol:g}" + (f" + {rtol:g}·|value|." if rtol else "."))
    err = float(np.max(np.abs(value_arr - expected_arr)))
    return wrong(f"{what} is off by up to {err:.3g} (tolerance {atol:g}" + (f" + {rtol:g}·|value|)." if rtol else ")."))

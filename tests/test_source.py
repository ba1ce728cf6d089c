"""Tests of pt_helpers.source: package code shown by named markers. That every marker a notebook shows exists,
and every marker the package defines is shown, is tests/test_notebook_conventions.py's check."""

from __future__ import annotations

import pytest

from pt_helpers import training
from pt_helpers.errors import CourseError
from pt_helpers.source import source_of


def test_a_marked_region_is_printed_dedented_without_its_marker_lines():
    loop = source_of(training.fit, "training-loop")
    assert loop.startswith("for step, idx in enumerate(batches, 1):\n")  # dedented to the region's own level
    assert "# [training-loop]" not in loop and "# [/training-loop]" not in loop
    whole = source_of(training.fit)  # the whole function, its marker lines dropped
    assert whole.startswith("def fit(") and "# [training-loop]" not in whole and "def fit(" not in loop
    body = [line.strip() for line in whole.splitlines()]
    assert all(line.strip() in body for line in loop.splitlines())  # the region is a piece of the function
    assert len(loop.splitlines()) < len(whole.splitlines())


def test_a_missing_marker_is_a_clear_error_naming_the_ones_there():
    with pytest.raises(
        CourseError, match=r"no region '# \[no-such\]' in 'fit'; its marked regions: \['training-loop'\]"
    ):
        source_of(training.fit, "no-such")

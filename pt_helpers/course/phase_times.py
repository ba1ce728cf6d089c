"""A pytest plugin for CI: where the suite's time goes, by phase (unit tests, each notebook) and slowest cells.

`make test` loads it with ``-p pt_helpers.course.phase_times``; at the end pytest prints a "phase times"
section: the unit tests' total, each notebook's total (the sum of its cells, as nbval runs them one item per
cell) and the slowest notebook cells. Times are wall seconds of setup + call + teardown per item, the same
numbers ``--durations`` reports, summed. (Course tooling: no notebook imports it.)
"""

from __future__ import annotations

from collections import defaultdict

import pytest

SLOWEST_CELLS = 10


class PhaseTimes:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)  # nodeid -> seconds over its phases

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report) -> None:
        self.seconds[report.nodeid] += report.duration

    def summary(self) -> tuple[dict[str, tuple[int, float]], list[tuple[str, float]]]:
        """Phase name -> (items, seconds), and the slowest notebook cells (node id, seconds)."""
        phases: dict[str, list] = defaultdict(lambda: [0, 0.0])
        cells = []
        for nodeid, seconds in self.seconds.items():
            path = nodeid.split("::", 1)[0]
            phase = path if path.endswith(".ipynb") else "unit tests (tests/)"
            phases[phase][0] += 1
            phases[phase][1] += seconds
            if path.endswith(".ipynb"):
                cells.append((nodeid, seconds))
        cells.sort(key=lambda c: -c[1])
        return {k: (n, s) for k, (n, s) in sorted(phases.items())}, cells[:SLOWEST_CELLS]

    @pytest.hookimpl
    def pytest_terminal_summary(self, terminalreporter) -> None:
        phases, cells = self.summary()
        if not phases:
            return
        tr = terminalreporter
        tr.section("phase times (wall s: setup + call + teardown, summed per item)")
        notebooks = sum(s for k, (_, s) in phases.items() if k.endswith(".ipynb"))
        for name, (n, seconds) in phases.items():
            tr.write_line(f"{seconds:8.1f} s  {n:5d} items  {name}")
        tr.write_line(f"{notebooks:8.1f} s  all notebooks together")
        if cells:
            tr.write_line("slowest notebook cells:")
            for nodeid, seconds in cells:
                tr.write_line(f"{seconds:8.1f} s  {nodeid}")


def pytest_configure(config) -> None:
    config.pluginmanager.register(PhaseTimes(), "pt_phase_times")

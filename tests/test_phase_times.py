"""The CI plugin that prints where the suite's time goes (pt_helpers/course/phase_times.py)."""

import subprocess
import sys
from types import SimpleNamespace

from pt_helpers.course.phase_times import PhaseTimes


def test_summary_splits_unit_tests_from_each_notebook_and_ranks_cells():
    times = PhaseTimes()
    for nodeid, duration in [
        ("tests/test_a.py::test_x", 1.0),
        ("tests/test_a.py::test_x", 0.5),  # setup and call of one item add up
        ("tests/test_b.py::test_y", 2.0),
        ("notebooks/01_a.ipynb::Cell 0", 3.0),
        ("notebooks/01_a.ipynb::Cell 1", 7.0),
        ("notebooks/02_b.ipynb::Cell 0", 4.0),
    ]:
        times.pytest_runtest_logreport(SimpleNamespace(nodeid=nodeid, duration=duration))
    phases, cells = times.summary()
    assert phases == {
        "notebooks/01_a.ipynb": (2, 10.0),
        "notebooks/02_b.ipynb": (1, 4.0),
        "unit tests (tests/)": (2, 3.5),
    }
    assert cells[0] == ("notebooks/01_a.ipynb::Cell 1", 7.0) and len(cells) == 3


def test_pytest_prints_the_phase_times_section(tmp_path):
    (tmp_path / "test_tiny.py").write_text("def test_ok():\n    assert True\n")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "pt_helpers.course.phase_times",
            str(tmp_path / "test_tiny.py"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "phase times" in out.stdout and "unit tests (tests/)" in out.stdout

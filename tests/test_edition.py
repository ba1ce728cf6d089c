"""Tests of the executed edition (pt_helpers.course.edition, run.run_edition): hashes, stale marks, the record.

The last tests read the committed ``edition/``: a chapter whose source changed since its executed copy was made
is *named* (a warning in the test report, and "stale" on the index), never a failure — ``make edition`` refreshes it.
"""

from __future__ import annotations

import json
import sys
import warnings

import nbformat
import pytest

from pt_helpers.course import edition as ed
from pt_helpers.course import run
from pt_helpers.errors import SiteError
from pt_helpers.project import NOTEBOOKS_DIR


def _notebook(path, sources, outputs=None):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell(sources[0])] + [nbformat.v4.new_code_cell(s) for s in sources[1:]]
    for cell, outs in zip(nb.cells[1:], outputs or [], strict=False):
        cell.outputs = outs
    nbformat.write(nb, path)
    return path


def test_source_hash_follows_the_cells_not_their_outputs(tmp_path):
    a = _notebook(tmp_path / "01_a.ipynb", ["# A", "x = 1"])
    b = _notebook(
        tmp_path / "01_b.ipynb", ["# A", "x = 1"], [[nbformat.v4.new_output("stream", name="stdout", text="1\n")]]
    )
    assert ed.source_sha256(a) == ed.source_sha256(b)  # outputs, execution counts, ids: not the source
    c = _notebook(tmp_path / "01_c.ipynb", ["# A", "x = 2"])
    d = _notebook(tmp_path / "01_d.ipynb", ["x = 1", "# A"])  # same texts, other cell types
    assert len({ed.source_sha256(a), ed.source_sha256(c), ed.source_sha256(d)}) == 3


def test_strip_keeps_outputs_and_drops_widget_state(tmp_path):
    widget = {"application/vnd.jupyter.widget-view+json": {"model_id": "abc"}}
    bar = nbformat.v4.new_output("display_data", data=dict(widget))  # a progress bar: nothing but the widget
    both = nbformat.v4.new_output("display_data", data=dict(widget, **{"text/plain": "HBox(…)"}))
    text = nbformat.v4.new_output("stream", name="stdout", text="loss 0.5\n")
    path = _notebook(tmp_path / "01_a.ipynb", ["# A", "fit()"], [[bar, both, text]])
    nb = nbformat.read(path, as_version=4)
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {"abc": {}}}}
    nb.metadata["papermill"] = {"input_path": str(tmp_path / "in.ipynb"), "duration": 3.0}
    nb.cells[1].metadata["papermill"] = {"start_time": "t"}
    out = ed.strip_for_edition(nb, root=tmp_path)
    assert "widgets" not in out.metadata and "papermill" not in out.cells[1].metadata
    assert [o.output_type for o in out.cells[1].outputs] == ["display_data", "stream"]
    assert out.cells[1].outputs[0].data == {"text/plain": "HBox(…)"}
    assert out.metadata["papermill"] == {"input_path": "in.ipynb", "duration": 3.0}
    nbformat.validate(out)


def _course(tmp_path):
    notebooks, edition = tmp_path / "notebooks", tmp_path / "edition"
    notebooks.mkdir()
    for name in ("01_a", "02_b", "03_c", "04_d"):
        _notebook(notebooks / f"{name}.ipynb", [f"# {name}", "x = 1"])
    done = dict(seconds=100.0, cpu_seconds=150.0, peak_rss_mib=1000, status="completed")
    meta = dict(date="2026-12-07", commit="abc", device="cpu", threads=2)
    for name in ("01_a", "02_b", "05_gone"):
        src = notebooks / f"{name}.ipynb"
        if not src.exists():
            _notebook(src, ["# gone"])
        ed.store_chapter(edition, src, src, done, meta)
    ed.store_chapter(edition, None, notebooks / "04_d.ipynb", dict(done, status="exit status 1"), meta)
    (notebooks / "05_gone.ipynb").unlink()  # removed from the course since
    _notebook(notebooks / "02_b.ipynb", ["# 02_b", "x = 2"])  # edited since its run
    return notebooks, edition


def test_edition_status_names_stale_missing_failed_and_removed_chapters(tmp_path):
    notebooks, edition = _course(tmp_path)
    assert ed.edition_status(edition, notebooks) == {
        "01_a.ipynb": "current",
        "02_b.ipynb": "stale",
        "03_c.ipynb": "missing",
        "04_d.ipynb": "failed",
        "05_gone.ipynb": "removed",
    }
    assert "02_b.ipynb: stale" in ed.describe_status(ed.edition_status(edition, notebooks))
    index = ed.write_index(edition, notebooks).read_text(encoding="utf-8")
    assert "| 02 | [02_b.ipynb](02_b.ipynb) | **stale** |" in index
    assert "| 01 | [01_a.ipynb](01_a.ipynb) | current |" in index and "not in this edition" in index
    assert "FAILED: exit status 1" in index and "commit: `abc`" in index
    assert ed.edition_status(tmp_path / "none", notebooks)["01_a.ipynb"] == "missing"
    (edition / "edition.json").write_text("{not json")
    with pytest.raises(SiteError, match="make edition"):
        ed.edition_status(edition, notebooks)


def test_budget_checks():
    record = {
        "chapters": {
            "01_a.ipynb": dict(seconds=599.0, cpu_seconds=600.0, peak_rss_mib=3072, status="completed"),
            "02_b.ipynb": dict(seconds=1201.0, cpu_seconds=500.0, peak_rss_mib=3073, status="completed"),
            "03_c.ipynb": dict(seconds=5.0, peak_rss_mib=1, status="exit status 1"),
        }
    }
    assert ed.budget_checks(record) == {
        "01_a.ipynb": {"time": True, "time_cpu": True, "memory": True},
        "02_b.ipynb": {"time": False, "time_cpu": True, "memory": False},
        "03_c.ipynb": {"time": None, "time_cpu": None, "memory": None},
    }
    index = ed.render_index(record)
    assert "20 min 01 s (> 10 min wall under load; CPU time within, > 3 GiB)" in index


def test_run_edition_executes_measures_and_records(tmp_path, capsys):
    """The whole path on a two-notebook course: one runs (with its profile parameter), one fails."""
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    nb = nbformat.read(_notebook(notebooks / "01_ok.ipynb", ["# OK · 好", 'profile = "auto"', "print(profile)"]), 4)
    nb.cells[1].metadata["tags"] = ["parameters"]
    nbformat.write(nb, notebooks / "01_ok.ipynb")
    _notebook(notebooks / "02_bad.ipynb", ["# Bad", "raise ValueError('planted')"])
    record = run.run_edition(["all"], edition_dir=tmp_path / "edition", notebooks_dir=notebooks, threads=1)
    ok, bad = record["chapters"]["01_ok.ipynb"], record["chapters"]["02_bad.ipynb"]
    assert ok["status"] == "completed" and bad["status"] == "exit status 1"
    assert ok["seconds"] > 0 and ok["cpu_seconds"] > 0 and ok["peak_rss_mib"] > 30  # the kernel, not just us
    assert ok["source_sha256"] == ed.source_sha256(notebooks / "01_ok.ipynb")
    assert ok["weights"]["status"] == "no model" and record["threads"] == 1 and record["profile"] == "quick"
    printed = nbformat.read(tmp_path / "edition" / "01_ok.ipynb", 4).cells
    assert any("quick" in o.get("text", "") for c in printed if c.cell_type == "code" for o in c.outputs)
    assert not (tmp_path / "edition" / "02_bad.ipynb").exists()
    assert ed.edition_status(tmp_path / "edition", notebooks) == {"01_ok.ipynb": "current", "02_bad.ipynb": "failed"}
    assert "01_ok.ipynb" in (tmp_path / "edition" / "README.md").read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------------------------------
# The committed edition
# ---------------------------------------------------------------------------------------------------------


def _committed():
    record = ed.load_edition()
    if not record:
        pytest.skip("no executed edition committed yet (make edition)")
    return record


def test_the_committed_edition_names_its_stale_chapters():
    """Names every chapter whose source changed since its executed copy was made; stale is reported, not failed."""
    _committed()
    status = ed.edition_status()
    odd = {n: s for n, s in status.items() if s in ("stale", "missing", "removed")}
    if odd:
        warnings.warn(f"executed edition not current (refresh with `make edition`): {odd}", stacklevel=1)
        print(f"edition: {ed.describe_status(status)}", file=sys.stderr)
    assert set(status) >= {p.name for p in NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb")}


def test_the_committed_edition_is_whole_small_and_readable():
    record = _committed()
    assert {"date", "commit", "device", "threads", "versions", "package_sha256"} <= set(record)
    total = 0
    for name, entry in record["chapters"].items():
        assert {"seconds", "cpu_seconds", "peak_rss_mib", "status", "source_sha256", "load_before"} <= set(entry)
        assert len(entry["source_sha256"]) == 64
        if entry["status"] != "completed":
            continue
        path = ed.EDITION_DIR / name
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        assert "widgets" not in nb.metadata, f"{name}: widget state left in the edition"
        assert any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), f"{name} has no outputs"
        assert entry["weights"]["status"] in ("pretrained", "mixed", "random", "no model")
        total += path.stat().st_size
    assert total <= ed.EDITION_MAX_BYTES, f"the edition holds {total / 2**20:.1f} MiB; strip large outputs"
    index = (ed.EDITION_DIR / ed.EDITION_INDEX).read_text(encoding="utf-8")
    for name in record["chapters"]:
        assert f"]({name})" in index
    assert json.loads((ed.EDITION_DIR / ed.EDITION_RECORD).read_text(encoding="utf-8")) == record


def test_a_changed_package_is_reported_not_counted_as_stale(tmp_path):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    src = _notebook(notebooks / "01_a.ipynb", ["# A", "x = 1"])
    done = dict(seconds=1.0, cpu_seconds=1.0, peak_rss_mib=100, status="completed")
    ed.store_chapter(tmp_path / "edition", src, src, done, {"package_sha256": ed.package_sha256()})
    assert ed.package_changed(tmp_path / "edition") is False
    ed.store_chapter(tmp_path / "edition", src, src, done, {"package_sha256": "0" * 64})
    assert ed.package_changed(tmp_path / "edition") is True
    assert ed.edition_status(tmp_path / "edition", notebooks) == {"01_a.ipynb": "current"}
    args = ["check", "--json", "--edition-dir", str(tmp_path / "edition"), "--notebooks-dir", str(notebooks)]
    assert ed.main(args) == 0
    assert ed.package_changed(tmp_path / "nothing") is None


def test_the_package_hash_leaves_the_course_tooling_out(tmp_path):
    pkg = tmp_path / "pt_helpers"
    (pkg / "course").mkdir(parents=True)
    (pkg / "icl.py").write_text("x = 1\n")
    (pkg / "course" / "run.py").write_text("y = 1\n")
    before = ed.package_sha256(pkg)
    (pkg / "course" / "run.py").write_text("y = 2\n")
    assert ed.package_sha256(pkg) == before
    (pkg / "icl.py").write_text("x = 2\n")
    assert ed.package_sha256(pkg) != before

"""Tests of pt_helpers.project: paths anchored at the project, atomic writes, and the one table of retired
names through which files written before a rename are read (notebooks/glossary.md, its "In code" column)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import pt_helpers
from pt_helpers import project
from pt_helpers.project import RENAMED_RESULTS, RENAMED_SETTINGS, RETIRED_NAMES, atomic_write_json, renamed_keys
from pt_helpers.results import build_dir


def test_build_dir_is_the_projects_whatever_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = build_dir("ch_test")
    assert path.is_dir() and path == Path(pt_helpers.__file__).resolve().parents[1] / "build" / "ch_test"
    path.rmdir()


def test_an_atomic_write_leaves_the_old_file_when_it_fails(tmp_path):
    path = atomic_write_json(tmp_path / "sub" / "record.json", {"max_steps": 3})
    assert json.loads(path.read_text()) == {"max_steps": 3}
    with pytest.raises(TypeError):  # not JSON-able: fails before anything is replaced
        atomic_write_json(path, {"max_steps": object()})
    assert json.loads(path.read_text()) == {"max_steps": 3} and [p.name for p in path.parent.iterdir()] == [path.name]


def test_retired_keys_are_read_under_their_current_names():
    old = {"trained_params": 7, "method": "soft", "steps": 2}
    assert renamed_keys(old) == {"n_trainable": 7, "method": "soft", "steps": 2}  # "steps" depends on its place
    assert renamed_keys(old, RENAMED_RESULTS)["steps_run"] == 2
    assert renamed_keys({"steps": 300}, RENAMED_SETTINGS) == renamed_keys({"train_steps": 300}) == {"max_steps": 300}
    assert renamed_keys({"trained_params": 1, "n_trainable": 2}) == {"n_trainable": 2}  # the current name wins
    assert old == {"trained_params": 7, "method": "soft", "steps": 2}  # the record itself is not changed
    # every retired name maps to a current identifier, never to another retired one
    assert not set(RETIRED_NAMES.values()) & set(RENAMED_SETTINGS) and project.RETIRED_NAMES is RETIRED_NAMES

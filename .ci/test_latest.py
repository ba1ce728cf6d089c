"""The drift check behind ``make test-latest``: the unit tests under the newest releases pyproject allows.

Run by the Makefile with the separate environment's Python (``.venv-latest``, built from the newest torch,
transformers, PEFT, accelerate and datasets that pyproject.toml admits; every other package at its
``.ci/constraints.txt`` pin). It

1. prints, for each of those libraries (and the Hugging Face packages they drag along), the version CI pins
   and the version found here, marking every newer one;
2. runs the unit tests that are not marked slow (``pytest -m "not slow"``), with CI's environment variables;
3. reruns each failing test under the pinned environment (``--baseline-python``, default ``.venv/bin/python``):
   a test that fails there too is not drift; one that passes there is broken by a newer version, and the
   newer packages its traceback passes through are named as the likely cause;
4. with ``--record FILE``: writes all of it (date, command, load average, machine, versions, counts,
   failures) as JSON, atomically.

Exit status: 0 when no test is broken by a newer version, 1 otherwise, 2 when pytest itself could not run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONSTRAINTS = ROOT / ".ci" / "constraints.txt"
# what `make test-latest` lifts to the newest allowed release, and the Hugging Face packages that follow them
LATEST = ("torch", "transformers", "peft", "accelerate", "datasets")
FOLLOWERS = ("tokenizers", "huggingface_hub", "safetensors", "hf-xet", "fsspec")
CI_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "PT_RANDOM_FALLBACK": "1",
    "PT_MODELS_DIR": str(ROOT.parent / "shared" / "models"),
}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned_versions(path: Path = CONSTRAINTS) -> dict[str, str]:
    """``{normalised name: version}`` of every ``name==version`` line of the constraints file, and torch's pin
    from the Makefile."""
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        found = re.match(r"\s*([A-Za-z0-9_.-]+)==([^\s#;]+)", line)
        if found:
            pins[_norm(found.group(1))] = found.group(2)
    # torch is pinned by the Makefile (TORCH_SPEC, installed before the constraints), not in the constraints file
    torch_spec = re.search(r"^TORCH_SPEC \?= torch==(\S+)", (ROOT / "Makefile").read_text(encoding="utf-8"), re.M)
    if torch_spec and "torch" not in pins:
        pins["torch"] = torch_spec.group(1)
    return pins


def installed_versions(names) -> dict[str, str | None]:
    out = {}
    for name in names:
        try:
            out[_norm(name)] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[_norm(name)] = None
    return out


def _key(version: str) -> tuple:
    """A sort key good enough for release numbers (2.13.0+cpu → (2, 13, 0))."""
    return tuple(int(p) for p in re.findall(r"\d+", version.split("+")[0])[:4])


def version_table(pins: dict[str, str], here: dict[str, str | None]) -> list[dict]:
    rows = []
    for name, version in here.items():
        pin = pins.get(name)
        newer = bool(version and pin and _key(version) > _key(pin))
        rows.append(dict(package=name, pinned=pin, latest_env=version, newer=newer))
    return rows


def _rounded(values) -> list[float]:
    return [round(x, 2) for x in values]


def run_pytest(python: str, args: list[str], junit: Path, env: dict[str, str]) -> int:
    cmd = [python, "-m", "pytest", "-p", "no:cacheprovider", "-q", f"--junitxml={junit}", *args]
    print("$", " ".join(cmd), flush=True)
    return subprocess.call(cmd, cwd=ROOT, env=env)


def read_junit(junit: Path) -> tuple[dict[str, int], list[dict]]:
    """(counts, failures) of a pytest JUnit XML file; each failure has its node id, message and traceback."""
    root = ET.parse(junit).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    failures = []
    for case in suite.iter("testcase"):
        for tag in ("failure", "error"):
            bad = case.find(tag)
            if bad is not None:
                path = case.get("classname", "").replace(".", "/") + ".py"
                failures.append(
                    dict(
                        test=f"{path}::{case.get('name')}",
                        kind=tag,
                        message=(bad.get("message") or "").splitlines()[0][:300] if bad.get("message") else "",
                        traceback=bad.text or "",
                    )
                )
    return counts, failures


def implicated(traceback: str, newer: list[str]) -> list[str]:
    """The newer packages whose installed files the traceback passes through (site-packages/<module>/)."""
    hits = []
    for name in newer:
        module = {"huggingface-hub": "huggingface_hub", "hf-xet": "hf_xet"}.get(name, name.replace("-", "_"))
        if re.search(rf"site-packages[/\\]{re.escape(module)}[/\\]", traceback):
            hits.append(name)
    return hits


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline-python", default=str(ROOT / ".venv" / "bin" / "python"))
    p.add_argument("--record", default=None, help="write the result as JSON here")
    p.add_argument("pytest_args", nargs="*", default=["-m", "not slow", "tests"])
    a = p.parse_args(argv)

    env = {**os.environ, **{k: os.environ.get(k, v) for k, v in CI_ENV.items()}, "PYTHONPATH": str(ROOT)}
    env.setdefault("PT_RESULTS_DIR", tempfile.mkdtemp(prefix="pt-latest-results-"))
    pins = pinned_versions()
    rows = version_table(pins, installed_versions(LATEST + FOLLOWERS))
    print("\npackage            pinned for CI (constraints, Makefile)  this environment")
    for r in rows:
        print(f"{r['package']:<18} {r['pinned'] or '-':<37} {r['latest_env'] or '-'}{'   NEWER' if r['newer'] else ''}")
    newer = [r["package"] for r in rows if r["newer"]]
    started = dt.datetime.now(dt.timezone.utc)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        rc = run_pytest(sys.executable, a.pytest_args, Path(tmp) / "latest.xml", env)
        if not (Path(tmp) / "latest.xml").is_file():
            print(f"pytest did not run (exit {rc})", file=sys.stderr)
            return 2
        counts, failures = read_junit(Path(tmp) / "latest.xml")
        seconds = (dt.datetime.now(dt.timezone.utc) - started).total_seconds()
        load_after = os.getloadavg()
        baseline = {}
        if failures and Path(a.baseline_python).is_file():
            ids = sorted({f["test"] for f in failures})
            run_pytest(a.baseline_python, ids, Path(tmp) / "pinned.xml", env)
            if (Path(tmp) / "pinned.xml").is_file():
                _, again = read_junit(Path(tmp) / "pinned.xml")
                failing_pinned = {f["test"] for f in again}
                baseline = {t: (t in failing_pinned) for t in ids}
    for f in failures:
        f["fails_on_pins_too"] = baseline.get(f["test"])
        f["newer_packages_in_traceback"] = implicated(f.pop("traceback"), newer)
    drift = [f for f in failures if f["fails_on_pins_too"] is False]
    print(f"\n{counts['passed']} passed, {counts['failures'] + counts['errors']} failed, {counts['skipped']} skipped")
    for f in failures:
        cause = ", ".join(f["newer_packages_in_traceback"]) or "no newer package in its traceback"
        where = {True: "fails on the pins too", False: "PASSES on the pins", None: "not rerun on the pins"}
        print(f"  {f['test']}: {where[f['fails_on_pins_too']]}; {cause}\n      {f['message']}")
    if drift:
        print("\nBroken by a newer version: " + ", ".join(f["test"] for f in drift))
    if a.record:
        record = dict(
            date=started.strftime("%Y-%m-%d %H:%M UTC"),
            command=" ".join(
                ["make test-latest"]
                + [f"{k}={os.environ[k]!r}" for k in ("LATEST_TORCH_SPEC", "TEST_LATEST_ARGS") if os.environ.get(k)]
            ),
            python=platform.python_version(),
            machine=f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
            threads=dict(OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS")),
            load_average_1_5_15={"before": _rounded(load_before), "after": _rounded(load_after)},
            seconds=round(seconds, 1),
            pytest_args=a.pytest_args,
            versions=rows,
            counts=counts,
            failures=failures,
            broken_by_newer_versions=[f["test"] for f in drift],
        )
        out = Path(a.record)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        tmp.replace(out)
        print(f"recorded in {out}")
    return 1 if drift else 0


if __name__ == "__main__":
    sys.exit(main())

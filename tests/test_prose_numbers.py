"""Numbers in the prose of chapters 04–08 agree with the recorded runs they quote.

A number in markdown is either printed by its cell (then the prose does not repeat it) or quoted from a
recorded run — a file under ``benchmarks/records`` or the "Measured accuracy runs" table of
``benchmarks/README.md`` — and checked here against that record. The last test is the guard: any other result
number written into the markdown of 04–08 (three or more decimals, a p-value, a speed ratio) fails until it
is checked here too. (It once read "probe 0.804" while the run printed 0.803.)
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import numpy as np
import pytest
from _records import load_record

from pt_helpers.stats import PairedMeanTest, PairedTest, paired_test

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
RECORDS = ROOT / "benchmarks" / "records"


def _markdown(stem: str) -> str:
    (path,) = NOTEBOOKS.glob(f"{stem}_*.ipynb")
    nb = nbformat.read(path, as_version=4)
    return "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


def _flat(text: str) -> str:
    """Markdown with line breaks folded into spaces (a quoted phrase may wrap)."""
    return re.sub(r"\s+", " ", text)


def _discordant(only_a: int, only_b: int, n: int):
    a, b = np.ones(n, dtype=int), np.ones(n, dtype=int)
    b[:only_a] = 0
    a[only_a : only_a + only_b] = 0
    return a, b


def _signed(x: float) -> str:
    return f"{x:+.3f}"


# ---- chapter 05, section 3: the position ratio is a first-order estimate; the records exceed it ----------


def _soft_prompt_step_row(n: int) -> dict:
    # the GPT-2-sized row (05 quotes it); a SmolLM2 row of the same script names its model in its variant
    (record,) = [r for r in json.loads((RECORDS / "soft_prompt_step.json").read_text()) if "model=" not in r["variant"]]
    (row,) = [r for r in record["rows"] if r["n"] == n]
    return row


def _growth_rows(layers: int) -> dict:
    records = json.loads((RECORDS / "soft_prompt_growth.json").read_text())
    gpt2_sized = [r for r in records if "RANDOM weights, " in r["model"]]
    (record,) = [r for r in gpt2_sized if r["model"].split("RANDOM weights, ")[1].startswith(f"{layers} layers")]
    return record["sweeps"]


def ch05_position_ratio_numbers() -> list[str]:
    """The strings 05's prose quotes, computed from the records (GPT-2-small size: 12 layers × 768)."""
    step = _soft_prompt_step_row(100)
    assert step["cpu_speedup"] > step["position_ratio"], "the record no longer exceeds the position ratio"
    (n200,) = [r for r in _growth_rows(12)["n_virtual"] if r["n"] == 200]
    wall = n200["wall_s"]["peft"] / n200["wall_s"]["ours"]
    positions = n200["positions"]["peft"] / n200["positions"]["ours"]
    assert wall > positions
    below = [r for r in _growth_rows(12)["batch"] if r["B"] in (1, 4)]
    assert len(below) == 2 and all(
        r["cpu_s"]["peft"] / r["cpu_s"]["ours"] < r["positions"]["peft"] / r["positions"]["ours"] for r in below
    ), "the prose says the measured ratio is below the position ratio at n = 20, B = 1–4"
    return [
        f"{step['cpu_speedup']:.2f}× against {step['position_ratio']:.2f}× positions",
        f"$n = {step['n']}$, $B = {step['B']}$",
        f"{wall:.1f}× wall time against {positions:.1f}× positions",
        "below it at $n = 20$, $B = 1$–4",
    ]


def test_chapter_05_quotes_the_recorded_position_ratios():
    prose = _flat(_markdown("05"))
    assert "first-order estimate" in prose and "upper bound" not in prose
    for quoted in ch05_position_ratio_numbers():
        assert quoted in prose, f"05 should quote {quoted!r} (from benchmarks/records)"


# ---- chapter 04, section 6: the MiniLM grid on all 872 SST-2 dev sentences (benchmarks/README.md) --------


def _readme_row(startswith: str) -> str:
    readme = (ROOT / "benchmarks" / "README.md").read_text(encoding="utf-8")
    (row,) = [ln for ln in readme.splitlines() if ln.startswith(startswith)]
    return row


def ch04_872_numbers() -> list[str]:
    row = _readme_row("| notebook 04 §6")
    spread, sds = re.search(r"spread (0\.\d+) = ([\d.]+) standard errors", row).groups()
    perm_p = re.search(r"permutation p = ([\d.]+)", row).group(1)
    delta, low, high, only_a, only_b, p = re.search(
        r"Δ = ([+−-][\d.]+) \[([+−-][\d.]+), ([+−-][\d.]+)\], (\d+) vs (\d+) discordant, McNemar p = ([\d.e-]+)", row
    ).groups()
    n = int(re.search(r"on the other (\d+):", row).group(1))
    # the course's one rule, on the recorded counts: the interval the prose quotes today
    test = paired_test(*_discordant(int(only_a), int(only_b), n))
    assert _signed(test.difference) == delta and f"{test.p_value:.3g}" == f"{float(p):.3g}"
    mantissa, exponent = f"{test.p_value:.1e}".split("e")
    return [
        f"spread is smaller, {spread}",
        f"it is {sds} standard errors",
        f"p-value is {perm_p}",
        f"by {delta} [{_signed(test.low)}, {_signed(test.high)}]",
        f"n = {n}, {only_a} vs {only_b} discordant, McNemar p = {mantissa}e{int(exponent)}",
        f"[{low}, {high}]",  # the bootstrap interval the record printed, quoted as such
    ]


def test_chapter_04_quotes_the_recorded_872_sentence_run():
    prose = _flat(_markdown("04"))
    for quoted in ch04_872_numbers():
        assert quoted in prose, f"04 should quote {quoted!r} (benchmarks/README.md, Measured accuracy runs)"


# ---- chapter 04, sections 1–5 on SmolLM2: the recorded quick run (benchmarks/records/ch04_quick.json) ----------


def _ch04_quick() -> dict:
    return load_record("04")  # the one layout of benchmarks/_notebook_record.py (tests/_records.py)


def ch04_quick_numbers() -> list[str]:
    """The strings 04's prose quotes from its recorded quick run, formatted from the record as the notebook's
    cells print them (``str`` of the course's test objects, their verdicts, the run's time and memory)."""
    rec = _ch04_quick()
    f = rec["findings"]
    load = rec["load_average_start"][0]
    gib = rec["max_rss_mib"] / 1024  # GNU time's peak in MiB, quoted in GiB
    out = [
        f"n = {f['sst2']['n']} SST-2 and {f['trec']['n']} TREC examples",
        f"{rec['wall_s'] / 60:.1f} min wall, {rec['cpu_s'] / 60:.1f} min CPU, peak {gib:.1f} GiB",
        f"load average {load:.1f}",
    ]
    for t in ("sst2", "trec"):
        g = f[t]
        out += [
            f"permutation p = {g['permutation']['p_value']:.3g}",
            str(PairedTest(**g["split_half"]["held_out"])),
            g["split_half"]["verdict"],
            g["majority"],
            str(PairedTest(**{k: v for k, v in g["best vs majority"].items() if k != "verdict"})),
            g["best vs majority"]["verdict"],
        ]
    carried = f["transfer"]["on second task"]
    out += [str(PairedTest(**{k: v for k, v in carried.items() if k != "verdict"})), carried["verdict"]]
    for name, test in f["search"]["vs_hand"].items():
        out += [f["search"]["heldout"][name], str(PairedTest(**{k: v for k, v in test.items() if k != "verdict"}))]
        out.append(test["verdict"])
    out.append(f["search"]["heldout"]["hand template (section 1)"])
    out.append(f"its template stayed `{f['search']['templates']['AutoPrompt triggers']}`")
    for name in ("TL;DR prompt", "no TL;DR (plain continuation)"):
        test = f["tldr"][f"{name} vs lead-8"]
        out += [str(PairedMeanTest(**{k: v for k, v in test.items() if k != "verdict"})), test["verdict"]]
    return out


def ch04_recorded_numbers() -> list[str]:
    """Every string 04's prose quotes from a record: the 872-sentence MiniLM run and the SmolLM2 quick run."""
    return ch04_872_numbers() + ch04_quick_numbers()


def test_chapter_04_quick_record_says_how_it_was_run():
    rec = _ch04_quick()
    for key in ("command", "date", "machine", "threads", "load_average_start", "wall_s", "cpu_s", "max_rss_mib"):
        assert rec.get(key) not in (None, ""), f"ch04_quick.json lacks {key!r}"
    assert "papermill" in rec["command"] and "profile quick" in rec["command"] and rec["profile"] == "quick"
    assert "device" not in rec  # benchmarks/_report.py renders records with a device key: this one is not a bench
    f = rec["findings"]
    assert f["model"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and f["profile"] == "quick"
    # the prose says AutoPrompt accepted no swap at the quick budget: its triggers are still the initial " the" × 3
    assert f["search"]["templates"]["AutoPrompt triggers"] == "{text} the the the {mask}"
    assert f["MiniLM none = bare"] is True  # the recorded run asserted it; section 6's prose relies on it
    for t in ("sst2", "trec"):  # a verdict ranks two arms only at p < 0.05 (stats.PairedTest.verdict)
        held = f[t]["split_half"]["held_out"]
        assert f[t]["split_half"]["verdict"].startswith("half-chosen") == (held["p_value"] < 0.05)


def test_chapter_04_quotes_the_recorded_quick_run():
    prose = _flat(_markdown("04"))
    for quoted in ch04_quick_numbers():
        assert quoted in prose, f"04 should quote {quoted!r} (benchmarks/records/ch04_quick.json)"


# ---- the guard ------------------------------------------------------------------------------------------

# ---- chapter 08, section 2: the row cache's recorded serving speed ------------------------------------------


def ch08_mixed_serving_numbers() -> list[str]:
    """The ratios 08's prose quotes, from benchmarks/records/mixed_serving.json (one CPU thread, n = 20, B = 32)."""
    records = json.loads((RECORDS / "mixed_serving.json").read_text())
    (smol,) = [r for r in records if r["variant"].endswith("model=HuggingFaceTB/SmolLM2-135M-Instruct")]
    (gpt2,) = [r for r in records if r["variant"] == "rows=192, B=32, n=20"]
    for r in (smol, gpt2):
        assert r["agreement"]["predictions_identical"] and r["torch_threads"] == 1
        assert r["settings"]["n"] == 20 and r["settings"]["batch_size"] == 32 and r["settings"]["rows"] == 192

    def concat(r):
        return r["times"]["per_task"]["wall_s"] / r["times"]["mixed_concat"]["wall_s"]

    return [
        f"the mixed batch ran at {smol['speedup']['vs_per_task']:.2f}× per-task serving's speed",
        f"on a GPT-2-sized model at {gpt2['speedup']['vs_per_task']:.2f}×",
        f"ran at {concat(smol):.2f}× and {concat(gpt2):.2f}× of per-task serving's speed",
    ]


def test_chapter_08_quotes_the_recorded_serving_speed():
    prose = _flat(_markdown("08"))
    for quoted in ch08_mixed_serving_numbers():
        assert quoted in prose, f"08 should say {quoted!r} (benchmarks/records/mixed_serving.json)"


RESULT_NUMBER = re.compile(r"[+−-]?(?<![\w.])0\.\d{3,}\b|\bp = [\d.e−-]+\d|\b\d+(?:\.\d+)?×")
NOT_RESULTS = {
    ("04", "p = 0.5")  # exercise 4's hypothetical: every cell's true accuracy is 0.5
}


@pytest.mark.parametrize("chapter", ["04", "05", "06", "07", "08"])
def test_every_result_number_in_the_prose_is_checked(chapter):
    """A result number in markdown must be one this file checks against a record; print it from a cell
    instead, or add its record check above."""
    checked = {"04": ch04_recorded_numbers, "05": ch05_position_ratio_numbers, "08": ch08_mixed_serving_numbers}.get(
        chapter, list
    )()
    prose = _flat(_markdown(chapter))
    unchecked = []
    for m in RESULT_NUMBER.finditer(prose):
        number = m.group(0)
        if (chapter, number) in NOT_RESULTS:
            continue
        if not any(number in quoted and quoted in prose for quoted in checked):
            unchecked.append(f"{number!r} in …{prose[max(0, m.start() - 60) : m.end() + 20]}…")
    assert not unchecked, f"chapter {chapter}: numbers in prose that no record check covers: {unchecked}"

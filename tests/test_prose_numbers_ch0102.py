"""Numbers in the prose of chapters 01 and 02 agree with the recorded run they quote.

Chapter 01 §4 quotes the course's recorded quick run on SmolLM2-135M-Instruct
(``benchmarks/records/ch01_quick.json``, written by ``python benchmarks/_notebook_record.py 01`` from the
JSON its ``findings`` cell printed, read through ``tests/_records.py``). Each quoted string is rebuilt here
from that record, with the verdict that the record's numbers give, and must appear in the markdown; the record's own
numbers must be consistent (the McNemar p and interval recomputed from its discordant counts). The last test is
the guard: any other result-like number (three or more decimals, a p-value) in the markdown of 01 or 02 fails
until it is checked here too.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import numpy as np
import pytest
from _records import load_record

from pt_helpers.stats import PairedValuesTest, paired_test

ROOT = Path(__file__).resolve().parents[1]
OURS, THEIRS = "<|endoftext|>", "<|im_start|>"


def _markdown(stem: str) -> str:
    (path,) = (ROOT / "notebooks").glob(f"{stem}_*.ipynb")
    nb = nbformat.read(path, as_version=4)
    return re.sub(r"\s+", " ", "\n".join(c.source for c in nb.cells if c.cell_type == "markdown"))


def _record() -> dict:
    return load_record("01")


def _accuracy(acc: dict) -> str:
    return f"{acc['value']:.3f} [{acc['low']:.3f}, {acc['high']:.3f}] (n = {acc['n']})"


def _sign_test(d: dict) -> str:
    test = PairedValuesTest(**d)
    return (
        f"median difference {test.median_difference:+.3g} nats [{test.low:+.3g}, {test.high:+.3g}] "
        f"(n = {test.n}: {test.n_higher} higher, {test.n_lower} lower; sign test p = {test.p_value:.2g}; "
        f"{test.verdict((OURS, THEIRS))})"
    )


def ch01_quoted() -> dict[str, str]:
    """The strings 01 §4 quotes, keyed by the placeholder they replaced, built from the recorded run."""
    rec = _record()["findings"]
    zs, test = rec["zero_shot"], rec["zero_shot_test"]
    verdict = paired_test(*_discordant(test["only_a"], test["only_b"], test["n"])).verdict((OURS, THEIRS))
    return {
        "ZS_OURS": _accuracy(zs[OURS]),
        "ZS_THEIRS": _accuracy(zs[THEIRS]),
        "ZS_TEST": (
            f"Δ = {test['difference']:+.3f} [{test['low']:+.3f}, {test['high']:+.3f}], McNemar exact "
            f"p = {test['p_value']:.2g} ({verdict})"
        ),
        "FIRST_TEST": _sign_test(rec["start_tokens"]["first token"]),
        "REST_TEST": _sign_test(rec["start_tokens"]["the other tokens"]),
    }


def _discordant(only_a: int, only_b: int, n: int):
    a, b = np.ones(n, dtype=int), np.ones(n, dtype=int)
    b[:only_a] = 0
    a[only_a : only_a + only_b] = 0
    return a, b


def test_the_record_is_of_the_real_model_at_the_quick_profile():
    rec = _record()
    assert rec["findings"]["model"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and rec["findings"]["pretrained"]
    assert rec["findings"]["profile"] == "quick" and rec["threads"] >= 1
    for key in ("command", "date", "machine", "load_average_end", "wall_s", "cpu_s", "max_rss_mib"):
        assert rec[key], key


def test_the_recorded_mcnemar_numbers_follow_from_its_discordant_counts():
    test = _record()["findings"]["zero_shot_test"]
    again = paired_test(*_discordant(test["only_a"], test["only_b"], test["n"]))
    assert again.p_value == pytest.approx(test["p_value"], rel=1e-9)
    assert (again.low, again.high) == pytest.approx((test["low"], test["high"]), rel=1e-9)
    zs = _record()["findings"]["zero_shot"]
    assert test["accuracy_a"] == pytest.approx(zs[OURS]["value"]) and test["accuracy_b"] == pytest.approx(
        zs[THEIRS]["value"]
    )


@pytest.mark.parametrize("key", ["ZS_OURS", "ZS_THEIRS", "ZS_TEST", "FIRST_TEST", "REST_TEST"])
def test_chapter_01_quotes_the_recorded_run(key):
    assert ch01_quoted()[key] in _markdown("01"), f"01's prose does not quote the recorded {key} as it is"


def test_no_unchecked_result_numbers_in_the_prose_of_01_and_02():
    checked = "".join(ch01_quoted().values())
    for stem in ("01", "02"):
        text = re.sub(r"arXiv:\d+\.\d+", "", _markdown(stem))  # paper identifiers are no results
        for number in re.findall(r"(?<![\w.])[+−-]?\d+\.\d{3,}|p = [\d.e−-]+", text):
            assert number in checked, f"{stem}: {number!r} in the prose is checked against no record"

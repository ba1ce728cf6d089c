"""Every script in benchmarks/ starts and finishes on a seconds-long setting (its ``SMOKE_ARGS``), and the
README table is generated from what the scripts write.

A benchmark is not run by anything else in CI, so without this a rename in the package breaks it silently
(as ``soft_prompt_step.py`` once broke on a renamed tokenizer helper). A new script must define
``SMOKE_ARGS`` and accept ``--out``; this test fails until it does. The smoke records then feed the
README generator and the growth figure, so a change of a record's fields breaks a test too.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
SCRIPTS = sorted(p for p in BENCH.glob("*.py") if not p.name.startswith("_"))
sys.path.insert(0, str(BENCH))  # the scripts import their shared helpers as ``_common``

import _common  # noqa: E402
import _report  # noqa: E402


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


RUNNER = _load(BENCH / "__main__.py", "benchmarks_runner")


@pytest.fixture(scope="module")
def smoke_records(tmp_path_factory):
    """Run every script once on its SMOKE_ARGS into one folder: {script stem: (completed process, json path)}."""
    folder = tmp_path_factory.mktemp("bench")
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    done = {}
    for script in SCRIPTS:
        out = folder / f"{script.stem}.json"
        done[script.stem] = (
            subprocess.run(
                [sys.executable, str(script), *RUNNER.smoke_args(script), "--out", str(out)],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            ),
            out,
        )
    return folder, done


def test_there_are_benchmarks():
    expected = {"icl_scoring", "soft_prompt_step", "prefix_step", "p_tuning_step", "icl_growth", "soft_prompt_growth"}
    expected |= {"mixed_serving"}
    assert {p.stem for p in SCRIPTS} >= expected


def test_smoke_args_are_read_with_their_extensions(tmp_path):
    script = tmp_path / "x.py"
    script.write_text('SMOKE_ARGS = ["--a", "1"]\nSMOKE_ARGS += ["--b", "2"]\n')
    assert RUNNER.smoke_args(script) == ["--a", "1", "--b", "2"]
    script.write_text("X = 1\n")
    with pytest.raises(ValueError, match="defines no SMOKE_ARGS"):
        RUNNER.smoke_args(script)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_benchmark_script_runs_on_a_tiny_setting(script, smoke_records):
    _, done = smoke_records
    proc, out = done[script.stem]
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    records = json.loads(out.read_text())
    assert records, f"{script.name} wrote an empty record"
    rec = records[-1]
    for field in ("device", "date", "versions", "load_average_start", "load_average_end", "variant", "model"):
        assert rec.get(field) is not None, f"{script.name}'s record lacks {field!r}"
    assert rec["omp_num_threads"] == "1" and rec["torch_threads"] == 1


def test_the_sides_agree_in_the_smoke_records(smoke_records):
    folder, _ = smoke_records
    icl = json.loads((folder / "icl_scoring.json").read_text())[-1]
    for side, ag in icl["agreement"].items():
        assert ag["max_abs_diff"] <= icl["tolerance"] and ag["predictions_identical"], side
    for name in ("soft_prompt_step", "prefix_step", "p_tuning_step"):
        for row in json.loads((folder / f"{name}.json").read_text())[-1]["rows"]:
            assert abs(row["loss_ours"] - row["loss_peft"]) <= row["loss_tolerance"], name
            assert row["saved_mib_ours"] > 0 and row["saved_mib_peft"] > 0


def test_the_readme_table_is_generated_from_the_records(smoke_records, tmp_path):
    folder, _ = smoke_records
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{_report.BEGIN}\nold hand-typed row\n{_report.END}\noutro\n")
    body = _report.write_readme(readme, folder)
    text = readme.read_text()
    assert "old hand-typed row" not in text and text.startswith("intro\n") and text.endswith("outro\n")
    records = _report.load_records(folder)
    assert len(body.splitlines()) == 2 + len(records)  # header, rule, one row per record
    sp = json.loads((folder / "soft_prompt_step.json").read_text())[-1]["rows"][0]
    assert f"**{sp['speedup']:.2f}×**" in body  # the figure in the table is the record's
    assert _report.write_readme(readme, folder) == body and readme.read_text() == text  # reruns are stable


def test_the_report_says_how_to_measure_when_nothing_is_measured(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"{_report.BEGIN}\n{_report.END}\n")
    assert "run `make bench`" in _report.write_readme(readme, tmp_path / "none")
    readme.write_text("no markers\n")
    with pytest.raises(ValueError, match="lacks the markers"):
        _report.write_readme(readme, tmp_path)


def test_the_projects_readme_has_the_generated_region():
    text = (BENCH / "README.md").read_text()
    assert text.index(_report.BEGIN) < text.index(_report.END)


def test_the_committed_table_is_the_one_the_committed_records_give():
    """No figure in the table is typed or left stale: it is what `python -m benchmarks report` makes of the
    committed records (rerun it after `make bench`, and commit both)."""
    text = (BENCH / "README.md").read_text()
    committed = text.split(_report.BEGIN, 1)[1].split(_report.END, 1)[0].strip("\n")
    assert committed == _report.table(_report.load_records())
    assert _report.RECORDS_DIR == BENCH / "records" and _common.RECORDS_DIR == _report.RECORDS_DIR


def test_growth_figures_draw_from_the_smoke_records(smoke_records):
    import matplotlib

    matplotlib.use("Agg")
    from pt_helpers.plots import show_cost_growth

    folder, _ = smoke_records
    for name in ("icl_growth", "soft_prompt_growth"):
        fig = show_cost_growth(folder / f"{name}.json")
        assert fig is not None and len(fig.axes) == 4  # two sweeps × (time, ratio)


def test_icl_token_positions_follow_the_formulas():
    import icl_scoring

    # P = 3 (BOS + 2), inputs of 2 and 4 tokens, labels of 1 and 2 tokens
    req = dict(prefix_ids=[0, 1, 2], input_ids=[[5, 6], [5, 6, 7, 8]], label_ids=[[9], [10, 11]])
    pos = icl_scoring.positions(req)
    assert pos["naive"] == (3 + 2 + 1) + (3 + 2 + 2) + (3 + 4 + 1) + (3 + 4 + 2)
    assert pos["peer"] == (3 + 2) + (3 + 2 + 1) + (3 + 4) + (3 + 4 + 1)  # one pass per context + label[:-1]
    assert pos["ours"] == 2 + (1 + 2 + 1) + (1 + 4 + 1)  # prefix but its last token once; lead + input + label rest


def test_interleaved_timing_alternates_and_takes_medians():
    calls = []
    sides = {"a": lambda: calls.append("a") or 1, "b": lambda: calls.append("b") or 2}
    stats, results = _common.interleaved(sides, 3, torch.device("cpu"), warmups={"a": lambda: calls.append("wa")})
    assert calls == ["wa", "b", "a", "b", "a", "b", "a", "b"]
    assert results == {"a": 1, "b": 2} and len(stats["a"]["wall_all"]) == 3
    assert stats["a"]["wall_s"] == sorted(stats["a"]["wall_all"])[1] or len(set(stats["a"]["wall_all"])) < 3
    with pytest.raises(ValueError, match="repeats"):
        _common.interleaved(sides, 0, torch.device("cpu"))


def test_saved_for_backward_counts_activations_not_weights():
    x = torch.ones(1024, 256)  # 1 MiB of float32
    linear = torch.nn.Linear(256, 256)
    assert _common.saved_for_backward_mib(lambda: linear(x).sum(), linear) == pytest.approx(1.0)
    w = torch.ones(1024, 256, requires_grad=True)
    assert _common.saved_for_backward_mib(lambda: (w * w).sum()) == pytest.approx(1.0)  # one storage, saved twice


def test_measuring_saved_tensors_leaves_no_graph_behind():
    """The measured graph is freed with its loss. tanh saves its own output: a pack hook that kept the tensor
    itself made a cycle (graph → saved output → its grad_fn → graph) that gc cannot break, and at GPT-2 size
    every point of a sweep then kept its graph and its model copy (16 GB resident by its n = 100 point)."""
    import gc
    import weakref

    def measure():  # the model lives only in here
        linear, x = torch.nn.Linear(64, 64), torch.ones(8, 64)
        assert _common.saved_for_backward_mib(lambda: torch.tanh(linear(x)).sum(), linear) > 0
        return weakref.ref(linear.weight)

    alive = measure()
    gc.collect()
    assert alive() is None, "the measured graph still holds the model's weights after the loss was deleted"


def test_a_record_replaces_only_its_own_setting(tmp_path):
    path = tmp_path / "r.json"
    base = dict(device_type="cpu", torch_threads=1)
    _common.write_record(path, dict(base, variant="a", x=1))
    _common.write_record(path, dict(base, variant="b", x=2))
    _common.write_record(path, dict(base, variant="a", x=3))
    assert sorted((r["variant"], r["x"]) for r in json.loads(path.read_text())) == [("a", 3), ("b", 2)]


# --- the rows on the real LLM (issue 29 item 1) and llama.cpp as the CPU peer (item 3) ------------------------
SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
# icl_growth.py on SmolLM2 is not recorded yet (see benchmarks/README.md): `make bench` runs it
ON_SMOLLM2 = ("icl_scoring", "soft_prompt_step", "prefix_step", "p_tuning_step", "soft_prompt_growth")


def _records(stem: str) -> list[dict]:
    return json.loads((_report.RECORDS_DIR / f"{stem}.json").read_text())


def test_a_real_model_gets_its_own_row_beside_the_random_gpt2s(tmp_path):
    """``--model`` (one spelling, one resolution: ``_common.build_model``) names the model in the record's
    variant, so its row never replaces the GPT-2 row of the same setting."""
    import argparse

    args = _common.add_model_args(argparse.ArgumentParser()).parse_args(["--n-layer", "1", "--n-embd", "32"])
    assert _common.model_variant("n=20", args) == "n=20"
    args.model = SMOLLM2
    assert _common.model_variant("n=20", args) == f"n=20, model={SMOLLM2}"
    path = tmp_path / "r.json"
    for variant in ("n=20", f"n=20, model={SMOLLM2}"):
        _common.write_record(path, dict(device_type="cpu", torch_threads=1, variant=variant))
    assert len(json.loads(path.read_text())) == 2


@pytest.mark.parametrize("stem", ON_SMOLLM2)
def test_the_smollm2_rows_are_recorded_beside_the_gpt2_rows_and_shown(stem):
    records = _records(stem)
    real = [r for r in records if r["variant"].endswith(f"model={SMOLLM2}")]
    assert real, f"benchmarks/records/{stem}.json has no SmolLM2 row"
    assert any("model=" not in r["variant"] for r in records), f"{stem}: the GPT-2-sized random row was replaced"
    table = (BENCH / "README.md").read_text().split(_report.BEGIN, 1)[1].split(_report.END, 1)[0]
    for rec in real:
        assert rec["model"].startswith(SMOLLM2) and "RANDOM" not in rec["model"]
        assert f"{rec['variant']}; {rec['model']}" in table, f"{stem}'s SmolLM2 row is not in the README table"


def test_the_smollm2_icl_rows_are_the_issues_setting_and_agree():
    """k = 8, 200 SST-2 inputs, ours vs lm-eval (the naive loop too where the machine allowed it: see README)."""
    real = [r for r in _records("icl_scoring") if r.get("model_name") == SMOLLM2]
    assert real and {r["torch_threads"] for r in real} <= {1, 2}
    for rec in real:
        assert rec["settings"]["k"] == 8 and rec["settings"]["n_inputs"] == 200
        assert {"ours", "peer"} <= set(rec["times"]), rec.get("peer_note")
        for side, ag in rec["agreement"].items():
            assert ag["max_abs_diff"] <= rec["tolerance"] and ag["predictions_identical"], side


@pytest.mark.parametrize("stem", ["soft_prompt_step", "prefix_step", "p_tuning_step"])
def test_the_smollm2_step_rows_cover_n_20_and_100_with_equal_losses(stem):
    real = [r for r in _records(stem) if r["variant"].endswith(f"model={SMOLLM2}")]
    for rec in real:  # a run stopped early keeps its first rows and says so (the table marks it incomplete)
        assert rec["rows"] and [row["n"] for row in rec["rows"]] == [20, 100][: len(rec["rows"])]
        assert rec["complete"] == (len(rec["rows"]) == 2)
        for row in rec["rows"]:
            assert abs(row["loss_ours"] - row["loss_peft"]) <= row["loss_tolerance"]


def test_lm_eval_is_given_the_course_start_token_as_text():
    """What ``icl_scoring.peer_scorer`` does: it writes the course's start token (``lm.bos_token_id``) as text
    in front of each context, and lm-eval's HFLM tokenizes contexts without special tokens. That text must
    become exactly the course's ids — for SmolLM2 ``<|endoftext|>``, not its tokenizer's BOS ``<|im_start|>``.
    (With lm-eval installed, the script itself checks every request id by id through ``HFLM._encode_pair``.)"""
    from _smollm2 import installed, smollm2

    from pt_helpers.icl import encode_context
    from pt_helpers.lm import bos_token_id
    from pt_helpers.models import load_tokenizer

    tokenizers = [load_tokenizer()] + ([smollm2().tokenizer] if installed() else [])
    context = "Review: a gripping film\nSentiment: Positive\n\n"
    for tok in tokenizers:
        text = tok.convert_ids_to_tokens(bos_token_id(tok)) + context
        assert tok(text, add_special_tokens=False)["input_ids"] == encode_context(tok, context)
    if installed():
        assert tokenizers[1].convert_ids_to_tokens(bos_token_id(tokenizers[1])) == "<|endoftext|>"


def test_the_llama_cpp_script_without_llama_cpp_python_says_why_and_does_not_fail(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # `import llama_cpp` raises ImportError, as in CI
    script = _load(BENCH / "llama_cpp_icl.py", "llama_cpp_icl_test")
    log = tmp_path / "build.log"
    log.write_text("Building wheel for llama-cpp-python\nCMake Error: no compiler found\n")
    out = tmp_path / "llama.json"
    rec = script.main(["--n-inputs", "2", "--k", "1", "--threads", "1", "--build-log", str(log), "--out", str(out)])
    said = capsys.readouterr().out
    assert "llama-cpp-python is not installed" in said and "make bench" in said and "CMake Error" in said
    assert json.loads(out.read_text())[-1]["status"] == rec["status"] == "not installed"
    assert "not installed" in rec["variant"]  # never replaces a measured row of the same setting
    row = _report._llama(rec)
    assert row.startswith("not run: llama-cpp-python is not installed") and "CMake Error: no compiler found" in row


def test_the_llama_cpp_row_is_recorded():
    """A measured llama.cpp row, or the recorded reason it could not be built (issue 29's "done when")."""
    records = _records("llama_cpp_icl")
    assert records
    for rec in records:
        if rec["status"] == "measured":
            ag = rec["agreement"]
            assert rec["positions"]["ours"] > 0 and 0 <= ag["prediction_flips"] <= ag["n_inputs"]
            assert rec["speedup_vs_llama_cpp"] == rec["times"]["llama_cpp"]["wall_s"] / rec["times"]["ours"]["wall_s"]
        else:
            assert rec["build_error"], "a record of a failed build keeps the build's error"


def test_the_growth_figure_draws_the_gpt2_rows_unless_a_real_model_is_named():
    """Notebooks 03 and 05 draw the GPT-2-sized sweeps their prose describes, even when a SmolLM2 sweep (newer)
    sits in the same record file; ``model=`` draws that one."""
    from pt_helpers.plots import _growth_record

    _, default = _growth_record("soft_prompt_growth", None)
    assert "model=" not in default["variant"] and "RANDOM" in default["model"]
    _, real = _growth_record("soft_prompt_growth", None, SMOLLM2)
    assert real["variant"].endswith(f"model={SMOLLM2}")

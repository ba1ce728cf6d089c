"""The table of ``benchmarks/README.md``, generated from the JSON records under ``benchmarks/records/``.

Nothing in the table is typed by hand: ``python -m benchmarks report`` (and ``make bench`` after its runs)
rewrites the region between the two markers below from whatever records exist, so every figure there
is one a script measured and wrote, with its device, threads, load, date and versions beside it.
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "benchmarks" / "README.md"
RECORDS_DIR = ROOT / "benchmarks" / "records"  # committed: the course's recorded runs (and yours after `make bench`)
BEGIN = "<!-- BEGIN GENERATED TABLE: python -m benchmarks report (from benchmarks/records/*.json); do not edit -->"
END = "<!-- END GENERATED TABLE -->"
ORDER = (
    "icl_scoring",
    "soft_prompt_step",
    "prefix_step",
    "p_tuning_step",
    "icl_growth",
    "soft_prompt_growth",
    "mixed_serving",
    "llama_cpp_icl",
)
PEER_NAME = {"peer": "lm-eval", "naive": "naive loop", "peft": "PEFT"}


def load_records(folder: Path = RECORDS_DIR) -> list[tuple[str, dict]]:
    """(file stem, record) for every record in ``folder/*.json``, in the order of ``ORDER`` (others after)."""
    out = []
    files = sorted(Path(folder).glob("*.json"), key=lambda p: (ORDER.index(p.stem) if p.stem in ORDER else 99, p.stem))
    for path in files:
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        for rec in data if isinstance(data, list) else [data]:
            if isinstance(rec, dict) and "device" in rec:
                out.append((path.stem, rec))
    return out


def _s(x: float) -> str:
    return f"{x * 1e3:.0f} ms" if x < 1 else f"{x:.2f} s"


def _icl(rec: dict) -> str:
    t, parts = rec["times"], []
    ours = t["ours"]
    for side in ("peer", "naive"):
        if side not in t:
            continue
        ag = rec["agreement"][side]
        parts.append(
            f"vs {PEER_NAME[side]}: ours {_s(ours['wall_s'])} vs {_s(t[side]['wall_s'])} wall = "
            f"**{t[side]['wall_s'] / ours['wall_s']:.1f}×** (CPU time {_s(ours['cpu_s'])} vs {_s(t[side]['cpu_s'])} = "
            f"{t[side]['cpu_s'] / max(ours['cpu_s'], 1e-9):.1f}×; token positions "
            f"{rec['positions'][side] / rec['positions']['ours']:.1f}×); max abs log-prob difference "
            f"{ag['max_abs_diff']:.1e}, predictions identical: {ag['predictions_identical']}"
        )
    if rec.get("peer_note"):
        parts.append(f"lm-eval not run: {rec['peer_note']}")
    return "; ".join(parts) or "ours only"


def _steps(rec: dict) -> str:
    parts = []
    for r in rec["rows"]:
        parts.append(
            f"n = {r['n']} (B {r['B']}, T {r['T']}): ours {_s(r['ours_s'])} vs PEFT {_s(r['peft_s'])} per step = "
            f"**{r['speedup']:.2f}×** (CPU time {r['cpu_speedup']:.2f}×; positions {r['position_ratio']:.2f}×); "
            f"saved for backward ours {r['saved_mib_ours']:.0f} MiB vs PEFT {r['saved_mib_peft']:.0f} MiB"
            + (
                f", CUDA peak {r['cuda_peak_mib_ours']:.0f} vs {r['cuda_peak_mib_peft']:.0f} MiB"
                if r.get("cuda_peak_mib_ours") is not None
                else ""
            )
            + f"; losses {r['loss_ours']:.6f} / {r['loss_peft']:.6f}"
        )
    return "; ".join(parts)


def _growth(rec: dict) -> str:
    parts = []
    for work, rows in rec["sweeps"].items():
        if not rows:
            continue
        var = {"n_inputs": "n_inputs", "k": "k", "n_virtual": "n", "batch": "B"}[work]
        first, last = rows[0], rows[-1]
        for side in [s for s in last["wall_s"] if s != "ours"]:
            pts = [r for r in rows if side in r["wall_s"]]
            if not pts:
                continue
            a, b = pts[0], pts[-1]
            t = [r["wall_s"][side] / r["wall_s"]["ours"] for r in (a, b)]
            q = [r["positions"][side] / r["positions"]["ours"] for r in (a, b)]
            parts.append(
                f"{var} {a[var]} → {b[var]}: {PEER_NAME[side]}/ours time {t[0]:.1f}× → {t[1]:.1f}× "
                f"(positions {q[0]:.1f}× → {q[1]:.1f}×)"
            )
        parts.append(f"ours {_s(first['wall_s']['ours'])} → {_s(last['wall_s']['ours'])}")
    return "; ".join(parts)


def _mixed(rec: dict) -> str:
    t, w, ag = rec["times"], rec["work"], rec["agreement"]
    m = t["mixed"]["wall_s"]
    # records before the row cache ran the mixed batch by concatenation: their engine string says which
    engine = "row cache" if "row cache" in rec["settings"].get("mixed_engine", "") else "concatenated per row"
    parts = [
        f"mixed ({engine}) {_s(m)} ({rec['rows_per_s']['mixed']:.1f} rows/s; {w['mixed']['passes']} passes, "
        f"{w['mixed']['positions']} positions)"
    ]
    others = (("per_task", "one pass per task per batch"), ("regrouped", "whole stream regrouped by task"))
    if "mixed_concat" in t:
        others = (("mixed_concat", "mixed, concatenated per row"),) + others
    for side, name in others:
        parts.append(
            f"{name} {_s(t[side]['wall_s'])} ({rec['rows_per_s'][side]:.1f} rows/s; {w[side]['passes']} passes, "
            f"{w[side]['positions']} positions): mixed **{t[side]['wall_s'] / m:.2f}×** "
            f"(CPU time {t[side]['cpu_s'] / max(t['mixed']['cpu_s'], 1e-9):.2f}×)"
        )
    lg = ag["logits_first_window"]
    parts.append(
        f"predictions identical: {ag['predictions_identical']}; first batch's logits max abs difference "
        f"{lg['max_abs_diff']:.1e}"
    )
    return "; ".join(parts)


def _llama(rec: dict) -> str:
    if rec.get("status") != "measured":
        why = rec.get("note", "not measured")
        if rec.get("build_error"):
            last = [ln for ln in rec["build_error"].splitlines() if ln.strip()][-1:]
            why += f"; the build ended: `{last[0].strip()[:200]}`" if last else ""
        return f"not run: {why}"
    t, ag = rec["times"], rec["agreement"]
    ours, peer = t["ours"], t["llama_cpp"]
    text = (
        f"ours {_s(ours['wall_s'])} vs llama.cpp {_s(peer['wall_s'])} wall: llama.cpp/ours "
        f"**{rec['speedup_vs_llama_cpp']:.2f}×** (CPU time {rec['cpu_speedup_vs_llama_cpp']:.2f}×; token positions "
        f"{rec['position_ratio']:.2f}×); log-probs (float32 vs llama.cpp's Q4_1 kernels): max abs difference "
        f"{ag['max_abs_diff']:.3f}, mean {ag['mean_abs_diff']:.3f}; predictions flipped "
        f"{ag['prediction_flips']} of {ag['n_inputs']}"
    )
    prof = rec.get("profile_ours")
    if prof:
        top = ", ".join(f"{e['op']} {e['share']:.0%}" for e in prof["top"][:4])
        text += f"; ours profiled on {prof['n_inputs']} inputs, self CPU time: {top}"
    return text


RESULT = {
    "icl_scoring": _icl,
    "soft_prompt_step": _steps,
    "prefix_step": _steps,
    "p_tuning_step": _steps,
    "mixed_serving": _mixed,
    "llama_cpp_icl": _llama,
}


def _result(stem: str, rec: dict) -> str:
    if stem in RESULT:
        return RESULT[stem](rec)
    if "sweeps" in rec:
        return _growth(rec)
    return "(unknown record kind)"


def _load(rec: dict) -> str:
    start, end = rec.get("load_average_start"), rec.get("load_average_end")
    one = lambda la: f"{la[0]:.1f}" if la else "?"
    return f"load {one(start)} → {one(end)} on {rec.get('host_cpus', '?')} CPUs"


def table(records: list[tuple[str, dict]]) -> str:
    """The markdown table (or a line saying there is nothing measured yet)."""
    if not records:
        return "No records under `benchmarks/records/` yet: run `make bench` (or `python -m benchmarks`)."
    lines = ["| comparison | setting | machine | versions | result (medians) |", "|---|---|---|---|---|"]
    for stem, rec in records:
        v = rec.get("versions", {})
        versions = ", ".join(
            f"{k} {v[k]}" for k in ("torch", "transformers", "peft", "lm_eval", "llama_cpp_python") if v.get(k)
        )
        setting = f"`{rec.get('script', stem)}` {rec.get('variant', '')}; {rec.get('model', '')}; "
        setting += f"{rec.get('settings_repeats', '?')} interleaved repeats"
        if rec.get("complete") is False:
            setting += "; **incomplete run** (stopped early: only the rows shown were measured)"
        machine = f"{rec['device']}, OMP_NUM_THREADS={rec.get('omp_num_threads')}, {_load(rec)}, {rec.get('date', '?')}"
        cells = [rec.get("comparison", stem), setting, machine, versions, _result(stem, rec)]
        lines.append("| " + " | ".join(c.replace("|", "/").replace("\n", " ") for c in cells) + " |")
    return "\n".join(lines)


def write_readme(readme: Path = README, folder: Path = RECORDS_DIR) -> str:
    """Replace the region between the markers of ``readme`` with the table of ``folder``'s records."""
    from pt_helpers.project import atomic_write_text

    text = readme.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text or text.index(BEGIN) > text.index(END):
        raise ValueError(
            f"{readme} lacks the markers {BEGIN!r} … {END!r} (in that order); add them where the table goes"
        )
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    body = table(load_records(folder))
    atomic_write_text(readme, f"{head}{BEGIN}\n{body}\n{END}{tail}")
    return body

"""The few figure helpers the notebooks share (every chapter), so every chapter's plots look alike."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from .project import PROJECT_ROOT


def use_course_style() -> None:
    """A clean, readable default style for all course figures."""
    plt.rcParams.update(
        {
            "figure.figsize": (7, 3.6),
            "figure.dpi": 110,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "font.size": 10,
        }
    )


def heatmap(
    matrix,
    xlabels: Sequence[str],
    ylabels: Sequence[str],
    *,
    ax=None,
    title: str = "",
    cmap: str = "viridis",
    fmt: str | None = "{:.2f}",
    vmin=None,
    vmax=None,
    colorbar: bool = True,
):
    """Draw ``matrix`` (rows = ylabels, cols = xlabels) with optional value annotations; returns the axes."""
    matrix = np.asarray(matrix, dtype=float)
    if matrix.shape != (len(ylabels), len(xlabels)):
        raise ValueError(f"matrix shape {matrix.shape} does not match labels ({len(ylabels)}, {len(xlabels)})")
    ax = ax or plt.subplots(figsize=(1 + 0.6 * len(xlabels), 1 + 0.45 * len(ylabels)))[1]
    im = ax.imshow(matrix, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(range(len(xlabels)), xlabels, rotation=60, ha="right")
    ax.set_yticks(range(len(ylabels)), ylabels)
    ax.grid(False)
    if fmt and matrix.size <= 400:
        mid = np.nanmean(matrix)
        for (i, j), v in np.ndenumerate(matrix):
            ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=7, color="white" if v < mid else "black")
    if colorbar:
        plt.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_title(title)
    return ax


GROWTH_WORK = {
    "n_inputs": "test inputs n",
    "k": "demonstrations k",
    "n_virtual": "virtual tokens n",
    "batch": "batch B",
}
GROWTH_KEY = {"n_inputs": "n_inputs", "k": "k", "n_virtual": "n", "batch": "B"}
SIDE_NAMES = {"ours": "ours", "peer": "lm-eval", "naive": "naive loop", "peft": "PEFT"}


def _growth_record(record: str | Path, threads: int | None, model: str | None = None) -> tuple[Path, dict | None]:
    path = Path(record)
    if path.suffix != ".json":  # a benchmark's name: the committed record (or yours, after `make bench`)
        path = PROJECT_ROOT / "benchmarks" / "records" / f"{record}.json"
    elif not path.is_absolute() and not path.is_file():
        path = PROJECT_ROOT / path
    if not path.is_file():
        return path, None
    records = [r for r in json.loads(path.read_text()) if isinstance(r, dict) and r.get("sweeps")]
    # a run of a real model (``--model NAME``) says so in its variant; by default the GPT-2-sized rows are drawn
    records = [r for r in records if (r.get("variant", "").partition(", model=")[2] or None) == model]
    if threads is not None:
        records = [r for r in records if r.get("torch_threads") == threads]
    return path, (max(records, key=lambda r: r.get("date", "")) if records else None)


def show_cost_growth(record: str | Path = "icl_growth", threads: int | None = None, model: str | None = None):
    """Draw how a method's cost grows with the work, from a growth benchmark's record (``make bench``).

    ``record``: ``"icl_growth"`` or ``"soft_prompt_growth"`` (read from ``benchmarks/records/``: the course's
    recorded run, or yours after ``make bench``) or a JSON path. ``model``: a real model's name (the record of
    ``--model NAME``, e.g. ``"HuggingFaceTB/SmolLM2-135M-Instruct"``); None: the GPT-2-sized random model's.
    One row per sweep: left, median wall time per call vs the work for ours and each peer; right, the measured
    speed ratio peer/ours (solid) against the ratio of token positions each processes (dashed): the limit the
    ratio would reach if time were proportional to positions. When the record does not exist, says how to make
    it and returns None (a notebook cell never fails for it); else returns the figure.
    """
    path, rec = _growth_record(record, threads, model)
    if rec is None:
        print(f"No growth measurements in {path}: run `make bench` (or `python -m benchmarks --only {path.stem}`).")
        return None
    sweeps = [(w, rows) for w, rows in rec["sweeps"].items() if rows]
    fig, axes = plt.subplots(len(sweeps), 2, figsize=(10, 3.3 * len(sweeps)), squeeze=False)
    for (work, rows), (ax_t, ax_r) in zip(sweeps, axes):
        key = GROWTH_KEY.get(work, work)
        sides = [s for s in SIDE_NAMES if any(s in r["wall_s"] for r in rows)]
        for i, side in enumerate(sides):
            pts = [r for r in rows if side in r["wall_s"]]
            x = [r[key] for r in pts]
            ax_t.plot(x, [r["wall_s"][side] for r in pts], "o-", color=f"C{i}", label=SIDE_NAMES[side])
            if side == "ours":
                continue
            ax_r.plot(
                x,
                [r["wall_s"][side] / r["wall_s"]["ours"] for r in pts],
                "o-",
                color=f"C{i}",
                label=f"{SIDE_NAMES[side]} / ours: time (measured)",
            )
            ax_r.plot(
                x,
                [r["positions"][side] / r["positions"]["ours"] for r in pts],
                "--",
                color=f"C{i}",
                label=f"{SIDE_NAMES[side]} / ours: token positions (limit)",
            )
        ax_t.set(xlabel=GROWTH_WORK.get(work, work), ylabel="median wall time (s)", title="time vs work")
        ax_r.set(xlabel=GROWTH_WORK.get(work, work), ylabel="ratio", title="speed-up vs its limit")
        ax_r.axhline(1, color="grey", lw=0.8)
        ax_t.legend(fontsize=8), ax_r.legend(fontsize=8)
    load = rec.get("load_average_start") or ["?"]
    fig.suptitle(
        f"{rec.get('comparison', path.stem)}\n{rec.get('model', '')}; {rec.get('device', '')}, "
        f"load {load[0]} on {rec.get('host_cpus', '?')} CPUs, {rec.get('date', '')}",
        fontsize=9,
    )
    fig.tight_layout()
    return fig

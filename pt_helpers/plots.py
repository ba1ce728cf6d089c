"""The few figure helpers the notebooks share (every chapter), so every chapter's plots look alike."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np


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

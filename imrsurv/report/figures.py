"""matplotlib figures as vector drawings for the PDF, written deterministically.

A figure is saved as SVG with text as paths, no date and a fixed hash salt
(so element ids do not change between runs), then read by svglib into a
reportlab Drawing that is scaled to the text width.
"""

from __future__ import annotations

import io

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from reportlab.graphics.shapes import Drawing  # noqa: E402
from svglib.svglib import svg2rlg  # noqa: E402

from .pdf import TEXT_WIDTH  # noqa: E402

RC = {
    "svg.fonttype": "path",
    "svg.hashsalt": "imrsurv",
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 10,
    "figure.dpi": 100,
}


def style() -> None:
    """One seaborn style for every figure: white grid, grayscale-safe palette."""
    import seaborn as sns

    sns.set_theme(context="paper", style="whitegrid", palette="colorblind", rc=RC)


def drawing(fig: matplotlib.figure.Figure, width: float = TEXT_WIDTH) -> Drawing:
    """Convert a figure to a reportlab Drawing ``width`` points wide, then close it."""
    buf = io.BytesIO()
    with matplotlib.rc_context(RC):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": "imrsurv"},
                    bbox_inches="tight")
    plt.close(fig)
    buf.seek(0)
    d = svg2rlg(buf)
    scale = width / d.width
    d.width, d.height = d.width * scale, d.height * scale
    d.scale(scale, scale)
    return d


def forest(table, ax=None):
    """Hazard ratios with CIs, one row per term and model, on a log axis.

    ``table`` has columns ``model, term, HR, lower, upper``; models are told
    apart by marker shape as well as colour, so the plot reads in grayscale.
    """
    import numpy as np

    models = list(dict.fromkeys(table["model"]))
    terms = list(dict.fromkeys(table["term"]))
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 0.55 * len(terms) * max(len(models), 1) ** 0.5 + 1.4))
    markers = ["o", "s", "^", "D", "v", "P"]
    step = 0.7 / max(len(models), 1)
    for k, m in enumerate(models):
        sub = table[table["model"] == m].set_index("term").reindex(terms)
        y = np.arange(len(terms)) + (k - (len(models) - 1) / 2) * step
        ax.errorbar(sub["HR"], y, xerr=[sub["HR"] - sub["lower"], sub["upper"] - sub["HR"]],
                    fmt=markers[k % len(markers)], capsize=2, label=m, color=f"C{k}")
    ax.axvline(1.0, color="0.3", lw=0.8, ls="--")
    ax.set_xscale("log")
    lo = float(np.nanmin(table["lower"])) if len(table) else 0.5
    hi = float(np.nanmax(table["upper"])) if len(table) else 2.0
    ticks = [t for t in (0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50) if lo / 1.5 <= t <= hi * 1.5]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_yticks(range(len(terms)), terms)
    ax.invert_yaxis()
    ax.set_xlabel("hazard ratio (log scale), 95% robust CI")
    ax.legend(loc="best", fontsize=7, frameon=True)
    ax.figure.tight_layout()
    return ax

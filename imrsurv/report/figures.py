"""matplotlib figures as vector drawings for the PDF, written deterministically.

A figure is saved as SVG with text as paths, no date and a fixed hash salt
(so element ids do not change between runs), then read by svglib into a
reportlab Drawing that is scaled to the text width. The Drawing's initial font
is the embedded DejaVu face: reportlab otherwise opens each drawing with its
default Helvetica, which is not embedded.
"""

from __future__ import annotations

import io

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from reportlab.graphics.shapes import Drawing  # noqa: E402
from svglib.svglib import svg2rlg  # noqa: E402

from .. import plots  # noqa: E402
from ..labels import label  # noqa: E402
from .pdf import FONT, TEXT_WIDTH, _register_fonts  # noqa: E402

RC = {
    **plots.RC,
    "svg.fonttype": "path",
    "svg.hashsalt": "imrsurv",
    "figure.dpi": 100,
}


def style() -> None:
    """The one theme of every figure (:func:`imrsurv.plots.theme`) plus SVG settings."""
    plots.theme()
    matplotlib.rcParams.update(RC)


def drawing(fig: matplotlib.figure.Figure, width: float = TEXT_WIDTH) -> Drawing:
    """Convert a figure to a reportlab Drawing ``width`` points wide, then close it."""
    buf = io.BytesIO()
    with matplotlib.rc_context(RC):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": "imrsurv"},
                    bbox_inches="tight")
    plt.close(fig)
    buf.seek(0)
    d = svg2rlg(buf)
    _register_fonts()
    d.initialFontName = FONT
    scale = width / d.width
    d.width, d.height = d.width * scale, d.height * scale
    d.scale(scale, scale)
    return d


# hazard ratios beyond these bounds are drawn as "not estimable" at the axis edge
HR_RANGE = (1e-3, 1e3)


def forest(table, ax=None, ci: str = "95% robust CI"):
    """Hazard ratios with CIs, one row per term and model, on a log axis.

    ``table`` has columns ``model, term, HR, lower, upper`` and optionally
    ``estimable`` (bool); models are told apart by marker shape and by the
    palette's lightness, so the plot reads in grayscale. A term that is not
    estimable (diverging coefficient, or HR/limits outside ``HR_RANGE``) is
    not drawn as a number: an open arrow at the axis edge marks it and its
    row says "not estimable".
    """
    import numpy as np

    models = list(dict.fromkeys(table["model"]))
    terms = list(dict.fromkeys(table["term"]))
    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 0.5 * len(terms) * max(len(models), 1) ** 0.5 + 1.5))
    ok = table[_estimable(table)]
    lo = float(np.nanmin(ok["lower"].clip(lower=HR_RANGE[0]))) if len(ok) else 0.5
    hi = float(np.nanmax(ok["upper"].clip(upper=HR_RANGE[1]))) if len(ok) else 2.0
    lo, hi = min(lo, 0.8), max(hi, 1.25)
    candidates = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100)
    ticks = [t for t in candidates if lo / 1.5 <= t <= hi * 1.5]
    if len(ticks) > 7:
        ticks = [t for t in ticks if f"{t:g}"[0] in "15"]
    left, right = lo / 1.6, hi * 1.6
    colours = plots.palette(len(models))
    markers = ["o", "s", "^", "D", "v", "P"]
    step = 0.7 / max(len(models), 1)
    flagged = False
    for k, m in enumerate(models):
        sub = table[table["model"] == m].set_index("term").reindex(terms)
        good = _estimable(sub.reset_index()).to_numpy()
        y = np.arange(len(terms)) + (k - (len(models) - 1) / 2) * step
        hr = sub["HR"].to_numpy(float)
        g = good & np.isfinite(hr)
        # a very wide interval is cut at the axis edge (its numbers are in the table)
        lower = np.clip(np.nan_to_num(sub["lower"].to_numpy(float), nan=left), left, right)
        upper = np.clip(np.nan_to_num(sub["upper"].to_numpy(float), nan=right), left, right)
        ax.errorbar(hr[g], y[g], xerr=[hr[g] - lower[g], upper[g] - hr[g]],
                    fmt=markers[k % len(markers)], capsize=2, label=m, color=colours[k],
                    mfc=colours[k] if k % 2 == 0 else "white", ms=5, lw=1.2)
        for yy, h in zip(y[~g], hr[~g], strict=True):
            flagged = True
            edge = right if not np.isfinite(h) or h >= 1 else left
            ax.plot([edge], [yy], marker=">" if edge == right else "<", ls="none",
                    mfc="white", mec=colours[k], ms=6)
            ax.text(edge / 1.12 if edge == right else edge * 1.12, yy, "not estimable",
                    ha="right" if edge == right else "left", va="center", fontsize=7.5,
                    color="0.2")
    ax.axvline(1.0, color="0.3", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_xlim(left, right)
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_yticks(range(len(terms)), [label(t) for t in terms])
    ax.invert_yaxis()
    ax.set_xlabel(f"Hazard ratio (log scale), {ci}"
                  + ("; arrows: not estimable (monotone likelihood)" if flagged else ""))
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=min(len(models), 4),
              frameon=False)
    ax.figure.tight_layout()
    return ax


def _estimable(table):
    """True where a row's HR is a finite number inside ``HR_RANGE`` (and ``estimable``)."""
    import numpy as np

    hr = table["HR"].to_numpy(float)
    ok = np.isfinite(hr) & (hr > HR_RANGE[0]) & (hr < HR_RANGE[1])
    if "estimable" in table:
        ok &= table["estimable"].to_numpy(bool)
    import pandas as pd

    return pd.Series(ok, index=table.index)

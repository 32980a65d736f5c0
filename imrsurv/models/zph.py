"""Scaled Schoenfeld residuals for proportional-hazards plots (as R ``plot(cox.zph(fit))``).

Grambsch & Therneau (1994): for event k with Schoenfeld residual r_k, the
scaled residual is ``beta + d * V r_k`` (d = number of events, V = the naive,
model-based variance), whose smooth against time estimates beta(t); a flat
smooth is consistent with proportional hazards. This is R ``cox.zph``'s
``y`` (survival >= 3.0). R draws a natural spline (df = 4) with +-2 se; the
smooth here is a lowess (statsmodels, frac 2/3), without a band.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def zph_residuals(res) -> pd.DataFrame:
    """One row per event: ``time`` and the scaled Schoenfeld residual of each coefficient.

    ``res`` is a :class:`~imrsurv.models.cox.CoxResult` (anything with
    ``residuals("schoenfeld")``, ``cov_naive`` and ``params``).
    """
    r = res.residuals("schoenfeld")
    v = np.asarray(res.cov_naive, float)
    beta = np.asarray(res.params, float)
    scaled = len(r) * r.to_numpy(float) @ v + beta
    out = pd.DataFrame(scaled, columns=list(res.params.index))
    out.insert(0, "time", r.index.get_level_values("time").to_numpy(float))
    return out.sort_values("time", kind="mergesort").reset_index(drop=True)


def smooth(time: np.ndarray, y: np.ndarray, frac: float | None = None
           ) -> tuple[np.ndarray, np.ndarray]:
    """Lowess smooth of ``y`` on ``time`` (sorted x, fitted y); fewer than 4 points: none.

    ``frac`` defaults to 2/3, widened so that each local fit uses at least 15 points.
    """
    if len(time) < 4:
        return np.asarray(time, float), np.full(len(time), np.nan)
    from statsmodels.nonparametric.smoothers_lowess import lowess

    if frac is None:
        frac = min(1.0, max(2 / 3, 15 / len(time)))

    fit = lowess(np.asarray(y, float), np.asarray(time, float), frac=frac, it=0)
    return fit[:, 0], fit[:, 1]


def plot_zph(res, terms=None, title: str | None = None, labeller=str):
    """One panel per coefficient: scaled Schoenfeld residuals, lowess smooth, beta as a line.

    Returns the Figure.
    """
    import matplotlib.pyplot as plt

    from ..plots import palette

    data = zph_residuals(res)
    terms = list(res.params.index) if terms is None else list(terms)
    ncol = min(len(terms), 3)
    nrow = int(np.ceil(len(terms) / ncol)) if terms else 1
    fig, axes = plt.subplots(nrow, ncol, figsize=(7.5, 2.6 * nrow + 0.4), squeeze=False)
    dark = palette(3)[0]
    for ax, term in zip(axes.flat, terms, strict=False):
        ax.plot(data["time"], data[term], ls="none", marker="o", ms=3, mfc="none",
                mec="0.45", mew=0.6)
        xs, ys = smooth(data["time"].to_numpy(), data[term].to_numpy())
        ax.plot(xs, ys, color=dark, lw=1.8, label="lowess smooth")
        ax.axhline(float(res.params[term]), color="0.2", ls="--", lw=0.9,
                   label="coefficient (constant)")
        ax.set_title(labeller(term), fontsize=9)
        ax.set_xlabel("Years")
        ax.set_ylabel("Beta(t)")
    for ax in list(axes.flat)[len(terms):]:
        ax.set_visible(False)
    handles, labs = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labs, loc="lower center", ncol=2, frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.07, 1, 0.97 if title else 1))
    return fig

"""Figures: Kaplan-Meier with an at-risk table, MCF by group, stacked state probabilities.

One call each; each returns the matplotlib Axes (or Figure for several
panels) so that callers can save or adjust it. Styles are chosen to stay
legible when printed in grayscale: groups differ by line style and gray
level, not by hue alone, and stacked areas carry hatching.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# line styles and gray levels for up to 6 groups (cycled beyond)
_LINESTYLES = ["-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 3))]
_GRAYS = ["0.0", "0.45", "0.25", "0.6", "0.1", "0.35"]
_MARKERS = ["o", "s", "^", "D", "v", "x"]
# stacked areas, bottom to top: active states first
_AREA = {
    "sustained": {"color": "0.30", "hatch": None, "label": "sustained (active, never stopped)"},
    "restarted": {"color": "0.60", "hatch": "///", "label": "restarted (active again)"},
    "discontinued": {"color": "0.88", "hatch": "..", "label": "discontinued"},
}


def _style(i: int) -> dict:
    return {"linestyle": _LINESTYLES[i % len(_LINESTYLES)], "color": _GRAYS[i % len(_GRAYS)]}


def _new_ax(ax, figsize=(7, 4.5)):
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def plot_km(result, ax=None, at_risk: bool = True, ci: bool = True, title: str | None = None,
            xlabel: str = "Years since start", ylabel: str = "Proportion still sustained",
            at_risk_rows: tuple[str, ...] = ("At risk", "Censored", "Events")):
    """Kaplan-Meier curves of a :func:`~imrsurv.models.km.km_first` result.

    With ``at_risk`` an at-risk table (lifelines ``add_at_risk_counts``: at
    risk, censored, events) sits under the x axis.
    """
    import matplotlib.pyplot as plt

    ax = _new_ax(ax, figsize=(7.5, 4.5 + 0.18 * len(result.fitters) * len(at_risk_rows))
                 if at_risk else (7, 4.5))
    fitters = list(result.fitters.values())
    for i, kmf in enumerate(fitters):
        st = _style(i)
        kmf.plot_survival_function(ax=ax, ci_show=ci, show_censors=True,
                                   censor_styles={"marker": "|", "ms": 7, "mew": 1},
                                   linestyle=st["linestyle"], color=st["color"], lw=1.8,
                                   ci_alpha=0.15)
    ax.set_ylim(0, 1.02)
    ax.set_xlim(left=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, color="0.9", lw=0.6)
    if title is None:
        title = "Time to first discontinuation"
        if result.by:
            title += f" by {result.by}"
            lr = result.logrank
            if lr is not None:
                title += f" (log-rank p = {lr['p']:.3g})"
    ax.set_title(title)
    if len(fitters) == 1:
        leg = ax.get_legend()
        if leg is not None:
            leg.remove()
    else:
        ax.legend(frameon=False, loc="lower left")
    if at_risk:
        from lifelines.plotting import add_at_risk_counts

        add_at_risk_counts(*fitters, ax=ax, rows_to_show=list(at_risk_rows))
        plt.tight_layout()
    return ax


def plot_mcf(curve: pd.DataFrame, ax=None, ci: bool = True, title: str | None = None,
             xlabel: str = "Years since start",
             ylabel: str = "Mean number of discontinuations per site"):
    """Step plot of an :func:`~imrsurv.models.mcf.mcf` result, one curve per group, with CI bands.

    Each curve starts at 0 and is drawn to its group's last follow-up.
    """
    ax = _new_ax(ax)
    follow = curve.attrs.get("follow_up", {})
    groups = [None] if "group" not in curve.columns else list(pd.unique(curve["group"]))
    for i, g in enumerate(groups):
        c = curve if g is None else curve[curve["group"] == g]
        end = follow.get(g, c["time"].max() if len(c) else 0.0)
        t = np.r_[0.0, c["time"].to_numpy(float), end]
        y = np.r_[0.0, c["mcf"].to_numpy(float), c["mcf"].iloc[-1] if len(c) else 0.0]
        st = _style(i)
        label = "all sites" if g is None else str(g)
        ax.step(t, y, where="post", lw=1.8, label=label, **st)
        if ci and len(c):
            lo = np.r_[0.0, c["lower"].to_numpy(float), c["lower"].iloc[-1]]
            hi = np.r_[0.0, c["upper"].to_numpy(float), c["upper"].iloc[-1]]
            ax.fill_between(t, lo, hi, step="post", color=st["color"], alpha=0.12, lw=0)
            ax.step(t, lo, where="post", lw=0.6, alpha=0.6, **st)
            ax.step(t, hi, where="post", lw=0.6, alpha=0.6, **st)
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, color="0.9", lw=0.6)
    ax.set_title(title or "Mean cumulative function of discontinuations (95% CI)")
    if len(groups) > 1:
        ax.legend(frameon=False, loc="upper left")
    return ax


def plot_state_probabilities(probs: pd.DataFrame, ax=None, title: str | None = None,
                             xlabel: str = "Years since start", horizon: float | None = None):
    """Stacked areas of Aalen-Johansen state probabilities over time.

    ``probs`` is a :func:`~imrsurv.models.multistate.state_probabilities`
    result (best with ``times=None``: every event time). With a ``group``
    column one panel per group is drawn side by side and the Figure is
    returned. ``horizon`` draws a vertical line (e.g. at 6 years).
    """
    import matplotlib.pyplot as plt

    if "group" in probs.columns:
        groups = list(pd.unique(probs["group"]))
        fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups) + 1.5, 4.5),
                                 sharey=True, squeeze=False)
        for a, g in zip(axes[0], groups, strict=True):
            _stack(probs[probs["group"] == g], a, str(g), xlabel, horizon)
        axes[0][0].set_ylabel("Probability of state")
        handles, labels = axes[0][0].get_legend_handles_labels()
        for a in axes[0]:
            leg = a.get_legend()
            if leg is not None:
                leg.remove()
        fig.suptitle(title or "State occupation probabilities (Aalen-Johansen)")
        fig.tight_layout(rect=(0, 0.13, 1, 0.97))
        fig.legend(handles, labels, loc="lower center", ncol=2, frameon=False, fontsize=9)
        return fig
    ax = _new_ax(ax, figsize=(7.5, 5.4))
    _stack(probs, ax, title or "State occupation probabilities (Aalen-Johansen)", xlabel,
           horizon)
    ax.set_ylabel("Probability of state")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, frameon=False,
              fontsize=9)
    ax.figure.tight_layout()
    return ax


def _stack(probs: pd.DataFrame, ax, title, xlabel, horizon):
    wide = probs.pivot_table(index="time", columns="state", values="probability",
                             observed=False, dropna=False).sort_index()
    wide = wide.dropna(how="all")
    t = wide.index.to_numpy(float)
    bottom = np.zeros(len(t))
    for s, st in _AREA.items():
        if s not in wide.columns:
            continue
        y = np.nan_to_num(wide[s].to_numpy(float))
        ax.fill_between(t, bottom, bottom + y, step="post", facecolor=st["color"],
                        edgecolor="0.15", hatch=st["hatch"], lw=0.4, label=st["label"])
        bottom = bottom + y
    ax.plot(t, np.nan_to_num(wide.get("sustained", 0) + wide.get("restarted", 0)),
            drawstyle="steps-post", color="black", lw=1.4, label="active (sustained + restarted)")
    if horizon is not None:
        ax.axvline(horizon, color="black", ls="--", lw=1)
    ax.set_xlim(t.min() if len(t) else 0, t.max() if len(t) else 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.grid(True, axis="y", color="0.5", lw=0.4, alpha=0.5)

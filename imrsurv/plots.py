"""Figures: Kaplan-Meier with an at-risk table, MCF by group, stacked state probabilities.

One call each; each returns the matplotlib Axes (or Figure for several
panels) so that callers can save or adjust it. Every figure uses one seaborn
theme (:func:`theme`) and one palette (:func:`palette`, viridis steps, whose
lightness falls monotonically so that groups stay apart in greyscale); groups
also differ by line style and marker. Stacked areas carry hatching drawn as
plain line segments (not SVG patterns, which the PDF converter drops).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .labels import label

# line styles and markers for up to 6 groups (cycled beyond)
_LINESTYLES = ["-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 3))]
_MARKERS = ["o", "s", "^", "D", "v", "P"]
# stacked areas, bottom to top: active states first; hatch drawn by _hatch
_AREA = {
    "sustained": {"color": "0.30", "hatch": None, "label": "Sustained (active, never stopped)"},
    "restarted": {"color": "0.68", "hatch": "horizontal",
                  "label": "Restarted (active again)"},
    "discontinued": {"color": "0.93", "hatch": "vertical", "label": "Discontinued"},
}
# a confidence band per group only up to this many groups (more overlap into grey mud)
MAX_BANDS = 2
RC = {
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "xtick.labelsize": 8.5,
    "ytick.labelsize": 8.5,
    "legend.fontsize": 8.5,
    "lines.linewidth": 1.8,
    "grid.color": "0.88",
    "grid.linewidth": 0.6,
    "hatch.linewidth": 0.6,
}


def theme() -> None:
    """The seaborn theme of every imrsurv figure (paper context, white grid, fixed sizes)."""
    import seaborn as sns

    sns.set_theme(context="paper", style="whitegrid", palette=palette(6), rc=RC)


def palette(n: int) -> list[tuple[float, float, float]]:
    """``n`` colours from dark to light viridis (distinct in hue and in greyscale)."""
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    top = 0.6 if n == 2 else 0.78  # two groups: the mid tone, darker than the light end
    return [tuple(cmap(x)[:3]) for x in np.linspace(0.0, top, max(n, 1))]


def _style(i: int, n: int) -> dict:
    return {"linestyle": _LINESTYLES[i % len(_LINESTYLES)], "color": palette(n)[i]}


def _new_ax(ax, figsize=(7, 4.5)):
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def _ticks(result) -> np.ndarray:
    top = float(np.floor(result.data["stop"].max())) if len(result.data) else 1.0
    step = 1.0 if top <= 12 else float(np.ceil(top / 10))
    return np.arange(0.0, top + step / 2, step)


def plot_km(result, ax=None, at_risk: bool = True, ci: bool | None = None,
            title: str | None = None, xlabel: str = "Years since start",
            ylabel: str = "Proportion still sustained", times=None):
    """Kaplan-Meier curves of a :func:`~imrsurv.models.km.km_first` result.

    With ``at_risk`` the number of sites at risk at each tick (``times``;
    default every year) sits under the x axis; the numbers come from
    ``result.at_risk(times)``, the same computation as ``result.table``.
    ``ci=None`` draws confidence bands when there are at most two groups.
    """
    ax = _new_ax(ax, figsize=(7.5, 4.2 + 0.2 * len(result.fitters)) if at_risk else (7, 4.5))
    groups = list(result.fitters)
    n = len(groups)
    ci = n <= MAX_BANDS if ci is None else ci
    for i, (name, kmf) in enumerate(result.fitters.items()):
        st = _style(i, n)
        sf = kmf.survival_function_
        t = sf.index.to_numpy(float)
        s = sf.iloc[:, 0].to_numpy(float)
        ax.step(t, s, where="post", label=name, lw=1.8, **st)
        cens = kmf.event_table
        ct = cens.index[(cens["censored"] > 0).to_numpy()].to_numpy(float)
        if len(ct):
            ax.plot(ct, kmf.survival_function_at_times(ct).to_numpy(float), ls="none",
                    marker="|", ms=7, mew=1.1, color=st["color"])
        if ci:
            band = kmf.confidence_interval_survival_function_.to_numpy(float)
            ax.fill_between(t, band[:, 0], band[:, 1], step="post", color=st["color"],
                            alpha=0.14, lw=0)
    ticks = _ticks(result) if times is None else np.asarray(times, float)
    ax.set_xticks(ticks, [f"{x:g}" for x in ticks])
    ax.set_ylim(0, 1.02)
    ax.set_xlim(0, max(ticks.max(), 1e-9) * 1.02)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title is None:
        title = "Time to first discontinuation"
        if result.by:
            title += f" by {label(result.by).lower()}"
            lr = result.logrank
            if lr is not None:
                title += f" (log-rank p = {lr['p']:.3g})"
    ax.set_title(title)
    if n > 1:
        ax.legend(frameon=True, framealpha=0.9, loc="lower left", ncol=min(n, 3))
    if at_risk:
        _at_risk_rows(ax, result.at_risk(ticks), groups)
    ax.figure.tight_layout()
    return ax


def _at_risk_rows(ax, table: pd.DataFrame, groups: list[str]) -> None:
    """Numbers at risk under the axis, one row per group, x aligned with the ticks."""
    import matplotlib.transforms as mtrans

    trans = mtrans.blended_transform_factory(ax.transData, ax.transAxes)
    lab = mtrans.blended_transform_factory(ax.transAxes, ax.transAxes)
    ax.text(-0.045, -0.2, "At risk", transform=lab, ha="right", va="center",
            fontweight="bold", fontsize=8)
    for i, g in enumerate(groups):
        y = -0.2 - 0.075 * (i + 1)
        ax.text(-0.045, y, g, transform=lab, ha="right", va="center", fontsize=8)
        rows = table if "group" not in table else table[table["group"].astype(str) == g]
        for t, k in zip(rows["time"], rows["n_risk"], strict=True):
            ax.text(t, y, str(int(k)), transform=trans, ha="center", va="center", fontsize=8,
                    gid=f"at-risk|{g}|{t:g}")


def plot_mcf(curve: pd.DataFrame, ax=None, ci: bool | None = None, title: str | None = None,
             xlabel: str = "Years since start",
             ylabel: str = "Mean discontinuations per site"):
    """Step plot of an :func:`~imrsurv.models.mcf.mcf` result, one curve per group, with CI bands.

    Each curve starts at 0 and is drawn to its group's last follow-up;
    ``ci=None`` draws bands when there are at most two groups.
    """
    ax = _new_ax(ax)
    follow = curve.attrs.get("follow_up", {})
    groups = [None] if "group" not in curve.columns else list(pd.unique(curve["group"]))
    n = len(groups)
    ci = n <= MAX_BANDS if ci is None else ci
    for i, g in enumerate(groups):
        c = curve if g is None else curve[curve["group"] == g]
        end = follow.get(g, c["time"].max() if len(c) else 0.0)
        t = np.r_[0.0, c["time"].to_numpy(float), end]
        y = np.r_[0.0, c["mcf"].to_numpy(float), c["mcf"].iloc[-1] if len(c) else 0.0]
        st = _style(i, n)
        name = "All sites" if g is None else str(g)
        ax.step(t, y, where="post", lw=1.8, label=name, **st)
        if ci and len(c):
            lo = np.r_[0.0, c["lower"].to_numpy(float), c["lower"].iloc[-1]]
            hi = np.r_[0.0, c["upper"].to_numpy(float), c["upper"].iloc[-1]]
            ax.fill_between(t, lo, hi, step="post", color=st["color"], alpha=0.14, lw=0)
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title or ("Mean cumulative function of discontinuations"
                           + (" (95% CI)" if ci else "")))
    if n > 1:
        ax.legend(frameon=True, framealpha=0.9, loc="upper left", ncol=min(n, 3))
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
        fig.suptitle(title or "State occupation probabilities (Aalen-Johansen)")
        fig.tight_layout(rect=(0, 0.13, 1, 0.97))
        _area_legend(fig, loc="lower center")
        return fig
    ax = _new_ax(ax, figsize=(7.5, 5.0))
    _stack(probs, ax, title or "State occupation probabilities (Aalen-Johansen)", xlabel,
           horizon)
    ax.set_ylabel("Probability of state")
    _area_legend(ax, loc="upper center", bbox_to_anchor=(0.5, -0.13))
    ax.figure.tight_layout()
    return ax


def _hatch(ax, t, bottom, top, kind: str, spacing: float = 0.04) -> None:
    """Hatch lines inside the step area bottom..top as plain segments.

    ``horizontal``: lines at every ``spacing`` of probability, cut to each step;
    ``vertical``: lines every ``spacing`` of the time range, from bottom to top.
    """
    from matplotlib.collections import LineCollection

    if len(t) < 2:
        return
    segs = []
    if kind == "horizontal":
        for y in np.arange(spacing / 2, 1.0, spacing):
            inside = (bottom[:-1] < y) & (top[:-1] > y)
            segs += [((t[i], y), (t[i + 1], y)) for i in np.flatnonzero(inside)]
    else:
        xs = np.arange(t[0], t[-1], spacing * (t[-1] - t[0]) * 0.5)[1:]
        k = np.searchsorted(t, xs, side="right") - 1
        segs = [((x, bottom[j]), (x, top[j])) for x, j in zip(xs, k, strict=True)
                if top[j] > bottom[j]]
    if segs:
        ax.add_collection(LineCollection(segs, colors="0.2", linewidths=0.6))


class _HatchHandler:
    """Legend key for a hatched area: a filled box with the same plain-line hatch."""

    def __init__(self, kind: str | None):
        self.kind = kind

    def legend_artist(self, legend, orig_handle, fontsize, handlebox):
        from matplotlib.lines import Line2D
        from matplotlib.patches import Rectangle

        x0, y0 = handlebox.xdescent, handlebox.ydescent
        w, h = handlebox.width, handlebox.height
        box = Rectangle((x0, y0), w, h, facecolor=orig_handle.get_facecolor(),
                        edgecolor="0.15", lw=0.6, transform=handlebox.get_transform())
        handlebox.add_artist(box)
        if self.kind == "horizontal":
            for f in (0.25, 0.5, 0.75):
                handlebox.add_artist(Line2D([x0, x0 + w], [y0 + f * h] * 2, color="0.2",
                                            lw=0.6, transform=handlebox.get_transform()))
        elif self.kind == "vertical":
            for f in (0.2, 0.4, 0.6, 0.8):
                handlebox.add_artist(Line2D([x0 + f * w] * 2, [y0, y0 + h], color="0.2",
                                            lw=0.6, transform=handlebox.get_transform()))
        return box


def _area_legend(target, **kw) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles, labels, handler_map = [], [], {}
    for st in _AREA.values():
        h = Patch(facecolor=st["color"])
        handles.append(h)
        labels.append(st["label"])
        handler_map[h] = _HatchHandler(st["hatch"])
    handles.append(Line2D([], [], color="black", lw=1.4))
    labels.append("Active (sustained + restarted)")
    target.legend(handles, labels, handler_map=handler_map, ncol=2, frameon=False, **kw)


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
                        edgecolor="0.15", lw=0.4)
        if st["hatch"]:
            _hatch(ax, t, bottom, bottom + y, st["hatch"])
        bottom = bottom + y
    ax.plot(t, np.nan_to_num(wide.get("sustained", 0) + wide.get("restarted", 0)),
            drawstyle="steps-post", color="black", lw=1.4)
    if horizon is not None:
        ax.axvline(horizon, color="black", ls="--", lw=1)
    ax.set_xlim(t.min() if len(t) else 0, t.max() if len(t) else 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.grid(False)

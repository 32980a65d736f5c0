"""Kaplan-Meier curves of time to the first discontinuation.

Each site contributes its *sustained* sojourn: from its entry until its first
discontinuation (event) or the end of follow-up (censored). Curves come from
lifelines' ``KaplanMeierFitter`` (with ``entry=`` for sites that enter late),
standard errors from its Greenwood sum, confidence limits are lifelines'
(log(-log) transformed, "exponential Greenwood"; R's default is "log").

Late entry and ties: R counts a site that enters at t as at risk only *after*
t ((start, stop] data); lifelines counts it at t. So that the numbers equal R
``survfit(Surv(entry, time, event) ~ group)``, entries that coincide with an
event time are moved 1e-9 years later before fitting (this changes nothing
else).

Log-rank test between groups: lifelines ``multivariate_logrank_test`` when no
site enters late; with late entry, statsmodels ``survdiff(..., entry=)``,
whose risk sets follow the (entry, time] convention (lifelines' log-rank has
no entry argument).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import DataError, Problem

_ENTRY_NUDGE = 1e-9


def _first_frame(data, by: str | None) -> pd.DataFrame:
    """``site?, start, stop, event[, group]`` for the first discontinuation."""
    if hasattr(data, "spells") and callable(data.spells):
        spells = data.spells()
        if by is not None:
            sites = data.sites
            if by not in sites.columns:
                raise DataError([Problem("", None, None,
                                         f"by={by!r} is not a site column (have: "
                                         f"{', '.join(map(str, sites.columns))})")],
                                "cannot group")
            if by not in spells.columns:
                spells = spells.merge(sites[["site", by]], on="site", how="left")
        data = spells
    if not isinstance(data, pd.DataFrame):
        raise TypeError("expected a History, a spells frame or a frame with stop and event "
                        f"columns, got {type(data).__name__}")
    if by is not None and by not in data.columns:
        raise DataError([Problem("data", None, None, f"by column {by!r} not found")],
                        "cannot group")
    if {"state", "next", "start", "stop"} <= set(data.columns):
        first = data[data["state"] == "sustained"]
        if "site" in first.columns and first["site"].duplicated().any():
            dup = first.loc[first["site"].duplicated(), "site"].unique()
            raise DataError([Problem("spells", None, str(s), "more than one sustained spell")
                             for s in dup], "invalid spells")
        out = pd.DataFrame({"start": first["start"].to_numpy(float),
                            "stop": first["stop"].to_numpy(float),
                            "event": (first["next"] == "discontinued").to_numpy(int)})
        if "site" in first.columns:
            out.insert(0, "site", first["site"].to_numpy())
    elif {"stop", "event"} <= set(data.columns):
        first = data
        out = pd.DataFrame({
            "start": (first["start"].to_numpy(float) if "start" in first.columns
                      else np.zeros(len(first))),
            "stop": pd.to_numeric(first["stop"], errors="coerce").to_numpy(float),
            "event": pd.to_numeric(first["event"], errors="coerce").to_numpy(float)})
        if "site" in first.columns:
            if first["site"].duplicated().any():
                raise DataError([Problem("data", None, str(s), "more than one row: expected "
                                         "one row per site (time to first event)")
                                 for s in first.loc[first["site"].duplicated(), "site"].unique()],
                                "invalid data")
            out.insert(0, "site", first["site"].to_numpy())
    else:
        raise DataError([Problem("data", None, None,
                                 "need spells (site, start, stop, state, next) or "
                                 "(start, stop, event) columns")], "invalid data")
    if by is not None:
        out["group"] = first[by].to_numpy()
    bad = ~np.isfinite(out["stop"]) | ~np.isfinite(out["start"]) | (out["stop"] <= out["start"]) \
        | ~out["event"].isin([0, 1])
    if bad.any():
        raise DataError([Problem("data", f"row {i}", None,
                                 "needs start < stop and event 0/1")
                         for i in np.flatnonzero(bad)], "invalid data")
    return out


@dataclass
class KMResult:
    """Kaplan-Meier estimates of time to first discontinuation, per group."""

    table: pd.DataFrame
    medians: pd.DataFrame
    logrank: pd.Series | None
    fitters: dict
    conf_level: float
    by: str | None
    notes: list[str] = field(default_factory=list)
    data: pd.DataFrame = field(default=None, repr=False)

    def at_risk(self, times) -> pd.DataFrame:
        """``[group,] time, n_risk, n_events, n_censor`` at ``times`` (as ``table``)."""
        times = np.sort(np.atleast_1d(np.asarray(times, float)))
        groups = [(None, self.data)] if self.by is None else list(
            self.data.groupby("group", sort=True))
        rows = []
        for g, sub in groups:
            frame = pd.DataFrame({"time": times, **risk_counts(sub["start"], sub["stop"],
                                                               sub["event"], times)})
            if self.by is not None:
                frame.insert(0, "group", g)
            rows.append(frame)
        return pd.concat(rows, ignore_index=True)

    def plot(self, ax=None, at_risk: bool = True, **kwargs):
        """KM curves (one per group) with an at-risk table underneath."""
        from ..plots import plot_km

        return plot_km(self, ax=ax, at_risk=at_risk, **kwargs)

    def __str__(self) -> str:
        lines = ["Time to first discontinuation (Kaplan-Meier)"]
        lines.append(self.medians.to_string(index=False))
        lines.append(self.table.round(4).to_string(index=False))
        if self.logrank is not None:
            lr = self.logrank
            lines.append(f"log-rank: chi2 = {lr['statistic']:.4f} on {int(lr['df'])} df, "
                         f"p = {lr['p']:.4g} ({lr['method']})")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    __repr__ = __str__

    def print_summary(self) -> None:
        print(str(self))

    def _repr_html_(self) -> str:
        import html

        parts = ["<div><p>Time to first discontinuation (Kaplan-Meier)</p>",
                 self.medians.to_html(index=False, float_format=lambda v: f"{v:.4g}"),
                 self.table.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="–")]
        if self.logrank is not None:
            lr = self.logrank
            parts.append(f"<p>log-rank: chi2 = {lr['statistic']:.4f} on {int(lr['df'])} df, "
                         f"p = {lr['p']:.4g} ({html.escape(lr['method'])})</p>")
        parts.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in self.notes)
                     + "</ul></div>")
        return "".join(parts)


def risk_counts(start, stop, event, times) -> dict[str, np.ndarray]:
    """At-risk, event and censoring counts at ``times``, as R ``summary(survfit, times=)``.

    ``n_risk(t)`` = #{start < u <= stop} with u the first stop time >= t (R's
    convention: the risk set of the curve's next time point); ``n_events`` and ``n_censor`` count the
    events and censorings in (previous time, t] (the first interval starts at
    -inf). The figure's at-risk row and the table both use this function.
    """
    st, sp, ev = (np.asarray(a, float) for a in (start, stop, event))
    times = np.asarray(times, float)
    # R reads n.risk at t off the curve's next time point (the first stop >= t), so a
    # site that enters between t and that point is already counted
    grid = np.unique(sp)
    k = np.searchsorted(grid, times, side="left")
    at = np.where(k < len(grid), grid[np.minimum(k, len(grid) - 1)], np.inf)
    n_risk = ((st[None, :] < at[:, None]) & (sp[None, :] >= at[:, None])).sum(1)
    cum_ev = ((sp[None, :] <= times[:, None]) & (ev[None, :] == 1)).sum(1)
    cum_cens = ((sp[None, :] <= times[:, None]) & (ev[None, :] == 0)).sum(1)
    return {"n_risk": n_risk, "n_events": np.diff(cum_ev, prepend=0),
            "n_censor": np.diff(cum_cens, prepend=0)}


def km_first(history, by: str | None = None, times=None, *,
             conf_level: float = 0.95) -> KMResult:
    """Kaplan-Meier of time to first discontinuation, by group, with a log-rank test.

    Parameters
    ----------
    history
        A :class:`~imrsurv.History`, a spells frame, or a frame with one row
        per site and columns ``start`` (optional, entry), ``stop``, ``event``.
    by
        Site-level grouping column (e.g. ``"practice"``).
    times
        Times for the survival table; default every whole year up to the last
        follow-up.

    Returns
    -------
    :class:`KMResult` with ``.table`` (``[group,] time, n_risk, n_events,
    n_censor, survival, se, lower, upper``; counts as R ``summary(survfit,
    times=)``: events and censorings in (previous time, time]; NaN past a
    group's last follow-up unless the curve has reached 0),
    ``.medians`` (``[group,] n, events, median, lower, upper``; ``inf`` =
    not reached), ``.logrank`` (statistic, df, p) and ``.plot()``.
    """
    from lifelines import KaplanMeierFitter
    from lifelines.utils import median_survival_times

    d = _first_frame(history, by)
    notes: list[str] = []
    all_event_times = np.unique(d.loc[d["event"] == 1, "stop"].to_numpy())
    late = d["start"].to_numpy() > d["start"].min()
    tied = np.isin(d["start"].to_numpy(), all_event_times)
    entry = d["start"].to_numpy(float) + np.where(tied, _ENTRY_NUDGE, 0.0)
    if tied.any():
        notes.append(f"{int(tied.sum())} site(s) enter at an event time; counted at risk only "
                     "after it, as in R (entry moved 1e-9 later for lifelines)")
    d = d.assign(_entry=entry)
    if times is None:
        top = np.floor(d["stop"].max())
        times = np.arange(1.0, top + 1.0) if top >= 1 else np.array([d["stop"].max()])
    times = np.sort(np.atleast_1d(np.asarray(times, float)))
    groups = [(None, d)] if by is None else list(d.groupby("group", sort=True))
    z_alpha = 1 - conf_level
    rows, med, fitters = [], [], {}
    for g, sub in groups:
        kmf = KaplanMeierFitter(alpha=z_alpha)
        label = "all sites" if g is None else str(g)
        kmf.fit(sub["stop"].to_numpy(float), sub["event"].to_numpy(int),
                entry=sub["_entry"].to_numpy(float), label=label)
        fitters[label] = kmf
        s = kmf.survival_function_at_times(times).to_numpy(float)
        tl = kmf.timeline
        idx = np.searchsorted(tl, times, side="right") - 1
        cum_sq = kmf._cumulative_sq_.to_numpy(float)  # Greenwood sum, lifelines
        se = np.where(idx >= 0, s * np.sqrt(cum_sq[np.maximum(idx, 0)]), 0.0)
        ci = kmf.confidence_interval_survival_function_.to_numpy(float)
        lo = np.where(idx >= 0, ci[np.maximum(idx, 0), 0], 1.0)
        hi = np.where(idx >= 0, ci[np.maximum(idx, 0), 1], 1.0)
        st, sp, ev = (sub[c].to_numpy(float) for c in ("start", "stop", "event"))
        counts = risk_counts(st, sp, ev, times)
        # past the last follow-up the curve is unknown (NaN), unless it has reached 0: a
        # group that lost every site stays at 0 (as lifelines and R extend=TRUE say)
        beyond = (times > sp.max()) & ~(s == 0)
        se = np.where(s == 0, np.nan, se)  # R: std.err of a curve at 0 is NaN
        s, se, lo, hi = (np.where(beyond, np.nan, v) for v in (s, se, lo, hi))
        frame = pd.DataFrame({"time": times, **counts,
                              "survival": s, "se": se, "lower": lo, "upper": hi})
        if by is not None:
            frame.insert(0, "group", g)
        rows.append(frame)
        mci = median_survival_times(kmf.confidence_interval_survival_function_)
        m = {"n": len(sub), "events": int(ev.sum()), "median": float(kmf.median_survival_time_),
             "lower": float(np.asarray(mci)[0, 0]), "upper": float(np.asarray(mci)[0, 1])}
        med.append({"group": g, **m} if by is not None else m)
    if any(times > d["stop"].max()):
        notes.append("times after the last follow-up are NaN (not extrapolated), except where "
                      "the curve has reached 0")
    notes.append("table: n_risk = sites at risk at each time; n_events / n_censor = first "
                 "discontinuations / censorings in (previous time, time], as R "
                 "summary(survfit, times=)")
    table = pd.concat(rows, ignore_index=True)
    medians = pd.DataFrame(med)

    logrank = None
    if by is not None and len(groups) >= 2:
        if late.any():
            from statsmodels.duration.survfunc import survdiff

            stat, p = survdiff(d["stop"].to_numpy(float), d["event"].to_numpy(int),
                               d["group"].to_numpy(), entry=d["start"].to_numpy(float))
            method = "log-rank with late entry, statsmodels survdiff(entry=)"
            df = len(groups) - 1
        else:
            from lifelines.statistics import multivariate_logrank_test

            r = multivariate_logrank_test(d["stop"].to_numpy(float), d["group"].to_numpy(),
                                          d["event"].to_numpy(int))
            stat, p, df = r.test_statistic, r.p_value, r.degrees_of_freedom
            method = "log-rank, lifelines multivariate_logrank_test"
        logrank = pd.Series({"statistic": float(stat), "df": int(df), "p": float(p),
                             "method": method})
    return KMResult(table, medians, logrank, fitters, conf_level, by, notes, d)

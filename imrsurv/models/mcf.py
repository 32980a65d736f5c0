"""Mean cumulative function (MCF) of recurrent discontinuations.

The MCF, E[N(t)], is the expected number of events per site by time t. On
(start, stop] counting-process data it is estimated by the Nelson-Aalen
estimator

    MCF(t) = sum_{t_j <= t} dN(t_j) / Y(t_j),

with ``dN`` the events at t_j and ``Y`` the rows at risk (``start < t_j <= stop``).

Its standard error is the Lawless-Nadeau (1995) robust one, which makes no
Poisson assumption: with the per-site increments

    a_i(t_j) = [dN_i(t_j) - Y_i(t_j) dN(t_j) / Y(t_j)] / Y(t_j)

the variance is ``sum_i (sum_{t_j <= t} a_i(t_j))^2``. This is the
infinitesimal-jackknife variance of R ``survfit(Surv(start, stop, event) ~ 1,
id=site)``: ``cumhaz`` and ``std.chaz`` (survival >= 3.0) are the same numbers.
Confidence limits are log-transformed: MCF exp(+-z se/MCF).

Computation: sort, ``searchsorted`` and ``cumsum``; the variance builds the
sites x event-times influence matrix in blocks of sites (no loop over event
times).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from .._tables import require_columns
from ..errors import DataError, Problem

_BLOCK_CELLS = 2_000_000  # influence-matrix cells held at once


def _prepare(data: pd.DataFrame, start, stop, event, id, by=None) -> tuple[pd.DataFrame, list]:
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"data must be a DataFrame, got {type(data).__name__}")
    require_columns(data, [c for c in (start, stop, event, id, by) if c is not None],
                    "invalid MCF data")
    where = np.array([f"row {i}" for i in data.index], dtype=object)
    d = pd.DataFrame({
        "start": (pd.to_numeric(data[start], errors="coerce") if start is not None
                  else pd.Series(0.0, index=data.index)),
        "stop": pd.to_numeric(data[stop], errors="coerce"),
        "event": pd.to_numeric(data[event], errors="coerce"),
        "id": data[id],
    }).reset_index(drop=True)
    if by is not None:
        d["group"] = data[by].to_numpy()
    problems = []

    def bad(mask, msg):
        for i in np.flatnonzero(mask):
            problems.append(Problem("data", where[i], str(d["id"].iloc[i]), msg))

    s, t, e = (d[c].to_numpy(float) for c in ("start", "stop", "event"))
    bad(~np.isfinite(s), f"{start} is not a finite number")
    bad(~np.isfinite(t), f"{stop} is not a finite number")
    bad(np.isfinite(s) & np.isfinite(t) & (t <= s), f"{stop} is not after {start}")
    bad(~(np.isfinite(e) & (e >= 0) & (e == np.round(e))),
        f"{event} must be a non-negative whole number (events at {stop})")
    bad(d["id"].isna().to_numpy(), f"{id} is missing")
    if by is not None:
        bad(d["group"].isna().to_numpy() if d["group"].dtype == object
            else pd.isna(d["group"]).to_numpy(), f"{by} is missing")
    if problems:
        raise DataError(problems, "invalid MCF data")
    return d, []


@dataclass
class _NA:
    time: np.ndarray
    n_risk: np.ndarray
    n_event: np.ndarray
    mcf: np.ndarray
    se: np.ndarray


def _nelson_aalen(start, stop, event, cluster, n_clusters, *, se=True) -> _NA:
    """Nelson-Aalen with the IJ (Lawless-Nadeau) standard error, vectorised."""
    has = event > 0
    times = np.unique(stop[has])
    K = len(times)
    if K == 0:
        e = np.empty(0)
        return _NA(e, e, e, e, e)
    lo = np.searchsorted(times, start, side="right")  # first event time index with t > start
    hi = np.searchsorted(times, stop, side="right")  # one past the last with t <= stop
    diff = np.bincount(lo, minlength=K + 1) - np.bincount(hi, minlength=K + 1)
    Y = np.cumsum(diff)[:K].astype(float)
    jev = np.searchsorted(times, stop[has])
    dN = np.bincount(jev, weights=event[has], minlength=K)
    dH = dN / Y
    H = np.cumsum(dH)
    if not se:
        return _NA(times, Y, dN, H, np.full(K, np.nan))
    w = dN / Y ** 2
    var = np.zeros(K)
    # blocks of clusters: rows sorted by cluster so each block is a slice
    order = np.argsort(cluster, kind="stable")
    cl_sorted = cluster[order]
    block = max(1, _BLOCK_CELLS // (K + 1))
    for c0 in range(0, n_clusters, block):
        c1 = min(n_clusters, c0 + block)
        r0, r1 = np.searchsorted(cl_sorted, [c0, c1])
        rows = order[r0:r1]
        nc = c1 - c0
        local = cluster[rows] - c0
        # at-risk indicator per (cluster, event time) via a difference array
        atrisk = (np.bincount(local * (K + 1) + lo[rows], minlength=nc * (K + 1))
                  - np.bincount(local * (K + 1) + hi[rows], minlength=nc * (K + 1)))
        atrisk = np.cumsum(atrisk.reshape(nc, K + 1), axis=1)[:, :K]
        inc = -atrisk * w[None, :]
        ev = rows[has[rows]]
        if len(ev):
            np.add.at(inc, (cluster[ev] - c0, np.searchsorted(times, stop[ev])),
                      event[ev] / Y[np.searchsorted(times, stop[ev])])
        U = np.cumsum(inc, axis=1)
        var += (U ** 2).sum(axis=0)
    return _NA(times, Y, dN, H, np.sqrt(var))


def mcf(data, *, start: str | None = "start", stop: str = "stop", event: str = "event",
        id: str = "site", by: str | None = None, conf_level: float = 0.95,
        outcome: str = "discontinue") -> pd.DataFrame:
    """Mean cumulative function (expected events per site) with robust errors.

    Parameters
    ----------
    data
        Frame with one row per (start, stop] interval of a site's follow-up,
        or a :class:`~imrsurv.History`. The rows should cover the whole time
        a site is under observation, including time while it is
        discontinued: the MCF is the mean number of events per site, so a
        discontinued site stays in the denominator. (An Andersen-Gill frame
        with rows only while the site is active gives the cumulative
        discontinuation rate among active sites instead.) A History is laid
        out that way from its spells: every sojourn is a row, with an event
        when it ends in the ``outcome`` (``"discontinue"`` or ``"restart"``).
    start, stop, event, id
        Column names; ``start=None`` means every row starts at 0. ``event``
        counts the events at ``stop``.
    by
        Optional column (for a History, a site column); one MCF per level
        (output column ``group``).

    Returns
    -------
    DataFrame ``[group,] time, n_risk, n_event, mcf, se, lower, upper`` with one
    row per distinct event time; the MCF is a step function, constant between
    rows and 0 before the first. ``attrs["follow_up"]`` maps each group (or
    None) to its last follow-up time, up to which the last value holds.
    """
    if hasattr(data, "spells") and callable(data.spells):
        data = history_frame(data, by=by, outcome=outcome)
        start, stop, event, id = "start", "stop", "event", "site"
    d, _ = _prepare(data, start, stop, event, id, by)
    z = stats.norm.ppf(1 - (1 - conf_level) / 2)
    frames = []
    follow_up = {}
    groups = [(None, d)] if by is None else list(d.groupby("group", sort=True))
    for g, sub in groups:
        cl, uniq = pd.factorize(sub["id"], sort=True)
        na = _nelson_aalen(sub["start"].to_numpy(float), sub["stop"].to_numpy(float),
                           sub["event"].to_numpy(float), cl, len(uniq))
        with np.errstate(divide="ignore", invalid="ignore"):
            f = np.exp(z * na.se / na.mcf)
        frame = pd.DataFrame({"time": na.time, "n_risk": na.n_risk, "n_event": na.n_event,
                              "mcf": na.mcf, "se": na.se, "lower": na.mcf / f,
                              "upper": na.mcf * f})
        if by is not None:
            frame.insert(0, "group", g)
        frames.append(frame)
        follow_up[g] = float(sub["stop"].max())
    cols = (["group"] if by is not None else []) + ["time", "n_risk", "n_event", "mcf", "se",
                                                    "lower", "upper"]
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=cols)
    out = out[cols]
    out.attrs["follow_up"] = follow_up
    return out


def history_frame(history, by: str | None = None, outcome: str = "discontinue") -> pd.DataFrame:
    """``site, start, stop, event[, by]`` over each site's whole follow-up, from a History.

    One row per spell; ``event`` is 1 when the spell ends in the outcome
    (entering ``discontinued`` for ``"discontinue"``, ``restarted`` for
    ``"restart"``).
    """
    target = {"discontinue": "discontinued", "restart": "restarted"}
    if outcome not in target:
        raise ValueError("outcome must be 'discontinue' or 'restart'")
    sp = history.spells()
    out = pd.DataFrame({"site": sp["site"].to_numpy(), "start": sp["start"].to_numpy(float),
                        "stop": sp["stop"].to_numpy(float),
                        "event": (sp["next"] == target[outcome]).to_numpy(int)})
    if by is not None:
        sites = history.sites
        if by not in sites.columns:
            raise DataError([Problem("", None, None, f"by={by!r} is not a site column (have: "
                                     f"{', '.join(map(str, sites.columns))})")], "cannot group")
        out = out.merge(sites[["site", by]], on="site", how="left")
    return out


def mcf_at(curve: pd.DataFrame, times, group=None) -> pd.DataFrame:
    """Evaluate an :func:`mcf` step function at ``times`` (NaN after follow-up)."""
    c = curve if group is None else curve[curve["group"] == group]
    t = np.atleast_1d(np.asarray(times, float))
    idx = np.searchsorted(c["time"].to_numpy(), t, side="right") - 1
    out = pd.DataFrame({"time": t})
    for col in ("mcf", "se", "lower", "upper"):
        v = c[col].to_numpy(float)
        out[col] = np.where(idx >= 0, v[np.maximum(idx, 0)], 0.0 if col == "mcf" else np.nan)
    out.loc[idx < 0, "se"] = 0.0
    end = curve.attrs.get("follow_up", {}).get(group)
    if end is not None:
        out.loc[t > end, ["mcf", "se", "lower", "upper"]] = np.nan
    return out


@dataclass
class MCFTest:
    """Robust pseudo-score test that groups share one mean cumulative function."""

    statistic: float
    df: int
    p_value: float
    score: np.ndarray
    variance: np.ndarray
    groups: list
    method: str = ("Cook-Lawless robust pseudo-score (log-rank weights Y_g/Y), "
                   "chi-square on groups-1 df")
    difference: pd.DataFrame | None = field(default=None)

    @property
    def p(self) -> float:
        """The p-value (same as ``p_value``; ``p`` is the name every result uses)."""
        return self.p_value

    @property
    def notes(self) -> list[str]:
        return [f"{self.method}.",
                "Robust (Lawless-Nadeau) variance: no Poisson assumption; sites are the "
                "independent units."]

    def __str__(self) -> str:
        text = (f"MCF equality test\n  groups: {', '.join(map(str, self.groups))}\n"
                f"  chi2 = {self.statistic:.4f} on {self.df} df, p = {self.p_value:.4g}")
        if self.difference is not None:
            text += "\nMCF difference at chosen times:\n" + self.difference.to_string(index=False)
        return text + "\nNotes:\n" + "\n".join(f"  - {n}" for n in self.notes)

    __repr__ = __str__

    def print_summary(self) -> None:
        print(str(self))

    def _repr_html_(self) -> str:
        import html

        head = (f"<p>MCF equality test: chi2 = {self.statistic:.4f} on {self.df} df, "
                f"p = {self.p_value:.4g} (groups: {html.escape(', '.join(map(str, self.groups)))})"
                "</p>")
        diff = "" if self.difference is None else self.difference.to_html(
            index=False, float_format=lambda v: f"{v:.4g}")
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in self.notes)
        return f"<div>{head}{diff}<ul>{notes}</ul></div>"


def mcf_test(data, *, by: str, start: str | None = "start", stop: str = "stop",
             event: str = "event", id: str = "site", at=None,
             conf_level: float = 0.95) -> MCFTest:
    """Test equality of the MCFs of the groups in ``by`` (Cook & Lawless 2007, sec. 3.7).

    The pseudo-score for group g is the log-rank-type statistic

        U_g = sum_j [dN_g(t_j) - Y_g(t_j) dN(t_j) / Y(t_j)],

    a weighted difference of each group's Nelson-Aalen increments from the
    pooled one. Its variance is the robust (Lawless-Nadeau) one, which does
    not assume Poisson events: with the site score

        s_i = sum_j (e_{g(i)} - Ybar(t_j)) [dN_i(t_j) - Y_i(t_j) dN(t_j)/Y(t_j)],
        Ybar_g = Y_g / Y,

    ``V = sum_i s_i s_i'`` and ``X2 = U' V^- U`` is chi-square on G-1 df (the
    last group dropped). For two groups this is ``U^2 / V`` with
    ``U = sum_j Y_1 Y_2 / Y (dMCF_1 - dMCF_2)``. It equals the robust score
    test of R ``coxph(Surv(start, stop, event) ~ group + cluster(id),
    ties="breslow")`` (``fit$rscore``).

    ``at``: times at which also to report MCF_1 - MCF_2 with a z test (the
    two groups' sites are independent, so the variances add); two groups only.
    """
    if hasattr(data, "spells") and callable(data.spells):
        data = history_frame(data, by=by)
        start, stop, event, id = "start", "stop", "event", "site"
    d, _ = _prepare(data, start, stop, event, id, by)
    groups = sorted(d["group"].unique(), key=lambda v: (str(type(v)), v))
    G = len(groups)
    if G < 2:
        raise ValueError(f"mcf_test needs at least two groups in {by!r}, found {G}")
    gi = d["group"].map({g: k for k, g in enumerate(groups)}).to_numpy()
    s_, t_, e_ = (d[c].to_numpy(float) for c in ("start", "stop", "event"))
    cl, uniq = pd.factorize(d["id"], sort=True)
    has = e_ > 0
    times = np.unique(t_[has])
    K = len(times)
    if K == 0:
        raise ValueError("no events: nothing to test")
    lo = np.searchsorted(times, s_, side="right")
    hi = np.searchsorted(times, t_, side="right")
    Yg = np.zeros((K + 1, G))
    for g in range(G):
        m = gi == g
        Yg[:, g] = np.cumsum(np.bincount(lo[m], minlength=K + 1)
                             - np.bincount(hi[m], minlength=K + 1))
    Yg = Yg[:K]
    Y = Yg.sum(1)
    jev = np.searchsorted(times, t_[has])
    dNg = np.zeros((K, G))
    np.add.at(dNg, (jev, gi[has]), e_[has])
    dN = dNg.sum(1)
    dH0 = dN / Y
    Ybar = Yg / Y[:, None]
    U = (dNg - Yg * dH0[:, None]).sum(0)
    # site scores: event part minus compensator part (range sums of cumsums)
    eye = np.eye(G)
    rows_score = np.zeros((len(d), G))
    ev_rows = np.flatnonzero(has)
    rows_score[ev_rows] += e_[ev_rows, None] * (eye[gi[ev_rows]] - Ybar[jev])
    cum_bar = np.vstack([np.zeros(G), np.cumsum(Ybar * dH0[:, None], axis=0)])  # (K+1, G)
    cum_h = np.concatenate([[0.0], np.cumsum(dH0)])
    rows_score -= eye[gi] * (cum_h[hi] - cum_h[lo])[:, None] - (cum_bar[hi] - cum_bar[lo])
    site_score = np.zeros((len(uniq), G))
    np.add.at(site_score, cl, rows_score)
    V = site_score.T @ site_score
    u, v = U[:-1], V[:-1, :-1]
    stat = float(u @ np.linalg.pinv(v) @ u)
    df = G - 1
    p = float(stats.chi2.sf(stat, df))

    diff = None
    if at is not None:
        if G != 2:
            raise ValueError("at= (MCF differences) needs exactly two groups")
        curve = mcf(data, start=start, stop=stop, event=event, id=id, by=by,
                    conf_level=conf_level)
        a = mcf_at(curve, at, groups[0])
        b = mcf_at(curve, at, groups[1])
        z = stats.norm.ppf(1 - (1 - conf_level) / 2)
        dif = a["mcf"] - b["mcf"]
        se = np.sqrt(a["se"] ** 2 + b["se"] ** 2)
        with np.errstate(divide="ignore", invalid="ignore"):
            zz = dif / se
        diff = pd.DataFrame({"time": a["time"], f"mcf_{groups[0]}": a["mcf"],
                             f"mcf_{groups[1]}": b["mcf"], "difference": dif, "se": se,
                             "lower": dif - z * se, "upper": dif + z * se,
                             "z": zz, "p": 2 * stats.norm.sf(np.abs(zz))})
    return MCFTest(stat, df, p, U, V, list(groups), difference=diff)


def plot_mcf(curve: pd.DataFrame, ax=None, **kwargs):
    """Plot an :func:`mcf` result (step curves with CI bands); see :mod:`imrsurv.plots`."""
    from ..plots import plot_mcf as _plot

    return _plot(curve, ax=ax, **kwargs)

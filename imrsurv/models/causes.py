"""Causes of discontinuation: cumulative incidence by cause and Gray's test.

A site is at risk of its *first* discontinuation from its start; it leaves by
one of K causes (financing, priorities, workforce, ..., ``unknown`` for an
empty cause cell) or is censored at its last contact. The cumulative incidence
of cause k is ``F_k(t) = P(T <= t, cause = k)``, the Aalen-Johansen estimator
of the competing-risks multi-state model ``event-free -> cause k``
(Aalen & Johansen 1978; Kalbfleisch & Prentice 2002, ch. 8)::

    F_k(t) = sum_{t_j <= t} S(t_j-) d_kj / n_j

with S the all-cause Kaplan-Meier, d_kj the cause-k discontinuations at t_j
and n_j the sites at risk (``entry < t_j <= time``, so late entry is handled).
1 - sum_k F_k is the probability of having sustained the programme.

Errors:

* ``se``: the infinitesimal jackknife, by site, as R ``survfit(Surv(time,
  factor(status)) ~ group, id=site)`` (``std.err``), from the multi-state core
  :func:`imrsurv.models.multistate._aalen_johansen`;
* ``se_cuminc``: the delta-method variance of R ``cmprsk::cuminc`` (Gray's
  ``cinc``; Aalen 1978 counting-process variance, ties corrected by
  ``1 - (d - 1)/(n - 1)``), available when every site enters at one time.

Gray's (1988) test compares the cumulative incidence of one cause across
groups: score ``s_g = sum_t (1 - F(t-))^rho [d_g1(t) - n_g1*(t) d_1(t)/n_1*(t)]``
with ``R_g = n_g (1 - F_g(t-)) / S_g(t-)`` the subdistribution risk set, and
its variance as R ``cmprsk::cuminc`` (``crstm``), summed over strata;
``s' V^-1 s`` is chi-square on groups - 1 df.
"""

from __future__ import annotations

import html
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import ArgumentError, DataError, Problem, bad_argument, check_number
from .multistate import _aalen_johansen, _check_common, _check_times, _ci

__all__ = ["CumulativeIncidence", "GrayTest", "cause_spells", "cause_state_probabilities",
           "competing_risks_frame", "cumulative_incidence", "gray_test"]

CENSORED = "censored"
CAUSE_UNKNOWN = "unknown"  # an empty cause cell on a discontinuation (imrsurv.validate)
ANY_CAUSE = "discontinued"  # the one cause when the event log has no cause column


# ---------------------------------------------------------------------------
# data
def competing_risks_frame(data: Any, by: str | None = None, *, time: str = "time",
                          status: str = "status", entry: str | None = None, id: str = "site",
                          censored: object = CENSORED) -> pd.DataFrame:
    """One row per site: ``site, entry, time, status[, group]`` for the first discontinuation.

    ``data`` is a :class:`~imrsurv.History` (time from the site's start to its
    first discontinuation, ``status`` its cause, or ``censored`` at the last
    contact; without a cause column every discontinuation has the cause
    ``discontinued``) or a plain frame with columns ``time`` and ``status``
    (a cause label, or the value ``censored``: with numeric codes as in
    ``cmprsk`` pass ``censored=0``), optional ``entry`` (late entry, default 0)
    and ``id`` (default ``site``; one row per id). ``by`` names a site column
    (History) or a column of the frame. Raises :class:`DataError` naming every
    bad row.
    """
    if by is not None and not isinstance(by, str):
        raise bad_argument("by", by, "None or the name of a column")
    if hasattr(data, "spells") and callable(data.spells) and hasattr(data, "sites"):
        return _from_history(data, by)
    if not isinstance(data, pd.DataFrame):
        raise ArgumentError([f"data must be a History or a DataFrame with columns {time}, "
                             f"{status}, not {type(data).__name__}"])
    return _from_frame(data, by, time, status, entry, id, censored)


def _from_history(hist: Any, by: str | None) -> pd.DataFrame:
    sp = hist.spells()
    first = sp[sp["state"] == "sustained"].sort_values(["site", "start"], kind="stable")
    first = first.groupby("site", sort=True).head(1)
    ended = (first["next"] == "discontinued").to_numpy()
    cause = (first["cause"].to_numpy(dtype=object) if "cause" in first.columns
             else np.full(len(first), ANY_CAUSE, dtype=object))
    out = pd.DataFrame({
        "site": first["site"].to_numpy(dtype=object),
        "entry": first["start"].to_numpy(float),
        "time": first["stop"].to_numpy(float),
        "status": np.where(ended, cause, CENSORED).astype(object),
    })
    if by is not None:
        sites = hist.sites
        if by not in sites.columns or by == "site":
            raise bad_argument("by", by, "None or a site column: " + ", ".join(
                c for c in sites.columns if c != "site"))
        out["group"] = out["site"].map(sites.set_index("site")[by]).to_numpy(dtype=object)
        missing = out["group"].isna().to_numpy()
        if missing.any():
            raise DataError([Problem("sites", None, str(s), f"no value of {by!r} (every site "
                                     "needs one to be grouped)") for s in out["site"][missing]],
                            "cannot group")
    return out.reset_index(drop=True)


def _from_frame(df: pd.DataFrame, by: str | None, time: str, status: str, entry: str | None,
                id: str, censored: object) -> pd.DataFrame:
    need = [time, status] + ([entry] if entry else []) + ([by] if by else [])
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise DataError([Problem("data", None, None,
                                 f"missing column(s) {', '.join(missing)} (have: "
                                 f"{', '.join(map(str, df.columns))})")], "invalid input")
    where = np.array([f"row {i}" for i in df.index], dtype=object)
    ids = (df[id].astype(str).to_numpy(dtype=object) if id in df.columns
           else np.array([str(i) for i in df.index], dtype=object))
    problems: list[Problem] = []

    def bad(mask: np.ndarray, message: str) -> None:
        for i in np.flatnonzero(mask):
            problems.append(Problem("data", where[i], str(ids[i]), message))

    t = pd.to_numeric(df[time], errors="coerce").to_numpy(float)
    bad(~np.isfinite(t), f"{time} is not a finite number")
    e = (np.zeros(len(df)) if entry is None
         else pd.to_numeric(df[entry], errors="coerce").to_numpy(float))
    if entry is not None:
        bad(~np.isfinite(e), f"{entry} is not a finite number")
    ok = np.isfinite(t) & np.isfinite(e)
    bad(ok & (t <= e), f"{time} must be after {entry or 'the entry time 0'}"
                       + ("" if entry else " (pass entry= for late entry)"))
    raw = df[status]
    st_missing = raw.isna().to_numpy() | raw.astype(str).str.strip().eq("").to_numpy()
    bad(st_missing, f"{status} is missing (give a cause or {censored!r} for censored)")
    is_cens = (raw == censored).to_numpy() | (raw.astype(str).str.strip() == str(censored)).to_numpy()
    labels = raw.astype(str).str.strip().to_numpy(dtype=object)
    if by is not None:
        bad(df[by].isna().to_numpy(), f"{by} is missing")
    dup = pd.Series(ids).duplicated(keep="first").to_numpy() if id in df.columns else \
        np.zeros(len(df), bool)
    bad(dup, f"{id} appears on more than one row (one row per site: the first discontinuation)")
    if problems:
        raise DataError(problems, "invalid competing-risks data")
    out = pd.DataFrame({"site": ids, "entry": e, "time": t,
                        "status": np.where(is_cens, CENSORED, labels).astype(object)})
    if by is not None:
        out["group"] = df[by].to_numpy(dtype=object)
    return out.reset_index(drop=True)


def _causes_of(cr: pd.DataFrame) -> tuple[str, ...]:
    """Observed causes, sorted, with ``unknown`` (an empty cause cell) last."""
    found = sorted(pd.unique(cr.loc[cr["status"] != CENSORED, "status"]).astype(str))
    return tuple([c for c in found if c != CAUSE_UNKNOWN] +
                 [c for c in found if c == CAUSE_UNKNOWN])


# ---------------------------------------------------------------------------
# estimators
def _cuminc_variance(time: np.ndarray, status: np.ndarray, cause: str,
                     at: np.ndarray) -> np.ndarray:
    """cmprsk ``cuminc``'s variance of F_cause at the distinct event times ``at``.

    Per distinct time t_j (n_j at risk, d1 cause events, d2 other events, S the
    all-cause KM before t_j, S+ after, F after): with c(d) = 1 - (d - 1)/(n - 1)
    for d > 1 (else 1) and w = S^2 c d / n^2,

    * other causes: a += (F/S+)^2 w2, b += F/S+^2 w2, c += w2/S+^2 (when S+ > 0);
    * this cause: q = 1/S+ (0 when S+ = 0), a += (1 + q F)^2 w1, b += q (1 + q F) w1,
      c += q^2 w1;

    and Var F(t_j) = a + F^2 c - 2 F b, updated only where d1 > 0 (it is a
    step function with the estimate's jumps).
    """
    order = np.argsort(time, kind="stable")
    y, st = time[order], status[order]
    u, first = np.unique(y, return_index=True)
    n = len(y)
    n_risk = (n - first).astype(float)
    ev = st != CENSORED
    d = np.add.reduceat(ev.astype(float), first) if n else np.zeros(0)
    d1 = np.add.reduceat((st == cause).astype(float), first) if n else np.zeros(0)
    d2 = d - d1
    s_after = np.cumprod(1 - d / n_risk)
    s_before = np.r_[1.0, s_after[:-1]]
    f = np.cumsum(s_before * d1 / n_risk)
    with np.errstate(divide="ignore", invalid="ignore"):
        def tie(dk: np.ndarray) -> np.ndarray:
            return np.where(dk > 1, 1 - (dk - 1) / (n_risk - 1), 1.0)

        w1 = s_before ** 2 * tie(d1) * d1 / n_risk ** 2
        w2 = s_before ** 2 * tie(d2) * d2 / n_risk ** 2
        pos = s_after > 0
        q = np.where(pos, 1 / np.where(pos, s_after, 1.0), 0.0)
        use2 = (d2 > 0) & pos
        a = np.where(use2, (f * q) ** 2 * w2, 0) + np.where(d1 > 0, (1 + q * f) ** 2 * w1, 0)
        b = np.where(use2, q * (f * q) * w2, 0) + np.where(d1 > 0, q * (1 + q * f) * w1, 0)
        c = np.where(use2, q ** 2 * w2, 0) + np.where(d1 > 0, q ** 2 * w1, 0)
    a, b, c = np.cumsum(a), np.cumsum(b), np.cumsum(c)
    var = a + f ** 2 * c - 2 * f * b
    jump = d1 > 0
    # the variance changes only at this cause's event times: carry it forward
    idx = np.where(jump, np.arange(len(u)), -1)
    idx = np.maximum.accumulate(idx) if len(idx) else idx
    var_step = np.where(idx >= 0, var[np.maximum(idx, 0)], 0.0)
    k = np.searchsorted(u, at, side="right") - 1
    return np.where(k >= 0, var_step[np.maximum(k, 0)], 0.0)


@dataclass
class _Curve:
    times: np.ndarray  # 0, event times, last follow-up
    cif: np.ndarray  # (T, K)
    se: np.ndarray  # (T, K) infinitesimal jackknife
    se_cuminc: np.ndarray  # (T, K) or NaN
    n_risk: np.ndarray  # (T,)
    n_event: np.ndarray  # (T, K)
    t_end: float


def _fit_group(cr: pd.DataFrame, causes: tuple[str, ...], eval_times: np.ndarray | None,
               same_entry: bool) -> _Curve:
    code = {c: i + 1 for i, c in enumerate(causes)}
    to = cr["status"].map(code).fillna(-1).to_numpy(np.int64)
    clusters = pd.factorize(cr["site"], sort=True)[0]
    start, stop = cr["entry"].to_numpy(float), cr["time"].to_numpy(float)
    t_end = float(stop.max())
    if eval_times is None:
        ev_t = np.unique(stop[to > 0])
        t = np.concatenate([[min(0.0, float(start.min()))], ev_t])
        if t_end > t[-1]:
            t = np.append(t, t_end)
    else:
        t = eval_times
    fit = _aalen_johansen(start, stop, np.zeros(len(cr), np.int64), to, clusters,
                          len(causes) + 1, eval_times=t, states=("event-free", *causes))
    cif, se = fit.eval_p[:, 1:], fit.eval_se[:, 1:]
    # at risk at t: entry < t <= time; events of each cause exactly at t
    n_risk = (np.searchsorted(np.sort(start), t, side="left")
              - np.searchsorted(np.sort(stop), t, side="left"))
    n_event = np.zeros((len(t), len(causes)))
    for k in range(len(causes)):
        ev = np.sort(stop[to == k + 1])
        upto = np.searchsorted(ev, t, side="right")
        # at event times: the events at t; at requested times: those in (previous time, t],
        # as R's summary(survfit, times=)
        n_event[:, k] = (upto - np.searchsorted(ev, t, side="left") if eval_times is None
                         else np.diff(np.r_[0, upto]))
    if same_entry:
        rel = stop - start[0]
        se_c = np.stack([np.sqrt(np.maximum(_cuminc_variance(
            rel, cr["status"].to_numpy(dtype=object), c, t - start[0]), 0.0))
            for c in causes], axis=1) if causes else np.zeros((len(t), 0))
    else:
        se_c = np.full_like(cif, np.nan)
    return _Curve(t, cif, se, se_c, n_risk.astype(float), n_event.astype(float), t_end)


@dataclass
class GrayTest:
    """Gray's (1988) k-sample test of cumulative incidence, one row per cause."""

    table: pd.DataFrame  # cause, statistic, df, p
    groups: tuple[str, ...]
    rho: float
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"Gray's test of equal cumulative incidence across {len(self.groups)} groups "
                 f"({', '.join(self.groups)}); rho = {self.rho:g}"]
        for _, r in self.table.iterrows():
            lines.append(f"  {r['cause']:<16} chi-square = {r['statistic']:.4g} on "
                         f"{int(r['df'])} df, p = {r['p']:.3g}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return (f"<div><p>{html.escape(str(self).splitlines()[0])}</p>"
                f"{self.table.to_html(index=False, float_format=lambda v: f'{v:.4g}')}</div>")


def _gray_score(y: np.ndarray, m: np.ndarray, g: np.ndarray, ng: int, rho: float
                ) -> tuple[np.ndarray, np.ndarray]:
    """Score and variance of Gray's test in one stratum (cmprsk ``crst``).

    ``y`` sorted times, ``m`` 0 censored / 1 this cause / 2 other cause, ``g``
    group codes 0..ng-1. Loops over distinct times (each step needs the
    previous left-continuous CIF and KM of every group); vectorised over groups.
    """
    ng1 = ng - 1
    rs = np.bincount(g, minlength=ng).astype(float)
    f1m = np.zeros(ng)
    skmm = np.ones(ng)
    f1, skm = f1m.copy(), skmm.copy()
    v3 = np.zeros(ng)
    v2 = np.zeros((ng1, ng))
    c = np.zeros((ng, ng))
    v = np.zeros((ng1, ng1))
    s = np.zeros(ng1)
    fm = 0.0
    u, first = np.unique(y, return_index=True)
    last = np.r_[first[1:], len(y)]
    for lo, hi in zip(first, last, strict=True):
        d = np.zeros((3, ng))
        np.add.at(d, (m[lo:hi], g[lo:hi]), 1.0)
        nd1, nd2 = d[1].sum(), d[2].sum()
        if nd1 > 0 or nd2 > 0:
            at = rs > 0
            safe_rs = np.where(at, rs, 1.0)
            skm = np.where(at, skmm * (rs - d[1] - d[2]) / safe_rs, skm)
            f1 = np.where(at, f1m + skmm * d[1] / safe_rs, f1)
            h = np.where(at, rs / np.where(at, skmm, 1.0), 0.0)
            tr = h.sum()
            tq = np.where(at, rs * (1 - f1m) / np.where(at, skmm, 1.0), 0.0).sum()
            f = fm + nd1 / tr
            fb = (1 - fm) ** rho
            a = fb * (np.diag(h) - np.outer(h, h) / tr)
            c += a * nd1 / (tr * (1 - fm))
            s += np.where(at[:ng1], fb * (d[1, :ng1] - nd1 * h[:ng1] * (1 - f1m[:ng1]) / tq), 0)
            if nd1 > 0:
                with np.errstate(divide="ignore", invalid="ignore"):
                    t4 = np.where(skm > 0, 1 - (1 - f) / np.where(skm > 0, skm, 1.0), 1.0)
                    t5 = 1 - (nd1 - 1) / (tr * skmm - 1) if nd1 > 1 else np.ones(ng)
                    t3 = np.where(at, t5 * skmm * nd1 / (tr * safe_rs), 0.0)
                v3 += t4 ** 2 * t3
                t1 = a[:ng1] - t4[None, :] * c[:ng1]
                v2 += t1 * (t4 * t3)[None, :]
                v += (t1 * t3[None, :]) @ t1.T
            if nd2 > 0:
                use = (skm > 0) & (d[2] > 0)
                with np.errstate(divide="ignore", invalid="ignore"):
                    t4 = np.where(use, (1 - f) / np.where(skm > 0, skm, 1.0), 0.0)
                    t5 = np.where(d[2] > 1, 1 - (d[2] - 1) / (rs - 1), 1.0)
                    t3 = np.where(use, t5 * skmm ** 2 * d[2] / safe_rs ** 2, 0.0)
                v3 += t4 ** 2 * t3
                t1 = t4[None, :] * c[:ng1]
                v2 -= t1 * (t4 * t3)[None, :]
                v += (t1 * t3[None, :]) @ t1.T
            fm = f
        rs -= np.bincount(g[lo:hi], minlength=ng)
        f1m, skmm = f1.copy(), skm.copy()
    cc = c[:ng1]
    v = v + (cc * v3[None, :]) @ cc.T + cc @ v2.T + v2 @ cc.T
    return s, v


def _gray(cr: pd.DataFrame, causes: tuple[str, ...], groups: list, rho: float,
          strata: np.ndarray | None) -> pd.DataFrame:
    rows = []
    gcode = pd.Index(groups).get_indexer(cr["group"].to_numpy(dtype=object))
    y = (cr["time"] - cr["entry"]).to_numpy(float)
    strata = np.zeros(len(cr), np.int64) if strata is None else strata
    ng = len(groups)
    for cause in causes:
        m = np.where(cr["status"] == cause, 1, np.where(cr["status"] == CENSORED, 0, 2))
        s, v = np.zeros(ng - 1), np.zeros((ng - 1, ng - 1))
        for k in np.unique(strata):
            sel = np.flatnonzero(strata == k)
            sel = sel[np.argsort(y[sel], kind="stable")]
            sk, vk = _gray_score(y[sel], m[sel], gcode[sel], ng, rho)
            s, v = s + sk, v + vk
        try:
            stat = float(s @ np.linalg.solve(v, s))
        except np.linalg.LinAlgError:
            stat = np.nan
        rows.append({"cause": cause, "statistic": stat, "df": ng - 1,
                     "p": float(stats.chi2.sf(stat, ng - 1)) if np.isfinite(stat) else np.nan})
    return pd.DataFrame(rows)


def _group_order(values: pd.Series) -> list:
    return sorted(pd.unique(values), key=lambda v: (str(type(v)), v))


def gray_test(data: Any, by: str, *, rho: float = 0.0, strata: str | None = None,
              time: str = "time", status: str = "status", entry: str | None = None,
              id: str = "site", censored: object = CENSORED) -> GrayTest:
    """Gray's test that the cumulative incidence of each cause is equal across ``by``.

    As R ``cmprsk::cuminc(ftime, fstatus, group, rho=, strata=)$Tests``; data as
    :func:`competing_risks_frame`. ``strata``: a column (site column for a
    History) within which groups are compared, scores and variances summed.
    Needs every site to enter at the same time (Gray's test has no late entry).
    """
    if not isinstance(by, str):
        raise bad_argument("by", by, "the name of a column defining the groups")
    rho = check_number("rho", rho)
    cr = competing_risks_frame(data, by, time=time, status=status, entry=entry, id=id,
                               censored=censored)
    return _gray_on(cr, rho, _strata_codes(data, cr, strata))


def _strata_codes(data: Any, cr: pd.DataFrame, strata: str | None) -> np.ndarray | None:
    if strata is None:
        return None
    if not isinstance(strata, str):
        raise bad_argument("strata", strata, "None or the name of a column")
    if isinstance(data, pd.DataFrame):
        if strata not in data.columns:
            raise bad_argument("strata", strata, "a column of the data: "
                               + ", ".join(map(str, data.columns)))
        values = data[strata].to_numpy(dtype=object)
    else:
        sites = data.sites
        if strata not in sites.columns:
            raise bad_argument("strata", strata, "a site column: " + ", ".join(
                c for c in sites.columns if c != "site"))
        values = cr["site"].map(sites.set_index("site")[strata]).to_numpy(dtype=object)
    return pd.factorize(values, sort=True)[0].astype(np.int64)


def _gray_on(cr: pd.DataFrame, rho: float, strata: np.ndarray | None) -> GrayTest:
    if cr["entry"].nunique() > 1:
        raise DataError([Problem("data", None, None,
                                 "Gray's test needs every site to enter at the same time; "
                                 f"entries range from {cr['entry'].min():g} to "
                                 f"{cr['entry'].max():g} (late entry is not part of the test)")],
                        "cannot test")
    groups = _group_order(cr["group"])
    if len(groups) < 2:
        raise DataError([Problem("data", None, None,
                                 f"Gray's test needs two or more groups; only {groups!r}")],
                        "cannot test")
    causes = _causes_of(cr)
    table = _gray(cr, causes, groups, rho, strata)
    notes = ["Gray's (1988) test as R cmprsk::cuminc: weights (1 - F(t-))^rho on the "
             "subdistribution risk sets; sites are independent units (one row each)."]
    if strata is not None:
        notes.append("Stratified: scores and variances are summed over strata.")
    return GrayTest(table, tuple(map(str, groups)), rho, notes)


# ---------------------------------------------------------------------------
# result
class CumulativeIncidence:
    """Cumulative incidence of each cause of (first) discontinuation, by group.

    ``curves``: long frame ``[group,] time, cause, cif, se, lower, upper,
    se_cuminc, n_risk, n_event`` at the start, every event time and the last
    follow-up (a step function, right-continuous; ``n_event`` the events at
    that time). ``summary``: the same at ``times`` (default: every whole year
    of follow-up; ``n_event`` the events since the previous time, as R's
    ``summary(survfit, times=)``). ``at(times)`` gives
    other times; ``gray`` is Gray's test when ``by`` was given (None if it
    cannot be computed: see ``notes``). ``plot()`` draws the curves.
    """

    def __init__(self, curves: pd.DataFrame, summary: pd.DataFrame, causes: tuple[str, ...],
                 by: str | None, gray: GrayTest | None, notes: list[str], conf_level: float,
                 conf_type: str, fits: dict, n_sites: pd.Series):
        self.curves = curves
        self.summary = summary
        self.causes = causes
        self.by = by
        self.gray = gray
        self.notes = notes
        self.conf_level = conf_level
        self.conf_type = conf_type
        self._fits = fits
        self.n_sites = n_sites

    def at(self, times: Any) -> pd.DataFrame:
        """Estimates at ``times`` (years); NaN (with a note) beyond a group's follow-up."""
        t = _check_times(times)
        return _table(self._fits, t, self.causes, self.by, self.conf_level, self.conf_type)

    def _header(self) -> str:
        groups = ", ".join(f"{g}: {n}" for g, n in self.n_sites.items())
        return (f"Cumulative incidence of the first discontinuation by cause "
                f"(Aalen-Johansen); causes: {', '.join(self.causes) or 'none'}\n"
                f"  sites: {groups}")

    def summary_text(self) -> str:
        sm = self.summary.copy()
        pct = f"{100 * self.conf_level:g}%"
        lines = [self._header(), ""]
        keys = ["group"] if self.by is not None else []
        for key, sub in (sm.groupby(keys, sort=False) if keys else [(None, sm)]):
            if key is not None:
                lines.append(f"{self.by} = {key[0] if isinstance(key, tuple) else key}")
            wide = sub.assign(text=[
                "NaN (beyond follow-up)" if np.isnan(p) else
                f"{100 * p:5.1f} ({100 * lo:.1f}-{100 * hi:.1f})" if np.isfinite(lo) else
                f"{100 * p:5.1f}" for p, lo, hi in zip(sub["cif"], sub["lower"], sub["upper"],
                                                        strict=True)])
            tab = wide.pivot(index="time", columns="cause", values="text")[list(self.causes)]
            tab.index = [f"{t:g}" for t in tab.index]
            tab.index.name = "years"
            lines.append(f"  cumulative incidence % ({pct} CI)")
            lines += ["  " + line for line in tab.to_string().splitlines()]
            lines.append("")
        if self.gray is not None:
            lines.append(str(self.gray).splitlines()[0])
            lines += [f"  {r['cause']:<16} chi-square = {r['statistic']:.4g} on {int(r['df'])} "
                      f"df, p = {r['p']:.3g}" for _, r in self.gray.table.iterrows()]
            lines.append("")
        lines += ["Notes:"] + [f"  - {n}" for n in self.notes]
        return "\n".join(lines)

    def print_summary(self) -> None:
        print(self.summary_text())

    def __repr__(self) -> str:
        return self.summary_text()

    def _repr_html_(self) -> str:
        head = "<br>".join(html.escape(x) for x in self._header().splitlines())
        table = self.summary.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="")
        gray = "" if self.gray is None else self.gray._repr_html_()
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in self.notes)
        return f"<div><p>{head}</p>{table}{gray}<ul>{notes}</ul></div>"

    def plot(self, ax: Any = None, *, ci: bool = True, causes: Any = None) -> Any:
        """Step curves of the cumulative incidence of each cause (per group), with CIs."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(6.5, 4))
        chosen = list(self.causes) if causes is None else [causes] if isinstance(causes, str) \
            else list(causes)
        unknown = [c for c in chosen if c not in self.causes]
        if unknown:
            raise bad_argument("causes", causes, "None or causes of the data: "
                               + ", ".join(self.causes))
        cv = self.curves
        groups = [None] if self.by is None else list(pd.unique(cv["group"]))
        styles = ["-", "--", ":", "-."]
        colors = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0", "C1", "C2"])
        for gi, g in enumerate(groups):
            sub = cv if g is None else cv[cv["group"] == g]
            for ci_, cause in enumerate(chosen):
                d = sub[sub["cause"] == cause]
                label = cause if g is None else f"{cause}, {g}"
                color = colors[ci_ % len(colors)]
                ax.step(d["time"], d["cif"], where="post", color=color,
                        ls=styles[gi % len(styles)], label=label)
                if ci:
                    ax.fill_between(d["time"], d["lower"].fillna(0), d["upper"].fillna(0),
                                    step="post", color=color, alpha=0.12, lw=0)
        ax.set_xlabel("years since start")
        ax.set_ylabel("cumulative incidence")
        ax.set_ylim(0, max(0.05, float(np.nanmax(cv["upper"].to_numpy(float), initial=0.0))
                           if ci else float(np.nanmax(cv["cif"].to_numpy(float), initial=0.0))
                           ) * 1.05)
        ax.legend(fontsize=8, frameon=False)
        return ax


def _table(fits: dict, t: np.ndarray | None, causes: tuple[str, ...], by: str | None,
           conf_level: float, conf_type: str) -> pd.DataFrame:
    frames = []
    for g, (cr, same_entry) in fits.items():
        cv = _fit_group(cr, causes, t, same_entry)
        cif, se, sec = cv.cif.copy(), cv.se.copy(), cv.se_cuminc.copy()
        late = cv.times > cv.t_end
        cif[late], se[late], sec[late] = np.nan, np.nan, np.nan
        lo, hi = _ci(cif, se, conf_level, conf_type)
        k = len(causes)
        frame = pd.DataFrame({
            "time": np.repeat(cv.times, k),
            "cause": np.tile(np.array(causes, dtype=object), len(cv.times)),
            "cif": cif.ravel(), "se": se.ravel(), "lower": lo.ravel(), "upper": hi.ravel(),
            "se_cuminc": sec.ravel(), "n_risk": np.repeat(cv.n_risk, k),
            "n_event": cv.n_event.ravel(),
        })
        if by is not None:
            frame.insert(0, "group", g)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def cumulative_incidence(data: Any, by: str | None = None, *, times: Any = None,
                         conf_level: float = 0.95, conf_type: str = "log", rho: float = 0.0,
                         time: str = "time", status: str = "status", entry: str | None = None,
                         id: str = "site", censored: object = CENSORED) -> CumulativeIncidence:
    """Aalen-Johansen cumulative incidence of each cause of the first discontinuation.

    ``data``: a :class:`~imrsurv.History` (causes from the event log's
    ``cause`` column; empty cells are the cause ``unknown``) or a plain frame
    (see :func:`competing_risks_frame`). ``by``: a site column; one set of
    curves per level, and Gray's test (``rho``) across levels. ``times``: the
    summary's times (default every whole year to the last follow-up).
    ``conf_type``: ``log`` (R survfit's default), ``logit`` or ``plain``, on
    the infinitesimal-jackknife ``se``. Matches R ``survfit(Surv(time,
    factor(status)) ~ group, id=site)`` (``pstate``, ``std.err``) and
    ``cmprsk::cuminc`` (``est``, ``var`` as ``se_cuminc**2``, ``Tests``).
    """
    _check_common(by=by, conf_level=conf_level, conf_type=conf_type)
    rho = check_number("rho", rho)
    if times is not None:
        _check_times(times)
    cr = competing_risks_frame(data, by, time=time, status=status, entry=entry, id=id,
                               censored=censored)
    causes = _causes_of(cr)
    notes: list[str] = []
    if isinstance(data, pd.DataFrame):
        pass
    elif not getattr(data, "has_causes", False):
        notes.append("The event log has no cause column: every discontinuation has the one "
                     "cause 'discontinued' (the curve is 1 - Kaplan-Meier).")
    elif CAUSE_UNKNOWN in causes:
        n_unk = int((cr["status"] == CAUSE_UNKNOWN).sum())
        notes.append(f"{n_unk} first discontinuation(s) with an empty cause cell are the "
                     "cause 'unknown', a category of its own (not dropped, not redistributed).")
    if not causes:
        notes.append("No discontinuation is observed: every cumulative incidence is 0.")
    if by is None:
        parts = [(None, cr)]
    else:
        parts = [(g, cr[cr["group"] == g]) for g in _group_order(cr["group"])]
    fits = {g: (sub, sub["entry"].nunique() == 1) for g, sub in parts}
    n_sites = pd.Series({("all" if g is None else g): len(sub) for g, sub in parts})
    notes.append("Standard errors are the infinitesimal jackknife by site (R survfit's "
                 "std.err for multi-state curves); se_cuminc is cmprsk::cuminc's "
                 "delta-method error. Limits use se on the "
                 f"{conf_type} scale. Censoring is assumed independent of the cause.")
    if not all(same for _, same in fits.values()):
        notes.append("Sites enter at different times: the estimate handles late entry (risk "
                     "sets entry < t <= time); se_cuminc and Gray's test, which do not, are "
                     "left out.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        curves = _table(fits, None, causes, by, conf_level, conf_type)
    if times is None:
        t_end = float(cr["time"].max())
        grid = np.arange(0.0, np.floor(t_end) + 1)
        grid = grid[grid > 0] if len(grid) > 1 else grid
    else:
        grid = _check_times(times)
    summary = _table(fits, grid, causes, by, conf_level, conf_type)
    if summary["cif"].isna().any():
        notes.append("Times beyond a group's last follow-up are NaN (not extrapolated).")
    gray = None
    if by is not None and causes:
        try:
            gray = _gray_on(cr, rho, None)
        except DataError as exc:
            notes.append(f"Gray's test not computed: {exc.problems[0].message}")
    return CumulativeIncidence(curves, summary, causes, by, gray, notes, conf_level, conf_type,
                               fits, n_sites)


# ---------------------------------------------------------------------------
# restarts: sustained -> discontinued (cause k) <-> restarted
def cause_state(cause: str) -> str:
    """Label of the state "discontinued for ``cause``"."""
    return f"discontinued ({cause})"


def cause_spells(hist: Any) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """Spells with discontinued split by cause, and the states in order.

    The multi-state model of :mod:`imrsurv.models.multistate` with one
    discontinued state per cause: ``sustained -> discontinued (k)``,
    ``restarted -> discontinued (k)``, ``discontinued (k) -> restarted``. A
    discontinued spell takes the cause of the discontinuation that began it.
    Columns ``site, start, stop, state, next``.
    """
    if not (hasattr(hist, "spells") and callable(hist.spells)):
        raise ArgumentError([f"data must be a History, not {type(hist).__name__}"])
    sp = hist.spells().sort_values(["site", "start"], kind="stable").reset_index(drop=True)
    cause = (sp["cause"].to_numpy(dtype=object) if "cause" in sp.columns
             else np.where(sp["next"] == "discontinued", ANY_CAUSE, "").astype(object))
    site = sp["site"].to_numpy(dtype=object)
    same = np.r_[False, site[1:] == site[:-1]]
    began = np.concatenate([np.array([""], dtype=object), cause[:-1]])  # the spell before
    disc = (sp["state"] == "discontinued").to_numpy()
    if (disc & ~same).any():  # cannot happen for a History: every site starts sustained
        raise DataError([Problem("spells", None, str(s), "starts discontinued")
                         for s in site[disc & ~same]], "invalid spells")
    state = np.where(disc, [cause_state(c) for c in began], sp["state"].to_numpy(dtype=object))
    nxt = np.where(sp["next"] == "discontinued", [cause_state(c) for c in cause],
                   sp["next"].to_numpy(dtype=object))
    causes = sorted({c for c in cause[sp["next"] == "discontinued"]})
    causes = [c for c in causes if c != CAUSE_UNKNOWN] + [c for c in causes
                                                          if c == CAUSE_UNKNOWN]
    states = ("sustained", "restarted", *(cause_state(c) for c in causes))
    out = pd.DataFrame({"site": site, "start": sp["start"].to_numpy(float),
                        "stop": sp["stop"].to_numpy(float), "state": state.astype(object),
                        "next": nxt.astype(object)})
    return out, states


def cause_state_probabilities(hist: Any, times: Any, *, conf_level: float = 0.95,
                              conf_type: str = "log") -> pd.DataFrame:
    """Aalen-Johansen probability of being sustained, restarted or discontinued *for each cause*.

    The restarts model of :func:`~imrsurv.state_probabilities` with the
    discontinued state split by the cause that began it (:func:`cause_spells`),
    so a site that stopped for financing, restarted and stopped for workforce
    reasons is counted under workforce afterwards. Same estimator and
    infinitesimal-jackknife errors by site, as R ``survfit(Surv(start, stop,
    to) ~ 1, id=site, istate=state)``. Returns ``time, state, probability, se,
    lower, upper`` (long); times beyond the last follow-up are NaN.
    """
    _check_common(conf_level=conf_level, conf_type=conf_type)
    t = _check_times(times)
    sp, states = cause_spells(hist)
    code = {st: i for i, st in enumerate(states)}
    from_ = sp["state"].map(code).to_numpy(np.int64)
    to = sp["next"].map(code).fillna(-1).to_numpy(np.int64)
    clusters = pd.factorize(sp["site"], sort=True)[0]
    fit = _aalen_johansen(sp["start"].to_numpy(float), sp["stop"].to_numpy(float), from_, to,
                          clusters, len(states), eval_times=t, states=states)
    p, se = fit.eval_p.copy(), fit.eval_se.copy()
    late = t > fit.t_end
    p[late], se[late] = np.nan, np.nan
    lo, hi = _ci(p, se, conf_level, conf_type)
    out = pd.DataFrame({"time": np.repeat(t, len(states)),
                        "state": np.tile(np.array(states, dtype=object), len(t)),
                        "probability": p.ravel(), "se": se.ravel(), "lower": lo.ravel(),
                        "upper": hi.ravel()})
    out["state"] = pd.Categorical(out["state"], categories=states)
    out.attrs["notes"] = (["times beyond the last follow-up are NaN (not extrapolated)"]
                          if late.any() else [])
    return out

"""Fine-Gray subdistribution hazards, fitted as a weighted Cox model.

Fine & Gray (1999) model the subdistribution hazard of cause k,
``lambda_k(t) = -d log(1 - F_k(t)) / dt = lambda_k0(t) exp(x(t)' beta)``: a site
that left by a *competing* cause stays in the risk set after it, with a weight
that decays as the censoring distribution does. R ``survival::finegray``
(Geskus 2011) writes this as a counting-process data set that any Cox fitter
can use, and so does :func:`finegray_frame`:

* ``G`` is the Kaplan-Meier of the *censoring* times (a site's last row
  ending censored), computed on ranks with events placed just before
  censorings at the same time, so that ``G`` at a censoring time includes it;
* a site with a competing event at ``s`` has its last row extended to the next
  censoring time ``c_j >= s`` (or the last follow-up) with weight 1, then one
  row ``(c_{j-1}, c_j]`` for every later interval between censoring times that
  holds an event of cause k, with weight ``G(c_{j-1}) / G(c_{j0 - 1})``, i.e.
  G(t-) / G(s-) as in Fine & Gray;
* with late entry (a site's first row starts after the earliest stop time)
  the weights also carry the entry distribution (R's ``delay``; Geskus 2011),
  see :func:`_with_entry`;
* every other row keeps its ``(start, stop]`` and weight 1; ``fgstatus`` is 1
  on the row that ends in cause k. Covariates are carried on each row, so
  time-varying covariates (leadership change) work as in any (start, stop]
  frame.

:func:`fit_fine_gray` fits it with :func:`imrsurv.models.cox.fit_cox`
(``weights="fgwt"``, ``cluster="site"``): numbers equal R ``coxph(Surv(fgstart,
fgstop, fgstatus) ~ x, weights=fgwt, cluster=site)`` on ``finegray``'s output,
and with fixed covariates and no tied times, ``ties="breslow"`` gives the
coefficients of ``cmprsk::crr``. The robust errors treat the censoring weights
as known, as coxph does; crr's variance adds the (usually small) term for
estimating G, so crr's errors differ slightly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .._tables import interval_bounds
from ..errors import ArgumentError, DataError, Problem, bad_argument, check_choice
from ._crdata import ANY_CAUSE, CENSORED
from .cox import CoxResult, fit_cox
from .design import build_design

__all__ = ["FineGrayResult", "finegray_frame", "fit_fine_gray"]

FG_COLUMNS = ("fgstart", "fgstop", "fgstatus", "fgwt")


def _check_layout(df: pd.DataFrame, start: str, stop: str, status: str, id: str,
                  censored: object) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Times, status labels, ids and last-row flags; DataError naming every bad row."""
    need = [c for c in (start, stop, status, id) if c not in df.columns]
    if need:
        raise DataError([Problem("data", None, None,
                                 f"missing column(s) {', '.join(need)} (have: "
                                 f"{', '.join(map(str, df.columns))})")], "invalid input")
    clash = [c for c in FG_COLUMNS if c in df.columns]
    if clash:
        raise DataError([Problem("data", None, None,
                                 f"column(s) {', '.join(clash)} would be overwritten by the "
                                 "Fine-Gray layout; rename them")], "invalid input")
    where = np.array([f"row {i}" for i in df.index], dtype=object)
    ids = df[id].astype(str).to_numpy(dtype=object)
    problems: list[Problem] = []

    def bad(mask: np.ndarray, message: str) -> None:
        for i in np.flatnonzero(mask):
            problems.append(Problem("data", where[i], str(ids[i]), message))

    t0, t1 = interval_bounds(df, start, stop, bad)
    raw = df[status]
    miss = raw.isna().to_numpy() | raw.astype(str).str.strip().eq("").to_numpy()
    bad(miss, f"{status} is missing (give a cause or {censored!r})")
    cens = (raw == censored).to_numpy() | (raw.astype(str).str.strip() == str(censored)).to_numpy()
    labels = np.where(cens, CENSORED, raw.astype(str).str.strip().to_numpy(dtype=object))
    if problems:
        raise DataError(problems, "invalid Fine-Gray data")
    order = np.lexsort((t1, ids))
    s_ids = ids[order]
    last_sorted = np.r_[s_ids[1:] != s_ids[:-1], True]
    first_sorted = np.r_[True, s_ids[1:] != s_ids[:-1]]
    gap = ~first_sorted & (t0[order] != np.r_[np.nan, t1[order][:-1]])
    early = ~last_sorted & (labels[order] != CENSORED)
    for i in np.flatnonzero(gap):
        r = order[i]
        problems.append(Problem("data", where[r], str(ids[r]),
                                f"{start} {t0[r]:g} does not meet the previous row's {stop} "
                                f"{t1[order][i - 1]:g} (rows of a site must be contiguous)"))
    for i in np.flatnonzero(early):
        r = order[i]
        problems.append(Problem("data", where[r], str(ids[r]),
                                f'{status} "{labels[r]}" before the site\'s last row: only its '
                                "last row may end in a discontinuation"))
    if problems:
        raise DataError(problems, "invalid Fine-Gray data")
    last = np.zeros(len(df), bool)
    last[order[last_sorted]] = True
    first = np.zeros(len(df), bool)
    first[order[first_sorted]] = True
    return np.c_[t0, t1], labels, ids, last, first


def _censoring_km(ns: np.ndarray, ne: np.ndarray, cens_event: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Counting-process Kaplan-Meier of censoring: the times (ranks) it drops and G there."""
    c_times = np.unique(ne[cens_event])
    if not len(c_times):
        return c_times, c_times.astype(float)
    s_ns, s_ne = np.sort(ns), np.sort(ne)
    # at risk at c: start < c <= stop
    at_risk = (np.searchsorted(s_ns, c_times, side="left")
               - np.searchsorted(s_ne, c_times, side="left"))
    d = np.bincount(np.searchsorted(c_times, ne[cens_event]), minlength=len(c_times))
    return c_times, np.cumprod(1 - d / at_risk)


def _with_entry(rank: np.ndarray, first: np.ndarray, c_rank: np.ndarray, c_prob: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """Censoring weights times the entry (truncation) distribution, as R finegray's ``delay``.

    H is the Kaplan-Meier of entry times in reversed time (risk set at entry
    rank r: rows with start <= r < stop); the weight at time t becomes
    ``H_>(t) G(t)`` with ``H_>(t)`` the product of ``1 - d/n`` over the entry
    times after t, on the union of entry and censoring times (Geskus 2011).
    """
    ns, ne = rank[:, 0], rank[:, 1]
    entry = np.unique(ns[first])
    s_ns, s_ne = np.sort(ns), np.sort(ne)
    n_at = np.searchsorted(s_ns, entry, side="right") - np.searchsorted(s_ne, entry, side="right")
    d = np.bincount(np.searchsorted(entry, ns[first]), minlength=len(entry))
    suffix = np.cumprod((1 - d / n_at)[::-1])[::-1]  # product over entries >= each one
    dprob = np.r_[suffix[1:], 1.0]
    grid = np.union1d(entry, c_rank)
    i1 = np.searchsorted(entry, grid, side="right") - 1
    i2 = np.searchsorted(c_rank, grid, side="right")
    return grid, dprob[np.maximum(i1, 0)] * np.r_[1.0, c_prob][i2]


def finegray_frame(data: pd.DataFrame, cause: str, *, start: str = "start", stop: str = "stop",
                   status: str = "status", id: str = "site", censored: object = CENSORED,
                   strata: str | None = None) -> pd.DataFrame:
    """The weighted counting-process layout of R ``survival::finegray`` for ``cause``.

    ``data``: (start, stop] rows, one or more per ``id``, contiguous, with
    ``status`` (a cause label or ``censored``) on each site's last row and
    ``censored`` on the others; covariates are carried through. Returns the
    rows with ``fgstart, fgstop, fgstatus, fgwt`` added, in R's order (each
    input row, then the rows that extend it). ``strata``: a column (constant
    within a site); the censoring weights are estimated within each level, as
    ``finegray(Surv(...) ~ . + strata(x))``, and levels without an event of
    ``cause`` are left out, as R does (``attrs["dropped_strata"]`` names them).
    """
    if not isinstance(data, pd.DataFrame):
        raise ArgumentError([f"data must be a DataFrame, not {type(data).__name__}"])
    if not isinstance(cause, str):
        raise bad_argument("cause", cause, "a cause label (text)")
    if strata is not None:
        return _stratified(data, cause, start=start, stop=stop, status=status, id=id,
                           censored=censored, strata=strata)
    df = data.reset_index(drop=True)
    times, labels, ids, last, first = _check_layout(df, start, stop, status, id, censored)
    present = sorted(set(labels[labels != CENSORED]))
    if cause not in present:
        raise bad_argument("cause", cause, "a cause in the data: " + (", ".join(present)
                                                                       or "(none observed)"))
    utime = np.unique(times)
    rank = np.searchsorted(utime, times).astype(float) + 1
    evented = labels != CENSORED
    rank[evented, 1] -= 0.2  # events before censorings at the same time
    c_rank, c_prob = _censoring_km(rank[:, 0], rank[:, 1], last & ~evented)
    if (times[first, 0] > times[:, 1].min()).any():  # late entry, as R's `delay`
        c_rank, c_prob = _with_entry(rank, first, c_rank, c_prob)
    ctime = utime[c_rank.astype(int) - 1] if len(c_rank) else np.zeros(0)
    ct2 = np.r_[ctime, times[:, 1].max()]
    cp2 = np.r_[1.0, c_prob]
    ev_times = np.unique(times[labels == cause, 1])
    hit = np.unique(np.searchsorted(ct2, ev_times, side="left"))  # intervals holding events
    keep_j = hit[(hit >= 1) & (hit < len(ct2))]
    expand = evented & (labels != cause) & last
    j0 = np.searchsorted(ct2, times[:, 1], side="left")
    n_add = np.where(expand, len(keep_j) - np.searchsorted(keep_j, j0, side="right"), 0)

    row = np.repeat(np.arange(len(df)), 1 + n_add)
    k_in = np.arange(len(row)) - np.repeat(np.cumsum(1 + n_add) - (1 + n_add), 1 + n_add)
    original = k_in == 0
    fgstart = times[row, 0].copy()
    fgstop = times[row, 1].copy()
    wt = np.ones(len(row))
    ext = original & expand[row]
    fgstop[ext] = ct2[j0[row[ext]]]
    added = ~original
    if added.any():
        r = row[added]
        j = keep_j[np.searchsorted(keep_j, j0[r], side="right") + k_in[added] - 1]
        fgstart[added] = ct2[j - 1]
        fgstop[added] = ct2[j]
        wt[added] = cp2[j] / cp2[j0[r]]
    out = df.iloc[row].reset_index(drop=True)
    out["fgstart"] = fgstart
    out["fgstop"] = fgstop
    out["fgstatus"] = (original & (labels[row] == cause)).astype(int)
    out["fgwt"] = wt
    out.attrs["cause"] = cause
    return out


def _censoring_before(t: np.ndarray, e: np.ndarray) -> np.ndarray:
    """G(t_i-): Kaplan-Meier of censoring (e == 0) just before each t_i, as crr's weights."""
    u = np.unique(t[e == 0])
    s_t = np.sort(t)
    at_risk = len(t) - np.searchsorted(s_t, u, side="left")
    d = np.bincount(np.searchsorted(u, t[e == 0]), minlength=len(u))
    g = np.r_[1.0, np.cumprod(1 - d / at_risk)]
    return g[np.searchsorted(u, t, side="left")]


def crr_variance(t: np.ndarray, e: np.ndarray, x: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """Fine & Gray's (1999) sandwich ``I^-1 (sum_i (eta_i + psi_i)^2) I^-1``, as ``cmprsk::crr``.

    One row per site with fixed covariates ``x``; ``e`` 0 censored, 1 the cause,
    2 another cause. With ``r_j = exp(x_j b)`` and the at-risk weight
    ``w_j(t) = 1`` if ``t_j >= t``, ``G(t-)/G(t_j-)`` if ``t_j < t`` and ``e_j = 2``:
    ``eta_i`` is the score influence ``dN_i (x_i - xbar) - sum_f w_i r_i (x_i -
    xbar_f) / S0_f`` over the cause's events f (Breslow), and ``psi_i =
    int q(u)/R(u) dM^c_i(u)`` the term for estimating G, with ``q(u) = sum_{t_f
    >= u} sum_{t_j < u, e_j = 2} w_j(t_f) r_j (x_j - xbar_f) / S0_f`` and R(u) the
    sites with ``t >= u``.
    """
    t = np.asarray(t, float)
    e = np.asarray(e, np.int64)
    x = np.asarray(x, float)
    order = np.argsort(t, kind="stable")
    t, e, x = t[order], e[order], x[order]
    r = np.exp(x @ beta)
    g = _censoring_before(t, e)
    fail = np.flatnonzero(e == 1)
    tf = t[fail]
    later = t[None, :] >= tf[:, None]
    carried = (t[None, :] < tf[:, None]) & (e[None, :] == 2)
    ratio = g[fail][:, None] / g[None, :]
    w = np.where(later, 1.0, np.where(carried, ratio, 0.0))  # (F, n)
    wr = w * r[None, :]
    s0 = wr.sum(1)
    xbar = (wr @ x) / s0[:, None]
    info = np.einsum("fj,jk,jl->kl", wr / s0[:, None], x, x, optimize=True) - xbar.T @ xbar
    own = np.searchsorted(tf, t, side="left")  # a failure row's own position in tf
    eta = -(x * (w.T @ (1 / s0))[:, None] - w.T @ (xbar / s0[:, None])) * r[:, None]
    eta[fail] += x[fail] - xbar[own[fail]]
    # q(u) at the censoring times
    uc, n_c = np.unique(t[e == 0], return_counts=True)
    psi = np.zeros_like(x)
    if len(uc):
        before2 = (t[None, :] < uc[:, None]) & (e[None, :] == 2)  # (U, n)
        b_w = ratio * r[None, :]  # (F, n): weight a carried site has at t_f
        ss0 = before2.astype(float) @ b_w.T  # (U, F)
        ss = np.einsum("uj,fj,jk->ufk", before2.astype(float), b_w, x, optimize=True)
        keep = (tf[None, :] >= uc[:, None]) / s0[None, :]
        q = np.einsum("uf,ufk->uk", keep, ss) - np.einsum("uf,fk->uk", keep * ss0, xbar)
        at_risk = len(t) - np.searchsorted(t, uc, side="left")
        cum = np.cumsum(q * (n_c / at_risk ** 2)[:, None], axis=0)
        k = np.searchsorted(uc, t, side="right") - 1
        psi = -np.where(k[:, None] >= 0, cum[np.maximum(k, 0)], 0.0)
        cens = np.flatnonzero(e == 0)
        kc = np.searchsorted(uc, t[cens])
        psi[cens] += q[kc] / at_risk[kc][:, None]
    score = eta + psi
    inv = np.linalg.inv(info)
    return inv @ (score.T @ score) @ inv.T


def _stratified(data: pd.DataFrame, cause: str, *, strata: str, **kw: Any) -> pd.DataFrame:
    if not isinstance(strata, str) or strata not in data.columns:
        raise bad_argument("strata", strata, "None or a column of the data: "
                           + ", ".join(map(str, data.columns)))
    values = data[strata]
    if values.isna().any():
        rows = [f"row {i}" for i in data.index[values.isna().to_numpy()]][:20]
        raise DataError([f"strata column {strata!r} is missing on {', '.join(rows)}"],
                        "invalid Fine-Gray data")
    per_site = data.groupby(kw["id"])[strata].nunique()
    if (per_site > 1).any():
        raise DataError([Problem("data", None, str(s), f"has more than one value of {strata!r}")
                         for s in per_site.index[per_site > 1]], "invalid Fine-Gray data")
    _check_layout(data.reset_index(drop=True), kw["start"], kw["stop"], kw["status"], kw["id"],
                  kw["censored"])  # every bad row at once, before splitting by stratum
    parts, dropped = [], []
    for level in sorted(pd.unique(values)):
        sub = data[(values == level).to_numpy()]
        lab = sub[kw["status"]].astype(str).str.strip()
        if not (lab == cause).any():
            dropped.append(level)
            continue
        parts.append(finegray_frame(sub, cause, **kw))
    if not parts:
        raise bad_argument("cause", cause, "a cause observed in at least one stratum")
    out = pd.concat(parts, ignore_index=True)
    out.attrs.update(cause=cause, dropped_strata=dropped)
    return out


class FineGrayResult(CoxResult):
    """A Fine-Gray fit: a :class:`CoxResult` on the weighted layout (``layout``) for ``cause``.

    ``exp(coef)`` are subdistribution hazard ratios: how a covariate shifts the
    cumulative incidence of ``cause`` (not the cause-specific hazard).
    """

    cause: str = ""
    layout: pd.DataFrame | None = None

    def plot(self, ax: Any = None, *, exponentiate: bool = True) -> Any:
        """Forest plot of subdistribution hazard ratios with 95% (robust) intervals."""
        from . import _result

        what = "subdistribution hazard ratio" if exponentiate else "log subdistribution HR"
        return _result.forest_plot(self.summary, ax, exponentiate=exponentiate,
                                   xlabel=f"{what} for {self.cause} (95% CI)")

    def _header(self) -> str:
        return (f"Fine-Gray subdistribution hazards for cause \"{self.cause}\" "
                "(R finegray layout, weighted Cox fit)\n" + super()._header())


def _history_rows(hist: Any) -> pd.DataFrame:
    cp = hist.counting_process("first")
    sp = hist.spells()
    first = sp[sp["state"] == "sustained"].groupby("site", sort=True).head(1)
    cause = (first.set_index("site")["cause"] if "cause" in first.columns
             else pd.Series(ANY_CAUSE, index=first["site"]))
    status = np.where(cp["event"].to_numpy() == 1,
                      cp["site"].map(cause).to_numpy(dtype=object), CENSORED)
    return cp.assign(status=status)


def fit_fine_gray(data: Any, formula: str, cause: str, *, cluster: str | None = "site",
                  ties: str = "efron", start: str | None = "start", stop: str = "stop",
                  status: str = "status", id: str = "site", censored: object = CENSORED,
                  variance: str = "coxph", strata: str | None = None,
                  **kw: Any) -> FineGrayResult:
    """Fine-Gray model of the subdistribution hazard of ``cause``, robust by site.

    ``data``: a :class:`~imrsurv.History` (time to the first discontinuation,
    rows split at covariate changes, ``status`` from the event log's ``cause``
    column) or a (start, stop] frame as :func:`finegray_frame` takes.
    ``formula``: right-hand side, as :func:`~imrsurv.fit_cox`. ``cluster``:
    column for Lin-Wei robust errors (default ``site``; None for model-based
    errors only). Other keywords (``penalty``, ``small_sample``, ...) go to
    :func:`~imrsurv.fit_cox`. Matches R ``coxph(Surv(fgstart, fgstop,
    fgstatus) ~ ..., weights=fgwt, cluster=site)`` on ``finegray(...)``.

    ``strata``: a column (a site column for a History): censoring weights
    within each level and a baseline per level, as ``finegray(... +
    strata(x))`` then ``coxph(... + strata(x))``.

    ``variance="crr"`` (one row per site, fixed covariates, ``ties="breslow"``)
    replaces the robust errors by Fine & Gray's, which also count the
    estimation of the censoring weights (:func:`crr_variance`, as
    ``cmprsk::crr``); the default ``"coxph"`` is the Lin-Wei sandwich by
    ``cluster`` and also serves time-varying covariates.
    """
    check_choice("variance", variance, ("coxph", "crr"))
    if variance == "crr" and ties != "breslow":
        raise bad_argument("ties", ties, '"breslow" with variance="crr" (crr\'s estimating '
                           "equation has Breslow's risk sets)")
    for k in ("weights", "event", "frailty", "offset"):
        if k in kw:
            raise ArgumentError([f"{k}= is not allowed in fit_fine_gray: the Fine-Gray layout "
                                 "sets the weights, events and risk sets"])
    if hasattr(data, "counting_process") and callable(data.counting_process):
        rows = _history_rows(data)
        start, stop, status, id, censored = "start", "stop", "status", "site", CENSORED
    elif isinstance(data, pd.DataFrame):
        rows = data
        if start is None:  # right-censored: every site at risk from time 0
            start = "_entry"
            rows = rows.assign(_entry=0.0)
    else:
        raise ArgumentError([f"data must be a History or a DataFrame, not {type(data).__name__}"])
    if cluster is not None and cluster not in rows.columns:
        raise bad_argument("cluster", cluster, "None or a column of the data: "
                           + ", ".join(map(str, rows.columns)))
    if variance == "crr" and strata is not None:
        raise ArgumentError(['variance="crr" is for unstratified fits (cmprsk::crr has no '
                             "strata)"])
    layout = finegray_frame(rows, cause, start=start, stop=stop, status=status, id=id,
                            censored=censored, strata=strata)
    res = fit_cox(layout, formula, start="fgstart", stop="fgstop", event="fgstatus",
                  weights="fgwt", cluster=cluster, ties=ties, strata=strata, **kw)
    if variance == "crr":
        _use_crr_variance(res, rows, formula, cause, stop, status, id, censored)
    res.__class__ = FineGrayResult  # same fit; only the header and notes say what it means
    if layout.attrs.get("dropped_strata"):
        res.notes.insert(0, f"Strata of {strata} without a \"{cause}\" discontinuation are left "
                         "out (no event, no contribution; as R finegray): "
                         + ", ".join(map(str, layout.attrs["dropped_strata"])) + ".")
    res.cause = cause
    res.layout = layout
    n_sites = layout[id].nunique()
    others = sorted(set(layout.loc[layout[status].astype(str) != str(censored), status]
                        .astype(str)) - {cause})
    res.notes[:0] = [
        f"Fine-Gray model for \"{cause}\" ({n_sites} sites): sites that stopped for another "
        f"cause ({', '.join(others) or 'none'}) stay at risk with weights G(t-)/G(s-) from the "
        "censoring Kaplan-Meier (R survival::finegray); exp(coef) are subdistribution hazard "
        "ratios.",
        ("Standard errors are Fine & Gray's (cmprsk::crr): they count the estimation of the "
         "censoring weights; sites are independent units (one row each)."
         if variance == "crr" else
         "The robust errors treat the censoring weights as known (as coxph on finegray's "
         "layout); cmprsk::crr's errors (variance=\"crr\") also count their estimation."),
    ]
    return res


def _use_crr_variance(res: CoxResult, rows: pd.DataFrame, formula: str, cause: str,
                      stop: str, status: str, id: str, censored: object) -> None:
    """Swap the fit's robust covariance for :func:`crr_variance` (one row per site)."""
    ids = rows[id].astype(str)
    if ids.duplicated().any():
        dup = sorted(set(ids[ids.duplicated()]))
        raise DataError([Problem("data", None, s, "has more than one row: variance=\"crr\" "
                                 "needs one row per site (fixed covariates); use the default "
                                 "variance for time-varying covariates") for s in dup[:20]],
                        "cannot use variance=\"crr\"")
    design = build_design(rows.reset_index(drop=True), formula)
    if list(design.columns) != list(res.params.index):
        raise DataError([f"the design of the site rows ({', '.join(design.columns)}) differs "
                         f"from the fit's ({', '.join(res.params.index)})"],
                        "cannot use variance=\"crr\"")
    lab = rows[status].astype(str).str.strip().to_numpy(dtype=object)
    cens = (rows[status] == censored).to_numpy() | (lab == str(censored))
    e = np.where(cens, 0, np.where(lab == cause, 1, 2))
    cov = crr_variance(rows[stop].to_numpy(float), e, design.matrix, res.params.to_numpy())
    names = res.params.index
    res.cov = pd.DataFrame(cov, index=names, columns=names)
    res.se = pd.Series(np.sqrt(np.diag(cov)), index=names, name="se")
    res.notes = [n for n in res.notes if not n.startswith("Robust (Lin-Wei")]

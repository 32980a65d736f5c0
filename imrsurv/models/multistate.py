"""Aalen-Johansen estimates for the sustained / discontinued / restarted model.

A site is *sustained* from its start until its first discontinuation, then
*discontinued*; a restart moves it to *restarted*, a later discontinuation back
to *discontinued*, and so on::

    sustained --> discontinued <==> restarted

The Aalen-Johansen estimator gives the probability of being in each state at
time t, correctly under right censoring and staggered (late) entry, where the
crude proportion of sites in each state among those still followed does not.

Estimator (the same as R ``survfit(Surv(start, stop, to) ~ 1, id=site,
istate=state)``, survival >= 3.0):

* event times t_1 < ... < t_K are the distinct ``stop`` times of spells that
  end in a transition; the risk set of state h at t_k holds the spells in h with
  ``start < t_k <= stop`` (a site censored at t_k is at risk at t_k);
* ``dA_k[h, l] = dN_hl(t_k) / Y_h(t_k)`` for h != l, with the diagonal making
  rows sum to 0; ``p(t_k) = p(t_{k-1}) (I + dA_k)``;
* ``p(t_0)`` (``p0``) is the distribution of states among the spells at risk at
  the first event time, as in R; for sites that all start *sustained* it is
  (1, 0, 0).

Standard errors come from the infinitesimal jackknife (IJ), also as in R: the
influence of site i on p follows the recursion::

    U_i(t_k) = U_i(t_{k-1}) (I + dA_k) + p_h(t_{k-1}) [dN_i,h.(t_k) - Y_ih(t_k) dA_k[h, .]] / Y_h(t_k)

(h the state site i is at risk in at t_k; ``dN_i,h.`` the row vector e_l - e_h
when site i moves h -> l at t_k, else 0), and ``se(p(t)) = sqrt(sum_i U_i(t)^2)``.
Influences are summed over the rows of a site, so the variance is robust to
within-site dependence. R's default ``survfit(..., influence=FALSE)`` leaves
out the influence of the estimated ``p0``; with ``influence=TRUE`` it is
included. ``p0_se=True`` (the default here) includes it; the two agree whenever
every site starts in the same state, as in every :class:`~imrsurv.History`.

The recursion runs as a loop over the distinct event times (3x3 matrices and a
sites x 3 influence matrix per step, each step vectorised over sites); event
times are few (yearly interviews, dozens of sites) and every step depends on
the one before, so a loop is the plain way to write it.

Two further summaries come out of the same recursion, with IJ errors:

* restricted mean time in state h over [t_start, tau]: ``int p_h(t) dt``
  (t_start is 0, or the earliest spell start if that is negative, as in R's
  ``rmean``; before the first event time p(t) is p0);
  time *active* is sustained + restarted;
* expected number of h -> l transitions by tau: ``sum_{t_k <= tau} p_h(t_{k-1})
  dA_k[h, l]``; for discontinued -> restarted this is the expected number of
  restarts per site.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import ArgumentError, DataError, Problem, bad_argument, check_choice, check_number

STATES = ("sustained", "discontinued", "restarted")
NEXT_VALUES = ("discontinued", "restarted", "censored")
TRANSITIONS = (("sustained", "discontinued"), ("discontinued", "restarted"),
               ("restarted", "discontinued"))
_SPELL_COLUMNS = ("site", "start", "stop", "state", "next")


# ---------------------------------------------------------------------------
# generic core
@dataclass
class _AJFit:
    states: tuple[str, ...]
    time: np.ndarray  # (K,) event times
    pstate: np.ndarray  # (K, S)
    std: np.ndarray  # (K, S)
    n_risk: np.ndarray  # (K, S)
    n_event: np.ndarray  # (K,)
    p0: np.ndarray  # (S,)
    t_start: float
    t_end: float  # last time under observation (max stop)
    # at the requested times
    eval_times: np.ndarray
    eval_p: np.ndarray  # (E, S)
    eval_se: np.ndarray  # (E, S)
    eval_infl: np.ndarray | None  # (C, E, S), only with keep_influence
    # over [t_start, horizon]
    horizons: np.ndarray
    rmst: np.ndarray  # (H, S)
    rmst_infl: np.ndarray  # (C, H, S)
    trans: np.ndarray  # (H, S, S) expected number of h -> l transitions
    trans_infl: np.ndarray  # (C, H, S, S)

    @property
    def rmst_se(self) -> np.ndarray:
        return np.sqrt((self.rmst_infl ** 2).sum(axis=0))

    @property
    def trans_se(self) -> np.ndarray:
        return np.sqrt((self.trans_infl ** 2).sum(axis=0))


def _aalen_johansen(start, stop, from_, to, cluster, n_states, *, eval_times=(),
                    horizons=(), weights=None, p0=None, p0_se=True,
                    states=None, keep_influence=False) -> _AJFit:
    """Aalen-Johansen with IJ influence, on integer-coded spells.

    ``from_`` in 0..S-1, ``to`` in 0..S-1 or -1 for censored, ``cluster`` in
    0..C-1. ``weights`` (per row, default 1) exist so that tests can check the
    influence functions against finite differences.

    The risk sets are kept as a clusters x states matrix ``R`` updated only by
    the rows that enter or leave at each event time, so one step costs
    O(clusters) array work: ``U <- U T + R G + E`` with ``G[h] = -p_h dA[h, .]
    / Y_h`` the influence of being at risk in h and ``E`` the movers' terms.
    """
    start = np.asarray(start, float)
    stop = np.asarray(stop, float)
    from_ = np.asarray(from_, np.int64)
    to = np.asarray(to, np.int64)
    cluster = np.asarray(cluster, np.int64)
    w = np.ones(len(start)) if weights is None else np.asarray(weights, float)
    S = n_states
    C = int(cluster.max()) + 1 if len(cluster) else 0
    eval_times = np.atleast_1d(np.asarray(eval_times, float))
    horizons = np.atleast_1d(np.asarray(horizons, float))
    E, H = len(eval_times), len(horizons)

    is_event = to >= 0
    times = np.unique(stop[is_event])
    K = len(times)
    t_start = min(0.0, float(start.min()))  # as R: areas are taken from time 0
    t_end = float(stop.max())

    # initial state distribution, as R's docurve2
    t0 = times[0] if K else t_end
    at0 = (start < t0) & (stop >= t0)
    i0 = np.zeros((C, S))
    if p0 is None:
        wsum = w[at0].sum()
        p0 = np.bincount(from_[at0], weights=w[at0], minlength=S) / wsum
        if p0_se and np.all(p0 < 1):
            contrib = (np.eye(S)[from_[at0]] - p0) / wsum
            for s in range(S):
                i0[:, s] = np.bincount(cluster[at0], weights=contrib[:, s], minlength=C)
    else:
        p0 = np.asarray(p0, float)
    p = p0.copy()
    # influences are held transposed (states x clusters): row reductions are contiguous
    U = np.ascontiguousarray(i0.T)

    pstate = np.empty((K, S))
    std = np.empty((K, S))
    n_risk = np.empty((K, S))
    n_event = np.empty(K)
    eval_p = np.empty((E, S))
    eval_se = np.empty((E, S))
    eval_infl = np.empty((E, S, C)) if keep_influence else None
    rmst = np.zeros((H, S))
    rmst_infl = np.zeros((H, S, C))
    trans = np.zeros((H, S, S))
    trans_infl = np.zeros((H, S, S, C))
    pairs = sorted({(int(h), int(j)) for h, j in zip(from_[is_event], to[is_event],
                                                       strict=True) if h != j})

    # row r is at risk at event indices lo[r] <= k < hi[r]
    lo = np.searchsorted(times, start, side="right")
    hi = np.searchsorted(times, stop, side="right")
    steps = np.arange(K + 1)
    enter = np.argsort(lo, kind="stable")
    enter_at = np.searchsorted(lo[enter], steps)
    leave = np.argsort(hi, kind="stable")
    leave_at = np.searchsorted(hi[leave], steps)
    ev_rows = np.flatnonzero(is_event)
    ev_rows = ev_rows[np.argsort(stop[ev_rows], kind="stable")]
    ev_at = np.searchsorted(stop[ev_rows], times, side="left")
    ev_at = np.append(ev_at, len(ev_rows))

    # which step each requested time belongs to (-1: before the first event)
    eval_step = np.searchsorted(times, eval_times, side="right") - 1
    eval_by_step = {int(k): np.flatnonzero(eval_step == k) for k in np.unique(eval_step)}
    bounds = np.concatenate([[t_start], times, [np.inf]])  # step k: [bounds[k+1], bounds[k+2])

    def record(k: int) -> None:
        sel = eval_by_step.get(k)
        if sel is not None:
            eval_p[sel] = p
            eval_se[sel] = np.sqrt(np.einsum("sc,sc->s", U, U))
            if keep_influence:
                eval_infl[sel] = U[None]
        if H:
            lo_t = max(bounds[k + 1], t_start)
            length = np.clip(np.minimum(bounds[k + 2], horizons) - lo_t, 0.0, None)
            if length.any():
                rmst[:] += length[:, None] * p[None, :]
                rmst_infl[:] += length[:, None, None] * U[None]

    record(-1)
    R = np.zeros((S, C))  # weight at risk, per state and cluster
    Y = np.zeros(S)
    eye = np.eye(S)
    for k in range(K):
        a = enter[enter_at[k]:enter_at[k + 1]]
        if len(a):
            np.add.at(R, (from_[a], cluster[a]), w[a])
            Y += np.bincount(from_[a], weights=w[a], minlength=S)
        b = leave[leave_at[k]:leave_at[k + 1]]
        if len(b):
            np.add.at(R, (from_[b], cluster[b]), -w[b])
            Y -= np.bincount(from_[b], weights=w[b], minlength=S)
        ev = ev_rows[ev_at[k]:ev_at[k + 1]]
        eh, el, ec, ew = from_[ev], to[ev], cluster[ev], w[ev]
        dN = np.zeros((S, S))
        np.add.at(dN, (eh, el), ew)
        safeY = np.where(Y > 1e-12, Y, 1.0)
        dA = dN / safeY[:, None]
        dA[np.diag_indices(S)] = 0.0
        off = dA.copy()
        dA[np.diag_indices(S)] = -off.sum(axis=1)
        T = eye + dA
        G = -(p[:, None] * dA) / safeY[:, None]
        Unew = T.T @ U + G.T @ R
        move = p[eh] / safeY[eh] * ew
        np.add.at(Unew, (el, ec), move)
        np.add.at(Unew, (eh, ec), -move)
        upto = (times[k] <= horizons).astype(float) if H else None
        if H and upto.any():
            for h, j in pairs:
                trans[:, h, j] += upto * p[h] * off[h, j]
                d = U[h] * off[h, j] - (p[h] / safeY[h]) * R[h] * off[h, j]
                m = (eh == h) & (el == j)
                if m.any():
                    d = d + np.bincount(ec[m], weights=(p[h] / safeY[h]) * ew[m], minlength=C)
                trans_infl[:, h, j, :] += upto[:, None] * d[None, :]
        U = Unew
        p = p @ T
        pstate[k] = p
        std[k] = np.sqrt(np.einsum("sc,sc->s", U, U))
        n_risk[k] = Y
        n_event[k] = dN.sum()
        record(k)

    return _AJFit(tuple(states) if states else tuple(range(S)), times, pstate, std, n_risk,
                  n_event, p0, t_start, t_end, eval_times, eval_p, eval_se,
                  None if eval_infl is None else np.moveaxis(eval_infl, -1, 0), horizons, rmst,
                  np.moveaxis(rmst_infl, -1, 0), trans, np.moveaxis(trans_infl, -1, 0))


# ---------------------------------------------------------------------------
# spells frames
def _spells_from(data, by: str | None) -> tuple[pd.DataFrame, str | None]:
    """Spells frame (with a group column when ``by``) from a History or a DataFrame."""
    if hasattr(data, "spells") and callable(data.spells):
        spells = data.spells()
        if by is not None and by not in spells.columns:
            sites = data.sites
            if by not in sites.columns:
                raise DataError([Problem("", None, None,
                                         f"by={by!r} is not a site column "
                                         f"(have: {', '.join(map(str, sites.columns))})")],
                                "cannot group")
            spells = spells.merge(sites[["site", by]], on="site", how="left")
        return spells, by
    if isinstance(data, pd.DataFrame):
        return data, by
    raise ArgumentError(["data must be a History or a spells DataFrame (site, start, stop, "
                         f"state, next), not {type(data).__name__}"])


def check_spells(spells: pd.DataFrame, by: str | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Validate a spells frame; return it sorted (zero-length censored spells left out) and notes.

    Raises :class:`DataError` naming every bad row.
    """
    missing = [c for c in _SPELL_COLUMNS if c not in spells.columns]
    if by is not None and by not in spells.columns:
        missing.append(by)
    if missing:
        raise DataError([Problem("spells", None, None,
                                 f"missing column(s) {', '.join(missing)} (have: "
                                 f"{', '.join(map(str, spells.columns))})")], "invalid spells")
    df = spells.reset_index(drop=True).copy()
    where = np.array([f"row {i}" for i in spells.index], dtype=object)
    problems: list[Problem] = []

    def bad(mask, message):
        for i in np.flatnonzero(mask):
            problems.append(Problem("spells", where[i], str(df["site"].iloc[i]), message))

    start = pd.to_numeric(df["start"], errors="coerce").to_numpy(float)
    stop = pd.to_numeric(df["stop"], errors="coerce").to_numpy(float)
    bad(~np.isfinite(start), "start is not a finite number")
    bad(~np.isfinite(stop), "stop is not a finite number")
    state = df["state"].astype(str).to_numpy(object)
    nxt = df["next"].astype(str).to_numpy(object)
    bad(~np.isin(state, STATES), f"state must be one of {', '.join(STATES)}")
    bad(~np.isin(nxt, NEXT_VALUES), f"next must be one of {', '.join(NEXT_VALUES)}")
    allowed = {f"{a}>{b}" for a, b in TRANSITIONS}
    pair = np.char.add(np.char.add(state.astype(str), ">"), nxt.astype(str))
    trans_bad = np.isin(state, STATES) & np.isin(nxt, STATES) & ~np.isin(pair, list(allowed))
    bad(trans_bad, "transition not in the model "
                   "(sustained->discontinued, discontinued->restarted, restarted->discontinued)")
    fin = np.isfinite(start) & np.isfinite(stop)
    bad(fin & (stop < start), "stop is before start")
    bad(fin & (stop == start) & (nxt != "censored"),
        "zero-length spell ending in a transition (a state must be occupied for some time)")
    bad(df["site"].isna().to_numpy(), "site is missing")
    if problems:
        raise DataError(problems, "invalid spells")

    df["start"], df["stop"] = start, stop
    df["_where"] = where
    notes: list[str] = []
    zero = stop == start
    if zero.any():
        notes.append(f"{int(zero.sum())} zero-length censored spell(s) left out "
                     "(they are at risk at no time and change no estimate)")
        df = df[~zero]
    df = df.sort_values(["site", "start"], kind="stable").reset_index(drop=True)

    # within a site: no overlap, and each spell starts in the state the last one entered
    same = df["site"].to_numpy()[1:] == df["site"].to_numpy()[:-1]
    overlap = same & (df["start"].to_numpy()[1:] < df["stop"].to_numpy()[:-1])
    prev_next = df["next"].to_numpy()[:-1]
    jump = same & (prev_next != df["state"].to_numpy()[1:])
    problems = []
    w2 = df["_where"].to_numpy()[1:]
    s2 = df["site"].to_numpy()[1:]
    for i in np.flatnonzero(overlap):
        problems.append(Problem("spells", w2[i], str(s2[i]), "overlaps the site's previous spell"))
    for i in np.flatnonzero(jump & ~overlap):
        problems.append(Problem("spells", w2[i], str(s2[i]),
                                f"starts in state {df['state'].iloc[i + 1]} but the previous "
                                f"spell ended with next={prev_next[i]}"))
    if by is not None:
        n_groups = df.groupby("site")[by].nunique(dropna=False)
        for site in n_groups.index[n_groups > 1]:
            problems.append(Problem("spells", None, str(site),
                                    f"has more than one value of {by!r}"))
    if problems:
        raise DataError(problems, "invalid spells")
    return df.drop(columns="_where"), notes


def _fit_spells(df: pd.DataFrame, eval_times=(), horizons=(), p0_se=True) -> _AJFit:
    code = {s: i for i, s in enumerate(STATES)}
    from_ = df["state"].map(code).to_numpy()
    to = df["next"].map(code).fillna(-1).to_numpy(np.int64)
    cluster = pd.factorize(df["site"], sort=True)[0]
    return _aalen_johansen(df["start"].to_numpy(float), df["stop"].to_numpy(float), from_, to,
                           cluster, len(STATES), eval_times=eval_times, horizons=horizons,
                           p0_se=p0_se, states=STATES)


def _groups(df: pd.DataFrame, by: str | None):
    if by is None:
        yield None, df
        return
    yield from df.groupby(by, sort=True, dropna=False)


def _ci(p, se, conf_level, conf_type):
    """Confidence limits as R's survfit_confint (logse=FALSE, upper limit capped at 1)."""
    z = stats.norm.ppf(1 - (1 - conf_level) / 2)
    p = np.asarray(p, float)
    se = np.asarray(se, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        if conf_type == "log":
            s = np.where(se == 0, 0.0, se / p)
            xx = np.where(p == 0, np.nan, p)
            return xx * np.exp(-z * s), np.minimum(xx * np.exp(z * s), 1.0)
        if conf_type == "logit":
            xx = np.where((p == 0) | (p == 1), np.nan, p)
            s = z * se / (xx * (1 - xx))
            lg = np.log(xx / (1 - xx))
            return 1 / (1 + np.exp(-(lg - s))), 1 / (1 + np.exp(-(lg + s)))
        if conf_type == "plain":
            return np.maximum(p - z * se, 0.0), np.minimum(p + z * se, 1.0)
    raise ValueError("conf_type must be 'log', 'logit' or 'plain'")


def _check_times(times, name="times") -> np.ndarray:
    """``times`` as a 1-d float array; strings, booleans, nan and inf are an ArgumentError."""
    items = list(times) if isinstance(times, (list, tuple, np.ndarray, pd.Series, pd.Index)) \
        else [times]
    bad = [v for v in items if isinstance(v, (bool, np.bool_)) or
           not isinstance(v, (int, float, np.integer, np.floating)) or not np.isfinite(v)]
    if bad or not items:
        raise ArgumentError([f"{name}={times!r} is not allowed: {name} must be one or more "
                             f"finite numbers (years); bad: {', '.join(map(repr, bad[:10]))}"
                             if bad else f"{name} is empty: give one or more finite numbers"])
    return np.asarray(items, dtype=float)


def _check_common(horizon=None, by=None, conf_level=None, conf_type=None) -> float | None:
    """Argument checks shared by the public functions; the horizon as a float."""
    if by is not None and not isinstance(by, str):
        raise bad_argument("by", by, "None or the name of a site column")
    if conf_level is not None:
        level = check_number("conf_level", conf_level, minimum=0, strict=True)
        if level >= 1:
            raise bad_argument("conf_level", conf_level, "a number between 0 and 1")
    if conf_type is not None:
        check_choice("conf_type", conf_type, ("log", "logit", "plain"))
    if horizon is None:
        return None
    return check_number("horizon", horizon, minimum=0, strict=True)


# ---------------------------------------------------------------------------
# public API
def state_probabilities(data, times=None, by: str | None = None, *, conf_level: float = 0.95,
                        conf_type: str = "log", p0_se: bool = True) -> pd.DataFrame:
    """Aalen-Johansen state occupation probabilities with IJ standard errors.

    Parameters
    ----------
    data
        A :class:`~imrsurv.History` or a spells frame with columns ``site,
        start, stop, state, next`` (state: sustained / discontinued /
        restarted; next: the state entered at ``stop`` or ``censored``).
    times
        Times at which to report; None reports the start (0), every event
        time and the last follow-up, which is what a step plot needs.
    by
        A site-level column (for a History, a column of ``hist.sites``);
        one curve per level.
    conf_type
        ``"log"`` (R's default for multi-state curves: p exp(+-z se/p), upper
        limit capped at 1), ``"logit"`` or ``"plain"``.

    Returns
    -------
    DataFrame with columns ``[group,] time, state, probability, se, lower,
    upper``, long format (one row per time and state). Times after the last
    follow-up of a group are NaN (with a warning): the estimate is never
    carried past the data. ``df.attrs["notes"]`` lists anything left out.
    """
    _check_common(by=by, conf_level=conf_level, conf_type=conf_type)
    if times is not None:
        _check_times(times)
    spells, by = _spells_from(data, by)
    df, notes = check_spells(spells, by)
    out = []
    beyond = []
    for g, sub in _groups(df, by):
        if times is None:
            ev_t = np.unique(sub.loc[sub["next"] != "censored", "stop"].to_numpy(float))
            t_end = float(sub["stop"].max())
            t = np.concatenate([[min(0.0, float(sub["start"].min()))], ev_t])
            if t_end > t[-1]:
                t = np.append(t, t_end)  # the curve holds to the last follow-up
        else:
            t = _check_times(times)
        fit = _fit_spells(sub, eval_times=t, p0_se=p0_se)
        p, se = fit.eval_p.copy(), fit.eval_se
        late = t > fit.t_end
        if late.any():
            beyond.append((g, fit.t_end))
            p[late] = np.nan
            se = se.copy()
            se[late] = np.nan
        lo, hi = _ci(p, se, conf_level, conf_type)
        frame = pd.DataFrame({
            "time": np.repeat(t, len(STATES)),
            "state": np.tile(STATES, len(t)),
            "probability": p.ravel(),
            "se": se.ravel(),
            "lower": lo.ravel(),
            "upper": hi.ravel(),
        })
        if by is not None:
            frame.insert(0, "group", g)
        out.append(frame)
    if beyond:
        what = "; ".join(f"{'all sites' if g is None else g}: last follow-up {te:g}"
                         for g, te in beyond)
        msg = f"times beyond the last follow-up are NaN (not extrapolated): {what}"
        warnings.warn(msg, stacklevel=2)
        notes.append(msg)
    res = pd.concat(out, ignore_index=True)
    res["state"] = pd.Categorical(res["state"], categories=STATES)
    res.attrs["notes"] = notes
    return res


def restricted_mean_time_in_state(data, horizon: float, by: str | None = None) -> pd.DataFrame:
    """Expected years spent in each state over [start of follow-up, horizon].

    The area under each Aalen-Johansen curve up to ``horizon`` (R: the
    ``rmean`` column of ``print(survfit(...), rmean=horizon)``), with IJ
    standard errors, plus ``active`` = sustained + restarted: the expected
    number of years the programme runs in the window. The window starts at 0
    (or the earliest spell start if negative), as in R; before the first
    event time the curves equal the initial state distribution.

    Returns ``[group,] state, horizon, years, se`` (state also ``active``);
    NaN with a warning when the horizon lies beyond the last follow-up.
    """
    horizon = _check_common(horizon, by=by)
    spells, by = _spells_from(data, by)
    df, notes = check_spells(spells, by)
    rows = []
    for g, sub in _groups(df, by):
        fit = _fit_spells(sub, horizons=[horizon])
        rm = fit.rmst[0]
        infl = fit.rmst_infl[:, 0, :]
        act = [STATES.index("sustained"), STATES.index("restarted")]
        vals = list(rm) + [rm[act].sum()]
        ses = list(np.sqrt((infl ** 2).sum(0))) + [np.sqrt((infl[:, act].sum(1) ** 2).sum())]
        if horizon > fit.t_end:
            _warn_beyond(g, horizon, fit.t_end, notes)
            vals = [np.nan] * len(vals)
            ses = [np.nan] * len(ses)
        for s, v, e in zip((*STATES, "active"), vals, ses, strict=True):
            row = {"state": s, "horizon": horizon, "years": v, "se": e}
            if by is not None:
                row = {"group": g, **row}
            rows.append(row)
    res = pd.DataFrame(rows)
    res.attrs["notes"] = notes
    return res


def expected_restarts(data, horizon: float, by: str | None = None,
                      conf_level: float = 0.95) -> pd.DataFrame:
    """Expected number of restarts (discontinued -> restarted) per site by ``horizon``.

    ``sum over event times t <= horizon of p_discontinued(t-) dA_restart(t)``,
    with IJ standard error and a log-transformed CI. Alongside, the expected
    number of discontinuations (sustained -> discontinued plus restarted ->
    discontinued). Returns ``[group,] horizon, transition, expected, se,
    lower, upper``.
    """
    horizon = _check_common(horizon, by=by)
    spells, by = _spells_from(data, by)
    df, notes = check_spells(spells, by)
    i = {s: k for k, s in enumerate(STATES)}
    rows = []
    for g, sub in _groups(df, by):
        fit = _fit_spells(sub, horizons=[horizon])
        tr = fit.trans[0]
        ti = fit.trans_infl[:, 0]
        res_ = {
            "restarts": (tr[i["discontinued"], i["restarted"]],
                         ti[:, i["discontinued"], i["restarted"]]),
            "discontinuations": (tr[i["sustained"], i["discontinued"]]
                                 + tr[i["restarted"], i["discontinued"]],
                                 ti[:, i["sustained"], i["discontinued"]]
                                 + ti[:, i["restarted"], i["discontinued"]]),
        }
        late = horizon > fit.t_end
        if late:
            _warn_beyond(g, horizon, fit.t_end, notes)
        for name, (v, infl) in res_.items():
            se = float(np.sqrt((infl ** 2).sum()))
            if late:
                v, se = np.nan, np.nan
            z = stats.norm.ppf(1 - (1 - conf_level) / 2)
            with np.errstate(divide="ignore", invalid="ignore"):
                s = se / v if v > 0 else 0.0
            row = {"horizon": horizon, "transition": name, "expected": v, "se": se,
                   "lower": v * np.exp(-z * s), "upper": v * np.exp(z * s)}
            if by is not None:
                row = {"group": g, **row}
            rows.append(row)
    out = pd.DataFrame(rows)
    out.attrs["notes"] = notes
    return out


def _warn_beyond(g, horizon, t_end, notes):
    who = "all sites" if g is None else f"group {g}"
    msg = (f"horizon {horizon:g} is beyond the last follow-up of {who} ({t_end:g}); "
           "result is NaN (not extrapolated)")
    warnings.warn(msg, stacklevel=3)
    notes.append(msg)


# ---------------------------------------------------------------------------
# Bond et al. (2014) status table
BOND_ORDER = ("sustained", "restarted", "discontinued")


def status_from_spells(spells: pd.DataFrame, horizon: float) -> pd.Series:
    """Each site's status at ``horizon`` from a spells frame (as ``History.status_at``).

    ``censored`` if follow-up ended before the horizon or began after it;
    otherwise the state occupied at the horizon, transitions at the horizon
    included (a site discontinuing at exactly 6.0 is discontinued at 6).
    """
    df = spells.sort_values(["site", "start"], kind="stable")
    g = df.groupby("site", sort=True)
    entry, exit_ = g["start"].min(), g["stop"].max()
    before = df[df["start"] < horizon]
    last = before.groupby("site").tail(1).set_index("site")
    state = np.where((last["stop"] <= horizon) & (last["next"] != "censored"),
                     last["next"], last["state"])
    status = pd.Series(state, index=last.index).reindex(entry.index)
    at_h = df[df["start"] == horizon].groupby("site")["state"].first()
    status = status.fillna(at_h)
    followed = (exit_ >= horizon) & (entry <= horizon)
    status = status.where(followed, "censored")
    return pd.Series(pd.Categorical(status, categories=(*BOND_ORDER, "censored")),
                     index=entry.index, name="status")


@dataclass
class BondStatus:
    """Crude status counts at a horizon beside Aalen-Johansen probabilities."""

    horizon: float
    table: pd.DataFrame  # group, status, n, percent, probability, se, lower, upper
    sites: pd.DataFrame  # group, n_sites, followed, censored
    notes: list[str]
    conf_level: float

    def __str__(self) -> str:
        pct = f"{100 * self.conf_level:g}%"
        lines = [f"Programme status at {self.horizon:g} years: crude counts among sites followed "
                 f"to {self.horizon:g} years, and Aalen-Johansen estimates ({pct} CI) using all "
                 "follow-up"]
        for g, sub in self.table.groupby("group", sort=False):
            s = self.sites[self.sites["group"] == g].iloc[0]
            lines.append(f"\n{g}: {s['n_sites']} sites, {s['followed']} followed to "
                         f"{self.horizon:g} years, {s['censored']} censored before")
            lines.append(f"  {'status':<13}{'n':>4}{'crude %':>9}   {'Aalen-Johansen %':<24}")
            for _, r in sub.iterrows():
                crude = "   -" if np.isnan(r["percent"]) else f"{r['percent']:6.1f}"
                if np.isnan(r["probability"]):
                    aj = "NaN (beyond follow-up)"
                elif np.isnan(r["lower"]) or r["se"] == 0:
                    aj = f"{100 * r['probability']:5.1f} (se 0)"
                else:
                    aj = (f"{100 * r['probability']:5.1f} ({100 * r['lower']:.1f}-"
                          f"{100 * r['upper']:.1f})")
                lines.append(f"  {r['status']:<13}{int(r['n']):>4}{crude:>9}   {aj}")
        if self.notes:
            lines.append("")
            lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    __repr__ = __str__


def bond_status(history, horizon: float = 6.0, by: str | None = None, *,
                conf_level: float = 0.95, conf_type: str = "log") -> BondStatus:
    """The Bond et al. (2014) table: sustained / restarted / discontinued at ``horizon``.

    For each level of ``by`` and for all sites: crude counts and percentages
    among the sites followed to the horizon (``history.status_at(horizon)``),
    and beside them the Aalen-Johansen probability of each state at the
    horizon with its IJ standard error and CI (``conf_type`` as in
    :func:`state_probabilities`). The crude split ignores the sites censored
    before the horizon; the Aalen-Johansen estimate uses their follow-up, and
    also sites that entered late. A horizon beyond a group's follow-up gives
    NaN estimates and a warning, never an extrapolation.
    """
    horizon = _check_common(horizon, by=by)
    spells, by = _spells_from(history, by)
    df, notes = check_spells(spells, by)
    if hasattr(history, "status_at") and callable(history.status_at):
        status = history.status_at(horizon)
        if isinstance(status, pd.DataFrame):
            status = status.set_index("site")["status"] if "site" in status.columns \
                else status["status"]
    else:
        status = status_from_spells(df, horizon)
    status = status.astype(str)
    site_group = (df.groupby("site")[by].first() if by is not None else None)
    pieces = [] if by is None else [(g, site_group.index[site_group == g]) for g in
                                    sorted(site_group.unique(), key=lambda v: (str(type(v)), v))]
    pieces.append(("all", site_group.index if by is not None else status.index))
    rows, site_rows, beyond = [], [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # reported once, below
        for g, members in pieces:
            st = status.reindex(members)
            sub = df[df["site"].isin(members)]
            aj = state_probabilities(sub, [horizon], conf_level=conf_level,
                                     conf_type=conf_type).set_index("state")
            if len(sub) and horizon > sub["stop"].max():
                beyond.append(f"{g}: last follow-up {sub['stop'].max():g}")
            followed = int((st != "censored").sum())
            censored = int((st == "censored").sum())
            site_rows.append({"group": g, "n_sites": len(members), "followed": followed,
                              "censored": censored})
            for s in BOND_ORDER:
                n = int((st == s).sum())
                rows.append({"group": g, "status": s, "n": n,
                             "percent": 100 * n / followed if followed else np.nan,
                             "probability": aj.loc[s, "probability"], "se": aj.loc[s, "se"],
                             "lower": aj.loc[s, "lower"], "upper": aj.loc[s, "upper"]})
    sites_tab = pd.DataFrame(site_rows)
    tot = sites_tab.iloc[-1]
    if tot["censored"]:
        notes.append(f"{tot['censored']} of {tot['n_sites']} sites were censored before "
                     f"{horizon:g} years (or entered after it): the crude percentages are among "
                     f"the {tot['followed']} sites followed to {horizon:g} years; the "
                     "Aalen-Johansen estimates use every site's follow-up")
    if beyond:
        msg = (f"horizon {horizon:g} is beyond the last follow-up ({'; '.join(beyond)}): "
               "Aalen-Johansen estimates there are NaN, not extrapolated")
        warnings.warn(msg, stacklevel=2)
        notes.append(msg)
    return BondStatus(horizon, pd.DataFrame(rows), sites_tab, notes, conf_level)

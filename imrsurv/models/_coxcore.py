"""Vectorised numerics of the Cox partial likelihood for (start, stop] data.

Notation (Therneau & Grambsch 2000, ch. 3; R survival ``agfit4.c``): rows
``i`` with entry ``start_i``, exit ``stop_i``, event ``delta_i``, case weight
``w_i``, stratum ``s_i``, linear predictor ``eta_i = x_i'beta + offset_i`` and
risk ``r_i = w_i exp(eta_i)``.  For every unique event time ``t_k`` of a stratum
the risk set is ``R_k = {i in stratum: start_i < t_k <= stop_i}``,
``S0_k = sum_{R_k} r_i``, ``S1_k = sum_{R_k} r_i x_i``; over the ``d_k`` rows
that die at ``t_k``: ``E0_k``, ``E1_k`` (same sums) and ``wd_k = sum w_i``.

Efron's approximation treats the ``d_k`` deaths as ``d_k`` pseudo-events
``j = 0..d_k-1`` with ``f_j = j / d_k``, denominators
``den_j = S0_k - f_j E0_k``, means ``abar_j = (S1_k - f_j E1_k) / den_j`` and
weight ``mw_k = wd_k / d_k``; Breslow is the special case ``f_j = 0``:

    loglik = sum_deaths w_i eta_i - sum_j mw_k log den_j
    U      = sum_deaths w_i x_i   - sum_j mw_k abar_j
    I      = sum_j mw_k [(S2_k - f_j E2_k) / den_j - abar_j abar_j']

No loop runs over rows or event times.  Rows are mapped once to the range
``[a_i, b_i)`` of event-time indices at which they are at risk; risk-set sums
are then ``cumsum(bincount(a, v) - bincount(b, v))`` and the S2 part of the
information is one weighted cross-product ``X' diag(r_i (C[b_i] - C[a_i])) X``
with ``C`` the cumulative sum of ``sum_j mw_k / den_j`` over event times.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.linalg as sla

__all__ = [
    "RiskIndex",
    "CoxProblem",
    "CoxState",
    "NewtonResult",
    "build_index",
    "make_problem",
    "evaluate",
    "newton_raphson",
    "score_residuals",
    "martingale_residuals",
    "schoenfeld_residuals",
    "baseline_hazard",
    "km_left_continuous",
    "zph_statistics",
    "concordance_counts",
]


# ---------------------------------------------------------------------------
# Index structures, built once per fit


@dataclass(frozen=True)
class RiskIndex:
    """Where every row sits relative to the sorted unique (stratum, event time)s.

    ``a[i] <= k < b[i]`` exactly when row ``i`` is at risk at event time ``k``.
    Death rows are listed in ``death_rows`` grouped by event time (in original
    row order within a time), with ``death_k`` their event index and
    ``frac`` the Efron fraction ``j / d_k`` (zero for Breslow).
    """

    n: int
    n_times: int
    event_time: np.ndarray
    event_stratum: np.ndarray
    a: np.ndarray
    b: np.ndarray
    death_rows: np.ndarray
    death_k: np.ndarray
    d: np.ndarray
    group_start: np.ndarray
    frac: np.ndarray


def _time_keys(start: np.ndarray, stop: np.ndarray, strata: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """Exact integer keys ordering (stratum, time) lexicographically."""
    all_times = np.unique(np.concatenate([start, stop]))
    width = np.int64(all_times.size + 1)
    base = strata.astype(np.int64) * width
    kstart = base + np.searchsorted(all_times, start)
    kstop = base + np.searchsorted(all_times, stop)
    return kstart, kstop


def build_index(start: np.ndarray, stop: np.ndarray, event: np.ndarray,
                strata: np.ndarray, efron: bool) -> RiskIndex:
    """Map rows to event-time ranges; see :class:`RiskIndex`."""
    n = stop.size
    kstart, kstop = _time_keys(start, stop, strata)
    dead = np.flatnonzero(event)
    ekeys = np.unique(kstop[dead])
    a = np.searchsorted(ekeys, kstart, side="right")
    b = np.searchsorted(ekeys, kstop, side="right")
    dk = np.searchsorted(ekeys, kstop[dead])
    order = np.argsort(dk, kind="stable")
    death_rows, death_k = dead[order], dk[order]
    n_times = ekeys.size
    d = np.bincount(death_k, minlength=n_times)
    group_start = np.cumsum(d) - d
    if efron:
        j = np.arange(death_rows.size) - group_start[death_k]
        frac = j / d[death_k]
    else:
        frac = np.zeros(death_rows.size)
    first = death_rows[group_start]
    return RiskIndex(n=n, n_times=n_times, event_time=stop[first],
                     event_stratum=strata[first], a=a, b=b, death_rows=death_rows,
                     death_k=death_k, d=d, group_start=group_start, frac=frac)


@dataclass
class CoxProblem:
    """Design, weights and index of one fit; ``x`` is centred per stratum."""

    x: np.ndarray
    centers: np.ndarray
    weights: np.ndarray
    offset: np.ndarray
    strata: np.ndarray
    n_strata: int
    index: RiskIndex
    start: np.ndarray
    stop: np.ndarray
    event: np.ndarray
    efron: bool
    xd_sum: np.ndarray = field(init=False)
    wd: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        ix = self.index
        wdead = self.weights[ix.death_rows]
        self.xd_sum = wdead @ self.x[ix.death_rows]
        self.wd = np.bincount(ix.death_k, wdead, minlength=ix.n_times)


def make_problem(x: np.ndarray, start: np.ndarray, stop: np.ndarray, event: np.ndarray,
                 weights: np.ndarray, offset: np.ndarray, strata: np.ndarray,
                 efron: bool) -> CoxProblem:
    """Centre ``x`` on its weighted per-stratum means (as R does) and index the rows."""
    n_strata = int(strata.max()) + 1 if strata.size else 1
    wsum = np.bincount(strata, weights, minlength=n_strata)
    centers = np.column_stack([np.bincount(strata, weights * x[:, j], minlength=n_strata)
                               for j in range(x.shape[1])]) if x.shape[1] else \
        np.zeros((n_strata, 0))
    centers = centers / np.where(wsum > 0, wsum, 1.0)[:, None]
    xc = x - centers[strata]
    index = build_index(start, stop, event, strata, efron)
    return CoxProblem(x=np.ascontiguousarray(xc), centers=centers, weights=weights,
                      offset=offset, strata=strata, n_strata=n_strata, index=index,
                      start=start, stop=stop, event=event.astype(bool), efron=efron)


# ---------------------------------------------------------------------------
# Likelihood, score and information


def _riskset_sum(ix: RiskIndex, v: np.ndarray) -> np.ndarray:
    """``sum_{i in R_k} v_i`` for every event time k (v is 1-d)."""
    m = ix.n_times + 1
    net = np.bincount(ix.a, v, minlength=m) - np.bincount(ix.b, v, minlength=m)
    return np.cumsum(net)[:-1]


def _riskset_sums(ix: RiskIndex, r: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s0 = _riskset_sum(ix, r)
    s1 = np.empty((ix.n_times, x.shape[1]))
    for j in range(x.shape[1]):
        s1[:, j] = _riskset_sum(ix, r * x[:, j])
    return s0, s1


def _group_sum(ix: RiskIndex, v: np.ndarray) -> np.ndarray:
    """Sum an array over the deaths of each event time (arrays in death order)."""
    return np.add.reduceat(v, ix.group_start, axis=0)


def _cum0(v: np.ndarray) -> np.ndarray:
    """Cumulative sum with a leading zero row, so ``C[b] - C[a]`` sums ``[a, b)``."""
    out = np.zeros((v.shape[0] + 1,) + v.shape[1:])
    np.cumsum(v, axis=0, out=out[1:])
    return out


@dataclass
class CoxState:
    """Everything computed at one value of beta."""

    beta: np.ndarray
    eta: np.ndarray
    shift: np.ndarray
    risk_u: np.ndarray      # exp(eta - shift), unweighted
    loglik: float
    score: np.ndarray
    info: np.ndarray
    s0: np.ndarray
    s1: np.ndarray
    e0: np.ndarray
    e1: np.ndarray
    den: np.ndarray         # per pseudo-death (D)
    abar: np.ndarray        # per pseudo-death (D x p)
    hj: np.ndarray          # mw_k / den_j, the hazard increment of pseudo-death j
    c1: np.ndarray          # sum_j hj per event time
    c2: np.ndarray          # sum_j hj f_j per event time


def evaluate(pb: CoxProblem, beta: np.ndarray, need_info: bool = True) -> CoxState:
    """Log partial likelihood, score and information at ``beta``."""
    ix = pb.index
    eta = pb.x @ beta + pb.offset
    cnt = np.bincount(pb.strata, minlength=pb.n_strata)
    shift = np.bincount(pb.strata, eta, minlength=pb.n_strata) / np.maximum(cnt, 1)
    risk_u = np.exp(eta - shift[pb.strata])
    r = pb.weights * risk_u
    s0, s1 = _riskset_sums(ix, r, pb.x)
    dr, dk, frac = ix.death_rows, ix.death_k, ix.frac
    rd = r[dr]
    xd = pb.x[dr]
    e0 = _group_sum(ix, rd)
    e1 = _group_sum(ix, rd[:, None] * xd)
    den = s0[dk] - frac * e0[dk]
    mw = pb.wd[dk] / ix.d[dk]
    with np.errstate(divide="ignore", invalid="ignore"):
        logden = np.log(den) + shift[ix.event_stratum[dk]]
        abar = (s1[dk] - frac[:, None] * e1[dk]) / den[:, None]
        hj = mw / den
    wdead = pb.weights[dr]
    loglik = float(wdead @ eta[dr] - mw @ logden)
    score = pb.xd_sum - mw @ abar
    c1 = _group_sum(ix, hj)
    c2 = _group_sum(ix, hj * frac)
    if need_info:
        cc = _cum0(c1)
        roww = r * (cc[ix.b] - cc[ix.a])
        roww[dr] -= rd * c2[dk]
        info = (pb.x * roww[:, None]).T @ pb.x - (abar * mw[:, None]).T @ abar
        info = (info + info.T) / 2
    else:
        info = np.empty((beta.size, beta.size))
    return CoxState(beta=beta, eta=eta, shift=shift, risk_u=risk_u, loglik=loglik,
                    score=score, info=info, s0=s0, s1=s1, e0=e0, e1=e1, den=den,
                    abar=abar, hj=hj, c1=c1, c2=c2)


# ---------------------------------------------------------------------------
# Newton-Raphson, as R's agfit4.c


@dataclass
class NewtonResult:
    state: CoxState
    state0: CoxState
    loglik_null: float
    score_test: float
    iterations: int
    converged: bool
    var: np.ndarray


def _chol(info: np.ndarray) -> tuple[np.ndarray, bool] | None:
    if not np.all(np.isfinite(info)):
        return None
    try:
        return sla.cho_factor(info, lower=True, check_finite=False)
    except np.linalg.LinAlgError:
        return None


class SingularInformation(ArithmeticError):
    """The information matrix is not positive definite at the start (beta = 0)."""

    def __init__(self, diag: np.ndarray):
        super().__init__("information matrix is singular")
        self.diag = diag


def newton_raphson(pb: CoxProblem, max_iter: int = 30, eps: float = 1e-9,
                   init: np.ndarray | None = None) -> NewtonResult:
    """Maximise the partial likelihood as R's ``agfit4``/``coxfit6`` do.

    Converged when ``|1 - loglik_old / loglik_new| <= eps`` after a full
    (non-halved) Newton step; a step that lowers the log-likelihood (or gives a
    non-finite one) is halved as ``beta = (h * old + beta) / (h + 1)``.
    """
    p = pb.x.shape[1]
    beta = np.zeros(p) if init is None else np.asarray(init, float).copy()
    st0 = evaluate(pb, beta)
    fac = _chol(st0.info)
    if fac is None:
        raise SingularInformation(np.diag(st0.info))
    step = sla.cho_solve(fac, st0.score)
    score_test = float(st0.score @ step)
    if not np.isfinite(st0.loglik):
        raise ArithmeticError("non-finite log-likelihood at beta = 0")
    best, st = st0.loglik, st0
    oldbeta, beta = beta, beta + step
    halving, converged, it = 0, False, 0
    for it in range(1, max_iter + 1):
        st = evaluate(pb, beta)
        fac = _chol(st.info)
        fail = fac is None or not np.isfinite(st.loglik)
        if not fail and halving == 0 and abs(1 - best / st.loglik) <= eps:
            converged = True
            break
        if it == max_iter:
            if fail or (st.loglik - best) / abs(best) < -eps:
                st = evaluate(pb, oldbeta)
                fac = _chol(st.info)
            break
        if fail or st.loglik < best:
            halving += 1
            beta = (oldbeta * halving + beta) / (halving + 1)
        else:
            halving, best = 0, st.loglik
            oldbeta, beta = beta, beta + sla.cho_solve(fac, st.score)
    if fac is None:
        raise SingularInformation(np.diag(st.info))
    var = sla.cho_solve(fac, np.eye(p))
    var = (var + var.T) / 2
    return NewtonResult(state=st, state0=st0, loglik_null=st0.loglik, score_test=score_test,
                        iterations=it, converged=converged, var=var)


# ---------------------------------------------------------------------------
# Residuals (R: agscore3.c, agmart3.c, coxscho.c)


def _death_terms(pb: CoxProblem, st: CoxState) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per event time: xhaz = sum_j hj abar_j, mh2 = sum_j hj f_j abar_j, schoenfeld mean."""
    ix = pb.index
    xhaz = _group_sum(ix, st.hj[:, None] * st.abar)
    mh2 = _group_sum(ix, (st.hj * ix.frac)[:, None] * st.abar)
    smean = _group_sum(ix, st.abar) / ix.d[:, None]
    return xhaz, mh2, smean


def score_residuals(pb: CoxProblem, st: CoxState) -> np.ndarray:
    """Unweighted score residuals ``int (x_i - xbar(t)) dM_i(t)`` (R ``agscore3``).

    With Efron ties a death at ``t_k`` gets ``x_i - mean_j abar_j`` and only the
    fraction ``1 - f_j`` of each pseudo-death's hazard increment.
    """
    ix = pb.index
    xhaz, mh2, smean = _death_terms(pb, st)
    hcum = _cum0(st.c1)
    xcum = _cum0(xhaz)
    ru = st.risk_u
    res = -ru[:, None] * (pb.x * (hcum[ix.b] - hcum[ix.a])[:, None] - (xcum[ix.b] - xcum[ix.a]))
    dr, dk = ix.death_rows, ix.death_k
    res[dr] += (pb.x[dr] - smean[dk]) + ru[dr, None] * (pb.x[dr] * st.c2[dk, None] - mh2[dk])
    return res


def martingale_residuals(pb: CoxProblem, st: CoxState) -> np.ndarray:
    """``delta_i - exp(eta_i) * (cumulative hazard over (start_i, stop_i])``, Efron-corrected."""
    ix = pb.index
    hcum = _cum0(st.c1)
    res = pb.event.astype(float) - st.risk_u * (hcum[ix.b] - hcum[ix.a])
    dr = ix.death_rows
    res[dr] += st.risk_u[dr] * st.c2[ix.death_k]
    return res


def schoenfeld_residuals(pb: CoxProblem, st: CoxState) -> tuple[np.ndarray, np.ndarray]:
    """Rows of deaths (sorted by stratum, time, row) and ``x_i - xbar(t_i)`` (R ``coxscho``)."""
    ix = pb.index
    _, _, smean = _death_terms(pb, st)
    dr = ix.death_rows
    return dr, pb.x[dr] - smean[ix.death_k]


# ---------------------------------------------------------------------------
# Baseline hazard, as R basehaz(fit, centered = FALSE)


def baseline_hazard(pb: CoxProblem, st: CoxState) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative baseline hazard (covariates 0, offset 0) at every stop time per stratum.

    The increment at event time k is ``sum_j mw_k / den_j`` (Breslow, or the
    Efron-corrected estimator R uses with ``ties = "efron"``); ``den`` was
    computed with centred covariates and a per-stratum shift, undone here.
    Returns (stratum code, time, cumulative hazard) sorted by stratum and time.
    """
    ix = pb.index
    undo = np.exp(-(st.shift + pb.centers @ st.beta))
    inc = st.c1 * undo[ix.event_stratum]
    times = np.unique(pb.stop)
    width = np.int64(times.size)
    keys = np.unique(pb.strata.astype(np.int64) * width + np.searchsorted(times, pb.stop))
    ekeys = ix.event_stratum.astype(np.int64) * width + np.searchsorted(times, ix.event_time)
    jumps = np.zeros(keys.size)
    jumps[np.searchsorted(keys, ekeys)] = inc
    us, ut = keys // width, times[keys % width]
    first = np.flatnonzero(np.r_[True, us[1:] != us[:-1]])
    cum = np.cumsum(jumps)
    cum -= np.repeat(cum[first] - jumps[first], np.diff(np.r_[first, us.size]))
    return us, ut, cum


# ---------------------------------------------------------------------------
# cox.zph (survival >= 3.0): score test for x * g(t) terms


def km_left_continuous(start: np.ndarray, stop: np.ndarray, event: np.ndarray) -> np.ndarray:
    """Unweighted, unstratified Kaplan-Meier ``S(t-)`` at each row's stop time.

    Counting-process risk sets (``start < t <= stop``), as R's ``survfitKM``
    called by ``cox.zph(transform = "km")``.
    """
    ix = build_index(start, stop, event, np.zeros(stop.size, np.int64), efron=False)
    nrisk = _riskset_sum(ix, np.ones(stop.size))
    logs = np.log1p(-ix.d / nrisk)
    cum = _cum0(logs)
    # number of event times strictly before each row's stop
    before = np.searchsorted(ix.event_time, stop, side="left")
    return np.exp(cum[before])


def zph_statistics(pb: CoxProblem, st: CoxState, gk: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Score vector and information of (beta, gamma) for covariates ``x * g(t)``.

    Returns ``u`` (2p; the beta half is not used by the test) and ``imat``
    (2p x 2p): blocks ``sum_k V_k``, ``sum_k g_k V_k``, ``sum_k g_k^2 V_k`` with
    ``V_k`` the (Efron) covariance of x at event time k, as R ``zph2.c``.
    """
    ix = pb.index
    p = pb.x.shape[1]
    r = pb.weights * st.risk_u
    dr, dk = ix.death_rows, ix.death_k
    xd_k = _group_sum(ix, pb.weights[dr, None] * pb.x[dr])
    mw = pb.wd[dk] / ix.d[dk]
    resid_k = xd_k - (st.c1[:, None] * st.s1 - st.c2[:, None] * st.e1)
    u = np.concatenate([resid_k.sum(0), gk @ resid_k])
    blocks = []
    for m in range(3):
        gm = gk ** m
        cc = _cum0(st.c1 * gm)
        roww = r * (cc[ix.b] - cc[ix.a])
        roww[dr] -= r[dr] * (st.c2 * gm)[dk]
        v = (pb.x * roww[:, None]).T @ pb.x - (st.abar * (mw * gm[dk])[:, None]).T @ st.abar
        blocks.append((v + v.T) / 2)
    imat = np.block([[blocks[0], blocks[1]], [blocks[1], blocks[2]]])
    assert imat.shape == (2 * p, 2 * p)
    return u, imat


# ---------------------------------------------------------------------------
# Concordance (R concordancefit, counting-process data, timewt = "n")


def _dominance(pkey: np.ndarray, prank: np.ndarray, pw: np.ndarray,
               qkey: np.ndarray, qrank: np.ndarray) -> np.ndarray:
    """For each query q: ``sum_j pw_j [pkey_j < qkey_q] [prank_j < qrank_q]``.

    Offline 2-d dominance sums without a loop over points: write the rank
    condition bit by bit (``prank < qrank`` iff at some bit l the higher bits
    agree, the query has a 1 and the point a 0); per bit one stable sort of the
    points by (rank >> l, key) and one ``searchsorted`` per query.
    """
    out = np.zeros(qkey.size)
    if pkey.size == 0 or qkey.size == 0:
        return out
    kmax = np.int64(max(pkey.max(), qkey.max()) + 2)
    nbits = int(max(prank.max(), qrank.max())).bit_length() + 1
    by_key = np.argsort(pkey, kind="stable")
    pkey, prank, pw = pkey[by_key], prank[by_key], pw[by_key]
    for level in range(nbits):
        hit = ((qrank >> level) & 1) == 1
        if not hit.any():
            continue
        g = prank >> level
        order = np.argsort(g, kind="stable")
        comp = g[order] * kmax + pkey[order]
        cw = _cum0(pw[order])
        target = (qrank[hit] >> level) - 1
        hi = np.searchsorted(comp, target * kmax + qkey[hit], side="left")
        lo = np.searchsorted(comp, target * kmax, side="left")
        out[hit] += cw[hi] - cw[lo]
    return out


def _prefix_sum(pkey: np.ndarray, pw: np.ndarray, qkey: np.ndarray) -> np.ndarray:
    """For each query: ``sum_j pw_j [pkey_j < qkey_q]``."""
    order = np.argsort(pkey, kind="stable")
    return _cum0(pw[order])[np.searchsorted(pkey[order], qkey, side="left")]


def concordance_counts(start: np.ndarray, stop: np.ndarray, event: np.ndarray,
                       strata: np.ndarray, weights: np.ndarray, lp: np.ndarray,
                       cluster: np.ndarray | None = None) -> dict[str, float]:
    """Harrell's C for (start, stop] data as R's ``coxph`` reports it.

    A death of row i at t (stratum s) is compared with every row j of s at
    risk at t (``start_j < t <= stop_j``) that is not itself a death at t;
    pair weight ``w_i w_j``.  Concordant: ``lp_i > lp_j``; ``tied.x``: equal
    lp; pairs of deaths at the same time are ``tied.y`` (``tied.xy`` when lp
    ties too).  C = (concordant + tied.x / 2) / (concordant + discordant + tied.x).
    ``std`` is R's infinitesimal-jackknife standard error: per-row influence
    on Somers' d (as the death and as the comparator), summed within
    ``cluster`` when given.
    """
    kstart, kstop = _time_keys(start, stop, strata)
    ukeys = np.unique(np.concatenate([kstart, kstop]))
    kstart, kstop = np.searchsorted(ukeys, kstart), np.searchsorted(ukeys, kstop)
    _, rank = np.unique(lp, return_inverse=True)
    rank = rank.astype(np.int64)
    dead = np.flatnonzero(event)
    nd = dead.size
    qk, qr, qw = kstop[dead], rank[dead], weights[dead]
    dlt, dle, dtot, tied_y, tied_xy = _same_time_deaths(qk, qr, qw)

    # role 1, row i dies at t: weight of comparators (at risk at t, not dying at t)
    # with lower / equal / higher lp; the +w/-w point pairs make "at risk" counts
    pkey = np.concatenate([kstart, kstop])
    prank = np.concatenate([rank, rank])
    pw = np.concatenate([weights, -weights])
    below = _dominance(pkey, prank, pw, np.r_[qk, qk], np.r_[qr, qr + 1])
    lt, le = below[:nd] - dlt, below[nd:] - dle
    total = _prefix_sum(pkey, pw, qk) - dtot
    d_lt, d_eq, d_gt = lt, le - lt, total - le

    # role 2, row j is a comparator: weight of deaths in (start_j, stop_j] with
    # lower / equal / higher lp, less the deaths at stop_j when j itself dies then
    q2 = np.r_[kstop, kstart, kstop, kstart] + 1
    r2 = np.r_[rank, rank, rank + 1, rank + 1]
    c2 = _dominance(qk, qr, qw, q2, r2)
    n = rank.size
    c_lt = c2[:n] - c2[n:2 * n]
    c_le = c2[2 * n:3 * n] - c2[3 * n:]
    c_tot = _prefix_sum(qk, qw, kstop + 1) - _prefix_sum(qk, qw, kstart + 1)
    c_lt[dead] -= dlt
    c_le[dead] -= dle
    c_tot[dead] -= dtot

    conc = float(qw @ d_lt)
    tied_x = float(qw @ d_eq)
    disc = float(qw @ d_gt)
    npair = conc + disc + tied_x
    # influence per row on (concordant, discordant, tied.x), both roles
    inf_c = c_tot - c_le          # deaths with higher lp than comparator j: concordant
    inf_d = c_lt.copy()           # deaths with lower lp: discordant
    inf_t = c_le - c_lt
    inf_c[dead] += d_lt
    inf_d[dead] += d_gt
    inf_t[dead] += d_eq
    somers = (conc - disc) / npair if npair > 0 else float("nan")
    dfbeta = ((inf_c - inf_d) - (inf_c + inf_d + inf_t) * somers) * weights / (2 * npair)
    if cluster is not None:
        dfbeta = np.bincount(cluster, dfbeta)
    return {"concordant": conc, "discordant": disc, "tied.x": tied_x,
            "tied.y": tied_y - tied_xy, "tied.xy": tied_xy,
            "concordance": (conc + tied_x / 2) / npair if npair > 0 else float("nan"),
            "std": float(np.sqrt(dfbeta @ dfbeta))}


def _same_time_deaths(qk: np.ndarray, qr: np.ndarray, qw: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    """Weights of co-deaths (same stratum and time) below / at-or-below each death's rank."""
    order = np.lexsort((qr, qk))
    k, rr, w = qk[order], qr[order], qw[order]
    newk = np.r_[True, k[1:] != k[:-1]]
    newkr = newk | np.r_[True, rr[1:] != rr[:-1]]
    cw = np.cumsum(w)
    gid = np.cumsum(newk) - 1
    gstart = np.flatnonzero(newk)
    base = (cw - w)[gstart][gid]               # weight before this time group
    grid = np.cumsum(newkr) - 1
    grstart = np.flatnonzero(newkr)
    grend = np.r_[grstart[1:], k.size] - 1
    lt_sorted = (cw - w)[grstart][grid] - base
    le_sorted = cw[grend][grid] - base
    gtot = np.add.reduceat(w, gstart)
    tot_sorted = gtot[gid]
    gsq = np.add.reduceat(w * w, gstart)
    tied_y = float(((gtot ** 2 - gsq) / 2).sum())
    rtot = np.add.reduceat(w, grstart)
    rsq = np.add.reduceat(w * w, grstart)
    tied_xy = float(((rtot ** 2 - rsq) / 2).sum())
    lt, le, tot = (np.empty_like(w) for _ in range(3))
    lt[order], le[order], tot[order] = lt_sorted, le_sorted, tot_sorted
    return lt, le, tot, tied_y, tied_xy

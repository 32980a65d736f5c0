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

Per-pseudo-event arrays (index q) have one entry per death with Efron ties
and one per event time with Breslow ties (where all ``f_j`` are 0, the
``d_k`` terms coincide and collapse to one with weight ``wd_k``); with no tied
event times both layouts are the event times themselves, and the gathers
are skipped.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.linalg as sla

__all__ = [
    "RiskIndex",
    "CoxProblem",
    "CoxState",
    "NewtonResult",
    "build_index",
    "make_problem",
    "memory_estimate",
    "memory_problem",
    "evaluate",
    "newton_raphson",
    "score_residuals",
    "cluster_score_sums",
    "martingale_residuals",
    "schoenfeld_residuals",
    "baseline_hazard",
    "km_left_continuous",
    "zph_statistics",
    "concordance_counts",
]


# ---------------------------------------------------------------------------
# Memory: refuse early rather than be killed

# Bytes a fit allocates per row at its peak, beyond the caller's data frame: about
# 13 float64 columns of n (times, index, risk, weights, residual work) plus 10 per
# covariate (centred design, risk-set products, score residuals). Calibrated on
# benchmarks/cox.py (tracemalloc peak 526 MB at 1M rows x 5 covariates with cluster)
# and on the growth of the process's peak RSS during such a fit with the numpy path
# (IMRSURV_NO_NUMBA=1): 453 MiB; the estimate is 496 bytes a row at 5 covariates.
_BYTES_PER_ROW, _BYTES_PER_CELL = 13 * 8, 7 * 8 * 1.4
# The compiled path (fits of at least FAST_MIN_ROWS rows, see _coxkernels): about 25
# numbers per row (index, fixed times, risks, per-event-time arrays, cluster codes) plus
# 5 per covariate (design, [S0 | S1], abar, running sums of the score residuals).
# Calibrated on the growth of the process's peak RSS during one fit with cluster, 5
# covariates: 363 MiB at 1M rows, 3.41 GiB at 10M, at most 381 bytes a row (without
# cluster 267 MiB / 2.57 GiB); the estimate is 420 bytes a row at 5 covariates.
_BYTES_PER_ROW_COMPILED, _BYTES_PER_CELL_COMPILED = 210, 42


def memory_estimate(n_rows: int, n_cols: int, compiled: bool | None = None) -> int:
    """Peak bytes a fit of ``n_rows`` x ``n_cols`` allocates (see the constants above).

    ``compiled``: whether the compiled kernels will run (default: decided as the fit
    decides, from the size and whether numba is available).
    """
    if compiled is None:
        compiled = (n_rows >= FAST_MIN_ROWS and 0 < n_cols <= FAST_MAX_COLS
                    and _kernels() is not None)
    per_row, per_cell = ((_BYTES_PER_ROW_COMPILED, _BYTES_PER_CELL_COMPILED) if compiled
                         else (_BYTES_PER_ROW, _BYTES_PER_CELL))
    return int(n_rows * (per_row + per_cell * max(n_cols, 1)))


def available_memory() -> int | None:
    """Memory the system can still give (``MemAvailable`` of /proc/meminfo), or None."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def memory_problem(n_rows: int, n_cols: int) -> str | None:
    """A message when the fit would need more memory than is available, else None."""
    need, have = memory_estimate(n_rows, n_cols), available_memory()
    if have is None or need <= have:
        return None
    return (f"fitting {n_rows:,} rows x {n_cols} covariates needs about {need / 2**30:.1f} GiB "
            f"of memory and {have / 2**30:.1f} GiB is available: fit a sample or a subset, "
            "free memory, or use a dask DataFrame (out-of-core fit)")


# ---------------------------------------------------------------------------
# Index structures, built once per fit


@dataclass(frozen=True)
class RiskIndex:
    """Where every row sits relative to the sorted unique (stratum, event time)s.

    ``a[i] <= k < b[i]`` exactly when row ``i`` is at risk at event time ``k``.
    Death rows are listed in ``death_rows`` sorted by event time (row order
    within a time), with ``death_k`` their event index; ``d[k]`` deaths at k;
    ``tied_rows``/``tied_k`` the deaths at event times with ``d[k] > 1``.
    Pseudo-events (see module docstring): the first ``n_times`` are the
    ``j = 0`` terms of every event time (``f = 0``), followed by ``n_extra``
    Efron terms ``j >= 1`` of tied times; ``pk`` maps each to its event
    index, ``pfrac`` is ``j / d_k``, ``pcount[k]`` how many belong to k.
    ``identity`` when there are no extra terms.
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
    tied_rows: np.ndarray
    tied_k: np.ndarray
    pk: np.ndarray
    pfrac: np.ndarray
    pcount: np.ndarray
    n_extra: int

    @property
    def identity(self) -> bool:
        return self.n_extra == 0

    @property
    def extra_k(self) -> np.ndarray:
        return self.pk[self.n_times:]

    @property
    def extra_frac(self) -> np.ndarray:
        return self.pfrac[self.n_times:]


def aeq_times(start: np.ndarray, stop: np.ndarray, tol: float = float(np.finfo(float).eps) ** 0.5
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Treat nearly equal times as equal, as R's ``aeqSurv`` (``coxph`` ``timefix = TRUE``).

    Among the sorted distinct finite start and stop times, neighbours closer
    than ``tol`` (absolute, or relative to the mean absolute time) are merged
    into runs, and every time takes the smallest value of its run.  Returns
    the fixed start and stop, the sort order of ``concat(start, stop)`` (still
    valid after fixing, so callers need not sort again) and how many distinct
    values were merged away.
    """
    n = stop.size
    t = np.concatenate([start, stop])
    order = np.argsort(t)
    ts = t[order]
    fin = np.isfinite(ts)
    first = np.empty(t.size, bool)
    first[:1] = True
    first[1:] = ts[1:] != ts[:-1]
    first &= fin
    y = ts[first]
    if y.size < 2:
        return start, stop, order, 0
    dy = np.diff(y)
    tied = (dy <= tol) | (dy / np.mean(np.abs(y)) <= tol)
    if not tied.any():
        return start, stop, order, 0
    cut = np.r_[True, ~tied]
    rep = y[cut][np.cumsum(cut) - 1]          # representative of each distinct value
    uid = np.cumsum(first) - 1
    fixed_sorted = np.where(fin, rep[np.maximum(uid, 0)], ts)
    fixed = np.empty_like(t)
    fixed[order] = fixed_sorted
    return fixed[:n], fixed[n:], order, int(tied.sum())


def _sort_endpoints(t: np.ndarray, s: np.ndarray, single: bool,
                    time_order: np.ndarray | None = None) -> np.ndarray:
    """Order of (stratum, time); tie order is irrelevant to the callers."""
    order = np.argsort(t) if time_order is None else time_order
    if single:
        return order
    if s.max() < 2**16:
        # a stable sort of 16-bit keys is a radix sort: linear time
        return order[np.argsort(s[order].astype(np.uint16), kind="stable")]
    return np.lexsort((t, s))


def endpoint_groups(start: np.ndarray, stop: np.ndarray, strata: np.ndarray,
                    time_order: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Dense ranks of the (stratum, time) pairs of all start and stop times.

    One sort of the 2n endpoints (``time_order``, the order of
    ``concat(start, stop)`` by time, may be passed in).  Returns the group of
    each row's start and stop and, per group, its time and stratum (groups
    ordered by stratum, time).
    """
    n = stop.size
    t = np.concatenate([start, stop])
    s = np.concatenate([strata, strata])
    single = n == 0 or strata.min() == strata.max()
    order = _sort_endpoints(t, s, single, time_order)
    ts, ss = t[order], s[order]
    new = np.empty(t.size, bool)
    new[:1] = True
    new[1:] = ts[1:] != ts[:-1]
    if not single:
        new[1:] |= ss[1:] != ss[:-1]
    g = np.empty(t.size, np.int64)
    g[order] = np.cumsum(new) - 1
    return g[:n], g[n:], ts[new], ss[new]


def build_index(start: np.ndarray, stop: np.ndarray, event: np.ndarray,
                strata: np.ndarray, efron: bool, time_order: np.ndarray | None = None
                ) -> RiskIndex:
    """Map rows to event-time ranges; see :class:`RiskIndex`."""
    n = stop.size
    gstart, gstop, gtime, gstrat = endpoint_groups(start, stop, strata, time_order)
    dead = np.flatnonzero(event)
    has = np.zeros(gtime.size, bool)
    has[gstop[dead]] = True
    upto = np.cumsum(has)                 # event times <= each (stratum, time) group
    a, b = upto[gstart], upto[gstop]
    if time_order is not None:
        # deaths in stop-time order from the endpoint sort already done: only ties (and
        # strata) are out of (event time, row) order, so the stable sort below is near-linear
        cand = time_order[time_order >= n] - n
        dead = cand[event[cand] != 0]
    dk = upto[gstop[dead]] - 1
    order = np.argsort(dk * np.int64(n) + dead, kind="stable")   # by event time, then row
    death_rows, death_k = dead[order], dk[order]
    evg = np.flatnonzero(has)
    return _finish_index(n, a, b, gtime[evg], gstrat[evg], death_rows, death_k, efron)


def _finish_index(n: int, a: np.ndarray, b: np.ndarray, event_time: np.ndarray,
                  event_stratum: np.ndarray, death_rows: np.ndarray, death_k: np.ndarray,
                  efron: bool) -> RiskIndex:
    """Counts of deaths per event time and the Efron pseudo-events (see :class:`RiskIndex`)."""
    n_times = event_time.size
    d = np.bincount(death_k, minlength=n_times)
    tied = d[death_k] > 1
    pk, pfrac = np.arange(n_times), np.zeros(n_times)
    pcount = np.ones(n_times, np.int64)
    if efron and tied.any():
        j = np.arange(death_rows.size) - (np.cumsum(d) - d)[death_k]
        extra = j > 0
        pk = np.concatenate([pk, death_k[extra]])
        pfrac = np.concatenate([pfrac, j[extra] / d[death_k[extra]]])
        pcount = d
    return RiskIndex(n=n, n_times=n_times, event_time=event_time, event_stratum=event_stratum,
                     a=a, b=b, death_rows=death_rows, death_k=death_k, d=d,
                     tied_rows=death_rows[tied], tied_k=death_k[tied], pk=pk, pfrac=pfrac,
                     pcount=pcount, n_extra=pk.size - n_times)


@dataclass
class CoxProblem:
    """Design, weights and index of one fit.

    ``x`` is centred per stratum and stored column-major (columns contiguous);
    ``xd`` holds the death rows of ``x`` in death order.
    """

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
    n_time_merged: int = 0
    unweighted: bool = field(init=False)
    xt: np.ndarray = field(init=False)
    wdead: np.ndarray = field(init=False)
    offd_sum: float = field(init=False)
    xd_sum: np.ndarray = field(init=False)
    wd: np.ndarray = field(init=False)
    mw: np.ndarray = field(init=False)
    kernel_means: tuple[np.ndarray, np.ndarray] | None = field(init=False, default=None,
                                                               repr=False)

    def __post_init__(self) -> None:
        ix = self.index
        self.unweighted = bool(np.all(self.weights == 1.0))
        self.xt = _take_rows(self.x, ix.tied_rows)
        self.wdead = self.weights[ix.death_rows]
        self.offd_sum = float(self.wdead @ self.offset[ix.death_rows])
        if use_kernels(self):   # large: xd (deaths x p) only when a residual needs it
            self.xd_sum = _kernels().death_sums(self.x, ix.death_rows, self.wdead)
        else:
            self.xd_sum = self.wdead @ self.xd
        self.wd = np.bincount(ix.death_k, self.wdead, minlength=ix.n_times)
        self.mw = (self.wd / ix.pcount)[ix.pk]

    @functools.cached_property
    def xd(self) -> np.ndarray:
        """The death rows of ``x`` in death order (column-major), built on first use."""
        return _take_rows(self.x, self.index.death_rows)


def _take_rows(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``x[rows]`` column-major, gathered column by column (faster than a 2-d fancy index)."""
    out = np.empty((rows.size, x.shape[1]), order="F")
    for j in range(x.shape[1]):
        np.take(x[:, j], rows, out=out[:, j])
    return out


class ZeroLengthInterval(ValueError):
    """``timefix`` merged a row's start and stop (R: "an interval has effective length 0")."""

    def __init__(self, rows: np.ndarray):
        super().__init__("interval of effective length 0")
        self.rows = rows


_TIMEFIX_TOL = float(np.finfo(float).eps) ** 0.5


def _index_compiled(start: np.ndarray, stop: np.ndarray, event: np.ndarray,
                    strata: np.ndarray, efron: bool, timefix: bool
                    ) -> tuple[np.ndarray, np.ndarray, int, RiskIndex] | None:
    """:func:`aeq_times` and :func:`build_index` by the compiled walks of :mod:`._coxkernels`.

    Only for fits of at least ``FAST_MIN_ROWS`` rows with the kernels available (else
    None and the numpy path runs).  One sort of the 2n endpoints serves R's time fix
    and the index.  Returns the (fixed) start and stop, the number of distinct times
    merged and the index; all equal the numpy path's exactly (the tie decisions use
    the same arithmetic, the rest is integer bookkeeping).
    """
    n = stop.size
    kern = _kernels() if n >= FAST_MIN_ROWS else None
    if kern is None:
        return None
    t = np.concatenate([start, stop])
    order, ts = kern.sorted_endpoints(t)
    merged = 0
    if timefix:
        y = kern.distinct_finite(ts)
        if y.size >= 2:
            tied = kern.near_ties(y, float(np.mean(np.abs(y))), _TIMEFIX_TOL)
            merged = int(tied.sum())
            if merged:
                del t
                t, ts = kern.fix_times(ts, order, y, tied)
                start, stop = t[:n], t[n:]
                zero = np.flatnonzero(stop <= start)
                if zero.size:
                    raise ZeroLengthInterval(zero)
            del tied
        del y
    if strata.min() == strata.max():
        ss = np.empty(0, np.int64)
        estrat_fill = np.int64(strata[0])
    else:
        s2 = np.concatenate([strata, strata]).astype(np.int64, copy=False)
        order = _sort_endpoints(t, s2, False, order)
        ss = s2[order]
        del s2
        estrat_fill = None
        ts = t[order]
    del t
    ev = np.ascontiguousarray(event, dtype=bool)
    a, b, etime, estrat, death_rows, death_k = kern.risk_ranges(ts, ss, order, ev,
                                                                int(ev.sum()))
    del order, ts, ss
    if estrat_fill is not None:
        estrat[:] = estrat_fill
    index = _finish_index(n, a, b, etime, estrat, death_rows, death_k, efron)
    return start, stop, merged, index


def make_problem(x: np.ndarray, start: np.ndarray, stop: np.ndarray, event: np.ndarray,
                 weights: np.ndarray, offset: np.ndarray, strata: np.ndarray,
                 efron: bool, timefix: bool = True) -> CoxProblem:
    """Centre ``x`` on its weighted per-stratum means (as R does) and index the rows.

    With ``timefix`` near-equal times are merged first (:func:`aeq_times`).
    """
    n_strata = int(strata.max()) + 1 if strata.size else 1
    p = x.shape[1]
    if n_strata == 1:
        centers = (weights @ x / weights.sum())[None, :]
    else:
        wsum = np.bincount(strata, weights, minlength=n_strata)
        centers = np.zeros((n_strata, p))
        for j in range(p):
            centers[:, j] = np.bincount(strata, weights * x[:, j], minlength=n_strata)
        centers /= np.where(wsum > 0, wsum, 1.0)[:, None]
    merged, order = 0, None
    fast = _index_compiled(start, stop, event, strata, efron, timefix)
    if fast is not None:   # large fit: the compiled walks
        start, stop, merged, index = fast
        xc = np.asfortranarray(x - centers[strata] if n_strata > 1 else x - centers[0])
        return CoxProblem(x=xc, centers=centers, weights=weights, offset=offset,
                          strata=strata, n_strata=n_strata, index=index, start=start,
                          stop=stop, event=event.astype(bool), efron=efron,
                          n_time_merged=merged)
    if timefix:
        start, stop, order, merged = aeq_times(start, stop)
        if merged:
            zero = np.flatnonzero(stop <= start)
            if zero.size:
                raise ZeroLengthInterval(zero)
    xc = np.asfortranarray(x - centers[strata] if n_strata > 1 else x - centers[0])
    index = build_index(start, stop, event, strata, efron, order)
    return CoxProblem(x=xc, centers=centers, weights=weights, offset=offset, strata=strata,
                      n_strata=n_strata, index=index, start=start, stop=stop,
                      event=event.astype(bool), efron=efron, n_time_merged=merged)


# ---------------------------------------------------------------------------
# Likelihood, score and information


def _net(ix: RiskIndex, v: np.ndarray) -> np.ndarray:
    """Entries minus exits of ``v`` at each event index (length n_times + 1)."""
    m = ix.n_times + 1
    return np.bincount(ix.a, v, minlength=m) - np.bincount(ix.b, v, minlength=m)


def _two_sided_cumsum(net: np.ndarray, split: int) -> np.ndarray:
    """``sum_{i in R_k} v_i`` from entries minus exits.

    Before ``split`` a forward running sum, after it a backward one
    (``-sum_{j > k} net_j``): each half accumulates round-off only from its
    own end, so the small risk sets at the last event times stay accurate
    (R's agfit4 runs backward for the same reason).
    """
    k = net.size - 1
    out = np.cumsum(net[:-1])
    if split < k:
        out[split:] = -np.cumsum(net[:split:-1])[::-1]
    return out


def _riskset_sum(ix: RiskIndex, v: np.ndarray) -> np.ndarray:
    """``sum_{i in R_k} v_i`` for every event time k (v is 1-d, non-negative)."""
    net = _net(ix, v)
    return _two_sided_cumsum(net, _split(np.cumsum(net[:-1])))


def _split(s0: np.ndarray) -> int:
    """Event index where the risk-set mass is half accumulated from either end."""
    if s0.size == 0:
        return 0
    mass = np.cumsum(np.abs(s0))
    return int(np.searchsorted(mass, mass[-1] / 2))


def _riskset_sums(ix: RiskIndex, r: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    net0 = _net(ix, r)
    split = _split(np.cumsum(net0[:-1]))
    s0 = _two_sided_cumsum(net0, split)
    s1 = np.empty((ix.n_times, x.shape[1]), order="F")
    for j in range(x.shape[1]):
        s1[:, j] = _two_sided_cumsum(_net(ix, r * x[:, j]), split)
    return s0, s1


def _by_time(idx: np.ndarray, v: np.ndarray, n_times: int) -> np.ndarray:
    """Sum the rows of ``v`` (1-d or 2-d) that share an event index."""
    if v.ndim == 1:
        return np.bincount(idx, v, minlength=n_times)
    vf = np.asfortranarray(v)        # bincount needs contiguous weights
    out = np.empty((n_times, v.shape[1]), order="F")
    for j in range(v.shape[1]):
        out[:, j] = np.bincount(idx, vf[:, j], minlength=n_times)
    return out


def _pseudo_sum(ix: RiskIndex, v: np.ndarray) -> np.ndarray:
    """Sum per-pseudo-event values within each event time."""
    if ix.identity:
        return v
    out = v[:ix.n_times].copy()
    out += _by_time(ix.extra_k, v[ix.n_times:], ix.n_times)
    return out


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
    den: np.ndarray         # per pseudo-event
    abar: np.ndarray        # per pseudo-event (x p)
    hj: np.ndarray          # mw / den, the hazard increment of each pseudo-event
    c1: np.ndarray          # sum_j hj per event time
    c2: np.ndarray          # sum_j hj f_j per event time


def _linear_predictor(pb: CoxProblem, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                  np.ndarray]:
    """eta, per-stratum shift (mean eta, keeps exp() in range) and exp(eta - shift)."""
    eta = pb.x @ beta + pb.offset
    if pb.n_strata == 1:
        shift = np.array([eta.mean()])
        return eta, shift, np.exp(eta - shift[0])
    cnt = np.bincount(pb.strata, minlength=pb.n_strata)
    shift = np.bincount(pb.strata, eta, minlength=pb.n_strata) / np.maximum(cnt, 1)
    return eta, shift, np.exp(eta - shift[pb.strata])


def _weighted_gram(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``x' diag(w) x`` for column-major x."""
    xt = x.T
    return (xt * w) @ x


# Fits of at least FAST_MIN_ROWS rows (and at most FAST_MAX_COLS columns) run the compiled
# kernels of ._coxkernels when numba is installed (and IMRSURV_NO_NUMBA is unset): the
# same formulas with the sums in another order, so the last bits differ from the numpy
# code below, which smaller fits (power simulations) keep running bit for bit.
FAST_MIN_ROWS = 50_000
FAST_MAX_COLS = 16


def _kernels() -> Any:
    """The compiled-kernel module when it is usable, else None (imported on first need)."""
    try:
        from . import _coxkernels
    except ImportError:  # pragma: no cover - the module itself imports numba lazily
        return None
    return _coxkernels if _coxkernels.AVAILABLE else None


def use_kernels(pb: CoxProblem) -> bool:
    """Whether ``pb`` is large enough for the compiled kernels and they are available."""
    return (pb.index.n >= FAST_MIN_ROWS and 0 < pb.x.shape[1] <= FAST_MAX_COLS
            and _kernels() is not None)


def _stratum_means(pb: CoxProblem) -> tuple[np.ndarray, np.ndarray]:
    """Per-stratum unweighted means of the (centred) columns and of the offset, cached."""
    if pb.kernel_means is None:
        if pb.n_strata == 1:
            means, off = pb.x.mean(0)[None, :], np.array([pb.offset.mean()])
        else:
            cnt = np.maximum(np.bincount(pb.strata, minlength=pb.n_strata), 1)
            means = np.column_stack([np.bincount(pb.strata, pb.x[:, j], minlength=pb.n_strata)
                                     for j in range(pb.x.shape[1])]) / cnt[:, None]
            off = np.bincount(pb.strata, pb.offset, minlength=pb.n_strata) / cnt
        pb.kernel_means = (means, off)
    return pb.kernel_means


def _evaluate_compiled(pb: CoxProblem, beta: np.ndarray, need_info: bool,
                       workspace: Any = None) -> CoxState:
    """:func:`evaluate` by the fused kernels of :mod:`._coxkernels` (large fits)."""
    ix = pb.index
    beta = np.asarray(beta, float)
    means, off_means = _stratum_means(pb)
    shift = means @ beta + off_means      # the per-stratum mean of eta, as the numpy path
    out = _kernels().evaluate_kernel(
        pb.x, np.ascontiguousarray(beta), pb.offset, shift, pb.weights, pb.unweighted,
        pb.strata, ix.a, ix.b, ix.n_times, pb.xt, ix.tied_rows, ix.tied_k, ix.extra_k,
        np.ascontiguousarray(ix.extra_frac), pb.mw, ix.event_stratum, need_info, workspace)
    loglik = float(pb.xd_sum @ beta + pb.offd_sum - out["logsum"])
    score = pb.xd_sum - out["score_part"]
    return CoxState(beta=beta, eta=out["eta"], shift=out["shift"], risk_u=out["risk_u"],
                    loglik=loglik, score=score, info=out["info"], s0=out["s0"], s1=out["s1"],
                    e0=out["e0"], e1=out["e1"], den=out["den"], abar=out["abar"],
                    hj=out["hj"], c1=out["c1"], c2=out["c2"])


def evaluate(pb: CoxProblem, beta: np.ndarray, need_info: bool = True) -> CoxState:
    """Log partial likelihood, score and information at ``beta``."""
    if use_kernels(pb):
        return _evaluate_compiled(pb, beta, need_info)
    ix = pb.index
    eta, shift, risk_u = _linear_predictor(pb, beta)
    r = risk_u if pb.unweighted else pb.weights * risk_u
    s0, s1 = _riskset_sums(ix, r, pb.x)
    mw, k = pb.mw, ix.n_times
    den = s0
    abar = s1 / s0[:, None]
    logden = np.log(s0) + shift[ix.event_stratum]
    if ix.identity:
        e0, e1 = np.zeros(k), np.zeros_like(s1)
    else:
        # deaths at tied times only: elsewhere e0, e1 enter multiplied by f = 0
        rt = r[ix.tied_rows]
        e0 = np.bincount(ix.tied_k, rt, minlength=k)
        e1 = _by_time(ix.tied_k, rt[:, None] * pb.xt, k)
        ek, ef = ix.extra_k, ix.extra_frac
        den_x = s0[ek] - ef * e0[ek]
        abar_x = (s1[ek] - ef[:, None] * e1[ek]) / den_x[:, None]
        den = np.concatenate([s0, den_x])
        abar = np.concatenate([abar, abar_x])
        logden = np.concatenate([logden, np.log(den_x) + shift[ix.event_stratum[ek]]])
    hj = mw / den
    loglik = float(pb.xd_sum @ beta + pb.offd_sum - mw @ logden)
    score = pb.xd_sum - mw @ abar
    c1 = _pseudo_sum(ix, hj)
    c2 = np.zeros(k) if ix.identity else _by_time(ix.extra_k, hj[k:] * ix.extra_frac, k)
    if need_info:
        cc = _cum0(c1)
        roww = r * (cc[ix.b] - cc[ix.a])
        if not ix.identity:
            roww[ix.tied_rows] -= r[ix.tied_rows] * c2[ix.tied_k]
        info = _weighted_gram(pb.x, roww) - (abar.T * mw) @ abar
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
    beta0: np.ndarray
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
    """The information matrix is not positive definite (``at_start``: at beta = 0)."""

    def __init__(self, diag: np.ndarray, at_start: bool = True):
        super().__init__("information matrix is singular")
        self.diag = diag
        self.at_start = at_start


def newton_raphson(pb: CoxProblem, max_iter: int = 30, eps: float = 1e-9,
                   init: np.ndarray | None = None) -> NewtonResult:
    """Maximise the partial likelihood of ``pb`` (see :func:`maximise`)."""
    p = pb.x.shape[1]
    beta0 = np.zeros(p) if init is None else np.asarray(init, float).copy()
    if use_kernels(pb):   # one workspace for the iterations: buffers refilled, not refaulted
        ws = _kernels().Workspace()
        return maximise(lambda beta: _evaluate_compiled(pb, beta, True, ws), beta0, max_iter,
                        eps)
    return maximise(lambda beta: evaluate(pb, beta), beta0, max_iter, eps)


def maximise(evaluate_at: Callable[[np.ndarray], Any], beta0: np.ndarray, max_iter: int,
             eps: float, step_tol: float | None = None) -> NewtonResult:
    """Newton-Raphson as R's ``agfit4``/``coxfit6``, for any evaluator of the likelihood.

    ``evaluate_at(beta)`` returns a state with ``loglik``, ``score`` and ``info``
    (in memory here, summed over dask partitions in :mod:`.cox_dask`).
    Converged when ``|1 - loglik_old / loglik_new| <= eps`` after a full
    (non-halved) Newton step; a step that lowers the log-likelihood (or gives a
    non-finite one) is halved as ``beta = (h * old + beta) / (h + 1)``.  With
    ``step_tol`` (for penalised fits, whose Newton matrix is only close to the
    Hessian) convergence instead needs the next full step below ``step_tol``
    in every coordinate, as ``coxphf``'s ``xconv``.
    """
    p = beta0.size
    st = evaluate_at(beta0)
    fac = _chol(st.info)
    if fac is None:
        raise SingularInformation(np.diag(st.info))
    if not (np.isfinite(st.loglik) and np.all(np.isfinite(st.score))):
        raise ArithmeticError("non-finite log-likelihood or score at the starting value")
    step = sla.cho_solve(fac, st.score)
    score_test = float(st.score @ step)
    loglik0 = best = st.loglik
    oldbeta, beta = beta0, beta0 + step
    halving, converged, it = 0, False, 0
    for it in range(1, max_iter + 1):
        st = None   # one state alive at a time (each is several n-sized arrays)
        st = evaluate_at(beta)
        fac = _chol(st.info)
        fail = fac is None or not np.isfinite(st.loglik)
        if not fail and halving == 0:
            if step_tol is None:
                done = abs(1 - best / st.loglik) <= eps
            else:
                done = (st.loglik >= best - eps * abs(best) and np.abs(
                    sla.cho_solve(fac, st.score)).max() <= step_tol)
            if done:
                converged = True
                break
        if it == max_iter:
            if fail or (st.loglik - best) / abs(best) < -eps:
                st = None
                st = evaluate_at(oldbeta)
                fac = _chol(st.info)
            break
        if fail or st.loglik < best:
            halving += 1
            beta = (oldbeta * halving + beta) / (halving + 1)
        else:
            halving, best = 0, st.loglik
            oldbeta, beta = beta, beta + sla.cho_solve(fac, st.score)
    if fac is None:
        raise SingularInformation(np.diag(st.info), at_start=False)
    var = sla.cho_solve(fac, np.eye(p))
    var = (var + var.T) / 2
    return NewtonResult(state=st, beta0=beta0, loglik_null=loglik0, score_test=score_test,
                        iterations=it, converged=converged, var=var)



# ---------------------------------------------------------------------------
# Residuals (R: agscore3.c, agmart3.c, coxscho.c)


def _death_terms(pb: CoxProblem, st: CoxState) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per event time: xhaz = sum_j hj abar_j, mh2 = sum_j hj f_j abar_j, Schoenfeld mean."""
    ix = pb.index
    xhaz = _pseudo_sum(ix, st.hj[:, None] * st.abar)
    if ix.identity:
        return xhaz, np.zeros_like(xhaz), st.abar
    k = ix.n_times
    mh2 = _by_time(ix.extra_k, (st.hj[k:] * ix.extra_frac)[:, None] * st.abar[k:], k)
    smean = _pseudo_sum(ix, st.abar) / ix.pcount[:, None]
    return xhaz, mh2, smean


def score_residuals(pb: CoxProblem, st: CoxState) -> np.ndarray:
    """Unweighted score residuals ``int (x_i - xbar(t)) dM_i(t)`` (R ``agscore3``).

    ``-exp(eta_i) [x_i (H(stop_i) - H(start_i)) - (XH(stop_i) - XH(start_i))]``
    with H the cumulative hazard and XH the cumulative ``xbar dH``, plus
    ``x_i - xbar(t_i)`` for a death; with Efron ties a death at ``t_k`` gets
    ``x_i - mean_j abar_j`` and only the fraction ``1 - f_j`` of each
    pseudo-event's hazard increment.  Returned column-major (n x p).
    """
    ix = pb.index
    if use_kernels(pb):
        return _kernels().score_residual_kernel(
            pb.x, st.risk_u, ix.a, ix.b, st.c1, st.c2, st.hj, st.abar, ix.extra_k,
            np.ascontiguousarray(ix.extra_frac), ix.pcount, ix.death_rows, ix.death_k,
            ix.tied_rows, ix.tied_k)
    xhaz, mh2, smean = _death_terms(pb, st)
    hcum = _cum0(st.c1)
    dh = hcum[ix.b] - hcum[ix.a]
    ru = st.risk_u
    dr, dk, tr, tk = ix.death_rows, ix.death_k, ix.tied_rows, ix.tied_k
    res = np.empty(pb.x.shape, order="F")
    for j in range(pb.x.shape[1]):
        xc = _cum0(np.ascontiguousarray(xhaz[:, j]))
        col = ru * (xc[ix.b] - xc[ix.a] - pb.x[:, j] * dh)
        col[dr] += pb.xd[:, j] - np.ascontiguousarray(smean[:, j])[dk]
        if not ix.identity:
            col[tr] += ru[tr] * (pb.xt[:, j] * st.c2[tk] - np.ascontiguousarray(mh2[:, j])[tk])
        res[:, j] = col
    return res


def cluster_score_sums(pb: CoxProblem, st: CoxState, codes: np.ndarray) -> np.ndarray:
    """Case-weighted score residuals summed within clusters (``codes`` 0..G-1; G x p):
    the ``D`` of the Lin-Wei sandwich before it is multiplied by the variance.

    Large fits (compiled kernels) sum inside the kernel without the n x p residual
    matrix; otherwise :func:`score_residuals`, weighted, then one ``bincount`` a column.
    """
    g = int(codes.max()) + 1
    if use_kernels(pb):
        ix = pb.index
        return _kernels().cluster_score_kernel(
            pb.x, st.risk_u, pb.weights, pb.unweighted, _int_codes(codes), g,
            ix.a, ix.b, st.c1, st.c2, st.hj, st.abar, ix.extra_k,
            np.ascontiguousarray(ix.extra_frac), ix.pcount, ix.death_rows, ix.death_k,
            ix.tied_rows, ix.tied_k)
    res = score_residuals(pb, st)
    if not pb.unweighted:
        res *= pb.weights[:, None]
    return np.column_stack([np.bincount(codes, res[:, j], minlength=g)
                            for j in range(res.shape[1])])


def _int_codes(codes: np.ndarray) -> np.ndarray:
    """Cluster codes as the kernel takes them: int32 or int64 as given, else int64."""
    codes = np.asarray(codes)
    return codes if codes.dtype in (np.int32, np.int64) else codes.astype(np.int64)


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
    return dr, pb.xd - smean[ix.death_k]


# ---------------------------------------------------------------------------
# Baseline hazard, as R basehaz(fit, centered = FALSE)


def offset_reference(pb: CoxProblem) -> float:
    """The offset of R's baseline curve: its case-weighted mean over the fitted rows.

    R ``survfit.coxph`` computes ``offset.mean = sum(offset * w) / sum(w)`` (plain mean
    without weights) and centres the risk scores on it, so ``basehaz(fit, centered =
    FALSE)`` is the curve at covariates 0 *and offset* ``offset.mean``; 0 without offset.
    """
    if not np.any(pb.offset):
        return 0.0
    return float(pb.weights @ pb.offset / pb.weights.sum())


def baseline_hazard(pb: CoxProblem, st: CoxState) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative baseline hazard at every stop time per stratum, as R ``basehaz(fit,
    centered = FALSE)``: at covariates 0 and offset :func:`offset_reference` (0 without an
    offset; the weighted mean offset with one).

    The increment at event time k is ``sum_j mw_k / den_j`` (Breslow, or the
    Efron-corrected estimator R uses with ``ties = "efron"``), times
    ``exp(offset_reference)``; ``den`` was computed with centred covariates and a
    per-stratum shift, undone here.
    Returns (stratum code, time, cumulative hazard) sorted by stratum and time.
    """
    ix = pb.index
    undo = np.exp(offset_reference(pb) - (st.shift + pb.centers @ st.beta))
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
    with np.errstate(divide="ignore"):   # d == n at risk: S drops to 0
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
    r = pb.weights * st.risk_u
    dr, dk = ix.death_rows, ix.death_k
    xd_k = _by_time(dk, pb.wdead[:, None] * pb.xd, ix.n_times)
    mw, pk = pb.mw, ix.pk
    resid_k = xd_k - (st.c1[:, None] * st.s1 - st.c2[:, None] * st.e1)
    u = np.concatenate([resid_k.sum(0), gk @ resid_k])
    blocks = []
    for m in range(3):
        gm = gk ** m
        cc = _cum0(st.c1 * gm)
        roww = r * (cc[ix.b] - cc[ix.a])
        roww[dr] -= r[dr] * (st.c2 * gm)[dk]
        v = _weighted_gram(pb.x, roww) - (st.abar.T * (mw * gm[pk])) @ st.abar
        blocks.append((v + v.T) / 2)
    imat = np.block([[blocks[0], blocks[1]], [blocks[1], blocks[2]]])
    return u, imat


# ---------------------------------------------------------------------------
# Concordance (R concordancefit, counting-process data, timewt = "n")


def _prefix_in_groups(values: np.ndarray, change: np.ndarray) -> np.ndarray:
    """Exclusive cumulative sums of ``values`` (1-d or N x C), restarting where ``change``."""
    cs = np.cumsum(values, axis=0) - values
    start = np.flatnonzero(change)
    gid = np.cumsum(change) - 1
    return cs - cs[start][gid]


def _lower_rank_sums(rank: np.ndarray, order: np.ndarray, w: np.ndarray) -> np.ndarray:
    """For each item i: ``sum_j w_j`` over items j before i in ``order`` with ``rank_j < rank_i``.

    Offline 2-d dominance sums without a loop over items (a wavelet matrix):
    ``rank_j < rank_i`` iff at some bit l the higher bits agree and j has a 0
    where i has a 1.  Level by level, from the top bit down, the items are
    kept sorted by (rank >> (l + 1), position in ``order``) by a stable
    partition, and each item with bit l set collects the prefix sum of the
    0-bit items in its bucket.  O(N) per bit; the data travel with the
    partition (packed in one float and one integer array) so every pass is
    sequential.
    """
    n_items, n_ch = order.size, w.shape[1]
    # columns: weights per channel, then accumulated sums per channel
    vals = np.zeros((n_items, 2 * n_ch), order="F")
    vals[:, :n_ch] = w[order]
    # rank in the high bits, original item index in the low 32
    packed = (rank[order].astype(np.int64) << 32) | order.astype(np.int64)
    pos = np.arange(n_items)
    change = np.empty(n_items, bool)
    change[:1] = True
    for level in reversed(range(max(int(rank.max()), 1).bit_length())):
        rk = packed >> 32
        zero = ((rk >> level) & 1) == 0
        parent = rk >> (level + 1)
        np.not_equal(parent[1:], parent[:-1], out=change[1:])
        gstart = np.flatnonzero(change)
        glen = np.diff(np.r_[gstart, n_items])
        gs = np.repeat(gstart, glen)
        one = ~zero
        for c in range(n_ch):
            v = vals[:, c] * zero
            cs = np.cumsum(v)
            cs -= v
            cs -= np.repeat(cs[gstart], glen)
            cs *= one
            vals[:, n_ch + c] += cs
        # stable partition inside each parent bucket: 0-bits first, then 1-bits
        zc = np.cumsum(zero, dtype=np.int64)
        zc -= zero
        zeros_before = zc - zc[gs]
        zeros_total = np.repeat(np.add.reduceat(zero, gstart, dtype=np.int64), glen)
        newpos = gs + np.where(zero, zeros_before, zeros_total + (pos - gs) - zeros_before)
        packed = _scatter(packed, newpos)
        vals = _scatter(vals, newpos)
    out = np.empty_like(w)
    out[packed & 0xFFFFFFFF] = vals[:, n_ch:]
    return out


def _scatter(x: np.ndarray, newpos: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    if x.ndim == 2:
        for c in range(x.shape[1]):
            out[newpos, c] = x[:, c]
    else:
        out[newpos] = x
    return out


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

    Items are the 2n interval endpoints (channel A weight +w at start, -w at
    stop: "at risk") and the D deaths (channel B weight w).  Sorted by
    (stratum, time) with deaths first at a tie, a prefix over channel A at a
    death counts the rows at risk then; a prefix over channel B at an
    endpoint counts the deaths up to it.  Lower lp: :func:`_lower_rank_sums`.
    """
    n = stop.size
    kstart, kstop, _, _ = endpoint_groups(start, stop, strata)
    _, rank = np.unique(lp, return_inverse=True)
    rank = rank.astype(np.int64).ravel()
    dead = np.flatnonzero(event)
    nd = dead.size
    qk, qr, qw = kstop[dead], rank[dead], weights[dead]
    dlt, dle, dtot, tied_y, tied_xy = _same_time_deaths(qk, qr, qw)

    key = np.concatenate([qk, kstart, kstop])
    irank = np.concatenate([qr, rank, rank])
    deathfirst = np.r_[np.zeros(nd, np.int64), np.ones(2 * n, np.int64)]
    w = np.zeros((nd + 2 * n, 2))
    w[nd:, 0] = np.r_[weights, -weights]
    w[:nd, 1] = qw
    by_key = np.argsort(key * 2 + deathfirst)
    total = np.empty_like(w)
    total[by_key] = np.cumsum(w[by_key], axis=0) - w[by_key]
    span = np.int64(2) * (key.max() + 1)
    by_rank = np.argsort(irank * span + key * 2 + deathfirst)
    rchange = np.r_[True, irank[by_rank][1:] != irank[by_rank][:-1]]
    same = np.empty_like(w)
    same[by_rank] = _prefix_in_groups(w[by_rank], rchange)
    lower = _lower_rank_sums(irank, by_key, w)

    # role 1, row i dies at t: comparators at risk at t (not dying at t)
    d_lt = lower[:nd, 0] - dlt
    d_eq = same[:nd, 0] - (dle - dlt)
    d_gt = total[:nd, 0] - dtot - d_lt - d_eq
    # role 2, row j at risk: deaths in (start_j, stop_j], less those at stop_j if j dies
    s_, e_ = slice(nd, nd + n), slice(nd + n, nd + 2 * n)
    c_lt = lower[e_, 1] - lower[s_, 1]
    c_eq = same[e_, 1] - same[s_, 1]
    c_tot = total[e_, 1] - total[s_, 1]
    c_lt[dead] -= dlt
    c_eq[dead] -= dle - dlt
    c_tot[dead] -= dtot

    conc, tied_x, disc = float(qw @ d_lt), float(qw @ d_eq), float(qw @ d_gt)
    npair = conc + disc + tied_x
    inf_c = c_tot - c_lt - c_eq       # deaths with higher lp than comparator j
    inf_d = c_lt.copy()
    inf_t = c_eq.copy()
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

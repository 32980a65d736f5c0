"""Out-of-core Cox model for a Dask DataFrame (e.g. a Parquet dataset larger than memory).

The partial likelihood, its score and information are sums over the unique
event times ``t_k`` (per stratum) of risk-set sums, and risk-set sums are sums
over rows. So each partition can compute its own contribution on the
**global grid of event times** and the client adds them up (notation of
:mod:`imrsurv.models._coxcore`):

1. Setup (one pass): per partition the weighted covariate sums (for centring,
   as R does), the unique ``(stratum, stop)`` of its events with their number
   ``d_k`` and weight ``wd_k``. The client merges them into the global grid.
   Each partition then maps its rows onto the grid once (``a_i <= k < b_i``
   while at risk; the event index of each event row) and keeps the compact
   arrays in worker memory (``persist``: ``8 p + 16`` bytes a row, plus the
   cluster labels).
2. Per Newton iteration, two passes:
   a. per partition and event time: ``S0_k = sum_{R_k} r_i``, ``S1_k = sum
      r_i x_i`` and the same sums over the rows that die at ``t_k`` (``E0_k``,
      ``E1_k``: Efron's tie correction needs them, and they are additive over
      partitions too), plus ``sum_deaths w_i eta_i`` and ``sum_deaths w_i x_i``.
      The client forms Efron's (or Breslow's) denominators for the ``d_k``
      pseudo-deaths of every event time, the log-likelihood and the score;
   b. per partition: ``sum_i r_i x_i x_i' (C[b_i] - C[a_i]) - sum_deaths r_i
      x_i x_i' c2_k`` given the client's per-time hazard sums ``C`` (cumulative)
      and ``c2``; the client subtracts ``sum_j mw_k abar_j abar_j'`` to get the
      information.
   The Newton-Raphson steps, step halving and convergence test are those of
   :func:`imrsurv.models._coxcore.newton_raphson` (R ``agfit4``), so the result
   equals the in-memory :func:`imrsurv.models.cox.fit_cox` to rounding.
3. With ``cluster``: one more pass for the Lin-Wei robust variance: each
   partition computes its rows' score residuals from per-time quantities sent
   by the client and sums them per cluster label; the client adds the per-label
   sums across partitions (a site may span partitions).

Partition results are added pairwise on the workers (a tree), so the client
receives one set of per-event-time arrays per pass.

Only plain numeric columns are supported as covariates (no formula coding:
build dummy columns first); offsets are not supported.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from imrsurv.errors import DataError
from imrsurv.models import _coxcore as core

__all__ = ["DaskCoxResult", "fit_cox_dask"]

TIES = ("efron", "breslow")


def _import_dask():
    try:
        import dask
        from dask import delayed
    except ImportError:  # pragma: no cover - exercised only without dask
        raise ImportError("fit_cox_dask needs Dask: pip install 'imrsurv[dask]' "
                          "(or 'dask[distributed]')") from None
    return dask, delayed


def _covariate_names(covariates: str | Sequence[str]) -> list[str]:
    if isinstance(covariates, str):
        from imrsurv.formula import parse_formula, quote_name

        parsed = parse_formula(covariates)  # the one formula parser: checked, never evaluated
        names = list(parsed.columns)
        if parsed.canonical != " + ".join(quote_name(n) for n in names):
            names = [t.strip() for t in parsed.canonical.split("+")]
    else:
        names = [str(c) for c in covariates]
    bad = [n for n in names if not n.isidentifier()]
    if bad or not names:
        raise DataError([f"fit_cox_dask takes plain numeric column names joined by '+', not "
                         f"{', '.join(map(repr, bad)) or 'nothing'}; build dummy or transformed "
                         "columns in the dask DataFrame first"], "invalid formula")
    if len(set(names)) != len(names):
        raise DataError([f"covariate listed twice in {names}"], "invalid formula")
    return names


# ---------------------------------------------------------------------------
# Partition functions (run on the workers; module-level so they pickle)


def _levels(part: pd.DataFrame, col: str) -> np.ndarray:
    return pd.unique(part[col].dropna())


def _prepare(part: pd.DataFrame, xcols: list[str], start: str | None, stop: str, event: str,
             weights: str | None, strata: str | None, cluster: str | None,
             strata_levels: np.ndarray | None, missing: str) -> dict[str, Any]:
    """Numeric arrays of one partition, its checks and its setup sums."""
    used = xcols + [c for c in (start, stop, event, weights, strata, cluster) if c]
    frame = part[list(dict.fromkeys(used))]
    na = frame.isna()
    problems: dict[str, list] = {}
    n_dropped = 0
    if na.to_numpy().any():
        bad_rows = na.any(axis=1).to_numpy()
        if missing == "drop":
            n_dropped = int(bad_rows.sum())
            frame = frame[~bad_rows]
        else:
            for c in na.columns[na.any().to_numpy()]:
                problems[f'missing values in column "{c}"'] = list(frame.index[na[c].to_numpy()])
    n = len(frame)

    def num(col: str) -> np.ndarray:
        v = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(v) & ~frame[col].isna().to_numpy()
        if bad.any():
            problems[f'non-numeric or infinite values in column "{col}"'] = list(frame.index[bad])
        return v

    x = np.column_stack([num(c) for c in xcols]) if n else np.zeros((0, len(xcols)))
    tstop = num(stop)
    tstart = num(start) if start else np.full(n, -np.inf)
    ev = num(event)
    bad_ev = ~np.isin(ev, [0.0, 1.0]) & np.isfinite(ev)
    if bad_ev.any():
        problems[f'event column "{event}" must be 0/1'] = list(frame.index[bad_ev])
    if start:
        bad_int = np.isfinite(tstart) & np.isfinite(tstop) & (tstop <= tstart)
        if bad_int.any():
            problems[f'stop <= start ("{stop}" <= "{start}")'] = list(frame.index[bad_int])
    w = num(weights) if weights else None
    if w is not None:
        bad_w = np.isfinite(w) & (w <= 0)
        if bad_w.any():
            problems[f'weights "{weights}" must be > 0'] = list(frame.index[bad_w])
    # stratum codes (None: one stratum, saves 8 bytes a row)
    codes = pd.Index(strata_levels).get_indexer(frame[strata]) if strata else None
    n_strata = 1 if strata_levels is None else len(strata_levels)
    ww = np.ones(n) if w is None else w
    cz = np.zeros(n, dtype=np.int64) if codes is None else codes
    dead = np.flatnonzero(ev == 1)
    out = {
        "n": n, "n_dropped": n_dropped, "problems": {k: (len(v), v[:5]) for k, v in problems.items()},
        "x": x, "start": tstart, "stop": tstop, "dead": dead, "w": w, "strata": codes,
        "wsum": np.bincount(cz, ww, minlength=n_strata),
        "wxsum": np.column_stack([np.bincount(cz, ww * x[:, j], minlength=n_strata)
                                  for j in range(x.shape[1])]) if n else
        np.zeros((n_strata, x.shape[1])),
        "cluster": None if cluster is None else frame[cluster].to_numpy(),
        "index": frame.index,  # an Index (a RangeIndex costs nothing), for messages
    }
    return out


def _unique_times(q: dict[str, Any]) -> np.ndarray:
    t = np.concatenate([q["start"], q["stop"]])
    return np.unique(t[np.isfinite(t)])


def _timefix_map(uniq: list[np.ndarray], tol: float = float(np.finfo(float).eps) ** 0.5
                 ) -> tuple[np.ndarray, np.ndarray, int] | None:
    """R's ``aeqSurv`` on the union of the partitions' distinct times (as
    :func:`imrsurv.models._coxcore.aeq_times`): neighbours closer than ``tol``
    (absolute, or relative to the mean absolute distinct time) are merged into
    runs represented by their smallest value. None when nothing is merged."""
    y = np.unique(np.concatenate(uniq)) if uniq else np.zeros(0)
    if y.size < 2:
        return None
    dy = np.diff(y)
    tied = (dy <= tol) | (dy / np.mean(np.abs(y)) <= tol)
    if not tied.any():
        return None
    cut = np.r_[True, ~tied]
    rep = y[cut][np.cumsum(cut) - 1]
    return y, rep, int(tied.sum())


def _apply_timefix(q: dict[str, Any], y: np.ndarray, rep: np.ndarray) -> dict[str, Any]:
    q = dict(q)
    for col in ("start", "stop"):
        t = q[col]
        fin = np.isfinite(t)
        fixed = t.copy()
        fixed[fin] = rep[np.searchsorted(y, t[fin])]
        q[col] = fixed
    zero = np.flatnonzero(q["stop"] <= q["start"])
    if zero.size:
        probs = dict(q["problems"])
        probs["start and stop are equal to within 1.5e-8 (R's timefix); fix them or pass "
              "timefix=False"] = (int(zero.size), list(q["index"][zero][:5]))
        q["problems"] = probs
    return q


def _setup_summary(q: dict[str, Any], times: bool) -> tuple:
    summary = (q["n"], q["n_dropped"], q["problems"], q["wsum"], q["wxsum"], _event_keys(q))
    return summary, (_unique_times(q) if times else None)


def _event_keys(p: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Unique (stratum, stop) of the partition's events with counts and weight sums."""
    dead = p["dead"]
    s = np.zeros(dead.size, dtype=np.int64) if p["strata"] is None else p["strata"][dead]
    t = p["stop"][dead]
    w = np.ones(dead.size) if p["w"] is None else p["w"][dead]
    if dead.size == 0:
        return s, t, np.zeros(0), np.zeros(0)
    order = np.lexsort((t, s))
    s, t, w = s[order], t[order], w[order]
    new = np.r_[True, (s[1:] != s[:-1]) | (t[1:] != t[:-1])]
    gid = np.cumsum(new) - 1
    return s[new], t[new], np.bincount(gid).astype(float), np.bincount(gid, w)


def _index(p: dict[str, Any], grid_t: np.ndarray, offsets: np.ndarray, centers: np.ndarray
           ) -> dict[str, Any]:
    """Map rows onto the global event grid; centre x; keep only what the passes need."""
    n = p["n"]
    codes = p["strata"]
    if codes is None:  # one stratum: no loop, no copies
        a = np.searchsorted(grid_t, p["start"], side="right")
        b = np.searchsorted(grid_t, p["stop"], side="right")
        x = p["x"] - centers[0]
    else:
        a = np.empty(n, dtype=np.int64)
        b = np.empty(n, dtype=np.int64)
        for s in np.unique(codes):
            rows = np.flatnonzero(codes == s)
            lo, hi = offsets[s], offsets[s + 1]
            block = grid_t[lo:hi]
            a[rows] = lo + np.searchsorted(block, p["start"][rows], side="right")
            b[rows] = lo + np.searchsorted(block, p["stop"][rows], side="right")
        x = p["x"] - centers[codes]
    dead = p["dead"]
    dk = b[dead] - 1  # the event time of a death is its own stop: the last grid point <= stop
    small = grid_t.size < 2 ** 31 - 1
    return {"n": n, "x": np.ascontiguousarray(x), "a": a.astype(np.int32) if small else a,
            "b": b.astype(np.int32) if small else b, "dead": dead, "dk": dk, "w": p["w"],
            "cluster": p["cluster"]}


def _sums(q: dict[str, Any], beta: np.ndarray, m: int) -> tuple:
    """Pass a: S0, S1, E0, E1 per event time and the deaths' sums."""
    x, dead, dk = q["x"], q["dead"], q["dk"]
    eta = x @ beta
    r = np.exp(eta) if q["w"] is None else q["w"] * np.exp(eta)
    p = x.shape[1]
    net0 = np.bincount(q["a"], r, minlength=m + 1) - np.bincount(q["b"], r, minlength=m + 1)
    s0 = np.cumsum(net0)[:-1]
    s1 = np.empty((m, p))
    for j in range(p):
        rx = r * x[:, j]
        s1[:, j] = np.cumsum(np.bincount(q["a"], rx, minlength=m + 1)
                             - np.bincount(q["b"], rx, minlength=m + 1))[:-1]
    rd = r[dead]
    e0 = np.bincount(dk, rd, minlength=m)
    e1 = np.column_stack([np.bincount(dk, rd * x[dead, j], minlength=m) for j in range(p)]) \
        if p else np.zeros((m, 0))
    wd = np.ones(dead.size) if q["w"] is None else q["w"][dead]
    return s0, s1, e0, e1, float(wd @ eta[dead]), wd @ x[dead]


def _info(q: dict[str, Any], beta: np.ndarray, cc: np.ndarray, c2: np.ndarray) -> np.ndarray:
    """Pass b: sum_i x_i x_i' r_i (C[b_i] - C[a_i]) - sum_deaths r_i x_i x_i' c2_k."""
    x, dead = q["x"], q["dead"]
    r = np.exp(x @ beta)
    if q["w"] is not None:
        r = q["w"] * r
    roww = r * (cc[q["b"]] - cc[q["a"]])
    roww[dead] -= r[dead] * c2[q["dk"]]
    return (x * roww[:, None]).T @ x


def _robust(q: dict[str, Any], beta: np.ndarray, hcum: np.ndarray, xcum: np.ndarray,
            c2: np.ndarray, mh2: np.ndarray, smean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted score residuals (R agscore3) summed per cluster label of the partition."""
    x, dead, dk, a, b = q["x"], q["dead"], q["dk"], q["a"], q["b"]
    ru = np.exp(x @ beta)
    res = -ru[:, None] * (x * (hcum[b] - hcum[a])[:, None] - (xcum[b] - xcum[a]))
    res[dead] += (x[dead] - smean[dk]) + ru[dead, None] * (x[dead] * c2[dk, None] - mh2[dk])
    if q["w"] is not None:
        res = res * q["w"][:, None]
    codes, labels = pd.factorize(q["cluster"])
    sums = np.column_stack([np.bincount(codes, res[:, j], minlength=len(labels))
                            for j in range(x.shape[1])])
    return np.asarray(labels), sums


def _add(u: Any, v: Any) -> Any:
    """Element-wise sum of two pass results (tuples of arrays/floats, or arrays)."""
    if isinstance(u, tuple):
        return tuple(_add(a, b) for a, b in zip(u, v, strict=True))
    return u + v


def _tree_sum(delayed: Any, parts: list[Any]) -> Any:
    parts = list(parts)
    while len(parts) > 1:
        parts = [delayed(_add, pure=True)(parts[i], parts[i + 1]) if i + 1 < len(parts)
                 else parts[i] for i in range(0, len(parts), 2)]
    return parts[0]


# ---------------------------------------------------------------------------
# Client side


@dataclass
class _Grid:
    strata: np.ndarray
    time: np.ndarray
    d: np.ndarray
    wd: np.ndarray
    offsets: np.ndarray
    dk: np.ndarray       # event index of each pseudo-death (D)
    frac: np.ndarray     # Efron fraction j / d_k of each pseudo-death
    mw: np.ndarray       # wd_k / d_k per pseudo-death


@dataclass
class _State:
    beta: np.ndarray
    loglik: float
    score: np.ndarray
    info: np.ndarray
    abar: np.ndarray = field(repr=False)
    hj: np.ndarray = field(repr=False)
    c1: np.ndarray = field(repr=False)
    c2: np.ndarray = field(repr=False)


class _Engine:
    def __init__(self, dask: Any, delayed: Any, parts: list[Any], grid: _Grid, p: int):
        self.dask, self.delayed, self.parts, self.grid, self.p = dask, delayed, parts, grid, p
        self.passes = 0

    def _run(self, fn: Any, *args: Any) -> Any:
        d = self.delayed
        shared = [d(a, pure=True) if isinstance(a, np.ndarray) and a.size > 1000 else a
                  for a in args]
        tasks = [d(fn, pure=True)(q, *shared) for q in self.parts]
        self.passes += 1
        return self.dask.compute(_tree_sum(d, tasks))[0]

    def evaluate(self, beta: np.ndarray) -> _State:
        g = self.grid
        m = g.time.size
        s0, s1, e0, e1, ll_d, xd_sum = self._run(_sums, beta, m)
        dk, frac = g.dk, g.frac
        den = s0[dk] - frac * e0[dk]
        with np.errstate(divide="ignore", invalid="ignore"):
            abar = (s1[dk] - frac[:, None] * e1[dk]) / den[:, None]
            hj = g.mw / den
            loglik = float(ll_d - g.mw @ np.log(den))
        score = xd_sum - g.mw @ abar
        c1 = np.bincount(dk, hj, minlength=m)
        c2 = np.bincount(dk, hj * frac, minlength=m)
        cc = np.r_[0.0, np.cumsum(c1)]
        part = self._run(_info, beta, cc, c2)
        info = part - (abar * g.mw[:, None]).T @ abar
        info = (info + info.T) / 2
        return _State(beta=beta, loglik=loglik, score=score, info=info, abar=abar, hj=hj,
                      c1=c1, c2=c2)

    def robust_sums(self, st: _State) -> tuple[np.ndarray, np.ndarray]:
        g = self.grid
        m = g.time.size
        xhaz = np.column_stack([np.bincount(g.dk, st.hj * st.abar[:, j], minlength=m)
                                for j in range(self.p)])
        mh2 = np.column_stack([np.bincount(g.dk, st.hj * g.frac * st.abar[:, j], minlength=m)
                               for j in range(self.p)])
        smean = np.column_stack([np.bincount(g.dk, st.abar[:, j], minlength=m)
                                 for j in range(self.p)]) / g.d[:, None]
        hcum = np.r_[0.0, np.cumsum(st.c1)]
        xcum = np.vstack([np.zeros((1, self.p)), np.cumsum(xhaz, axis=0)])
        d = self.delayed
        args = [d(a, pure=True) for a in (hcum, xcum, st.c2, mh2, smean)]
        tasks = [d(_robust, pure=True)(q, st.beta, *args) for q in self.parts]
        self.passes += 1
        results = self.dask.compute(*tasks)
        labels = np.concatenate([r[0] for r in results])
        sums = np.vstack([r[1] for r in results]) if results else np.zeros((0, self.p))
        codes, uniq = pd.factorize(labels)
        coll = np.column_stack([np.bincount(codes, sums[:, j], minlength=len(uniq))
                                for j in range(self.p)])
        return coll, uniq


def _newton(engine: _Engine, p: int, max_iter: int, eps: float) -> core.NewtonResult:
    """The in-memory engine's Newton-Raphson, with risk-set sums gathered from the partitions."""
    try:
        return core.maximise(engine.evaluate, np.zeros(p), max_iter, eps)
    except core.SingularInformation as exc:
        where = ("at beta = 0: a covariate does not vary within the risk sets, or the covariates "
                 "are collinear") if exc.at_start else "at the solution"
        raise DataError([f"the information matrix is singular {where}"],
                        "covariates cannot all be estimated") from None


@dataclass
class DaskCoxResult:
    """A Cox model fitted out of core; attributes as :class:`imrsurv.models.cox.CoxResult`."""

    params: pd.Series
    se: pd.Series
    se_naive: pd.Series
    cov: pd.DataFrame
    cov_naive: pd.DataFrame
    loglik: float
    loglik_null: float
    score_test: float
    n: int
    n_events: int
    n_event_times: int
    n_clusters: int | None
    n_dropped: int
    n_partitions: int
    iterations: int
    converged: bool
    ties: str
    cluster: str | None
    passes: int
    elapsed: float
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def summary(self) -> pd.DataFrame:
        """The standard summary (see :mod:`._result`): robust ``se`` when clustered."""
        from ._result import coef_table

        return coef_table(self.params, self.se,
                          se_naive=self.se_naive if self.cluster is not None else None)

    def __repr__(self) -> str:
        head = (f"<DaskCoxResult: n={self.n}, events={self.n_events}, {self.n_partitions} "
                f"partitions, {self.iterations} Newton iterations, {self.passes} passes, "
                f"{self.elapsed:.1f} s, loglik={self.loglik:.6f}>")
        return head + "\n" + self.summary.round(6).to_string()


def fit_cox_dask(ddf: Any, covariates: str | Sequence[str], *, start: str | None = None,
                 stop: str, event: str, strata: str | None = None, weights: str | None = None,
                 cluster: str | None = None, ties: str = "efron", missing: str = "raise",
                 max_iter: int = 30, tol: float = 1e-9, timefix: bool = True,
                 persist: bool = True) -> DaskCoxResult:
    """Fit a Cox model to a dask DataFrame partition by partition (see the module docstring).

    ``covariates``: numeric column names, as a list or ``"a + b + c"``. ``start``
    (None: right-censored data), ``stop``, ``event`` (0/1), ``strata`` (one
    column), ``weights`` (case weights > 0), ``cluster`` (Lin-Wei robust
    variance), ``ties`` ("efron" or "breslow"), ``missing`` ("raise" or
    "drop"), ``max_iter``, ``tol`` and ``timefix`` (R's merging of times closer
    than 1.5e-8; one extra pass over the distinct times) as
    :func:`imrsurv.models.cox.fit_cox`.
    ``persist=True`` keeps the compact per-partition arrays in (worker) memory
    between passes (about ``8 * (p + 1)`` bytes per row); ``False`` re-reads the
    source (e.g. Parquet) on every pass.

    Runs on the current Dask scheduler: the distributed Client in effect if
    there is one, else Dask's local threads.
    """
    dask, delayed = _import_dask()
    t0 = time.monotonic()
    if ties not in TIES:
        raise DataError([f'ties must be "efron" or "breslow", not "{ties}"'], "invalid argument")
    if missing not in ("raise", "drop"):
        raise DataError([f'missing must be "raise" or "drop", not "{missing}"'],
                        "invalid argument")
    if not hasattr(ddf, "to_delayed") or not hasattr(ddf, "npartitions"):
        raise DataError([f"ddf must be a dask DataFrame, not {type(ddf).__name__}"],
                        "invalid argument")
    xcols = _covariate_names(covariates)
    needed = xcols + [c for c in (start, stop, event, weights, strata, cluster) if c]
    absent = [c for c in dict.fromkeys(needed) if c not in ddf.columns]
    if absent:
        raise DataError([f'column "{c}" not found (columns: {", ".join(map(str, ddf.columns))})'
                         for c in absent], "invalid input")
    p = len(xcols)
    sub = ddf[list(dict.fromkeys(needed))]
    blocks = sub.to_delayed()
    levels = None
    if strata:
        found = dask.compute(*[delayed(_levels)(b, strata) for b in blocks])
        levels = np.array(sorted(set().union(*[set(f.tolist()) for f in found]), key=str),
                          dtype=object)
    # the source is read once for the setup sums (and again for the timefix, only if it
    # merges times); only the compact indexed arrays are kept in worker memory
    prepared = [delayed(_prepare, pure=True)(b, xcols, start, stop, event, weights, strata,
                                             cluster, levels, missing) for b in blocks]
    n_merged = 0
    timings = {}
    t_phase = time.monotonic()
    first = dask.compute(*[delayed(_setup_summary, pure=True)(q, timefix) for q in prepared])
    setup = [f[0] for f in first]
    if timefix:
        fix = _timefix_map([f[1] for f in first])
        if fix is not None:
            y, rep, n_merged = fix
            dy, drep = delayed(y, pure=True), delayed(rep, pure=True)
            prepared = [delayed(_apply_timefix, pure=True)(q, dy, drep) for q in prepared]
            setup = [f[0] for f in dask.compute(*[delayed(_setup_summary, pure=True)(q, False)
                                                  for q in prepared])]
    problems = {}
    for _, _, probs, *_ in setup:
        for k, (cnt, rows) in probs.items():
            c0, r0 = problems.get(k, (0, []))
            problems[k] = (c0 + cnt, (r0 + list(rows))[:5])
    if problems:
        raise DataError([f"{k}: {cnt} row(s), e.g. index {', '.join(map(str, rows))}"
                         for k, (cnt, rows) in problems.items()], "invalid input")
    n = int(sum(s[0] for s in setup))
    n_dropped = int(sum(s[1] for s in setup))
    wsum = sum(s[3] for s in setup)
    wxsum = sum(s[4] for s in setup)
    centers = wxsum / np.where(wsum > 0, wsum, 1.0)[:, None]
    grid = _merge_grid([s[5] for s in setup], 1 if levels is None else len(levels), ties)
    if grid.time.size == 0:
        raise DataError(["no events: the partial likelihood is empty"], "nothing to fit")
    grid_time = delayed(grid.time, pure=True)
    indexed = [delayed(_index, pure=True)(q, grid_time, grid.offsets, centers) for q in prepared]
    timings["setup_s"] = time.monotonic() - t_phase
    t_phase = time.monotonic()
    if persist:
        indexed = list(dask.persist(*indexed))
    engine = _Engine(dask, delayed, indexed, grid, p)
    nr = _newton(engine, p, max_iter, tol)
    st, it, converged, var = nr.state, nr.iterations, nr.converged, nr.var
    timings["newton_s"] = time.monotonic() - t_phase  # includes indexing (persist is lazy)
    notes = [f"Ties handled by the {ties.capitalize()} approximation.",
             f"Fitted out of core over {ddf.npartitions} partitions: per-partition risk-set "
             f"sums on the global grid of {grid.time.size} event times."]
    if n_merged:
        notes.append(f"{n_merged} distinct times lay within 1.5e-8 of a neighbour and were "
                     "treated as tied (R's timefix).")
    if n_dropped:
        notes.append(f"{n_dropped} row(s) with missing values left out (missing='drop').")
    if not converged:
        notes.append(f"did not converge in {it} iterations")
    names = list(xcols)
    cov_naive = pd.DataFrame(var, index=names, columns=names)
    n_clusters = None
    cov = cov_naive.copy()
    if cluster is not None:
        t_phase = time.monotonic()
        coll, uniq = engine.robust_sums(st)
        timings["robust_s"] = time.monotonic() - t_phase
        dmat = coll @ var
        cov = pd.DataFrame(dmat.T @ dmat, index=names, columns=names)
        n_clusters = len(uniq)
        notes.append(f"Robust (Lin-Wei sandwich) standard errors clustered by {cluster}: "
                     f"{n_clusters} clusters; model-based errors are in se_naive.")
    return DaskCoxResult(
        params=pd.Series(st.beta.copy(), index=names, name="coef"),
        se=pd.Series(np.sqrt(np.diag(cov.to_numpy())), index=names, name="se"),
        se_naive=pd.Series(np.sqrt(np.diag(var)), index=names, name="se_naive"),
        cov=cov, cov_naive=cov_naive, loglik=st.loglik, loglik_null=nr.loglik_null,
        score_test=nr.score_test, n=n, n_events=int(grid.d.sum()), n_event_times=int(grid.time.size),
        n_clusters=n_clusters, n_dropped=n_dropped, n_partitions=ddf.npartitions,
        iterations=it, converged=converged, ties=ties, cluster=cluster, passes=engine.passes,
        elapsed=time.monotonic() - t0, notes=notes,
        timings={k: round(v, 3) for k, v in timings.items()})


def _merge_grid(keys: list[tuple], n_strata: int, ties: str) -> _Grid:
    s = np.concatenate([k[0] for k in keys]).astype(np.int64)
    t = np.concatenate([k[1] for k in keys]).astype(float)
    d = np.concatenate([k[2] for k in keys])
    wd = np.concatenate([k[3] for k in keys])
    if s.size:
        order = np.lexsort((t, s))
        s, t, d, wd = s[order], t[order], d[order], wd[order]
        new = np.r_[True, (s[1:] != s[:-1]) | (t[1:] != t[:-1])]
        gid = np.cumsum(new) - 1
        s, t = s[new], t[new]
        d, wd = np.bincount(gid, d), np.bincount(gid, wd)
    offsets = np.searchsorted(s, np.arange(n_strata + 1), side="left")
    di = d.astype(np.int64)
    dk = np.repeat(np.arange(di.size), di)
    j = np.arange(dk.size) - np.repeat(np.cumsum(di) - di, di)
    frac = j / di[dk] if ties == "efron" else np.zeros(dk.size)
    mw = wd[dk] / di[dk]
    return _Grid(strata=s, time=t, d=d, wd=wd, offsets=offsets, dk=dk, frac=frac, mw=mw)

"""Compiled (numba) kernels of the Cox engine for large fits.

Same formulas as the vectorised numpy code of :mod:`._coxcore` (see its
module docstring; R survival ``agfit4.c``), fused so that one Newton
evaluation reads the design once per pass over the rows instead of once per
``bincount``:

1. ``eta_i = x_i'beta + offset_i``, per-stratum mean shift, ``r_i = w_i exp(eta_i - shift)``;
2. one scatter of ``(r_i, r_i x_i)`` to the entry and exit event indices ``a_i, b_i``,
   then the two-sided running sums giving ``S0_k, S1_k``;
3. the Efron pseudo-events (``den_j, abar_j``), log-likelihood, score, ``c1, c2``;
4. ``sum_i r_i (C[b_i] - C[a_i]) x_i x_i'`` (the S2 part of the information).

Sums run in a different order than numpy's, so the last bits differ from the
numpy path; :mod:`._coxcore` uses these kernels only at or above
``FAST_MIN_ROWS`` rows, so smaller fits (power simulations) stay bit-identical.

numba is optional: without it (``ImportError``), or with the environment variable
``IMRSURV_NO_NUMBA=1``, :data:`AVAILABLE` is False and the numpy path runs.
Kernels are compiled on first use and cached on disk when numba can write its
cache (next to this file or in the user's cache directory); otherwise they are
compiled once per process without a cache.  Large arrays are allocated by numpy
and filled by the kernels: numpy asks the kernel for transparent huge pages,
which at 10M rows makes the random scatters and gathers ~1.5x faster.
"""

from __future__ import annotations

import os
import sys
import threading
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["AVAILABLE", "Workspace", "evaluate_kernel", "score_residual_kernel"]


def _disabled() -> bool:
    return os.environ.get("IMRSURV_NO_NUMBA", "").strip() not in ("", "0")


try:
    if _disabled():
        raise ImportError("IMRSURV_NO_NUMBA is set")
    import numba
except ImportError:
    numba = None

AVAILABLE = numba is not None


def _jit(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``numba.njit`` with an on-disk cache where one can be written, else without."""
    if numba is None:
        return fn
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", numba.NumbaWarning)
            return numba.njit(cache=True, nogil=True)(fn)
    except (RuntimeError, OSError, numba.NumbaWarning):
        # no writable cache location (read-only install): compile per process
        return numba.njit(cache=False, nogil=True)(fn)


def _jit_fast(fn: Callable[..., Any]) -> Callable[..., Any]:
    """:func:`_jit` allowing the reassociation of sums (so that reductions vectorise)."""
    if numba is None:
        return fn
    flags = {"reassoc", "contract"}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", numba.NumbaWarning)
            return numba.njit(cache=True, nogil=True, fastmath=flags)(fn)
    except (RuntimeError, OSError, numba.NumbaWarning):
        return numba.njit(cache=False, nogil=True, fastmath=flags)(fn)


def _threads() -> int:
    """Threads for the two halves of each large pass: ``IMRSURV_THREADS`` (1 or 2), else 2
    when this process may use two or more CPUs."""
    env = os.environ.get("IMRSURV_THREADS", "").strip()
    if env:
        return 1 if env == "1" else 2
    try:
        return 2 if len(os.sched_getaffinity(0)) >= 2 else 1
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return 2 if (os.cpu_count() or 1) >= 2 else 1


_POOL: dict[int, Any] = {}   # one worker thread per process (by pid: a forked child
_POOL_LOCK = threading.Lock()  # inherits the executor but not its thread), started on use
_WORKER = "imrsurv-cox"


def _halves(first: tuple[Callable[..., Any], tuple], second: tuple[Callable[..., Any], tuple]
            ) -> None:
    """Run two kernel calls that write disjoint memory, at once where two threads are allowed.

    The kernels release the GIL (``nogil``); the split into halves is fixed, so the
    results are the same bits on one thread or two.  Called from the worker thread
    itself (never done here, but cheap to rule out) the two run in turn.
    """
    if (numba is None or _threads() < 2
            or threading.current_thread().name.startswith(_WORKER)):
        first[0](*first[1])
        second[0](*second[1])
        return
    with _POOL_LOCK:
        pool = _POOL.get(os.getpid())
        if pool is None:
            from concurrent.futures import ThreadPoolExecutor

            _POOL.clear()
            pool = _POOL[os.getpid()] = ThreadPoolExecutor(1, thread_name_prefix=_WORKER)
    pending = pool.submit(second[0], *second[1])
    try:
        first[0](*first[1])
    finally:
        pending.result()


@_jit
def _eta_risk_into(x: np.ndarray, beta: np.ndarray, offset: np.ndarray, strata: np.ndarray,
                   shift: np.ndarray, eta: np.ndarray, risk: np.ndarray, lo: int,
                   hi: int) -> None:
    """Rows ``lo:hi`` of ``eta = x beta + offset`` and ``risk = exp(eta - shift)``."""
    p = x.shape[1]
    for i in range(lo, hi):
        eta[i] = offset[i]
    for j in range(p):               # column by column: vectorised, x read sequentially
        bj = beta[j]
        for i in range(lo, hi):
            eta[i] += x[i, j] * bj
    for i in range(lo, hi):
        risk[i] = np.exp(eta[i] - shift[strata[i]])


@_jit
def _scatter_into(x: np.ndarray, risk: np.ndarray, weights: np.ndarray, unweighted: bool,
                  a: np.ndarray, b: np.ndarray, net: np.ndarray, klo: int, khi: int) -> None:
    """Rows ``klo:khi`` of ``net`` (zeros): ``+(r_i, r_i x_i)`` at entries ``a_i`` and
    ``-(r_i, r_i x_i)`` at exits ``b_i``.

    Every row is read but only targets in ``klo:khi`` are written, so two calls on
    disjoint ranges can run at once; each entry of ``net`` gets its terms in row
    order, so the result does not depend on the split.
    """
    n, p = x.shape
    for i in range(n):
        ai, bi = a[i], b[i]
        in_a = klo <= ai < khi
        in_b = klo <= bi < khi
        if not (in_a or in_b):
            continue
        ri = risk[i] if unweighted else risk[i] * weights[i]
        if in_a:
            net[ai, 0] += ri
        if in_b:
            net[bi, 0] -= ri
        for j in range(p):
            v = ri * x[i, j]
            if in_a:
                net[ai, j + 1] += v
            if in_b:
                net[bi, j + 1] -= v


@_jit
def _running_split(net: np.ndarray) -> int:
    """The event index where half the S0 mass has accumulated (``_coxcore._split``)."""
    n_times = net.shape[0] - 1
    mass = 0.0
    acc = 0.0
    for k in range(n_times):
        acc += net[k, 0]
        mass += abs(acc)
    half, mass2, acc, split = mass / 2, 0.0, 0.0, n_times
    for k in range(n_times):
        acc += net[k, 0]
        mass2 += abs(acc)
        if mass2 >= half:
            split = k
            break
    return split


@_jit
def _forward_into(net: np.ndarray, split: int) -> None:
    """``S_k = sum_{j <= k} net_j`` in place for ``k < split``."""
    run = np.zeros(net.shape[1])
    for k in range(split):
        for j in range(net.shape[1]):
            run[j] += net[k, j]
            net[k, j] = run[j]


@_jit
def _backward_into(net: np.ndarray, split: int) -> None:
    """``S_k = -sum_{j > k} net_j`` in place for ``split <= k < n_times`` (rows below
    ``split`` are neither read nor written, so this runs beside :func:`_forward_into`)."""
    n_times, q = net.shape[0] - 1, net.shape[1]
    run = np.zeros(q)
    prev = net[n_times].copy()
    here = np.empty(q)
    for k in range(n_times - 1, split - 1, -1):
        for j in range(q):
            run[j] -= prev[j]
            here[j] = net[k, j]
            net[k, j] = run[j]
        prev, here = here, prev


def _riskset_into(x: np.ndarray, beta: np.ndarray, offset: np.ndarray, strata: np.ndarray,
                  shift: np.ndarray, weights: np.ndarray, unweighted: bool, a: np.ndarray,
                  b: np.ndarray, eta: np.ndarray, risk: np.ndarray, net: np.ndarray) -> None:
    """Fill eta, exp(eta - shift) and, in ``net`` (zeros, (n_times + 1) x (1 + p)), the
    running sums ``[S0 | S1]`` in its first n_times rows.

    One pass over the rows scatters ``(r_i, r_i x_i)`` to entries ``a_i`` and exits
    ``b_i`` of ``net``; then, as ``_coxcore._two_sided_cumsum``, forward running sums
    up to the event index where half the S0 mass has accumulated and backward ones
    after it, both in place.  Each step runs as two halves (:func:`_halves`) whose
    results do not depend on how they are scheduled.
    """
    n = x.shape[0]
    _halves((_eta_risk_into, (x, beta, offset, strata, shift, eta, risk, 0, n // 2)),
            (_eta_risk_into, (x, beta, offset, strata, shift, eta, risk, n // 2, n)))
    mid = net.shape[0] // 2
    _halves((_scatter_into, (x, risk, weights, unweighted, a, b, net, 0, mid)),
            (_scatter_into, (x, risk, weights, unweighted, a, b, net, mid, net.shape[0])))
    split = _running_split(net)
    _halves((_forward_into, (net, split)), (_backward_into, (net, split)))


@_jit
def _tied_sums_into(risk: np.ndarray, weights: np.ndarray, unweighted: bool, xt: np.ndarray,
                    tied_rows: np.ndarray, tied_k: np.ndarray, e0: np.ndarray,
                    e1: np.ndarray) -> None:
    """``e0, e1`` (zeros): risk and risk-weighted covariates of the deaths at tied times."""
    p = xt.shape[1]
    for t in range(tied_rows.size):
        k = tied_k[t]
        i = tied_rows[t]
        rt = risk[i] if unweighted else risk[i] * weights[i]
        e0[k] += rt
        for j in range(p):
            e1[k, j] += rt * xt[t, j]


@_jit
def _event_times_into(s01: np.ndarray, mw: np.ndarray, shift: np.ndarray,
                      event_stratum: np.ndarray, den: np.ndarray, abar: np.ndarray,
                      hj: np.ndarray, c1: np.ndarray, lo: int, hi: int,
                      sums: np.ndarray) -> None:
    """Event times ``lo:hi``: ``den, abar, hj, c1``; ``sums`` (p + 1) gets
    ``sum_k mw_k abar_k`` and, last, ``sum_k mw_k log den_k`` (shift added back)."""
    p = s01.shape[1] - 1
    logsum = 0.0
    for j in range(p):
        sums[j] = 0.0
    for k in range(lo, hi):
        d = s01[k, 0]
        den[k] = d
        inv = 1.0 / d
        h = mw[k] * inv
        hj[k] = h
        c1[k] = h
        logsum += mw[k] * (np.log(d) + shift[event_stratum[k]])
        for j in range(p):
            ab = s01[k, j + 1] * inv
            abar[k, j] = ab
            sums[j] += mw[k] * ab
    sums[p] = logsum


@_jit
def _extra_events_into(s01: np.ndarray, extra_k: np.ndarray, extra_frac: np.ndarray,
                       mw: np.ndarray, shift: np.ndarray, event_stratum: np.ndarray,
                       e0: np.ndarray, e1: np.ndarray, den: np.ndarray, abar: np.ndarray,
                       hj: np.ndarray, c1: np.ndarray, c2: np.ndarray, sums: np.ndarray) -> None:
    """The Efron pseudo-events beyond the first death of each tied time (after
    :func:`_event_times_into`: they add to ``c1``); ``sums`` as there."""
    k_n = s01.shape[0]
    p = s01.shape[1] - 1
    logsum = 0.0
    for j in range(p):
        sums[j] = 0.0
    for q in range(extra_k.size):
        k = extra_k[q]
        f = extra_frac[q]
        m = mw[k_n + q]
        d = s01[k, 0] - f * e0[k]
        den[k_n + q] = d
        h = m / d
        hj[k_n + q] = h
        c1[k] += h
        c2[k] += h * f
        logsum += m * (np.log(d) + shift[event_stratum[k]])
        for j in range(p):
            ab = (s01[k, j + 1] - f * e1[k, j]) / d
            abar[k_n + q, j] = ab
            sums[j] += m * ab
    sums[p] = logsum


def _pseudo_events_into(s01: np.ndarray, risk: np.ndarray, weights: np.ndarray,
                        unweighted: bool, xt: np.ndarray, tied_rows: np.ndarray,
                        tied_k: np.ndarray, extra_k: np.ndarray, extra_frac: np.ndarray,
                        mw: np.ndarray, shift: np.ndarray, event_stratum: np.ndarray,
                        e0: np.ndarray, e1: np.ndarray,
                        den: np.ndarray, abar: np.ndarray, hj: np.ndarray, c1: np.ndarray,
                        c2: np.ndarray, score_part: np.ndarray) -> float:
    """Efron pseudo-events: fill e0, e1 (zeros), den, abar, hj, c1, c2 (zeros) and
    ``score_part = sum_j mw_j abar_j``; return ``sum_j mw_j log den_j`` (shift added back).

    The event times run as two halves (:func:`_halves`; the tied-death sums beside
    the first); the three partial sums are added in a fixed order.
    """
    k_n = s01.shape[0]
    p = s01.shape[1] - 1
    parts = np.empty((3, p + 1))
    mid = k_n // 2

    def first_half() -> None:
        _tied_sums_into(risk, weights, unweighted, xt, tied_rows, tied_k, e0, e1)
        _event_times_into(s01, mw, shift, event_stratum, den, abar, hj, c1, 0, mid, parts[0])

    _halves((first_half, ()), (_event_times_into, (s01, mw, shift, event_stratum, den, abar,
                                                   hj, c1, mid, k_n, parts[1])))
    _extra_events_into(s01, extra_k, extra_frac, mw, shift, event_stratum, e0, e1, den, abar,
                       hj, c1, c2, parts[2])
    total = (parts[0] + parts[1]) + parts[2]
    score_part[:] = total[:p]
    return float(total[p])


_BLOCK = 2048     # rows per block of the information's cross-products (fits in L1/L2)


@_jit_fast
def _gram_rows_into(x: np.ndarray, risk: np.ndarray, weights: np.ndarray, unweighted: bool,
                    a: np.ndarray, b: np.ndarray, cc: np.ndarray, lo: int, hi: int,
                    g: np.ndarray) -> None:
    """``g += sum_{lo <= i < hi} r_i (C[b_i] - C[a_i]) x_i x_i'`` (lower triangle), over
    blocks of ``_BLOCK`` rows as vectorised dot products (sums reassociated: the reason
    for ``fastmath`` reassociation here)."""
    p = x.shape[1]
    wx = np.empty((p, _BLOCK))
    for start in range(lo, hi, _BLOCK):
        m = min(_BLOCK, hi - start)
        for t in range(m):
            i = start + t
            wx[0, t] = (risk[i] if unweighted else risk[i] * weights[i]) * (cc[b[i]] - cc[a[i]])
        for j in range(p - 1, -1, -1):      # wx[j] = w x_j (row 0 holds w until last)
            for t in range(m):
                wx[j, t] = wx[0, t] * x[start + t, j]
        for j in range(p):
            for c in range(j + 1):
                s = 0.0
                for t in range(m):
                    s += wx[j, t] * x[start + t, c]
                g[j, c] += s


@_jit
def _cum_into(c1: np.ndarray, cc: np.ndarray) -> None:
    cc[0] = 0.0
    acc = 0.0
    for k in range(c1.size):
        acc += c1[k]
        cc[k + 1] = acc


@_jit_fast
def _information_less(x: np.ndarray, risk: np.ndarray, weights: np.ndarray,
                      unweighted: bool, c2: np.ndarray, tied_rows: np.ndarray,
                      tied_k: np.ndarray, tlo: int, thi: int, abar: np.ndarray,
                      mw: np.ndarray, qlo: int, qhi: int, g: np.ndarray) -> None:
    """Subtract from ``g`` (lower triangle) the tied-death corrections ``tlo:thi`` and
    ``sum_j mw_j abar_j abar_j'`` over pseudo-events ``qlo:qhi``."""
    p = x.shape[1]
    for t in range(tlo, thi):
        i = tied_rows[t]
        w = (risk[i] if unweighted else risk[i] * weights[i]) * c2[tied_k[t]]
        for j in range(p):
            v = w * x[i, j]
            for m in range(j + 1):
                g[j, m] -= v * x[i, m]
    for q in range(qlo, qhi):
        m_q = mw[q]
        for j in range(p):
            v = m_q * abar[q, j]
            for m in range(j + 1):
                g[j, m] -= v * abar[q, m]


def _information_part(x: np.ndarray, risk: np.ndarray, weights: np.ndarray, unweighted: bool,
                      a: np.ndarray, b: np.ndarray, cc: np.ndarray, lo: int, hi: int,
                      c2: np.ndarray, tied_rows: np.ndarray, tied_k: np.ndarray, tlo: int,
                      thi: int, abar: np.ndarray, mw: np.ndarray, qlo: int, qhi: int,
                      g: np.ndarray) -> None:
    _gram_rows_into(x, risk, weights, unweighted, a, b, cc, lo, hi, g)
    _information_less(x, risk, weights, unweighted, c2, tied_rows, tied_k, tlo, thi, abar, mw,
                      qlo, qhi, g)


def _information(x: np.ndarray, risk: np.ndarray, weights: np.ndarray, unweighted: bool,
                 a: np.ndarray, b: np.ndarray, c1: np.ndarray, c2: np.ndarray,
                 tied_rows: np.ndarray, tied_k: np.ndarray, abar: np.ndarray,
                 mw: np.ndarray, cc: np.ndarray) -> np.ndarray:
    """``X' diag(r (C[b] - C[a]) - tied correction) X - sum_j mw_j abar_j abar_j'``.

    ``C`` (filled into ``cc``, n_times + 1) is the running sum of ``c1``.  The
    rows, the tied deaths (correction ``r_i c2[k_i]``) and the pseudo-events are each
    split in two halves; each half's terms are summed separately (:func:`_halves`)
    and the two sums then added, in that order whatever the number of threads.
    """
    n, p = x.shape
    _cum_into(c1, cc)
    mid = (n // 2) // _BLOCK * _BLOCK
    tmid, qmid = tied_rows.size // 2, abar.shape[0] // 2
    g, g2 = np.zeros((p, p)), np.zeros((p, p))
    _halves((_information_part, (x, risk, weights, unweighted, a, b, cc, 0, mid, c2, tied_rows,
                                 tied_k, 0, tmid, abar, mw, 0, qmid, g)),
            (_information_part, (x, risk, weights, unweighted, a, b, cc, mid, n, c2, tied_rows,
                                 tied_k, tmid, tied_rows.size, abar, mw, qmid, abar.shape[0],
                                 g2)))
    g += g2
    for j in range(p):
        for m in range(j):
            g[m, j] = g[j, m]
    return g


@_jit
def death_sums(x: np.ndarray, rows: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``sum_t w_t x[rows_t]`` (p), without gathering the rows."""
    p = x.shape[1]
    out = np.zeros(p)
    for j in range(p):
        s = 0.0
        for t in range(rows.size):
            s += w[t] * x[rows[t], j]
        out[j] = s
    return out


def _holders(store: dict[str, np.ndarray], key: str) -> int:
    """References to ``store[key]`` (as counted from inside this function)."""
    buf = store[key]
    return sys.getrefcount(buf)


class Workspace:
    """Buffers of one Newton iteration's evaluation, reused by the next.

    In this VM-like setting fresh memory costs page faults at every evaluation;
    a buffer is reused only when nothing but the workspace refers to it (no state,
    no view of it alive), judged against the reference count of a probe array held
    the same way (so the test does not depend on how the interpreter counts).  Lives
    as long as one maximisation (``_coxcore.newton_raphson``).
    """

    def __init__(self) -> None:
        self._bufs: dict[str, np.ndarray] = {"_probe": np.empty(0)}

    def get(self, key: str, shape: tuple[int, ...], zero: bool = False) -> np.ndarray:
        buf = self._bufs.get(key)
        if (buf is not None and buf.shape == shape
                and _holders(self._bufs, key) <= _holders(self._bufs, "_probe") + 1):
            del buf
            out = self._bufs[key]
            if zero:
                out.fill(0.0)
            return out
        del buf
        out = np.zeros(shape) if zero else np.empty(shape)
        self._bufs[key] = out
        return out


def _fresh(key: str, shape: tuple[int, ...], zero: bool = False) -> np.ndarray:
    return np.zeros(shape) if zero else np.empty(shape)


def evaluate_kernel(x: np.ndarray, beta: np.ndarray, offset: np.ndarray, shift: np.ndarray,
                    weights: np.ndarray, unweighted: bool, strata: np.ndarray, a: np.ndarray,
                    b: np.ndarray, n_times: int, xt: np.ndarray, tied_rows: np.ndarray,
                    tied_k: np.ndarray, extra_k: np.ndarray, extra_frac: np.ndarray,
                    mw: np.ndarray, event_stratum: np.ndarray, need_info: bool,
                    workspace: Workspace | None = None) -> dict[str, Any]:
    """Everything ``_coxcore.evaluate`` computes at ``beta`` with risks ``exp(eta - shift)``
    (``shift`` per stratum), except the death-row terms of the log-likelihood and score
    (``xd_sum``, the caller adds them): ``logsum = sum_j mw_j log den_j`` (shift added
    back) and ``score_part = sum_j mw_j abar_j``.  With ``workspace`` the large arrays
    of a previous evaluation that nothing holds any more are refilled."""
    n, p = x.shape
    q_n = n_times + extra_k.size
    get = workspace.get if workspace is not None else _fresh
    eta, risk_u = get("eta", (n,)), get("risk", (n,))
    net = get("net", (n_times + 1, p + 1), zero=True)
    _riskset_into(x, beta, offset, strata, shift, weights, unweighted, a, b, eta, risk_u, net)
    s01 = net[:n_times]
    # sparse (written at tied times only): fresh zeros, whose untouched pages cost nothing
    e0, e1, c2 = np.zeros(n_times), np.zeros((n_times, p)), np.zeros(n_times)
    den, hj, c1 = get("den", (q_n,)), get("hj", (q_n,)), get("c1", (n_times,))
    abar, score_part = get("abar", (q_n, p)), np.empty(p)
    logsum = _pseudo_events_into(s01, risk_u, weights, unweighted, xt, tied_rows, tied_k,
                                 extra_k, extra_frac, mw, shift, event_stratum, e0, e1,
                                 den, abar, hj, c1, c2, score_part)
    info = (_information(x, risk_u, weights, unweighted, a, b, c1, c2, tied_rows, tied_k,
                         abar, mw, get("cc", (n_times + 1,))) if need_info
            else np.empty((p, p)))
    return dict(eta=eta, shift=shift, risk_u=risk_u, s0=s01[:, 0], s1=s01[:, 1:], e0=e0,
                e1=e1, den=den, abar=abar, hj=hj, c1=c1, c2=c2, logsum=logsum,
                score_part=score_part, info=info)


def cluster_score_kernel(x: np.ndarray, ru: np.ndarray, weights: np.ndarray,
                         unweighted: bool, codes: np.ndarray, n_clusters: int, a: np.ndarray,
                         b: np.ndarray, c1: np.ndarray, c2: np.ndarray, hj: np.ndarray,
                         abar: np.ndarray, extra_k: np.ndarray, extra_frac: np.ndarray,
                         pcount: np.ndarray, death_rows: np.ndarray, death_k: np.ndarray,
                         tied_rows: np.ndarray, tied_k: np.ndarray) -> np.ndarray:
    """Case-weighted score residuals summed within clusters (n_clusters x p), without the
    n x p matrix of :func:`score_residual_kernel` (same terms, R ``agscore3``)."""
    p = x.shape[1]
    # one column of running sums at a time (p passes over the rows): a (K + 1) x p block
    # was 0.28 GB at 10M rows and 5 columns, at the fit's memory peak
    work = _residual_work(extra_k, c1.size, p, xcum_cols=1)
    out = np.zeros((n_clusters, p))
    _cluster_scores_into(x, ru, weights, unweighted, codes,
                         (a, b, extra_k, extra_frac, pcount, death_rows, death_k, tied_rows,
                          tied_k), (c1, c2, hj, abar), work, out)
    return out


def _tied_slots(extra_k: np.ndarray, k_n: int) -> tuple[np.ndarray, int]:
    """Row of each tied event time in the tied-times-only work arrays (-1 elsewhere).

    ``mh2`` and ``smean`` are needed at tied times only; stored per event time they
    were touched at every tied time and so resident almost everywhere (0.55 GB at
    10M rows and 5 columns); per tied time they are small.
    """
    tied = np.unique(extra_k)
    slot = np.full(k_n, -1, np.int32)  # int32: 28 MB, not 55, at 10M rows
    slot[tied] = np.arange(tied.size)
    return slot, int(tied.size)


def _residual_work(extra_k: np.ndarray, k_n: int, p: int, xcum_cols: int) -> tuple:
    """Work arrays of the score-residual kernels: ``(slot, xcum, mh2, smean, hcum)``.

    ``xcum`` (K + 1 running sums, ``xcum_cols`` columns), ``mh2`` and ``smean`` (one row
    per tied event time, zeros; ``slot`` maps an event time to its row), ``hcum``.
    """
    slot, n_tied = _tied_slots(extra_k, k_n)
    return (slot, np.empty((k_n + 1, xcum_cols)), np.zeros((n_tied, p)),
            np.zeros((n_tied, p)), np.empty(k_n + 1))


@_jit
def _cluster_scores_into(x: np.ndarray, ru: np.ndarray, weights: np.ndarray,
                         unweighted: bool, codes: np.ndarray, index: tuple, terms: tuple,
                         work: tuple, out: np.ndarray) -> None:
    """The sums of :func:`cluster_score_kernel` into ``out`` (zeros); see
    :func:`_score_residuals_into` for ``index``, ``terms`` and ``work``. ``xcum`` has
    one column: the event terms are built and used one covariate at a time (each entry
    is computed as with all columns at once, and ``out[g, j]`` gets its terms in the
    same order)."""
    a, b, extra_k, extra_frac, pcount, death_rows, death_k, tied_rows, tied_k = index
    c1, c2, hj, abar = terms
    slot, xcum, mh2, smean, hcum = work
    n, p = x.shape
    for j in range(p):
        _event_terms(c1, hj, abar[:, j:j + 1], extra_k, extra_frac, pcount, xcum,
                     mh2[:, j:j + 1], smean[:, j:j + 1], hcum, slot)
        for i in range(n):
            ai, bi = a[i], b[i]
            dh = hcum[bi] - hcum[ai]
            w = ru[i] if unweighted else ru[i] * weights[i]
            out[codes[i], j] += w * (xcum[bi, 0] - xcum[ai, 0] - x[i, j] * dh)
    for t in range(death_rows.size):
        i, k = death_rows[t], death_k[t]
        w = 1.0 if unweighted else weights[i]
        g = codes[i]
        if pcount[k] == 1:
            for j in range(p):
                out[g, j] += w * (x[i, j] - abar[k, j])
        else:
            for j in range(p):
                out[g, j] += w * (x[i, j] - smean[slot[k], j])
    for t in range(tied_rows.size):
        i, k = tied_rows[t], tied_k[t]
        w = ru[i] if unweighted else ru[i] * weights[i]
        g = codes[i]
        r = slot[k]  # -1: no Efron terms at k (Breslow), where mh2 is 0
        for j in range(p):
            out[g, j] += w * (x[i, j] * c2[k] - (mh2[r, j] if r >= 0 else 0.0))


@_jit
def _event_terms(c1: np.ndarray, hj: np.ndarray, abar: np.ndarray, extra_k: np.ndarray,
                 extra_frac: np.ndarray, pcount: np.ndarray, xcum: np.ndarray,
                 mh2: np.ndarray, smean: np.ndarray, hcum: np.ndarray,
                 slot: np.ndarray) -> None:
    """Per event time: ``xcum`` running sums of ``xhaz = sum_j hj abar_j`` (leading zero
    row), ``mh2 = sum_j hj f_j abar_j`` and ``smean = mean_j abar_j`` at tied times
    (``mh2``, ``smean`` zeros on entry, one row per tied time: row ``slot[k]``),
    ``hcum`` running sums of ``c1``."""
    k_n, p = c1.size, abar.shape[1]
    n_x = extra_k.size
    for j in range(p):
        xcum[0, j] = 0.0
    for k in range(k_n):
        for j in range(p):
            xcum[k + 1, j] = hj[k] * abar[k, j]
    for q in range(n_x):
        k = extra_k[q]
        h = hj[k_n + q]
        hf = h * extra_frac[q]
        r = slot[k]
        for j in range(p):
            ab = abar[k_n + q, j]
            xcum[k + 1, j] += h * ab
            mh2[r, j] += hf * ab
            smean[r, j] += ab
    for q in range(n_x):             # each tied time once: its j = 0 term, then the mean
        k = extra_k[q]
        if q == 0 or extra_k[q - 1] != k:
            r = slot[k]
            for j in range(p):
                smean[r, j] = (smean[r, j] + abar[k, j]) / pcount[k]
    hcum[0] = 0.0
    for k in range(k_n):
        hcum[k + 1] = hcum[k] + c1[k]
        for j in range(p):
            xcum[k + 1, j] += xcum[k, j]


def score_residual_kernel(x: np.ndarray, ru: np.ndarray, a: np.ndarray, b: np.ndarray,
                          c1: np.ndarray, c2: np.ndarray, hj: np.ndarray, abar: np.ndarray,
                          extra_k: np.ndarray, extra_frac: np.ndarray, pcount: np.ndarray,
                          death_rows: np.ndarray, death_k: np.ndarray,
                          tied_rows: np.ndarray, tied_k: np.ndarray) -> np.ndarray:
    """Score residuals as ``_coxcore.score_residuals`` (R ``agscore3``), column-major n x p."""
    n, p = x.shape
    res = np.empty((p, n))
    _score_residuals_into(x, ru, (a, b, extra_k, extra_frac, pcount, death_rows, death_k,
                                  tied_rows, tied_k), (c1, c2, hj, abar),
                          _residual_work(extra_k, c1.size, p, xcum_cols=p), res)
    return res.T


@_jit
def _score_residuals_into(x: np.ndarray, ru: np.ndarray, index: tuple, terms: tuple,
                          work: tuple, res: np.ndarray) -> None:
    """Fill ``res`` (p x n) with the score residuals.

    ``index``: the risk-set index arrays ``(a, b, extra_k, extra_frac, pcount,
    death_rows, death_k, tied_rows, tied_k)``; ``terms``: the evaluation's ``(c1, c2,
    hj, abar)``; ``work``: :func:`_residual_work`. Per event time: ``xhaz = sum_j hj
    abar_j`` (accumulated into ``xcum[k + 1]``), ``mh2 = sum_j hj f_j abar_j``,
    ``smean = mean_j abar_j``; then ``xcum`` and ``hcum`` are running sums with a
    leading zero row.
    """
    a, b, extra_k, extra_frac, pcount, death_rows, death_k, tied_rows, tied_k = index
    c1, c2, hj, abar = terms
    slot, xcum, mh2, smean, hcum = work
    n, p = x.shape
    _event_terms(c1, hj, abar, extra_k, extra_frac, pcount, xcum, mh2, smean, hcum, slot)
    for i in range(n):
        ai, bi = a[i], b[i]
        dh = hcum[bi] - hcum[ai]
        for j in range(p):
            res[j, i] = ru[i] * (xcum[bi, j] - xcum[ai, j] - x[i, j] * dh)
    for t in range(death_rows.size):
        i, k = death_rows[t], death_k[t]
        if pcount[k] == 1:
            for j in range(p):
                res[j, i] += x[i, j] - abar[k, j]
        else:
            for j in range(p):
                res[j, i] += x[i, j] - smean[slot[k], j]
    for t in range(tied_rows.size):
        i, k = tied_rows[t], tied_k[t]
        r = slot[k]  # -1: no Efron terms at k (Breslow), where mh2 is 0
        for j in range(p):
            res[j, i] += ru[i] * (x[i, j] * c2[k] - (mh2[r, j] if r >= 0 else 0.0))


def sorted_endpoints(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.argsort(t)`` and ``np.sort(t)``: the two halves of ``t`` sorted at once
    (numpy's sort releases the GIL), then merged, each half of the output by a thread.

    Equal values may come in another order than one ``np.argsort`` would give; the
    index is built from groups of equal times, so it does not depend on that order.
    """
    h = t.size // 2
    runs: list[np.ndarray] = [np.empty(0, np.int64)] * 2

    def sort_part(i: int, lo: int, hi: int) -> None:
        runs[i] = np.argsort(t[lo:hi])

    _halves((sort_part, (0, 0, h)), (sort_part, (1, h, t.size)))
    o1, o2 = runs
    order, ts = np.empty(t.size, np.int64), np.empty(t.size)
    half = t.size // 2
    i = _co_rank(t, o1, o2, h, half)
    _halves((_merge_into, (t, o1, o2, h, 0, i, 0, half - i, order, ts, 0)),
            (_merge_into, (t, o1, o2, h, i, o1.size, half - i, o2.size, order, ts, half)))
    return order, ts


@_jit
def _co_rank(t: np.ndarray, o1: np.ndarray, o2: np.ndarray, h: int, m: int) -> int:
    """How many of the first ``m`` merged values come from the first run (the merge of
    :func:`_merge_into`: a value of the second run goes first only when smaller, or when
    the first run's is NaN and it is not)."""
    n1, n2 = o1.size, o2.size
    lo, hi = max(0, m - n2), min(m, n1)
    while True:
        i = (lo + hi) // 2
        j = m - i
        if i > 0 and j < n2:
            a, b = t[o1[i - 1]], t[o2[j] + h]
            if b < a or (a != a and b == b):
                hi = i - 1      # the second run's value j goes before the first's i - 1
                continue
        if j > 0 and i < n1:
            a, b = t[o1[i]], t[o2[j - 1] + h]
            if not (b < a or (a != a and b == b)):
                lo = i + 1      # the first run's value i goes before the second's j - 1
                continue
        return i


@_jit
def _merge_into(t: np.ndarray, o1: np.ndarray, o2: np.ndarray, h: int, i: int, i_end: int,
                j: int, j_end: int, order: np.ndarray, ts: np.ndarray, q: int) -> None:
    """Merge ``o1[i:i_end]`` (positions in ``t[:h]``) and ``o2[j:j_end]`` (in ``t[h:]``),
    both sorting permutations, into ``order`` and ``ts = t[order]`` from position ``q``."""
    while i < i_end and j < j_end:
        a, b = t[o1[i]], t[o2[j] + h]
        if b < a or (a != a and b == b):     # ties take the first run; NaN last
            order[q], ts[q] = o2[j] + h, b
            j += 1
        else:
            order[q], ts[q] = o1[i], a
            i += 1
        q += 1
    while i < i_end:
        order[q], ts[q] = o1[i], t[o1[i]]
        i += 1
        q += 1
    while j < j_end:
        order[q], ts[q] = o2[j] + h, t[o2[j] + h]
        j += 1
        q += 1


@_jit
def distinct_finite(ts: np.ndarray) -> np.ndarray:
    """The distinct finite values of the sorted array ``ts``."""
    m = 0
    for q in range(ts.size):
        v = ts[q]
        if np.isfinite(v) and (m == 0 or v != ts[q - 1]):
            m += 1
    out = np.empty(m)
    m = 0
    for q in range(ts.size):
        v = ts[q]
        if np.isfinite(v) and (m == 0 or v != ts[q - 1]):
            out[m] = v
            m += 1
    return out


@_jit
def near_ties(y: np.ndarray, mean_abs: float, tol: float) -> np.ndarray:
    """``tied[u]``: ``y[u + 1]`` is within ``tol`` of ``y[u]``, absolutely or relative to
    ``mean_abs`` (the same arithmetic as ``_coxcore.aeq_times``)."""
    tied = np.empty(max(y.size - 1, 0), np.bool_)
    for u in range(y.size - 1):
        dy = y[u + 1] - y[u]
        tied[u] = (dy <= tol) or (dy / mean_abs <= tol)
    return tied


def risk_ranges(ts: np.ndarray, ss: np.ndarray, order: np.ndarray, event: np.ndarray,
                n_deaths: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                        np.ndarray, np.ndarray]:
    """``_coxcore.build_index`` in two walks over the endpoints sorted by (stratum, time).

    ``order`` sorts ``concat(start, stop)`` by (stratum, time); ``ts``, ``ss`` are the
    sorted times and strata (``ss`` empty for a single stratum).  A group is a run of
    equal (stratum, time); it is an event time when a death (a stop endpoint with
    ``event``) falls in it.  The first walk counts event times up to each group and
    collects the deaths (sorted by row within a group); the second writes each row's
    ``a`` (event times up to its start group) and ``b`` (up to its stop group).
    Returns ``a, b``, the event times and strata, the death rows in (event time, row)
    order and their event index.
    """
    n = order.size // 2
    upto = np.empty(order.size, np.int64)
    ev_time, ev_strat = np.empty(n_deaths), np.zeros(n_deaths, np.int64)
    dead, dk = np.empty(n_deaths, np.int64), np.empty(n_deaths, np.int64)
    a, b = np.empty(n, np.int64), np.empty(n, np.int64)
    qmid = order.size // 2
    # the random reads of event[] first, two halves at once; the walk then reads in order
    dies = np.empty(order.size, np.bool_)
    _halves((_deaths_into, (order, event, dies, 0, qmid)),
            (_deaths_into, (order, event, dies, qmid, order.size)))
    k, nd, g_mid = _count_events_into(ts, ss, order, dies, upto, ev_time, ev_strat, dead, dk,
                                      qmid)
    del dies
    # the second walk writes a[i], b[i] once each: two halves of the endpoints at once
    _halves((_ranges_into, (ts, ss, order, upto, a, b, 0, qmid, -1)),
            (_ranges_into, (ts, ss, order, upto, a, b, qmid, order.size, g_mid)))
    return a, b, ev_time[:k], ev_strat[:k], dead[:nd], dk[:nd]


@_jit
def _deaths_into(order: np.ndarray, event: np.ndarray, dies: np.ndarray, lo: int,
                 hi: int) -> None:
    """``dies[q]``: sorted endpoint ``q`` (``lo <= q < hi``) is the stop of a row with an event."""
    n = order.size // 2
    for q in range(lo, hi):
        idx = order[q]
        dies[q] = idx >= n and event[idx - n]


@_jit
def _count_events_into(ts: np.ndarray, ss: np.ndarray, order: np.ndarray, dies: np.ndarray,
                       upto: np.ndarray, ev_time: np.ndarray, ev_strat: np.ndarray,
                       dead: np.ndarray, dk: np.ndarray, qmid: int) -> tuple[int, int, int]:
    """The first walk of :func:`risk_ranges` (``dies``: :func:`_deaths_into`): ``upto[g]``
    (event times up to group ``g``), the event times and the deaths (sorted by row
    within an event time); returns the numbers of event times and deaths and the
    group of sorted endpoint ``qmid``.

    A group is a run of equal (stratum, time); it ends where the next begins, and the
    last one at the sentinel ``q = m_n``.  (The walks are written out, without helper
    calls: a call with array arguments costs reference counting, ~12x slower here.)
    """
    m_n = order.size
    n = m_n // 2
    single = ss.size == 0
    g, k, nd, first_dead, g_mid = -1, 0, 0, 0, -1
    has = False
    for q in range(m_n + 1):
        if (q == m_n or q == 0 or ts[q] != ts[q - 1]
                or (not single and ss[q] != ss[q - 1])):
            if g >= 0:                    # close group g, whose last endpoint is q - 1
                if has:
                    ev_time[k] = ts[q - 1]
                    if not single:
                        ev_strat[k] = ss[q - 1]
                    if nd - first_dead > 1:
                        dead[first_dead:nd] = np.sort(dead[first_dead:nd])
                    for m in range(first_dead, nd):
                        dk[m] = k
                    k += 1
                first_dead = nd
                upto[g] = k
            if q == m_n:
                break
            g += 1
            has = False
        if q == qmid:
            g_mid = g
        if dies[q]:
            has = True
            dead[nd] = order[q] - n
            nd += 1
    return k, nd, g_mid


@_jit
def _ranges_into(ts: np.ndarray, ss: np.ndarray, order: np.ndarray, upto: np.ndarray,
                 a: np.ndarray, b: np.ndarray, lo: int, hi: int, g: int) -> None:
    """The second walk, over sorted endpoints ``lo:hi``: each row's ``a`` (event times up
    to its start's group) and ``b`` (up to its stop's group). ``g``: the group of
    endpoint ``lo``, or -1 when ``lo`` is 0."""
    n = order.size // 2
    single = ss.size == 0
    for q in range(lo, hi):
        if (q > lo or g < 0) and (q == 0 or ts[q] != ts[q - 1]
                                  or (not single and ss[q] != ss[q - 1])):
            g += 1
        idx = order[q]
        if idx < n:
            a[idx] = upto[g]
        else:
            b[idx - n] = upto[g]


def fix_times(ts: np.ndarray, order: np.ndarray, y: np.ndarray, tied: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
    """R's time fix as ``_coxcore.aeq_times``: every finite time takes the smallest value
    of its run of near-equal distinct values (``tied[u]``: ``y[u + 1]`` joins ``y[u]``'s run).

    ``ts`` is ``t`` sorted, ``order`` the permutation that sorts it and ``y`` its distinct
    finite values.  Returns the fixed times (in the order of ``t``) and the same values
    sorted (``order`` still sorts them).
    """
    fixed, fsorted = np.empty(ts.size), np.empty(ts.size)
    _fix_times_into(ts, order, y, tied, np.empty(y.size), fixed, fsorted)
    return fixed, fsorted


@_jit
def _fix_times_into(ts: np.ndarray, order: np.ndarray, y: np.ndarray, tied: np.ndarray,
                    rep: np.ndarray, fixed: np.ndarray, fsorted: np.ndarray) -> None:
    """The walk of :func:`fix_times` (``rep``: work array, the representative of each y)."""
    r = y[0]
    rep[0] = r
    for u in range(1, y.size):
        if not tied[u - 1]:
            r = y[u]
        rep[u] = r
    u = -1
    for q in range(ts.size):
        v = ts[q]
        f = v
        if np.isfinite(v):
            if u < 0 or v != ts[q - 1]:
                u += 1
            f = rep[u]
        fsorted[q] = f
        fixed[order[q]] = f

"""Standard errors of multi-state predictions from transition-specific Cox models.

A prediction for a covariate profile (a state probability ``P_m(t)``, a
cumulative transition hazard ``A_j(t)``, the expected time in a state up to a
horizon) is a smooth function ``F`` of the coefficients ``beta_j`` and the
baseline increments ``dLambda_j(s)`` of every transition ``j``.  Its standard
error here is the infinitesimal jackknife (IJ) by site, the estimator of the
Lin-Wei robust variance of the coefficients extended to the whole prediction::

    IF_c(F) = d F / d w_c      (the derivative in site c's case weight, at w = 1)
    Var(F)  = sum_c IF_c(F)^2

For the coefficients this *is* the robust variance (``IF_c(beta) = V U_c``, V
the inverse information and ``U_c`` site c's summed score residuals, so
``sum_c IF_c IF_c' = V U'U V``).  For the Breslow or Efron baseline increment
at an event time ``s`` with ``d`` deaths of total weight ``D``, risk-set sums
``S0, S1`` and death sums ``S0d, S1d`` (Efron fractions ``f_i = i/d``, Breslow
``f_i = 0``, ``den_i = S0 - f_i S0d``)::

    dLambda   = (D/d) sum_i 1/den_i
    IF_c      = D_c (1/d) sum_i 1/den_i  -  S0_c (D/d) sum_i 1/den_i^2
                + S0d_c (D/d) sum_i f_i/den_i^2  +  H' IF_c(beta),
    H         = -(D/d) sum_i (S1 - f_i S1d) / den_i^2

with ``S0_c``, ``S0d_c``, ``D_c`` site c's parts of those sums.  A profile's
increment is ``dA_j(s) = dLambda_j(s) exp(x_j(s)' beta_j)``, and the state
probabilities are the product integral ``P(t) = p0 prod_{s<=t} M(s)`` with
``M = I + dA`` (Aalen-Johansen) or ``exp(dA)``.  The derivative of ``F`` in
each ``dA_j(s)`` comes from one backward (adjoint) pass over the event times,
``lambda_k = c_k + M_{k+1} lambda_{k+1}`` (``c_k`` how ``F`` reads ``P(s_k)``
directly), so that ``dF/dM_k = P(s_{k-1})' lambda_k'``.  Everything is a sum
over rows, event times and sites: no refit.  The same construction gives R
``survfit``'s infinitesimal-jackknife errors for Aalen-Johansen curves; mstate's
``probtrans`` uses a Greenwood-type recursion with the model-based variance of
the coefficients instead.  ``tests/test_transition_predict.py`` checks every IF
against the derivative of refits with perturbed site weights, and the errors
against a seeded site bootstrap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from imrsurv.errors import NotEstimable

__all__ = ["FitInfluence", "fit_influence", "influence_of", "aj_sensitivities",
           "exp_sensitivities", "summarise"]


@dataclass(frozen=True)
class FitInfluence:
    """What one Cox fit contributes to the influence of a prediction.

    ``times`` are the fit's event times; ``dlam`` its baseline increments on
    the *shifted* scale (risk scores ``exp(x_c' beta - shift)``, ``x_c`` the
    centred design), so that a profile's increment is ``dlam * exp(lp)`` with
    ``lp = (x - center)' beta - shift``.
    """

    times: np.ndarray  # (K,)
    dlam: np.ndarray  # (K,)
    alpha: np.ndarray  # (K,) (1/d) sum_i 1/den_i
    b2: np.ndarray  # (K,) (D/d) sum_i 1/den_i^2
    gamma: np.ndarray  # (K,) (D/d) sum_i f_i/den_i^2
    h: np.ndarray  # (K, p) d dlam / d beta
    center: np.ndarray  # (p,)
    shift: float
    beta: np.ndarray  # (p,)
    start: np.ndarray  # (n,)
    stop: np.ndarray  # (n,)
    w: np.ndarray  # (n,) case weights
    risk: np.ndarray  # (n,) w * exp(x_c' beta - shift)
    death_rows: np.ndarray  # rows with an event at one of `times`
    death_k: np.ndarray  # their event-time index
    unit: np.ndarray  # (n,) global site code of each row
    if_beta: np.ndarray  # (G, p) IF of beta per site

    def lp(self, x: np.ndarray) -> np.ndarray:
        """``(x - center)' beta - shift`` for design rows ``x`` (..., p)."""
        return (x - self.center) @ self.beta - self.shift


def fit_influence(fit, unit: np.ndarray, n_units: int, if_beta: np.ndarray | None = None
                  ) -> FitInfluence:
    """Influence pieces of a fitted :class:`~imrsurv.CoxResult` (no strata, no offset).

    ``unit`` gives each fitted row's global site code (0..n_units-1), in the
    fit's row order; sites shared between transitions get the same code.
    ``if_beta`` (n_units, p) replaces ``V U_c``, the IF of an unpenalised fit
    (for a Firth fit the penalty's own weight derivative matters when events are
    few; :func:`imrsurv.models.predictions` computes it by refits).
    """
    pb = fit._pb
    if pb.n_strata != 1 or np.any(pb.offset):
        raise NotEstimable("prediction errors are implemented for transition models without "
                           "strata or offsets")
    beta = fit.params.to_numpy(float)
    x = np.asarray(pb.x, float)
    eta = x @ beta
    shift = float(eta.mean()) if eta.size else 0.0
    w = np.asarray(pb.weights, float)
    risk = w * np.exp(eta - shift)
    start, stop, event = (np.asarray(pb.start, float), np.asarray(pb.stop, float),
                          np.asarray(pb.event, bool))
    times = np.unique(stop[event])
    k_of = np.searchsorted(times, stop)
    dead = np.flatnonzero(event)
    dk = k_of[dead]
    K, p = times.size, x.shape[1]
    # risk-set sums at each event time: rows with start < t <= stop
    s0, s1 = _riskset_sums(start, stop, times, risk, x)
    d = np.bincount(dk, minlength=K).astype(float)
    dw = np.bincount(dk, w[dead], minlength=K)
    s0d = np.bincount(dk, risk[dead], minlength=K)
    s1d = np.column_stack([np.bincount(dk, risk[dead] * x[dead, j], minlength=K)
                           for j in range(p)]) if p else np.zeros((K, 0))
    efron = bool(pb.efron)
    alpha, b2, gamma = np.zeros(K), np.zeros(K), np.zeros(K)
    h = np.zeros((K, p))
    dmax = int(d.max()) if K else 0
    for i in range(dmax):  # Efron terms i = 0..d-1 (Breslow: all with f = 0)
        on = d > i
        f = np.where(on, i / np.maximum(d, 1), 0.0) if efron else np.zeros(K)
        den = s0 - f * s0d
        inv = np.where(on, 1.0 / np.where(on, den, 1.0), 0.0)
        alpha += inv
        b2 += inv ** 2
        gamma += f * inv ** 2
        h -= (inv ** 2)[:, None] * (s1 - f[:, None] * s1d)
    scale = dw / np.maximum(d, 1)
    alpha /= np.maximum(d, 1)
    b2 *= scale
    gamma *= scale
    h *= scale[:, None]
    dlam = dw * alpha
    if if_beta is None:
        res = fit.residuals("score", weighted=True).to_numpy(float)
        g_score = np.column_stack([np.bincount(unit, res[:, j], minlength=n_units)
                                   for j in range(p)]) if p else np.zeros((n_units, 0))
        if_beta = g_score @ fit.cov_naive.to_numpy(float)
    return FitInfluence(times=times, dlam=dlam, alpha=alpha, b2=b2, gamma=gamma, h=h,
                        center=np.asarray(pb.centers, float)[0], shift=shift, beta=beta,
                        start=start, stop=stop, w=w, risk=risk, death_rows=dead,
                        death_k=dk, unit=np.asarray(unit, np.int64), if_beta=if_beta)


def _riskset_sums(start: np.ndarray, stop: np.ndarray, times: np.ndarray, v: np.ndarray,
                  x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``sum_{start < t <= stop} v`` and ``... v x`` at each of ``times``."""
    vx = np.column_stack([v, v[:, None] * x])
    # rows with stop >= t minus rows with start >= t
    o_stop, o_start = np.argsort(stop, kind="stable"), np.argsort(start, kind="stable")
    tail_stop = np.vstack([np.cumsum(vx[o_stop][::-1], axis=0)[::-1], np.zeros(vx.shape[1])])
    tail_start = np.vstack([np.cumsum(vx[o_start][::-1], axis=0)[::-1],
                            np.zeros(vx.shape[1])])
    i_stop = np.searchsorted(stop[o_stop], times, side="left")
    i_start = np.searchsorted(start[o_start], times, side="left")
    tot = tail_stop[i_stop] - tail_start[i_start]
    return tot[:, 0], tot[:, 1:]


def influence_of(fi: FitInfluence, a: np.ndarray, xprof: np.ndarray, n_units: int
                 ) -> np.ndarray:
    """IF per site of ``sum_k g_k,f dA(s_k)`` where ``a[k, f] = g_k,f exp(lp_k)``.

    ``a`` is (K, F) over the fit's event times; ``xprof`` (K, p) the profile's
    design row in force at each event time.  Returns (n_units, F).
    """
    K, F = a.shape
    out = np.zeros((n_units, F))
    if K == 0 or F == 0:
        return out
    n = fi.stop.size
    # deaths: D_c alpha + S0d_c gamma
    dr = fi.death_rows
    coef = fi.w[dr] * fi.alpha[fi.death_k] + fi.risk[dr] * fi.gamma[fi.death_k]
    out += _by_unit(fi.unit[dr], coef, n_units) @ a[fi.death_k]
    # at risk: - S0_c b2, summed over each row's (start, stop] event times
    cum = np.vstack([np.zeros(F), np.cumsum(fi.b2[:, None] * a, axis=0)])
    hi = np.searchsorted(fi.times, fi.stop, side="right")
    lo = np.searchsorted(fi.times, fi.start, side="right")
    step = max(1, int(2e7 // max(F, 1)))
    for s in range(0, n, step):
        sl = slice(s, s + step)
        out -= _by_unit(fi.unit[sl], fi.risk[sl], n_units) @ (cum[hi[sl]] - cum[lo[sl]])
    # coefficients: (sum_k a_k (H_k + dlam_k (x_k - center)))' IF(beta)
    m = a.T @ (fi.h + fi.dlam[:, None] * (xprof - fi.center))  # (F, p)
    out += fi.if_beta @ m.T
    return out


def _by_unit(unit: np.ndarray, weight: np.ndarray, n_units: int) -> sparse.csr_matrix:
    """Sparse (n_units, len(unit)) matrix summing weighted rows into their units."""
    return sparse.csr_matrix((weight, (unit, np.arange(unit.size))), shape=(n_units, unit.size))


def exp_sensitivities(gen: np.ndarray, mats: np.ndarray, p0: np.ndarray,
                      pairs: Sequence[tuple[int, int]], reads: np.ndarray) -> np.ndarray:
    """As :func:`aj_sensitivities` for ``M_k = exp(Q_k)`` (``Q_k = gen[k]``).

    The derivative of ``exp(Q)`` in the direction ``E = E_ab - E_aa`` is the
    Frechet derivative, the upper-right block of ``exp([[Q, E], [0, Q]])``
    (Higham 2008, thm 3.6).
    """
    from imrsurv.models.transitions import _expm  # noqa: PLC0415

    K, S = mats.shape[0], mats.shape[1]
    path, lam = _path_and_adjoint(mats, p0, reads)
    out = np.empty((K, len(pairs), reads.shape[2]))
    for j, (a, b) in enumerate(pairs):
        e = np.zeros((S, S))
        e[a, b], e[a, a] = 1.0, -1.0
        big = np.zeros((K, 2 * S, 2 * S))
        big[:, :S, :S] = gen
        big[:, S:, S:] = gen
        big[:, :S, S:] = e
        frechet = _expm(big)[:, :S, S:]
        out[:, j, :] = np.einsum("ku,kuv,kvf->kf", path[:K], frechet, lam[1:])
    return out


def _path_and_adjoint(mats: np.ndarray, p0: np.ndarray, reads: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Forward path ``P(s_k)`` (k = 0..K) and adjoints ``lambda_k = reads_k + M_{k+1} lambda_{k+1}``."""
    K, S = mats.shape[0], mats.shape[1]
    path = np.empty((K + 1, S))
    path[0] = p0
    for k in range(K):
        path[k + 1] = path[k] @ mats[k]
    lam = np.empty((K + 1, S, reads.shape[2]))
    lam[K] = reads[K]
    for k in range(K - 1, 0, -1):
        lam[k] = reads[k] + mats[k] @ lam[k + 1]
    return path, lam


def aj_sensitivities(mats: np.ndarray, p0: np.ndarray, pairs: Sequence[tuple[int, int]],
                     reads: np.ndarray) -> np.ndarray:
    """``dF_f / d dA_j(s_k)`` for ``F_f = sum_k reads[k, :, f] . P(s_k)``, ``M_k = I + dA_k``.

    ``mats`` (K, S, S): the one-step matrices; ``P(s_k) = p0 M_1 ... M_k``
    (``P(s_0) = p0``). ``reads`` (K + 1, S, F): how each functional reads each
    ``P(s_k)``. Returns (K, n_transitions, F): ``P_a(s_{k-1}) (lambda_kb -
    lambda_ka)`` for transition ``a -> b`` (the derivative of ``M`` in ``dA_ab``
    is ``E_ab - E_aa``).
    """
    path, lam = _path_and_adjoint(mats, p0, reads)
    K = mats.shape[0]
    out = np.empty((K, len(pairs), reads.shape[2]))
    for j, (a, b) in enumerate(pairs):
        out[:, j, :] = path[:K, a, None] * (lam[1:, b, :] - lam[1:, a, :])
    return out


def summarise(if_total: np.ndarray) -> np.ndarray:
    """Standard errors from per-site influence values (n_units, F)."""
    return np.sqrt(np.einsum("gf,gf->f", if_total, if_total))

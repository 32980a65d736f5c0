"""Firth-penalised Cox partial likelihood (Heinze & Schemper 2001; R ``coxphf``).

The penalised log partial likelihood is ``l*(beta) = l(beta) + 0.5 log det I(beta)``
(Jeffreys' invariant prior), whose maximiser is finite even when the ordinary
partial likelihood is monotone (Firth 1993; Heinze & Schemper 2001, Statist.
Med. 20:2345-2358).  Its score is

    U*_r(beta) = U_r(beta) + 0.5 tr(I(beta)^-1 dI(beta)/dbeta_r),

``coxphf`` steps with the ordinary information ``I(beta)``; with few events
the penalty's curvature is not small beside ``I`` and those steps converge
only linearly (40+ iterations at 6 events), so :func:`evaluate_firth_newton`
uses the Hessian of ``l*`` from differences of the analytic ``U*`` instead
(quadratic convergence; the estimate is the same, the variance reported is
``I(beta_hat)^-1`` as in ``coxphf``).

``dI/dbeta_r`` in the engine's notation (see :mod:`._coxcore`; per pseudo-event
q with hazard increment ``h_q = mw_q / den_q``, ``V_q`` the risk-set moments less
the Efron share of the tied deaths):

    dI_r = sum_q h_q V3_q[r] - sum_q h_q abar_qr V2_q - C_r - C_r'
    C_r  = sum_q h_q V2_q[:, r] abar_q' - sum_q mw_q abar_qr abar_q abar_q'

Every sum over q of a risk-set moment becomes a per-row weight (the cumulative
``h`` or ``h abar`` over the row's at-risk range, Efron-corrected for tied
deaths), so each term is one weighted cross-product over rows: O(n p^3).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla

from . import _coxcore as core

__all__ = ["info_derivatives", "FirthState", "evaluate_firth", "evaluate_firth_newton"]


def _cum_at_risk(pb: core.CoxProblem, per_time: np.ndarray, tied_part: np.ndarray | None
                 ) -> np.ndarray:
    """Per row: sum of ``per_time[k]`` over the row's at-risk event times, Efron-corrected.

    ``tied_part[k]`` (the ``f``-weighted share) is subtracted for deaths at tied times.
    """
    ix = pb.index
    cc = core._cum0(per_time)
    out = cc[ix.b] - cc[ix.a]
    if tied_part is not None and not ix.identity:
        out[ix.tied_rows] -= tied_part[ix.tied_k]
    return out


def info_derivatives(pb: core.CoxProblem, st: core.CoxState) -> np.ndarray:
    """``dI/dbeta_r`` for every r: array (p, p, p), the last index is r."""
    p = pb.x.shape[1]
    r = st.risk_u if pb.unweighted else pb.weights * st.risk_u
    x = pb.x
    roww = r * _cum_at_risk(pb, st.c1, st.c2)              # sum_q h_q (1 - f tied)
    xhaz, mh2, _ = core._death_terms(pb, st)
    w = _cum_at_risk(pb, xhaz, mh2)                        # n x p: sum_q h_q abar_q
    mw = pb.mw
    xt = x.T
    out = np.empty((p, p, p))
    for j in range(p):
        a = (xt * (roww * x[:, j])) @ x
        b = (xt * (r * w[:, j])) @ x
        c = (xt * (r * x[:, j])) @ w - (st.abar.T * (mw * st.abar[:, j])) @ st.abar
        out[:, :, j] = a - b - c - c.T
    return out


@dataclass
class FirthState:
    """A :class:`._coxcore.CoxState` seen through the penalty.

    ``loglik`` and ``score`` are penalised; ``info`` is the ordinary information
    (coxphf's Newton matrix); ``loglik_unpenalised`` and ``base`` keep the rest.
    """

    base: core.CoxState
    loglik: float
    score: np.ndarray
    info: np.ndarray
    loglik_unpenalised: float
    logdet: float

    @property
    def beta(self) -> np.ndarray:
        return self.base.beta


def evaluate_firth(pb: core.CoxProblem, beta: np.ndarray) -> FirthState:
    """Penalised log-likelihood and score at ``beta`` (non-finite if I is not p.d.)."""
    st = core.evaluate(pb, beta)
    try:
        fac = sla.cho_factor(st.info, lower=True, check_finite=True)
    except (np.linalg.LinAlgError, ValueError):
        nan = np.full(beta.size, np.nan)
        return FirthState(st, -np.inf, nan, st.info, st.loglik, -np.inf)
    logdet = 2.0 * float(np.log(np.diag(fac[0])).sum())
    d = info_derivatives(pb, st)
    inv = sla.cho_solve(fac, np.eye(beta.size))
    # tr(I^-1 dI_r) for every r at once
    adj = np.einsum("ab,bar->r", inv, d)
    score = st.score + 0.5 * adj
    if not np.all(np.isfinite(score)):      # numerically singular I: not a usable point
        return FirthState(st, -np.inf, np.full(beta.size, np.nan), st.info, st.loglik, logdet)
    return FirthState(st, st.loglik + 0.5 * logdet, score, st.info, st.loglik, logdet)


def evaluate_firth_newton(pb: core.CoxProblem, beta: np.ndarray,
                          columns: Sequence[int] | None = None) -> FirthState:
    """:func:`evaluate_firth` with ``info`` replaced by minus the Hessian of ``l*``.

    The Hessian is the forward difference of the analytic penalised score
    (one extra evaluation per column), symmetrised; where it is not negative
    definite (far from the maximum) the ordinary information is kept.
    ``columns``: only this block of the Hessian is needed (the free
    coefficients of a restricted fit, :func:`.cox_inference.restricted_fit`):
    the other columns are not differenced and keep the ordinary information,
    and the definiteness check is on the block. The block's entries are the
    same numbers as in the full Hessian.
    """
    fs = evaluate_firth(pb, beta)
    if not np.isfinite(fs.loglik):
        return fs
    cols = list(range(beta.size)) if columns is None else list(columns)
    k = len(cols)
    hess = np.empty((k, k))
    for c, r in enumerate(cols):
        h = 1e-6 * (1.0 + abs(beta[r]))
        e = beta.copy()
        e[r] += h
        hess[:, c] = (evaluate_firth(pb, e).score[cols] - fs.score[cols]) / h
    neg = -(hess + hess.T) / 2
    if np.all(np.isfinite(neg)):
        try:
            sla.cho_factor(neg, lower=True)
        except np.linalg.LinAlgError:
            return fs
        if k == beta.size:
            fs.info = neg
        else:
            info = fs.info.copy()
            info[np.ix_(cols, cols)] = neg
            fs.info = info
    return fs

"""Inner fit of a penalised (frailty) Cox model at fixed theta, as R ``agfit5``.

Model: ``eta_i = x_i'beta + offset_i + f_{g_i}`` with one frailty coefficient
``f_j`` per group ``j = 0..q-1``; the penalised partial log-likelihood is
``PPL = loglik(beta, f) - pen(f)`` with, for variance ``theta``:

* gamma frailty (R ``frailty.gamma``): ``f`` recentred so that
  ``mean(exp f) = 1``, ``pen = -sum(f) / theta`` (R drops the constant
  ``sum(exp f) / theta``), first derivative ``(exp f - 1) / theta``, second
  ``exp(f) / theta``;
* Gaussian frailty (R ``frailty.gaussian``): ``f`` recentred to mean 0,
  ``pen = 0.5 sum(f^2 / theta + log(2 pi theta))``, derivatives ``f / theta``
  and ``1 / theta``.

``theta = 0`` fixes ``f`` (R's penalty ``flag``).

Two evaluators give the likelihood, score and (penalised) information:

* :class:`SparseFrailty` (R ``sparse = TRUE``, the default for more than 5
  groups): the frailty-by-frailty block of the information is replaced by
  its diagonal (R's ``fdiag``), the beta-by-frailty block is kept.  Every
  frailty term is a per-group sum (``np.bincount``), except the squared
  risk-set shares ``sum_k c_k (S0_jk / den_k)^2`` of the diagonal, which use
  that ``S0_jk`` (group j's risk at event time k) is piecewise constant in k
  between the entries and exits of the group's rows: one sort of the 2n row
  end points by (group, event index) at set-up, then per evaluation a
  cumulative sum over them and a cumulative sum over event times.  Cost
  O(n) per evaluation, memory O(n p + q p); R loops over groups at every
  death, O(deaths * q).
* :class:`DenseFrailty` (R ``sparse = FALSE``, at most 5 groups): the groups
  are indicator columns of the design and the full information is used.

:func:`newton_agfit5` is R's ``agfit5b`` iteration: start from ``init``;
at each step recentre ``f``, evaluate, stop when
``|1 - PPL_old / PPL_new| <= eps`` after a full step; a step that lowers the
PPL is halved toward the previous point (``(old + new) / 2``, repeatedly);
otherwise take the Newton step ``H^-1 U`` with the (sparse) information.

With case weights R's ``fdiag`` sums ``s (1 - s)`` over the deaths of a time
without the mean death weight; this is reproduced (the fixed point is the
same, R's path, iteration counts and standard errors are matched).  Not
reproduced: agfit5b's Efron denominator for weighted tied deaths,
``S0 - f sum(r_i w_i)``, which makes R's likelihood with weights and tied
event times differ from its own ``coxph`` without frailty (and its inner loop
fail to converge); here it is the textbook ``S0 - f sum(r_i)``, as in
:func:`imrsurv.fit_cox` and R ``coxph`` without frailty.  Without weights
everything equals R.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla

from . import _coxcore as core

__all__ = ["Penalty", "SparseFrailty", "DenseFrailty", "InnerFit", "newton_agfit5",
           "Singular"]


class Singular(ArithmeticError):
    """The penalised information is not positive definite; ``columns`` the failing pivots."""

    def __init__(self, columns: list[int], frailty: bool):
        super().__init__("penalised information matrix is singular")
        self.columns = columns
        self.frailty = frailty


@dataclass(frozen=True)
class Penalty:
    """Frailty penalty of one distribution at variance ``theta`` (see module docstring)."""

    distribution: str
    theta: float

    @property
    def flag(self) -> bool:
        return self.theta == 0

    def recenter(self, f: np.ndarray) -> np.ndarray:
        if self.flag:
            return f
        if self.distribution == "gamma":
            m = float(np.max(f))
            return f - (m + np.log(np.mean(np.exp(f - m))))
        return f - float(np.mean(f))

    def terms(self, f: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """(penalty, first, second derivative) at recentred ``f``; PPL = loglik - penalty."""
        th = self.theta
        if self.distribution == "gamma":
            ef = np.exp(f)
            return -float(np.sum(f)) / th, (ef - 1) / th, ef / th
        return (0.5 * float(np.sum(f * f / th + np.log(2 * np.pi * th))), f / th,
                np.full(f.size, 1.0 / th))


@dataclass
class State:
    """Everything at one (beta, f): R's newlk, u and information pieces."""

    beta: np.ndarray
    f: np.ndarray
    loglik: float            # partial log-likelihood, no penalty
    penalty: float           # PPL = loglik - penalty
    u_beta: np.ndarray
    u_f: np.ndarray
    a: np.ndarray            # beta x beta information (p x p)
    b: np.ndarray            # beta x frailty block (p x q); full info in the dense case
    d: np.ndarray            # frailty diagonal (q) incl. penalty; dense: full q x q
    second: np.ndarray       # penalty second derivative (q)

    @property
    def ppl(self) -> float:
        return self.loglik - self.penalty


def _ttimes(ix: core.RiskIndex, v: np.ndarray) -> np.ndarray:
    """Sum per-pseudo-event values (1-d or 2-d) within each event time."""
    return core._pseudo_sum(ix, v)


class SparseFrailty:
    """R's sparse frailty evaluator (see the module docstring); data of one fit."""

    def __init__(self, pb: core.CoxProblem, group: np.ndarray, q: int):
        ix = pb.index
        self.pb, self.g, self.q = pb, group, q
        k = ix.n_times
        self.k = k
        self.gd = group[ix.death_rows]
        self.dw = np.bincount(self.gd, pb.wdead, minlength=q)   # weighted deaths per group
        self.gt = group[ix.tied_rows]
        # R's fdiag weight per pseudo-event: 1 per death (not the mean death weight)
        self.c = (ix.d / ix.pcount)[ix.pk].astype(float)
        # end points of every row, sorted by (group, event index)
        key = np.concatenate([group * np.int64(k + 1) + ix.a, group * np.int64(k + 1) + ix.b])
        self.seg_order = np.argsort(key, kind="stable")
        skey = key[self.seg_order]
        self.seg_key = skey
        self.seg_k = np.concatenate([ix.a, ix.b])[self.seg_order]
        sg = np.concatenate([group, group])[self.seg_order]
        self.seg_g = sg
        last = np.r_[sg[1:] != sg[:-1], True]      # last end point of its group
        self.seg_next = np.where(last, self.seg_k, np.r_[self.seg_k[1:], 0])
        self.seg_first = np.r_[0, np.flatnonzero(sg[1:] != sg[:-1]) + 1]
        self.seg_first_of = np.repeat(self.seg_first, np.diff(np.r_[self.seg_first, sg.size]))
        # (event time, group) pairs with tied deaths (Efron cross terms)
        if not ix.identity and pb.efron:
            pair = ix.tied_k * np.int64(q) + self.gt
            upair, self.pair_inv = np.unique(pair, return_inverse=True)
            self.pair_k, self.pair_g = upair // q, upair % q
            pos = np.searchsorted(skey, self.pair_g * np.int64(k + 1) + self.pair_k, side="right")
            self.pair_seg = pos - 1
        else:
            self.pair_k = np.zeros(0, np.int64)

    def evaluate(self, beta: np.ndarray, f: np.ndarray, pen: Penalty) -> State:
        """Log-likelihood, score and sparse information at (beta, f)."""
        pb, ix, g, q, k = self.pb, self.pb.index, self.g, self.q, self.k
        p = beta.size
        eta = pb.x @ beta + pb.offset + f[g]
        if pb.n_strata == 1:
            shift = np.array([eta.mean()])
            risk_u = np.exp(eta - shift[0])
        else:
            cnt = np.bincount(pb.strata, minlength=pb.n_strata)
            shift = np.bincount(pb.strata, eta, minlength=pb.n_strata) / np.maximum(cnt, 1)
            risk_u = np.exp(eta - shift[pb.strata])
        r = risk_u if pb.unweighted else pb.weights * risk_u
        s0, s1 = core._riskset_sums(ix, r, pb.x)
        mw = pb.mw
        if ix.identity:
            den, num1 = s0, s1
            e0 = np.zeros(k)
            rt = np.zeros(0)
        else:
            rt = r[ix.tied_rows]
            e0 = np.bincount(ix.tied_k, rt, minlength=k)
            e1 = core._by_time(ix.tied_k, rt[:, None] * pb.xt, k)
            ek, ef = ix.extra_k, ix.extra_frac
            den = np.concatenate([s0, s0[ek] - ef * e0[ek]])
            num1 = np.concatenate([s1, s1[ek] - ef[:, None] * e1[ek]])
        abar = num1 / den[:, None]
        logden = np.log(den) + shift[ix.event_stratum[ix.pk]]
        loglik = float(pb.wdead @ eta[ix.death_rows] - mw @ logden)
        u_beta = pb.xd_sum - mw @ abar

        def rowsum(per_p: np.ndarray) -> np.ndarray:
            """r_i * sum_{p: i at risk} per_p, minus f_p times it for i dying at a tied time."""
            c1 = _ttimes(ix, per_p)
            cc = core._cum0(c1)
            out = r[:, None] * (cc[ix.b] - cc[ix.a]) if per_p.ndim == 2 else \
                r * (cc[ix.b] - cc[ix.a])
            if not ix.identity:
                c2 = core._by_time(ix.extra_k, per_p[k:] * (ix.extra_frac if per_p.ndim == 1
                                                         else ix.extra_frac[:, None]), k)
                out[ix.tied_rows] -= (rt * c2[ix.tied_k]) if per_p.ndim == 1 else \
                    rt[:, None] * c2[ix.tied_k]
            return out

        hj = mw / den
        roww = rowsum(hj)
        a = core._weighted_gram(pb.x, roww) - (abar.T * mw) @ abar
        a = (a + a.T) / 2
        u_f = self.dw - np.bincount(g, roww, minlength=q)
        # beta x frailty: sum_p mw [(S1_j - f E1_j)/den - abar (S0_j - f E0_j)/den]
        b = np.empty((p, q))
        rg = rowsum(hj[:, None] * abar) if p else np.zeros((pb.index.n, 0))
        for c in range(p):
            b[c] = np.bincount(g, roww * pb.x[:, c] - rg[:, c], minlength=q)
        # frailty diagonal, R's weights c_p: sum_p c [s/den - (s/den)^2], s = S0_j - f E0_j
        cden = self.c / den
        lin = np.bincount(g, roww if pb.unweighted else rowsum(cden), minlength=q)
        quad, s0_seg = self._squares(r, _ttimes(ix, cden / den))
        if self.pair_k.size:
            # Efron: the tied deaths' own risk E0_jk enters s = S0_jk - f E0_jk
            e0j = np.bincount(self.pair_inv, rt, minlength=self.pair_k.size)
            s0j = s0_seg[self.pair_seg]
            q1 = core._by_time(ix.extra_k, ix.extra_frac * cden[k:] / den[k:], k)
            q2 = core._by_time(ix.extra_k, ix.extra_frac ** 2 * cden[k:] / den[k:], k)
            pk = self.pair_k
            quad += np.bincount(self.pair_g, -2 * s0j * e0j * q1[pk] + e0j * e0j * q2[pk],
                                minlength=q)
        fd = lin - quad
        return self._penalise(beta, f, loglik, u_beta, u_f, a, b, fd, pen)

    def _squares(self, r: np.ndarray, qk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``sum_k qk[k] S0_jk^2`` per group j, S0_jk the risk of group j's rows at time k.

        Also returns S0 of each sorted end point's group on ``[seg_k, seg_next)``.
        """
        cs = np.cumsum(np.concatenate([r, -r])[self.seg_order])
        # restart the running sum at each group (its entries and exits cancel, up to rounding)
        v = cs - np.where(self.seg_first_of > 0, cs[self.seg_first_of - 1], 0.0)
        qc = core._cum0(qk)
        quad = np.bincount(self.seg_g, v * v * (qc[self.seg_next] - qc[self.seg_k]),
                           minlength=self.q)
        return quad, v

    def _penalise(self, beta, f, loglik, u_beta, u_f, a, b, fd, pen: Penalty) -> State:
        q = self.q
        if pen.flag:
            return State(beta, f, loglik, 0.0, u_beta, np.zeros(q), a, np.zeros_like(b),
                         np.ones(q), np.zeros(q))
        penalty, first, second = pen.terms(f)
        return State(beta, f, loglik, penalty, u_beta, u_f - first, a, b, fd + second, second)

    @staticmethod
    def solve(st: State) -> tuple[np.ndarray, np.ndarray, dict]:
        """Newton step (beta, f) with the sparse information; also its inverse pieces."""
        d, b, a = st.d, st.b, st.a
        bad_f = np.flatnonzero(~(d > 0))
        if bad_f.size:
            raise Singular(bad_f.tolist(), frailty=True)
        m = b / d                            # p x q
        schur = a - m @ b.T
        fac = _cholesky(schur)
        sb = sla.cho_solve(fac, st.u_beta - m @ st.u_f)
        sf = (st.u_f - b.T @ sb) / d
        return sb, sf, {"fac": fac, "m": m}

    @staticmethod
    def inverse(st: State, parts: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(beta block C, frailty-by-beta block B, diagonal of the frailty block) of H^-1."""
        p = st.a.shape[0]
        c = sla.cho_solve(parts["fac"], np.eye(p))
        c = (c + c.T) / 2
        m = parts["m"]
        bfb = -(m.T @ c)                     # q x p
        fdiag = 1.0 / st.d + np.einsum("jq,jq->q", m, c @ m)
        return c, bfb, fdiag


TOLER_CHOL = float(np.finfo(float).eps) ** 0.75   # R coxph.control(toler.chol)


def _cholesky(h: np.ndarray):
    """Cholesky factor of ``h``; :class:`Singular` naming the pivots R's ``cholesky2`` drops.

    As R, a pivot (``L_ii^2``) below ``toler.chol * max |h_ii|`` marks its column
    as not estimable (R then sets the coefficient to NA; here it is an error).
    """
    if h.shape[0] == 0:
        return (np.zeros((0, 0)), True)
    if not np.all(np.isfinite(h)):
        raise Singular(list(range(h.shape[0])), frailty=False)
    tol = TOLER_CHOL * float(np.max(np.abs(np.diag(h))))
    try:
        fac = sla.cho_factor(h, lower=True, check_finite=False)
    except np.linalg.LinAlgError:
        fac = None
    if fac is not None:
        bad = np.flatnonzero(np.diag(fac[0]) ** 2 < tol)
        if not bad.size:
            return fac
        raise Singular(bad.tolist(), frailty=False)
    # not positive definite: find the failing pivots as R's cholesky2 does
    m = np.array(h, float)
    n, bad_l = m.shape[0], []
    for i in range(n):          # p is small: a Python loop over columns is fine
        piv = m[i, i]
        if not np.isfinite(piv) or piv < tol:
            bad_l.append(i)
            m[i, :] = m[:, i] = 0.0
            continue
        col = m[i + 1:, i] / piv
        m[i + 1:, i + 1:] -= np.outer(col, m[i, i + 1:])
    raise Singular(bad_l or list(range(n)), frailty=False)


class DenseFrailty:
    """R's non-sparse frailty (at most 5 groups): indicator columns, full information."""

    def __init__(self, pb: core.CoxProblem, group: np.ndarray, q: int):
        p = pb.x.shape[1]
        z = np.zeros((group.size, q))
        z[np.arange(group.size), group] = 1.0
        zc = z - (pb.weights @ z / pb.weights.sum())
        self.p, self.q = p, q
        self.aug = core.CoxProblem(
            x=np.asfortranarray(np.hstack([pb.x, zc])),
            centers=np.hstack([pb.centers, np.zeros((pb.n_strata, q))]),
            weights=pb.weights, offset=pb.offset, strata=pb.strata, n_strata=pb.n_strata,
            index=pb.index, start=pb.start, stop=pb.stop, event=pb.event, efron=pb.efron)

    def evaluate(self, beta: np.ndarray, f: np.ndarray, pen: Penalty) -> State:
        """Log-likelihood, score and full information at (beta, f)."""
        p, q = self.p, self.q
        st = core.evaluate(self.aug, np.r_[beta, f])
        info, score = st.info, st.score
        a, b, d = info[:p, :p], info[:p, p:], info[p:, p:].copy()
        u_f = score[p:].copy()
        if pen.flag:
            return State(beta, f, st.loglik, 0.0, score[:p], np.zeros(q), a, np.zeros((p, q)),
                         np.eye(q), np.zeros(q))
        penalty, first, second = pen.terms(f)
        d[np.arange(q), np.arange(q)] += second
        return State(beta, f, st.loglik, penalty, score[:p], u_f - first, a, b, d, second)

    def solve(self, st: State) -> tuple[np.ndarray, np.ndarray, dict]:
        p = self.p
        h = np.block([[st.a, st.b], [st.b.T, st.d]])
        try:
            fac = _cholesky(h)
        except Singular as exc:
            beta_cols = [i for i in exc.columns if i < p]
            if beta_cols or not exc.columns:
                raise Singular(beta_cols, frailty=False) from None
            raise Singular([i - p for i in exc.columns], frailty=True) from None
        step = sla.cho_solve(fac, np.r_[st.u_beta, st.u_f])
        return step[:p], step[p:], {"fac": fac}

    def inverse(self, st: State, parts: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        p = self.p
        hinv = sla.cho_solve(parts["fac"], np.eye(p + self.q))
        hinv = (hinv + hinv.T) / 2
        return hinv[:p, :p], hinv[p:, :p], np.diag(hinv)[p:].copy()


@dataclass
class InnerFit:
    """Result of :func:`newton_agfit5` at one theta."""

    state: State
    parts: dict
    iterations: int
    converged: bool


def newton_agfit5(model: SparseFrailty | DenseFrailty, pen: Penalty, beta0: np.ndarray,
                  f0: np.ndarray, max_iter: int, eps: float) -> InnerFit:
    """R's ``agfit5b`` iteration (see the module docstring)."""
    beta, f = beta0.astype(float).copy(), f0.astype(float).copy()
    q = f.size
    old = np.r_[f, beta]     # R's oldbeta: frailties first
    best = 0.0     # R's *loglik starts at 0, so iteration 0 never stops
    halving = False
    evaluate: Callable[..., State] = model.evaluate
    st, parts, it = None, None, 0
    for it in range(max_iter + 1):
        f = pen.recenter(f)
        st = evaluate(beta, f, pen)
        new = st.ppl
        sb, sf, parts = model.solve(st)
        if not halving and abs(1 - best / new) <= eps:
            return InnerFit(st, parts, it, True)
        if it == max_iter:
            break
        if it > 0 and (new < best or not np.isfinite(new)):
            halving = True
            beta, f = (old[q:] + beta) / 2, (old[:q] + f) / 2
        else:
            halving, best = False, new
            old = np.r_[f, beta]
            beta, f = beta + sb, f + sf
    assert st is not None and parts is not None
    return InnerFit(st, parts, it, False)

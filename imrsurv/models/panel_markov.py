"""Continuous-time Markov multi-state model for states seen only at interviews.

The method of R ``msm`` (Jackson 2011, J Stat Softw 38(8); Kalbfleisch &
Lawless 1985, JASA 80:863-871). Transition intensities

    q_rs(t, x) = exp(theta_rs + x' beta_rs + gamma_{period(t), rs})

for the declared transitions r -> s, with ``x`` the covariates at the start of
each interval between two interviews (piecewise constant, as msm), and an
optional piecewise-constant baseline by period (msm's ``pci=``: cut points,
effects ``gamma`` relative to the first period). Q(t) has these off-diagonal
entries and rows summing to 0. The likelihood is the product over consecutive
interviews (t_j, s_j) -> (t_{j+1}, s_{j+1}) of

* obstype 1 (interview): P(t_j, t_{j+1})[s_j, s_{j+1}],
* obstype 2 (exact transition time): exp(q_rr dt) q_rs (exp(q_rr dt) if r = s),
* obstype 3 (exact entry into absorbing s): sum_{k != s} P(t_j, t_{j+1})[r, k] q_ks,

with P the product of ``expm(Q_p dt_p)`` over the periods crossed. The
log-likelihood is maximised by BFGS on (log intensities, log hazard ratios)
with its gradient by the complex step (exact to rounding, Squire & Trapp
1998), then polished by Newton steps on a numerical Hessian (central
differences of that gradient); standard errors from that Hessian, as msm's
``hessian=TRUE``: cov = inverse of the observed information.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize, stats

from ..errors import ArgumentError, DataError, bad_argument, check_choice, check_number
from ..waves import Waves, read_waves
from ._result import ResultProtocol, coef_table, forest_plot

__all__ = ["PanelMarkovResult", "PMatrix", "fit_panel_markov", "expm_stack"]

BASELINE = "baseline"
_STEP = 1e-20          # complex step
_LOGQ_ZERO = -12.0     # log intensity below this: the intensity runs to 0
_BETA_DIVERGES = 12.0  # |log HR| above this: it runs to infinity
_CHUNK = 200_000       # intervals x directions per batch of matrix exponentials


def expm_stack(a: np.ndarray) -> np.ndarray:
    """``expm`` of every matrix in a stack (..., n, n), real or complex.

    Scaling and squaring with the degree-16 Taylor polynomial at infinity norm
    <= 1/2 (truncation < 1e-19), evaluated by Paterson-Stockmeyer (7 products);
    the number of squarings comes from the real part so that a complex step
    does not change it, and only products and sums are used, so the imaginary
    part of a complex step keeps full relative accuracy.
    """
    shape = a.shape
    n = shape[-1]
    a = a.reshape(-1, n, n)
    norm = np.abs(a.real).sum(axis=2).max(axis=1) if a.size else np.zeros(0)
    sq = np.maximum(0, np.ceil(np.log2(np.maximum(norm, 1e-300) / 0.5))).astype(int)
    b = a / (2.0 ** sq)[:, None, None]
    eye = np.eye(n)
    b2 = b @ b
    b3 = b2 @ b
    b4 = b3 @ b
    c = 1.0 / np.cumprod(np.r_[1.0, np.arange(1, 17)])    # 1/k!, k = 0..16

    def block(j: int) -> np.ndarray:
        return c[4 * j] * eye + c[4 * j + 1] * b + c[4 * j + 2] * b2 + c[4 * j + 3] * b3

    out = block(3) + c[16] * b4
    for j in (2, 1, 0):
        out = block(j) + out @ b4
    for j in range(int(sq.max()) if sq.size else 0):
        sel = sq > j
        out[sel] = out[sel] @ out[sel]
    return out.reshape(shape)


@dataclass
class _Problem:
    """Arrays of the likelihood: one row per interval, one column per period piece."""

    n: int
    trans: list[tuple[int, int]]
    r: np.ndarray            # (G,) from-state
    s: np.ndarray            # (G,) to-state
    obstype: np.ndarray      # (G,)
    length: np.ndarray       # (G, M) piece lengths (0 = padding)
    z: np.ndarray            # (G, M, K) covariates and period dummies of each piece
    last: np.ndarray         # (G,) index of the last non-empty piece
    free: np.ndarray         # (K, nq) bool: which effects are estimated

    @property
    def nq(self) -> int:
        return len(self.trans)

    def full(self, phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, npar) free parameters -> theta (B, nq), beta (B, K, nq)."""
        nq = self.nq
        theta = phi[:, :nq]
        k = self.z.shape[2]
        beta = np.zeros((phi.shape[0], k, nq), dtype=phi.dtype)
        beta[:, self.free] = phi[:, nq:]
        return theta, beta

    def qmats(self, phi: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Q for parameters (B, npar) and one covariate row z (1, K): shape (B, 1, n, n)."""
        theta, beta = self.full(phi)
        logq = theta + np.einsum("k,bkq->bq", z[0], beta)
        return self._q_from_logq(logq)[:, None]

    def logq(self, phi: np.ndarray) -> np.ndarray:
        """Log intensities of every piece: (B, G, M, nq)."""
        theta, beta = self.full(phi)
        return theta[:, None, None, :] + np.einsum("gmk,bkq->bgmq", self.z, beta)

    def _q_from_logq(self, logq: np.ndarray) -> np.ndarray:
        q = np.exp(logq)
        out = np.zeros(q.shape[:-1] + (self.n, self.n), dtype=q.dtype)
        for k, (a, b) in enumerate(self.trans):
            out[..., a, b] = q[..., k]
            out[..., a, a] -= q[..., k]
        return out

    def contributions(self, logq: np.ndarray, rows: slice = slice(None)) -> np.ndarray:
        """Likelihood contribution of intervals ``rows`` (B, G') from their log
        intensities (B, G', M, nq)."""
        r, s, obstype = self.r[rows], self.s[rows], self.obstype[rows]
        length, last = self.length[rows], self.last[rows]
        q = self._q_from_logq(logq)                             # (B, G', M, n, n)
        g = np.arange(r.size)
        p = expm_stack(q * length[None, :, :, None, None])
        tot = p[:, :, 0]
        for m in range(1, p.shape[2]):
            tot = tot @ p[:, :, m]
        qlast = q[:, g, last]                                   # (B, G', n, n)
        contrib = tot[:, g, r, s]
        three = obstype == 3
        if three.any():
            pq = np.einsum("bgk,bgk->bg", tot[:, g, r], np.swapaxes(qlast, -1, -2)[:, g, s])
            contrib = np.where(three[None], pq, contrib)
        two = obstype == 2
        if two.any():
            stay = np.exp((q[:, g[:, None], np.arange(q.shape[2])[None], r[:, None],
                             r[:, None]] * length[None]).sum(axis=2))
            move = np.where(r == s, 1.0, qlast[:, g, r, s])
            contrib = np.where(two[None], stay * move, contrib)
        return contrib

    def value_grad(self, phi: np.ndarray) -> tuple[float, np.ndarray]:
        """-2 log L and its gradient.

        Complex steps in the log intensity of each transition and period piece
        (nq * M evaluations, whatever the number of covariates), then the chain
        rule: d/d theta_k = sum over pieces, d/d beta_ck = sum of z_c times them.
        Intervals are taken in chunks so that memory stays bounded.
        """
        lq = self.logq(phi[None])[0]                            # (G, M, nq)
        g, m, nq = lq.shape
        eye = np.eye(m * nq).reshape(m * nq, 1, m, nq)
        chunk = max(1, _CHUNK // (m * nq * m))
        val = 0.0
        d = np.empty((g, m, nq))
        for a in range(0, g, chunk):
            rows = slice(a, min(g, a + chunk))
            contrib = self.contributions(lq[None, rows] + 1j * _STEP * eye, rows)
            if not np.all(contrib.real > 0):
                return np.inf, np.zeros(phi.size)
            ll = np.log(contrib)                                # (m * nq, G')
            val += float(ll[0].real.sum())
            d[rows] = (ll.imag / _STEP).T.reshape(-1, m, nq)    # d log L_i / d log q_{i,m,k}
        dbeta = np.einsum("gmk,gmq->kq", self.z, d)
        grad = np.r_[d.sum(axis=(0, 1)), dbeta[self.free]]
        return -2 * val, -2 * grad

    def hessian(self, phi: np.ndarray) -> np.ndarray:
        """Hessian of -2 log L: central differences of the complex-step gradient."""
        k = phi.size
        h = np.empty((k, k))
        for j in range(k):
            d = 1e-4 * max(1.0, abs(phi[j]))
            e = np.zeros(k)
            e[j] = d
            h[:, j] = (self.value_grad(phi + e)[1] - self.value_grad(phi - e)[1]) / (2 * d)
        return (h + h.T) / 2


def _logit_limits(p: np.ndarray, se: np.ndarray, zq: float) -> tuple[np.ndarray, np.ndarray]:
    """Delta-method limits on the logit scale, ``expit(logit p -/+ z se / (p (1 - p)))``:
    inside (0, 1) and asymmetric near the bounds; a probability of exactly 0 or 1
    (a structural zero, an absorbing state) keeps that value."""
    p = np.asarray(p, float)
    inner = (p > 1e-12) & (p < 1 - 1e-12)
    lo, hi = p.copy(), p.copy()
    pi = p[inner]
    lg = np.log(pi / (1 - pi))
    w = zq * np.asarray(se, float)[inner] / (pi * (1 - pi))
    lo[inner] = 1 / (1 + np.exp(-(lg - w)))
    hi[inner] = 1 / (1 + np.exp(-(lg + w)))
    return lo, hi


@dataclass
class PMatrix:
    """Transition probabilities P(t0, t0 + t) with pointwise limits (``method``)."""

    t: float
    t0: float
    estimate: pd.DataFrame
    lower: pd.DataFrame | None
    upper: pd.DataFrame | None
    se: pd.DataFrame | None
    method: str

    def __repr__(self) -> str:
        head = f"P({self.t0:g}, {self.t0 + self.t:g}), rows: from, columns: to"
        if self.lower is None:
            return f"{head}\n{self.estimate.round(4).to_string()}"
        cells = self.estimate.copy().astype(object)
        for a in cells.index:
            for b in cells.columns:
                cells.loc[a, b] = (f"{self.estimate.loc[a, b]:.4f} ({self.lower.loc[a, b]:.4f}"
                                   f"-{self.upper.loc[a, b]:.4f})")
        return f"{head}; 95% limits: {self.method}\n{cells.to_string()}"


@dataclass
class PanelMarkovResult(ResultProtocol):
    """Fitted panel-observed Markov model (result protocol).

    ``summary`` is indexed by (transition, term): term ``baseline`` rows hold
    the log intensity per year at covariates 0 (``exp(coef)`` = intensity;
    no z or p: a test of q = 1 means nothing), the others log hazard ratios.
    """

    states: tuple[str, ...]
    transitions: list[tuple[str, str]]
    terms: list[str]
    params: pd.Series
    cov: pd.DataFrame
    loglik: float
    converged: bool
    n_sites: int
    n_intervals: int
    notes: list[str]
    note: pd.Series
    cuts: np.ndarray
    _problem: _Problem = field(repr=False)
    _design: Any = field(repr=False, default=None)
    _phi: np.ndarray = field(repr=False, default=None)
    iterations: int = 0

    @property
    def minus2loglik(self) -> float:
        return -2 * self.loglik

    @property
    def se(self) -> pd.Series:
        return pd.Series(np.sqrt(np.clip(np.diag(self.cov.to_numpy()), 0, None)),
                         index=self.params.index, name="se")

    @property
    def summary(self) -> pd.DataFrame:
        sm = coef_table(self.params, self.se, note=self.note)
        base = sm.index.get_level_values("term") == BASELINE
        sm.loc[base, ["z", "p"]] = np.nan
        return sm

    def _header(self) -> str:
        conv = "converged" if self.converged else "NOT converged"
        return (f"Panel-observed Markov model (msm method), {self.n_sites} sites, "
                f"{self.n_intervals} intervals between interviews\n"
                f"  states: {', '.join(self.states)}; -2 log L = {self.minus2loglik:.6g} "
                f"({conv})")

    def summary_text(self) -> str:
        """Header, table (rows named "from -> to: term") and notes, as plain text."""
        from ._result import format_table

        sm = self.summary
        sm.index = [f"{a}: {b}" for a, b in sm.index]
        return "\n".join([self._header(), "", format_table(sm), "", "Notes:"]
                         + [f"  - {n}" for n in self.notes])

    def __repr__(self) -> str:
        return self.summary_text()

    # ------------------------------------------------------------ predictions

    def _z(self, covariates: Mapping[str, Any] | None, period: int) -> np.ndarray:
        k = self._problem.z.shape[2]
        z = np.zeros(k)
        ncov = len(self.terms) - max(len(self.cuts), 0)
        if covariates:
            if self._design is None:
                raise ArgumentError([f"covariates={dict(covariates)!r} given, but the model "
                                     "has no covariates"])
            unknown = [c for c in covariates if c not in self._design.columns_read]
            if unknown:
                raise ArgumentError([f"covariates: {', '.join(map(str, unknown))} not in the "
                                     "model (it reads "
                                     f"{', '.join(self._design.columns_read)})"])
            values = {c: 0 for c in self._design.columns_read} | dict(covariates)
            z[:ncov] = self._design.transform(pd.DataFrame([values]))[0]
        if isinstance(period, bool) or not isinstance(period, (int, np.integer)) or \
                not 0 <= period <= len(self.cuts):
            raise bad_argument("period", period, f"a whole number from 0 to {len(self.cuts)} "
                               "(0 = before the first cut point)")
        if period > 0:
            z[ncov + period - 1] = 1.0
        return z

    def _check_cov(self, covariates: Mapping[str, Any] | None) -> None:
        if covariates is not None and not isinstance(covariates, Mapping):
            raise bad_argument("covariates", covariates, "a dict {column: value} or None")

    def qmatrix(self, covariates: Mapping[str, Any] | None = None, *, period: int = 0,
                level: float = 0.95) -> pd.DataFrame:
        """Intensities per year with delta-method SE and limits exp(log q -/+ z se_log).

        At ``covariates`` (raw column values; missing ones at 0) and in
        ``period`` (0 = before the first cut). A row with a note is NaN.
        """
        self._check_cov(covariates)
        z = self._z(covariates, period)
        pr = self._problem
        nq = pr.nq
        phi = self._phi
        theta, beta = pr.full(phi[None])
        logq = theta[0] + z @ beta[0]
        # d log q_k / d phi: the rows of [I, z (x) I] restricted to free effects
        jac = np.zeros((nq, phi.size))
        jac[:, :nq] = np.eye(nq)
        full_idx = np.flatnonzero(pr.free.ravel())
        for col, flat in enumerate(full_idx):
            kk, qq = divmod(flat, nq)
            jac[qq, nq + col] = z[kk]
        v = jac @ self.cov.to_numpy() @ jac.T
        se_log = np.sqrt(np.clip(np.diag(v), 0, None))
        q = np.exp(logq)
        zq = stats.norm.ppf(0.5 + level / 2)
        with np.errstate(over="ignore"):   # a non-converged row: its cells are NaN below
            out = pd.DataFrame({"estimate": q, "se": q * se_log,
                                "lower": np.exp(logq - zq * se_log),
                                "upper": np.exp(logq + zq * se_log)},
                               index=[f"{a} -> {b}" for a, b in self.transitions])
        out.index.name = "transition"
        bad = self._bad_transitions()
        out["note"] = ["" if t not in bad else bad[t] for t in out.index]
        out.loc[out["note"] != "", ["se", "lower", "upper"]] = np.nan
        return out

    @property
    def intensities(self) -> pd.DataFrame:
        """:meth:`qmatrix` at covariates 0, first period."""
        return self.qmatrix()

    def _bad_transitions(self) -> dict[str, str]:
        note = self.note
        out: dict[str, str] = {}
        for (tr, term), v in note.items():
            if v and tr not in out:
                out[tr] = v if term == BASELINE else f"{term}: {v}"
        return out

    def _pieces(self, t0: float, t1: float) -> list[tuple[float, int]]:
        edges = np.r_[t0, self.cuts[(self.cuts > t0) & (self.cuts < t1)], t1]
        return [(float(b - a), int(np.searchsorted(self.cuts, a, side="right")))
                for a, b in zip(edges[:-1], edges[1:], strict=True)]

    def _pmat(self, phi: np.ndarray, t: float, t0: float,
              covariates: Mapping[str, Any] | None) -> np.ndarray:
        """P(t0, t0 + t) for each row of phi: (B, n, n)."""
        out = None
        for length, period in self._pieces(t0, t0 + t):
            z = self._z(covariates, period)
            q = self._problem.qmats(phi, z[None])[:, 0]
            p = expm_stack(q * length)
            out = p if out is None else out @ p
        if out is None:
            out = np.broadcast_to(np.eye(len(self.states)), (phi.shape[0],) + (len(self.states),) * 2)
        return out

    def pmatrix(self, t: float, *, t0: float = 0.0, covariates: Mapping[str, Any] | None = None,
                ci: str = "delta", n_sim: int = 1000, seed: int | None = None,
                level: float = 0.95) -> PMatrix:
        """Transition probabilities P(t0, t0 + t) (msm ``pmatrix.msm`` /
        ``pmatrix.piecewise.msm``) at ``covariates`` (raw values; others 0).

        ``ci``: ``"none"``; ``"delta"`` (SE by the delta method, gradient by the
        complex step; limits on the logit scale, see :func:`_logit_limits`); ``"normal"``
        (msm's ``ci="normal"``: ``n_sim`` draws of the parameters from their
        asymptotic normal distribution, pointwise quantiles; ``seed`` required).
        """
        check_number("t", t, minimum=0)
        check_number("t0", t0)
        check_choice("ci", ci, ("none", "delta", "normal"))
        self._check_cov(covariates)
        phi = self._phi
        est = self._pmat(phi[None], float(t), float(t0), covariates)[0].real
        names = list(self.states)

        def frame(a: np.ndarray) -> pd.DataFrame:
            f = pd.DataFrame(a, index=names, columns=names)
            f.index.name, f.columns.name = "from", "to"
            return f

        lo = hi = se = None
        zq = stats.norm.ppf(0.5 + level / 2)
        if ci == "delta":
            k = phi.size
            batch = phi[None, :] + 1j * _STEP * np.eye(k)
            jac = (self._pmat(batch, float(t), float(t0), covariates).imag / _STEP)
            jac = jac.reshape(k, -1).T                          # (n*n, k)
            var = np.einsum("ij,jk,ik->i", jac, self.cov.to_numpy(), jac)
            se_a = np.sqrt(np.clip(var, 0, None)).reshape(est.shape)
            lo, hi = _logit_limits(est, se_a, zq)
            se = frame(se_a)
        elif ci == "normal":
            if seed is None:
                raise ArgumentError(['ci="normal" simulates from the asymptotic normal '
                                     "distribution of the estimates: give seed=<int>"])
            n_sim = int(check_number("n_sim", n_sim, minimum=2, integer=True))
            rng = np.random.default_rng(seed)
            draws = rng.multivariate_normal(phi, self.cov.to_numpy(), size=n_sim,
                                            method="eigh")
            sims = self._pmat(draws, float(t), float(t0), covariates).real
            alpha = (1 - level) / 2
            lo, hi = np.quantile(sims, alpha, axis=0), np.quantile(sims, 1 - alpha, axis=0)
            se = frame(sims.std(axis=0, ddof=1))
        return PMatrix(float(t), float(t0), frame(est), None if lo is None else frame(lo),
                       None if hi is None else frame(hi), se,
                       {"none": "none", "delta": "delta method",
                        "normal": f"{n_sim} draws from the normal of the estimates"}[ci])

    def sojourn(self, covariates: Mapping[str, Any] | None = None, *, period: int = 0,
                level: float = 0.95) -> pd.DataFrame:
        """Mean sojourn time -1/q_rr in each transient state (msm ``sojourn.msm``):
        delta-method SE, limits exp(log m -/+ z se_log)."""
        self._check_cov(covariates)
        z = self._z(covariates, period)
        phi = self._phi
        k = phi.size
        batch = np.vstack([phi[None, :] + 0j, phi[None, :] + 1j * _STEP * np.eye(k)])
        q = self._problem.qmats(batch, z[None])[:, 0]
        diag = np.diagonal(q, axis1=1, axis2=2)                # (1 + k, n)
        trans = diag[0].real < 0
        logm = -np.log(-diag[:, trans])
        jac = (logm[1:].imag / _STEP).T                        # (n_transient, k)
        se_log = np.sqrt(np.clip(np.einsum("ij,jk,ik->i", jac, self.cov.to_numpy(), jac), 0,
                                 None))
        m = np.exp(logm[0].real)
        zq = stats.norm.ppf(0.5 + level / 2)
        out = pd.DataFrame({"estimate": m, "se": m * se_log, "lower": np.exp(np.log(m) - zq *
                                                                             se_log),
                            "upper": np.exp(np.log(m) + zq * se_log)},
                           index=[s for s, t in zip(self.states, trans, strict=True) if t])
        out.index.name = "state"
        return out

    def occupation(self, times: float | Sequence[float], *, initial: str | Sequence[float] =
                   "sustained", covariates: Mapping[str, Any] | None = None,
                   ci: str = "delta", n_sim: int = 1000, seed: int | None = None,
                   level: float = 0.95) -> pd.DataFrame:
        """State occupation probabilities at ``times`` from time 0, starting in
        ``initial`` (a state, or a distribution over the states): rows of P(0, t)
        with the limits of :meth:`pmatrix` (long frame: time, state, probability,
        se, lower, upper)."""
        if isinstance(initial, str):
            if initial not in self.states:
                raise bad_argument("initial", initial, "one of " + ", ".join(self.states))
            p0 = np.eye(len(self.states))[self.states.index(initial)]
        else:
            p0 = np.asarray(initial, float)
            if p0.shape != (len(self.states),) or (p0 < 0).any() or not np.isclose(p0.sum(), 1):
                raise bad_argument("initial", initial, f"a state or {len(self.states)} "
                                   "probabilities summing to 1")
        rows = []
        for t in np.atleast_1d(np.asarray(times, float)):
            if ci == "normal" and seed is None:
                raise ArgumentError(['ci="normal" simulates from the asymptotic normal '
                                     "distribution of the estimates: give seed=<int>"])
            check_choice("ci", ci, ("none", "delta", "normal"))
            pm = self.pmatrix(float(t), covariates=covariates, ci="none")
            est = p0 @ pm.estimate.to_numpy()
            if ci == "normal":   # the same draws give the limits of the mixture
                rng = np.random.default_rng(seed)
                draws = rng.multivariate_normal(self._phi, self.cov.to_numpy(), size=n_sim,
                                                method="eigh")
                sims = np.einsum("i,bij->bj", p0,
                                 self._pmat(draws, float(t), 0.0, covariates).real)
                a = (1 - level) / 2
                lo, hi = np.quantile(sims, a, axis=0), np.quantile(sims, 1 - a, axis=0)
                se = sims.std(axis=0, ddof=1)
            elif ci == "delta":
                k = self._phi.size
                batch = self._phi[None, :] + 1j * _STEP * np.eye(k)
                jac = np.einsum("i,bij->jb", p0, self._pmat(batch, float(t), 0.0,
                                                            covariates).imag / _STEP)
                se = np.sqrt(np.clip(np.einsum("ij,jk,ik->i", jac, self.cov.to_numpy(), jac),
                                     0, None))
                zq = stats.norm.ppf(0.5 + level / 2)
                lo, hi = _logit_limits(est, se, zq)
            else:
                lo = hi = se = np.full(est.shape, np.nan)
            for j, s in enumerate(self.states):
                rows.append({"time": float(t), "state": s, "probability": est[j], "se": se[j],
                             "lower": lo[j], "upper": hi[j]})
        return pd.DataFrame(rows)

    def plot(self, ax: Any = None, *, exponentiate: bool = True) -> Any:
        """Forest plot of the hazard ratios (baseline intensity rows left out)."""
        sm = self.summary
        sm = sm[sm.index.get_level_values("term") != BASELINE]
        if sm.empty:
            import matplotlib.pyplot as plt
            if ax is None:
                _, ax = plt.subplots(figsize=(6, 1.5))
            ax.text(0.5, 0.5, "no covariates: no hazard ratios", ha="center", va="center")
            ax.set_axis_off()
            return ax
        sm = sm.copy()
        sm.index = [f"{t}: {term}" for t, term in sm.index]
        return forest_plot(sm, ax, exponentiate=exponentiate)

    def plot_occupation(self, horizon: float, *, initial: str = "sustained",
                        covariates: Mapping[str, Any] | None = None, ax: Any = None,
                        n_points: int = 41) -> Any:
        """Occupation probabilities from ``initial`` over [0, horizon] with
        delta-method 95% bands (logit scale); returns the Axes."""
        import matplotlib.pyplot as plt

        check_number("horizon", horizon, minimum=0, strict=True)
        occ = self.occupation(np.linspace(0, horizon, n_points), initial=initial,
                              covariates=covariates)
        if ax is None:
            _, ax = plt.subplots(figsize=(6, 3.5))
        for s, g in occ.groupby("state", sort=False):
            line, = ax.plot(g["time"], g["probability"], label=s)
            ax.fill_between(g["time"], g["lower"], g["upper"], alpha=0.2,
                            color=line.get_color(), lw=0)
        ax.set_xlabel("years")
        ax.set_ylabel(f"probability (from {initial})")
        ax.set_ylim(0, 1)
        ax.legend(frameon=False)
        return ax


# ------------------------------------------------------------------ fitting


def _crude_init(waves: Waves, allowed: np.ndarray) -> np.ndarray:
    """msm ``crudeinits.msm``-style start: q_rs = n_rs / time at risk in r."""
    f = waves.frame
    same = f["site"].to_numpy()[1:] == f["site"].to_numpy()[:-1]
    a = f["state_index"].to_numpy()[:-1][same]
    b = f["state_index"].to_numpy()[1:][same]
    dt = np.diff(f["time"].to_numpy())[same]
    n = allowed.shape[0]
    counts = np.zeros((n, n))
    np.add.at(counts, (a, b), 1)
    at_risk = np.bincount(a, weights=dt, minlength=n)
    out = []
    for r, s in zip(*np.nonzero(allowed), strict=True):
        out.append(max(counts[r, s], 0.5) / max(at_risk[r], 1e-3))
    return np.log(np.asarray(out))


def fit_panel_markov(waves: Waves | pd.DataFrame | Any, formula: str | None = None, *,
                     pci: Sequence[float] | None = None,
                     covariate_transitions: Sequence[str] | None = None,
                     init: Mapping[str, float] | None = None, times: Sequence[float] | None = None,
                     max_iter: int = 2000, **read_args: Any) -> PanelMarkovResult:
    """Fit the panel-observed Markov model (see module docstring; R ``msm``).

    ``waves``: a :class:`~imrsurv.waves.Waves` (from :func:`imrsurv.read_waves`),
    a wave DataFrame or path (``read_args`` go to ``read_waves``: ``states``,
    ``transitions``, ``deathexact``, ``exacttimes``, column names), or a
    :class:`~imrsurv.History` with ``times=`` the interview times (states and
    covariates sampled there by :func:`imrsurv.waves.sample_waves`).
    ``formula``: right-hand side over the wave columns (the value at the start of
    each interval is used for the whole interval), effects on every transition
    unless ``covariate_transitions`` names some (``["sustained -> discontinued"]``).
    ``pci``: cut points of a piecewise-constant baseline (msm ``pci=``).
    ``init``: starting intensities by transition (``{"a -> b": 0.2}``), else crude.
    """
    from ..history import History

    if isinstance(waves, History):
        if times is None:
            raise ArgumentError(["a History needs times=[...] (the interview times)"])
        from ..waves import sample_waves
        cov = waves.covariates
        if cov is not None:   # the log's own bookkeeping column is not a covariate
            cov = cov.drop(columns=[c for c in ("line",) if c in cov.columns])
        frame = sample_waves(waves.events, list(times), cov)
        waves = read_waves(frame, **read_args)
    elif not isinstance(waves, Waves):
        waves = read_waves(waves, **read_args)
    elif read_args:
        raise ArgumentError([f"{', '.join(read_args)}: reading options are for a wave table, "
                             "not for Waves already read"])
    states, allowed = waves.states, waves.allowed
    trans_idx = [(int(a), int(b)) for a, b in zip(*np.nonzero(allowed), strict=True)]
    trans_names = [f"{states[a]} -> {states[b]}" for a, b in trans_idx]
    nq = len(trans_idx)
    f = waves.frame
    site = f["site"].to_numpy()
    same = site[1:] == site[:-1]
    start = np.flatnonzero(same)          # row j starts an interval ending at j + 1
    t0 = f["time"].to_numpy()[start]
    t1 = f["time"].to_numpy()[start + 1]

    design = None
    terms: list[str] = []
    x = np.zeros((start.size, 0))
    if formula is not None:
        from .design import build_design, check_columns, required_columns
        if not isinstance(formula, str) or not formula.strip():
            raise bad_argument("formula", formula, "a right-hand-side formula (text) or None")
        check_columns(formula, f, "wave table")
        rows = f.iloc[start].reset_index(drop=True)
        need = required_columns(formula)
        miss = rows[need].isna().to_numpy()
        if miss.any():
            bad = [f'{waves.source}, {rows["where"].iloc[i]}, site "{rows["site"].iloc[i]}": '
                   f"{need[j]} is missing at the start of an interval (time "
                   f"{rows['time'].iloc[i]:g}); the model needs it there"
                   for i, j in zip(*np.nonzero(miss), strict=True)]
            raise DataError(bad, "invalid covariates")
        design = build_design(rows, formula)
        x = design.matrix
        terms = list(design.columns)
    cuts = np.array(sorted(float(check_number("pci", c)) for c in (pci or ())))
    if cuts.size and (np.diff(cuts) <= 0).any():
        raise bad_argument("pci", pci, "distinct cut points")
    if cuts.size:
        inside = cuts[(cuts > f["time"].min()) & (cuts < f["time"].max())]
        if inside.size != cuts.size:
            raise bad_argument("pci", pci, f"cut points inside the follow-up "
                               f"({f['time'].min():g}, {f['time'].max():g})")
    period_names = [f"period [{a:g},{b:g})" for a, b in
                    zip(cuts, np.r_[cuts[1:], np.inf][:cuts.size], strict=True)]
    all_terms = terms + period_names
    k = len(all_terms)

    # pieces: each interval split at the cuts inside it
    edges = [np.r_[a, cuts[(cuts > a) & (cuts < b)], b] for a, b in zip(t0, t1, strict=True)]
    m = max(len(e) - 1 for e in edges) if edges else 1
    g = start.size
    length = np.zeros((g, m))
    z = np.zeros((g, m, k))
    last = np.zeros(g, int)
    for i, e in enumerate(edges):
        npieces = len(e) - 1
        length[i, :npieces] = np.diff(e)
        last[i] = npieces - 1
        z[i, :, :len(terms)] = x[i]
        for p in range(npieces):
            per = int(np.searchsorted(cuts, e[p], side="right"))
            if per > 0:
                z[i, p, len(terms) + per - 1] = 1.0
    free = np.ones((k, nq), bool)
    if covariate_transitions is not None:
        bad = [t for t in covariate_transitions if t not in trans_names]
        if bad or isinstance(covariate_transitions, str):
            raise bad_argument("covariate_transitions", covariate_transitions,
                               "a list of declared transitions: " + ", ".join(trans_names))
        free[:len(terms)] = np.array([t in covariate_transitions for t in trans_names])[None]
    obst = f["obstype"].to_numpy()[start + 1]
    prob = _Problem(len(states), trans_idx, f["state_index"].to_numpy()[start],
                    f["state_index"].to_numpy()[start + 1], obst, length, z, last, free)

    phi0 = np.zeros(nq + int(free.sum()))
    phi0[:nq] = _crude_init(waves, allowed)
    if init is not None:
        bad = [t for t in init if t not in trans_names]
        if bad:
            raise bad_argument("init", dict(init), "a dict of declared transitions "
                               f"({', '.join(trans_names)}) to intensities > 0")
        for t, v in init.items():
            phi0[trans_names.index(t)] = np.log(check_number(f"init[{t!r}]", v, minimum=0,
                                                             strict=True))
    fun0, _ = prob.value_grad(phi0)
    if not np.isfinite(fun0):
        raise DataError(["the starting intensities give a zero likelihood; give init="],
                        "cannot fit")
    res = optimize.minimize(prob.value_grad, phi0, jac=True, method="BFGS",
                            options={"gtol": 1e-6, "maxiter": int(max_iter)})
    phi = res.x
    val = res.fun
    hess = prob.hessian(phi)
    newton_ok = True
    for _ in range(20):      # Newton polish: quadratic convergence onto the optimum
        _, grad = prob.value_grad(phi)
        try:
            step = np.linalg.solve(hess, grad)
        except np.linalg.LinAlgError:
            newton_ok = False
            break
        trial = phi - step
        tv, _ = prob.value_grad(trial)
        if not np.isfinite(tv) or tv > val + 1e-9 * max(1, abs(val)):
            newton_ok = False
            break
        phi, val = trial, tv
        if np.max(np.abs(step)) < 1e-10:
            break
    hess = prob.hessian(phi)
    _, grad = prob.value_grad(phi)
    converged = bool(np.max(np.abs(grad)) < 1e-4) and (res.success or newton_ok)

    idx = [(tn, BASELINE) for tn in trans_names]
    for kk in range(k):
        for qq in range(nq):
            if free[kk, qq]:
                idx.append((trans_names[qq], all_terms[kk]))
    index = pd.MultiIndex.from_tuples(idx, names=["transition", "term"])
    note = pd.Series("", index=index)
    notes: list[str] = []
    evals, evecs = np.linalg.eigh(hess)
    flat = evals <= 1e-8 * max(evals.max(), 1.0)
    if flat.any():
        involved = (np.abs(evecs[:, flat]) > 0.1).any(axis=1)
        note[involved] = "not identifiable (flat likelihood): not an estimate"
        notes.append("The information matrix is singular: the data do not determine "
                     + ", ".join(f"{a} ({b})" for a, b in index[involved]) + ".")
        safe = np.where(flat, np.inf, evals)
        cov = (evecs / safe) @ evecs.T * 2
    else:
        cov = np.linalg.inv(hess) * 2
    for i, (_tn, term) in enumerate(idx):
        if term == BASELINE and phi[i] < _LOGQ_ZERO:
            note.iloc[i] = "does not converge (intensity runs to 0): not an estimate"
        elif term != BASELINE and abs(phi[i]) > _BETA_DIVERGES:
            note.iloc[i] = "diverges (log HR runs to infinity): not an estimate"
    if not converged:
        note[note == ""] = "optimiser did not converge: not an estimate"
        notes.append(f"The optimiser did not converge (largest gradient {np.max(np.abs(grad)):.3g}"
                     f"; {res.message}): no row is an estimate.")
    bad_rows = note[note != ""]
    if len(bad_rows) and converged:
        notes.append("Rows with a note are not estimates: " + "; ".join(
            f"{a} ({b}): {v}" for (a, b), v in bad_rows.items()) + ".")
    obs_kinds = sorted(set(obst.tolist()))
    kinds = {1: "states at interviews (panel)", 2: "exact transition times",
             3: "exact times of entry into an absorbing state"}
    notes[:0] = [
        "Continuous-time Markov model fitted to " + ", ".join(kinds[o] for o in obs_kinds)
        + " (Kalbfleisch & Lawless 1985; R msm): intensities constant between interviews"
        + (f" and within periods cut at {', '.join(f'{c:g}' for c in cuts)}" if cuts.size
           else "") + "; what happened between interviews is integrated over, not observed.",
        "Standard errors from the observed information (numerical Hessian of the log "
        "likelihood, as msm hessian=TRUE): model-based, assuming the Markov property, "
        "independent sites and interview times that do not depend on the unobserved states; "
        "not robust to misspecification or to clustering beyond the site. p: Wald tests of "
        "log HR = 0 (none for baseline intensities).",
        "Limits of P(t), state occupation and sojourn times: delta method (logit scale for "
        "probabilities, log scale for times); ci=\"normal\" simulates from the normal "
        "distribution of the estimates with a seed, as msm pmatrix.msm(ci = \"normal\").",
    ]
    if all_terms:
        notes.insert(3, "Covariates take their value at the start of each interval between "
                     "interviews (msm's convention); baseline intensities are at covariates 0 "
                     "(R msm(center = FALSE); msm's default centres them at the means).")
    cov_df = pd.DataFrame(cov, index=index, columns=index)
    return PanelMarkovResult(states, [(states[a], states[b]) for a, b in trans_idx],
                             all_terms, pd.Series(phi, index=index, name="coef"), cov_df,
                             -val / 2, converged, waves.n_sites, int(start.size), notes,
                             note, cuts, prob, design, phi, int(res.nit))

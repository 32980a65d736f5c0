"""Per-term tests and intervals that hold their size with few sites.

For a fitted Cox model (ordinary or Firth-penalised) this module gives, per
formula term:

- the likelihood-ratio test ``2 (l(beta_hat) - l(beta_tilde))`` against the fit
  with the term's columns fixed at 0 (for Firth fits the penalised likelihood
  with the full model's penalty, as ``coxphf``'s penalised likelihood-ratio
  test; Heinze & Schemper 2001, section 2.2),
- the model-based score test ``U_J' [I(beta_tilde)^-1]_JJ U_J`` at that
  restricted fit,
- the robust score test of Lin & Wei (1989) with the nuisance coefficients
  estimated: ``e_g = u_gJ - I_JK I_KK^-1 u_gK`` summed score residuals per
  cluster, ``T = (sum e)' (sum e_g e_g')^-1 (sum e)``, chi-square on the term's df,
- profile-likelihood confidence limits (Venzon & Moolgavkar 1988), which stay
  valid (half-infinite) when the likelihood is monotone,
- the Wald test with the fit's covariance (robust when clustered).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize, stats

from . import _coxcore as core
from . import firth

__all__ = ["Restricted", "restricted_fit", "term_test", "term_tests", "profile_limits",
           "score_limits", "cluster_information", "cr2_vcov", "PROFILE_SPAN"]

# Beyond |beta - beta_hat| = PROFILE_SPAN (a hazard ratio of e^30) a profile
# limit is reported as infinite.
PROFILE_SPAN = 30.0


@dataclass
class _Sub:
    loglik: float
    score: np.ndarray
    info: np.ndarray
    full: Any


@dataclass
class Restricted:
    """Maximum of the (penalised) log-likelihood with some coefficients fixed."""

    loglik: float
    beta: np.ndarray
    state: Any          # CoxState (ordinary) or FirthState at beta
    converged: bool


def evaluator(pb: core.CoxProblem, penalty: str | None,
              free: Sequence[int] | None = None) -> Callable[[np.ndarray], Any]:
    """``beta -> state``; for a Firth fit with ``free`` given, only the free block of the
    Newton matrix is computed (see :func:`.firth.evaluate_firth_newton`)."""
    if penalty == "firth":
        return lambda beta: firth.evaluate_firth_newton(pb, beta, free)
    return lambda beta: core.evaluate(pb, beta)


def restricted_fit(pb: core.CoxProblem, penalty: str | None, fixed: Sequence[int],
                   values: np.ndarray, init: np.ndarray, max_iter: int = 30,
                   eps: float = 1e-9) -> Restricted:
    """Maximise over the coefficients not in ``fixed`` (held at ``values``)."""
    p = init.size
    fixed = list(fixed)
    free = [j for j in range(p) if j not in fixed]
    ev = evaluator(pb, penalty, free or None)
    base = init.astype(float).copy()
    base[fixed] = values
    if not free:
        st = ev(base)
        return Restricted(float(st.loglik), base, st, True)

    def ev_sub(bf: np.ndarray) -> _Sub:
        full = base.copy()
        full[free] = bf
        st = ev(full)
        return _Sub(st.loglik, st.score[free], st.info[np.ix_(free, free)], st)

    kw = {"step_tol": 1e-7} if penalty == "firth" else {}
    nr = None
    # a start far out (a diverged fit) can have a singular information: then start at 0
    for start in (base[free], np.zeros(len(free))):
        try:
            nr = core.maximise(ev_sub, start, max_iter, eps, **kw)
            break
        except (core.SingularInformation, ArithmeticError):
            continue
    if nr is None:
        return Restricted(np.nan, base, None, False)
    full = base.copy()
    full[free] = nr.state.full.beta[free]
    return Restricted(float(nr.state.loglik), full, nr.state.full, nr.converged)


def _collapse(m: np.ndarray, codes: np.ndarray) -> np.ndarray:
    g = int(codes.max()) + 1
    return np.column_stack([np.bincount(codes, m[:, j], minlength=g) for j in range(m.shape[1])])


def _score_parts(pb: core.CoxProblem, st: core.CoxState, cols: list[int],
                 cluster: np.ndarray | None) -> tuple[float, float]:
    """Model-based and robust score statistics for ``cols`` at a restricted fit ``st``."""
    p = st.beta.size
    other = [j for j in range(p) if j not in cols]
    u = st.score
    info = st.info
    try:
        vjj = np.linalg.inv(info)[np.ix_(cols, cols)]
        naive = float(u[cols] @ vjj @ u[cols])
    except np.linalg.LinAlgError:
        naive = np.nan
    if cluster is None:
        return naive, np.nan
    res = core.score_residuals(pb, st)
    if not pb.unweighted:
        res = res * pb.weights[:, None]
    ug = _collapse(res, cluster)
    e = ug[:, cols]
    if other:
        a = np.linalg.solve(info[np.ix_(other, other)], info[np.ix_(other, cols)])
        e = e - ug[:, other] @ a
    tot = e.sum(0)
    try:
        robust = float(tot @ np.linalg.solve(e.T @ e, tot))
    except np.linalg.LinAlgError:
        robust = np.nan
    return naive, robust


def term_test(pb: core.CoxProblem, penalty: str | None, beta: np.ndarray, loglik: float,
              cov: np.ndarray, cols: Sequence[int], cluster: np.ndarray | None,
              max_iter: int = 30, eps: float = 1e-9, need: Sequence[str] = (
                  "wald", "lrt", "score")) -> dict[str, float]:
    """Wald, (penalised) likelihood-ratio, score and robust score statistics for ``cols``.

    ``need`` limits the work: ``"lrt"`` needs a restricted (penalised) fit,
    ``"score"`` (both score statistics) an ordinary restricted fit.
    """
    cols = list(cols)
    df = len(cols)
    out = {"df": float(df), "wald": np.nan, "lrt": np.nan, "score": np.nan,
           "robust score": np.nan}
    if "wald" in need:
        b = beta[cols]
        try:
            out["wald"] = float(b @ np.linalg.solve(cov[np.ix_(cols, cols)], b))
        except np.linalg.LinAlgError:
            pass
    rf = None
    if "lrt" in need:
        rf = restricted_fit(pb, penalty, cols, np.zeros(df), beta, max_iter, eps)
        if np.isfinite(rf.loglik):
            out["lrt"] = max(2.0 * (loglik - rf.loglik), 0.0)
    if "score" in need:
        if rf is None or penalty == "firth":
            init = np.zeros_like(beta) if penalty == "firth" else beta
            rf = restricted_fit(pb, None, cols, np.zeros(df), init, max_iter, eps)
        if rf.state is not None:
            out["score"], out["robust score"] = _score_parts(pb, rf.state, cols, cluster)
    return out


def term_tests(pb: core.CoxProblem, penalty: str | None, beta: np.ndarray, loglik: float,
               cov: np.ndarray, terms: dict[str, list[int]], cluster: np.ndarray | None,
               max_iter: int = 30, eps: float = 1e-9) -> pd.DataFrame:
    """One row per term: df, Wald, likelihood-ratio, score and robust score statistics and p.

    For a Firth fit the likelihood-ratio column is the penalised LRT and the
    score columns are those of the ordinary likelihood at the ordinary
    restricted fit (the score test needs no estimate under the alternative,
    so it is unaffected by the monotone likelihood the penalty cures).
    """
    rows = {name: term_test(pb, penalty, beta, loglik, cov, cols, cluster, max_iter, eps)
            for name, cols in terms.items()}
    out = pd.DataFrame.from_dict(rows, orient="index")
    out["df"] = out["df"].astype(int)
    for c in ("wald", "lrt", "score", "robust score"):
        out[f"p {c}"] = stats.chi2.sf(out[c], out["df"])
    return out


def score_limits(pb: core.CoxProblem, beta: np.ndarray, se: np.ndarray, column: int,
                 cluster: np.ndarray | None, level: float = 0.95, max_iter: int = 30,
                 eps: float = 1e-9) -> tuple[float, float]:
    """Limits from inverting the (robust, when clustered) score test of ``beta_j = b``.

    At ``b = beta_hat_j`` the statistic is 0; the limits are where it reaches
    ``chi2_1(level)``, searched outward as :func:`profile_limits` does.
    """
    q = stats.chi2.ppf(level, 1)
    step0 = float(np.clip(se[column] if np.isfinite(se[column]) else 1.0, 0.05, 2.0))
    out = []
    for sign in (-1.0, 1.0):
        f = _ScoreCurve(pb, beta, column, cluster, q, max_iter, eps)
        out.append(_search(f, beta[column], sign, step0))
    return out[0], out[1]


class _ScoreCurve:
    """``T(b) - q`` for the score test of ``beta_j = b`` (robust when clustered)."""

    def __init__(self, pb: core.CoxProblem, beta: np.ndarray, j: int,
                 cluster: np.ndarray | None, q: float, max_iter: int, eps: float):
        self.pb, self.beta, self.j, self.cluster, self.q = pb, beta, j, cluster, q
        self.max_iter, self.eps = max_iter, eps
        self.warm = beta.copy()

    def __call__(self, b: float) -> float:
        rf = restricted_fit(self.pb, None, [self.j], np.array([b]), self.warm, self.max_iter,
                            self.eps)
        if rf.state is None:
            rf = restricted_fit(self.pb, None, [self.j], np.array([b]), self.beta,
                                self.max_iter, self.eps)
        if rf.state is None:
            return np.nan
        self.warm = rf.beta
        naive, robust = _score_parts(self.pb, rf.state, [self.j], self.cluster)
        return (robust if self.cluster is not None else naive) - self.q


def _search(f: Callable[[float], float], start: float, sign: float, step0: float,
            root: Callable[[float, float, float], float] | None = None) -> float:
    """Outward doubling search from ``start`` for the root of ``f`` (f(start) <= 0).

    Once a point with ``f > 0`` brackets the root, ``root(inner, outer, f(outer))``
    finds it (default: ``brentq``).

    Where ``f`` cannot be computed further out (restricted fits that fail when
    every coefficient runs away) no finite limit is claimed: the limit is
    reported as infinite, the conservative answer.
    """
    prev, dist = start, step0
    while True:
        b = start + sign * min(dist, PROFILE_SPAN)
        val = f(b)
        if not np.isfinite(val):
            return sign * np.inf
        if val > 0:
            if root is not None:
                return root(prev, b, val)
            lo, hi = sorted((prev, b))
            try:
                return float(optimize.brentq(f, lo, hi, xtol=1e-10, rtol=1e-12))
            except ValueError:      # a point of the curve could not be computed
                return np.nan
        if dist >= PROFILE_SPAN:
            return sign * np.inf
        prev, dist = b, dist * 2


def profile_limits(pb: core.CoxProblem, penalty: str | None, beta: np.ndarray, loglik: float,
                   se: np.ndarray, columns: Sequence[int], level: float = 0.95,
                   max_iter: int = 30, eps: float = 1e-9) -> np.ndarray:
    """Profile (penalised) likelihood limits for the given columns: array (len, 2).

    The limit solves ``2 (l_max - l_profile(b)) = chi2_1(level)``; it is
    searched outward from ``beta_hat`` in steps that double, and is infinite
    when the profile does not fall far enough within :data:`PROFILE_SPAN`
    (a monotone likelihood in that direction).
    """
    q = stats.chi2.ppf(level, 1)
    out = np.full((len(columns), 2), np.nan)
    for row, j in enumerate(columns):
        step0 = float(np.clip(se[j] if np.isfinite(se[j]) else 1.0, 0.05, 2.0))
        for side, sign in ((0, -1.0), (1, 1.0)):
            prof = _Profile(pb, penalty, beta, loglik, j, q, max_iter, eps)
            out[row, side] = prof.limit(sign, step0)
    return out


class _Profile:
    """``2 (l_max - l_profile(b)) - q`` for one coefficient, warm-started along the search.

    Each call also leaves ``slope``, the derivative of that curve at ``b``:
    ``-2 dl_profile/db``, which is ``-2 U_j`` at the restricted maximum (the
    nuisance coefficients are at their maximum, so only the fixed one's
    score remains; penalised score for a Firth fit).
    """

    def __init__(self, pb: core.CoxProblem, penalty: str | None, beta: np.ndarray,
                 loglik: float, j: int, q: float, max_iter: int, eps: float):
        self.pb, self.penalty, self.beta, self.loglik = pb, penalty, beta, loglik
        self.j, self.q, self.max_iter, self.eps = j, q, max_iter, eps
        self.warm = beta.copy()
        self.slope = np.nan

    def __call__(self, b: float) -> float:
        fixed, value = [self.j], np.array([b])
        rf = restricted_fit(self.pb, self.penalty, fixed, value, self.warm, self.max_iter,
                            self.eps)
        for init in (self.beta, np.zeros_like(self.beta)):
            if rf.state is not None and rf.converged:
                break
            # a warm start far out can leave the risk sets degenerate: start afresh
            rf = restricted_fit(self.pb, self.penalty, fixed, value, init, self.max_iter,
                                self.eps)
        self.slope = np.nan
        if rf.state is not None:
            self.warm = rf.beta
            self.slope = -2.0 * float(rf.state.score[self.j])
        return 2.0 * (self.loglik - rf.loglik) - self.q

    def limit(self, sign: float, step0: float) -> float:
        """The outward doubling search of :func:`_search`, then Newton steps on the curve.

        The doubling (the same points, so the same warm starts, as
        :func:`_search`: far out, where the restricted fits no longer converge,
        its verdict "infinite" must not depend on the route) brackets the limit
        between the last point inside (curve <= 0) and the first outside. From
        the outside point Newton steps with the exact slope (the curve is close
        to a convex parabola, so they approach from outside without
        overshooting) converge in 2-3 restricted fits where ``brentq`` needed
        about 8 (two of them re-evaluating the bracket's ends). A step that
        leaves the bracket is replaced by bisection; a point that cannot be
        computed hands the bracket to ``brentq`` as before.

        Ordinary (unpenalised) fits keep :func:`_search` unchanged: when another
        coefficient diverges, the restricted maxima sit on a likelihood that is
        flat in that direction and the curve depends (at about 1e-2) on how far
        out each fit stops, so the route of the root finder would change the
        limit. The penalised likelihood has no such plateau.
        """
        start = self.beta[self.j]
        if self.penalty != "firth":
            return _search(self, start, sign, step0)
        return _search(self, start, sign, step0,
                       root=lambda inner, outer, val: self._root(inner, outer, val, self.slope))

    def _root(self, inside: float, outside: float, f_out: float, slope: float,
              xtol: float = 1e-10, rtol: float = 1e-12, max_steps: int = 60) -> float:
        """The root between ``inside`` (curve <= 0) and ``outside`` (curve > 0);
        tolerances as the ``brentq`` call of :func:`_search`."""
        x, fx = outside, f_out
        for _ in range(max_steps):
            lo, hi = sorted((inside, outside))
            new = x - fx / slope if np.isfinite(slope) and slope != 0 else np.nan
            if not (np.isfinite(new) and lo < new < hi):
                new = 0.5 * (lo + hi)
            f_new = self(new)
            if not np.isfinite(f_new):
                break
            if f_new <= 0:
                inside = new
            else:
                outside = new
            tol = xtol + rtol * abs(new)
            if abs(new - x) <= tol or abs(outside - inside) <= tol:
                return float(new)
            x, fx, slope = new, f_new, self.slope
            if np.isfinite(slope) and slope != 0 and abs(fx / slope) <= tol:
                return float(x - fx / slope)   # the next step is below the tolerance
        lo, hi = sorted((inside, outside))
        try:
            return float(optimize.brentq(self, lo, hi, xtol=xtol, rtol=rtol))
        except ValueError:      # a point of the curve could not be computed
            return np.nan


# ---------------------------------------------------------------------------
# Few-cluster correction of the robust variance


def cluster_information(pb: core.CoxProblem, st: core.CoxState, cluster: np.ndarray
                        ) -> np.ndarray:
    """Each cluster's share ``I_g`` of the information, ``sum_g I_g = I`` exactly: (G, p, p).

    Row i contributes ``w_i r_i sum_q h_q (x_i - abar_q)(x_i - abar_q)'`` over the
    pseudo-events q at which it is at risk (a tied death at q counted with
    weight ``1 - f_q``, Efron), the decomposition of ``I`` over rows.
    """
    from .firth import _cum_at_risk

    ix = pb.index
    p = pb.x.shape[1]
    r = st.risk_u if pb.unweighted else pb.weights * st.risk_u
    x = pb.x
    c1 = _cum_at_risk(pb, st.c1, st.c2)                          # sum h (1 - f)
    xhaz, mh2, _ = core._death_terms(pb, st)
    w = _cum_at_risk(pb, xhaz, mh2)                              # sum h (1 - f) abar
    outer = (st.abar[:, :, None] * st.abar[:, None, :]).reshape(-1, p * p)
    m_time = core._pseudo_sum(ix, st.hj[:, None] * outer)
    m_tied = None
    if not ix.identity:
        k = ix.n_times
        m_tied = core._by_time(ix.extra_k, (st.hj[k:] * ix.extra_frac)[:, None] * outer[k:], k)
    m = _cum_at_risk(pb, m_time, m_tied)                         # n x p^2
    g = int(cluster.max()) + 1
    out = np.empty((g, p, p))
    for a in range(p):
        for b in range(a, p):
            v = r * (x[:, a] * x[:, b] * c1 - x[:, a] * w[:, b] - w[:, a] * x[:, b]
                     + m[:, a * p + b])
            out[:, a, b] = out[:, b, a] = np.bincount(cluster, v, minlength=g)
    return out


def cr2_vcov(pb: core.CoxProblem, st: core.CoxState, var: np.ndarray, cluster: np.ndarray,
             bound: float = 0.75) -> np.ndarray:
    """Bias-reduced (CR2-type) cluster-robust variance for the Cox model.

    The Lin-Wei sandwich ``V (sum_g u_g u_g') V`` underestimates with few
    clusters because each cluster's score is shrunk by its own leverage
    ``H_g = I_g V`` (Kauermann & Carroll 2001; Fay & Graubard 2001; the CR2 of
    Bell & McCaffrey 2002 for linear models).  Each cluster score is inflated,
    ``u_g* = (I - H_g)^(-1/2) u_g``, computed symmetrically as
    ``V^(-1/2) (I - V^(1/2) I_g V^(1/2))^(-1/2) V^(1/2) u_g`` with the
    eigenvalues of ``V^(1/2) I_g V^(1/2)`` capped at ``bound`` (Fay & Graubard's
    bound, so that one dominant cluster cannot blow the variance up).
    """
    res = core.score_residuals(pb, st)
    if not pb.unweighted:
        res = res * pb.weights[:, None]
    ug = _collapse(res, cluster)
    ig = cluster_information(pb, st, cluster)
    evals, evecs = np.linalg.eigh(var)
    evals = np.maximum(evals, 0.0)
    vh = (evecs * np.sqrt(evals)) @ evecs.T                     # V^(1/2)
    vhi = (evecs * np.where(evals > 0, 1 / np.sqrt(np.where(evals > 0, evals, 1)), 0)) @ evecs.T
    m = vh @ ig @ vh                                            # (G, p, p), symmetric
    lam, q = np.linalg.eigh(m)
    adj = 1.0 / np.sqrt(1.0 - np.clip(lam, 0.0, bound))
    ustar = np.einsum("ab,gbc,gc,gdc,de,ge->ga", vhi, q, adj, q, vh, ug)
    d = ustar @ var
    return d.T @ d

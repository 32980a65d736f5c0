"""Shared gamma frailty for the Cox model, as R ``coxph(... + frailty(site))``.

Model: rows of group (site) ``j`` share a multiplicative frailty
``exp(w_j)`` with ``exp(w_j) ~ Gamma(mean 1, variance theta)``.  Following
Therneau & Grambsch (2000, ch. 9) and R's ``frailty.gamma`` (default
``method = "em"``):

* Inner fit, theta fixed (``nu = 1 / theta``): Newton-Raphson on the
  penalised partial log-likelihood over ``(beta, w)``::

      PPL = loglik(beta, w) - nu * sum_j (exp(w_j) - w_j)

  with the frailties as extra columns of the design.  At the optimum
  ``mean(exp(w)) = 1`` (a common shift of ``w`` leaves ``loglik`` unchanged,
  so the penalty alone fixes it), which is R's centring of ``fit$frail``.
* Outer search over theta: the approximate marginal ("integrated")
  log-likelihood ``loglik(beta_hat, w_hat) + G(d, nu)`` with ``d_j`` the events
  of group j and::

      G = sum_j [d_j + nu log(nu / (nu + d_j))
                 + lgamma(nu + d_j) - lgamma(nu) - d_j log(nu + d_j)]

  (integer event counts ``d_j``, as R)

  is maximised by the same sequence of trial values R's
  ``frailty.controlgam`` uses (theta = 0, 1, then a parabolic step on
  ``sqrt(theta)``; stop when the relative change of the marginal
  log-likelihood is below ``eps = 1e-5`` or after 10 trials), so the reported
  theta (that of the last inner fit, which R prints as "Variance of random
  effect"; R's ``fit$history[[1]]$theta`` is the next, untried proposal) is
  R's, not a more exactly located maximum (the two differ by about
  1e-3 relative on the test data, well inside the standard error of theta).

Standard errors are R's ``se(coef)``: the beta block of the inverse of the
penalised information in which, as R's sparse frailty code does (more than 5
groups), the frailty-by-frailty block is replaced by its diagonal.  ``se2`` is
R's sandwich ``H^-1 I H^-1`` version of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.linalg as sla
from scipy import stats

from . import _coxcore as core

__all__ = ["FrailtyResult", "fit_cox_frailty", "fit_gamma_frailty", "gamma_correction"]


def gamma_correction(d: np.ndarray, nu: float) -> float:
    """``G(d, nu)`` of the module docstring (R ``frailty.gammacon``)."""
    d = np.asarray(d, float)
    if nu > 1e7 * d.max():
        term1 = float(np.sum(d * d) / nu)
    else:
        term1 = float(np.sum(d + nu * np.log(nu / (nu + d))))
    # lgamma(nu + d) - lgamma(nu) - d log(nu + d) as sum_{m=1..d} log((nu + m - 1) / (nu + d)),
    # accurate for large nu
    di = np.rint(d).astype(np.int64)
    dr = np.repeat(di, di)
    m = np.arange(dr.size) - np.repeat(np.cumsum(di) - di, di) + 1
    term2 = float(np.sum(np.log1p((m - 1 - dr) / (nu + dr))))
    return term1 + term2


def _parabola_step(x: np.ndarray, y: np.ndarray, lower: float = 0.0) -> float:
    """Next trial of a 1-d maximisation from the points tried so far (R ``frailty.brent``)."""
    n = x.size
    if n < 3:
        return float(np.mean(x))
    order = np.argsort(x, kind="stable")
    xs, ys = x[order], y[order]
    best = int(np.flatnonzero(ys == ys.max())[0])
    if best == 0:
        new = xs[0] - 3 * (xs[1] - xs[0])
        if new < lower:
            new = lower + (xs[xs > lower].min() - lower) / 10
        return float(new)
    if best == n - 1:
        return float(xs[-1] + 3 * (xs[-1] - xs[-2]))
    x3, y3 = xs[best - 1:best + 2], ys[best - 1:best + 2]
    num = (x3[1] - x3[0]) ** 2 * (y3[1] - y3[2]) - (x3[1] - x3[2]) ** 2 * (y3[1] - y3[0])
    den = (x3[1] - x3[0]) * (y3[1] - y3[2]) - (x3[1] - x3[2]) * (y3[1] - y3[0])
    new = x3[1] - 0.5 * num / den
    if (new < x3[0] or new > x3[2]
            or (n > 4 and (new - x[-1]) > 0.5 * abs(x[-2] - x[-3]))):
        if x3[1] - x3[0] > x3[2] - x3[1]:
            return float(x3[1] - 0.38 * (x3[1] - x3[0]))
        return float(x3[1] + 0.32 * (x3[2] - x3[1]))
    return float(new)


@dataclass
class _Inner:
    beta: np.ndarray
    w: np.ndarray
    loglik: float          # partial log-likelihood, no penalty
    info: np.ndarray       # unpenalised information of (beta, w)
    iterations: int
    converged: bool


def _inner_fit(pb: core.CoxProblem, p: int, theta: float, init: np.ndarray,
               max_iter: int, eps: float) -> _Inner:
    """Penalised Newton-Raphson over (beta, w) at fixed theta (w fixed at 0 when theta = 0)."""
    q = pb.x.shape[1] - p
    if theta == 0:
        sub = core.CoxProblem(x=np.asfortranarray(pb.x[:, :p]), centers=pb.centers[:, :p],
                              weights=pb.weights, offset=pb.offset, strata=pb.strata,
                              n_strata=pb.n_strata, index=pb.index, start=pb.start,
                              stop=pb.stop, event=pb.event, efron=pb.efron)
        nr = core.newton_raphson(sub, max_iter=max_iter, eps=eps, init=init[:p])
        st = core.evaluate(pb, np.r_[nr.state.beta, np.zeros(q)])
        return _Inner(nr.state.beta, np.zeros(q), st.loglik, st.info, nr.iterations,
                      nr.converged)
    nu = 1.0 / theta

    def penalised(coef: np.ndarray) -> tuple[core.CoxState, float, np.ndarray, np.ndarray]:
        st = core.evaluate(pb, coef)
        w = coef[p:]
        ew = np.exp(w)
        pl = st.loglik - nu * float(np.sum(ew - w))
        grad = st.score.copy()
        grad[p:] -= nu * (ew - 1)
        hess = st.info.copy()
        hess[np.arange(p, p + q), np.arange(p, p + q)] += nu * ew
        return st, pl, grad, hess

    coef = init.copy()
    st, best, grad, hess = penalised(coef)
    converged, it = False, 0
    halving = 0
    old = coef
    while it < max_iter:
        it += 1
        if halving == 0:
            step = sla.solve(hess, grad, assume_a="pos")
            old, coef = coef, coef + step
        st_n, pl, grad_n, hess_n = penalised(coef)
        if not np.isfinite(pl) or pl < best - 1e-12 * abs(best):
            halving += 1
            coef = (old * halving + coef) / (halving + 1)
            continue
        done = halving == 0 and abs(1 - best / pl) <= eps
        halving = 0
        st, best, grad, hess = st_n, pl, grad_n, hess_n
        if done:
            converged = True
            break
    w = coef[p:] - np.log(np.mean(np.exp(coef[p:])))
    return _Inner(coef[:p].copy(), w, st.loglik, st.info, it, converged)


@dataclass
class FrailtyResult:
    """A Cox fit with a shared gamma frailty (see the module docstring).

    ``loglik`` is R's ``fit$loglik[2]``: the (unpenalised) partial
    log-likelihood at the penalised estimates; ``loglik_penalised`` adds R's
    penalty ``nu * sum(w_j)`` (R drops the constant ``nu * sum(exp(w_j)) =
    nu * q``), the inner objective; ``loglik_integrated`` is the approximate
    marginal log-likelihood ``loglik_penalised + G(d, nu)`` maximised over
    theta (R's "I-likelihood", ``fit$history[[1]]$c.loglik``).
    ``lrt_theta_zero`` tests theta = 0 against the fit without frailty:
    ``2 (loglik_integrated - loglik_nofrailty)`` (at theta = 0 the marginal
    log-likelihood is the ordinary Cox one); theta = 0 lies on the boundary,
    so the p-value uses the 50:50 mixture of chi-square(0) and chi-square(1),
    ``0.5 * P(chi2_1 > stat)`` (Self & Liang 1987).
    """

    params: pd.Series
    se: pd.Series
    se2: pd.Series
    cov: pd.DataFrame
    frailty_variance: float
    frailties: pd.Series
    loglik: float
    loglik_penalised: float
    loglik_integrated: float
    loglik_nofrailty: float
    theta_history: pd.DataFrame
    ties: str
    n: int
    n_events: int
    converged: bool
    notes: list[str] = field(default_factory=list)

    @property
    def lrt_theta_zero(self) -> dict[str, float]:
        stat = max(2.0 * (self.loglik_integrated - self.loglik_nofrailty), 0.0)
        return {"statistic": stat, "df": 1.0, "p": 0.5 * float(stats.chi2.sf(stat, 1))}

    @property
    def summary(self) -> pd.DataFrame:
        z = self.params / self.se
        return pd.DataFrame({"coef": self.params, "exp(coef)": np.exp(self.params),
                             "se(coef)": self.se, "se2": self.se2, "z": z,
                             "p": 2 * stats.norm.sf(np.abs(z))})


def fit_gamma_frailty(pb: core.CoxProblem, names: list[str], group: np.ndarray,
                      group_labels: pd.Index, ties: str, max_iter: int = 30,
                      tol: float = 1e-9, eps: float = 1e-5, outer_max: int = 10
                      ) -> FrailtyResult:
    """Fit the frailty model on an already built (non-frailty) problem ``pb``.

    ``group`` holds integer codes ``0..q-1`` of each row's frailty group.
    """
    p, q = pb.x.shape[1], int(group.max()) + 1
    z = np.zeros((pb.x.shape[0], q))
    z[np.arange(group.size), group] = 1.0
    zc = z - (pb.weights @ z / pb.weights.sum())
    aug = core.CoxProblem(x=np.asfortranarray(np.hstack([pb.x, zc])),
                          centers=np.hstack([pb.centers, np.zeros((pb.n_strata, q))]),
                          weights=pb.weights, offset=pb.offset, strata=pb.strata,
                          n_strata=pb.n_strata, index=pb.index, start=pb.start, stop=pb.stop,
                          event=pb.event, efron=pb.efron)
    d = np.bincount(group, pb.event.astype(float), minlength=q)

    thetas: list[float] = []
    cll: list[float] = []
    fits: list[_Inner] = []
    theta, fit, outer_done = 0.0, None, False
    for outer in range(1, outer_max + 1):
        if fits:   # warm start from the fit at the nearest theta tried (as R)
            near = fits[int(np.argmin([(t - theta) ** 2 for t in thetas]))]
            init = np.r_[near.beta, near.w]
        else:
            init = np.zeros(p + q)
        fit = _inner_fit(aug, p, theta, init, max_iter, tol)
        # R's inner loglik carries the penalty, less its constant nu * sum(exp(w)) = nu * q
        corr = 0.0 if theta == 0 else (float(np.sum(fit.w)) / theta
                                       + gamma_correction(d, 1.0 / theta))
        thetas.append(theta)
        cll.append(fit.loglik + corr)
        fits.append(fit)
        x, y = np.array(thetas), np.array(cll)
        if outer == 1:
            theta = 1.0
        elif outer == 2:
            theta = float(np.mean(x)) if y[1] < y[0] + 1 else 2 * x[1]
        else:
            if abs(1 - y[-1] / y[-2]) < eps:
                outer_done = True
                break
            if y[-1] == y.max() and x[-1] == x.max():
                theta = 2 * float(x.max())
            else:
                theta = _parabola_step(np.sqrt(x), y, lower=0.0) ** 2
    assert fit is not None
    theta_hat = thetas[-1]
    converged = fit.converged and outer_done

    nu = 1.0 / theta_hat if theta_hat > 0 else 0.0
    # penalised information with R's sparse (diagonal) frailty block
    h = fit.info.copy()
    ww = h[p:, p:]
    pen = nu * np.exp(fit.w)
    h[p:, p:] = np.diag(np.diag(ww) + pen)
    if theta_hat == 0:
        hinv = np.zeros_like(h)
        hinv[:p, :p] = np.linalg.inv(h[:p, :p])
    else:
        hinv = np.linalg.inv(h)
    var = (hinv[:p, :p] + hinv[:p, :p].T) / 2
    bw = hinv[p:, :p]
    var2 = var - bw.T @ (pen[:, None] * bw)
    penalty = nu * float(np.sum(fit.w))
    idx = pd.Index(names)
    plain = fits[0]
    notes = [f"Shared gamma frailty: variance theta = {theta_hat:.6g} chosen by maximising "
             "the approximate marginal likelihood (R frailty.gamma method = 'em')."]
    return FrailtyResult(
        params=pd.Series(fit.beta, index=idx, name="coef"),
        se=pd.Series(np.sqrt(np.diag(var)), index=idx, name="se(coef)"),
        se2=pd.Series(np.sqrt(np.diag(var2)), index=idx, name="se2"),
        cov=pd.DataFrame(var, index=idx, columns=idx),
        frailty_variance=theta_hat,
        frailties=pd.Series(fit.w, index=group_labels, name="frailty"),
        loglik=fit.loglik,
        loglik_penalised=fit.loglik + penalty,
        loglik_integrated=cll[-1],
        loglik_nofrailty=plain.loglik,
        theta_history=pd.DataFrame({"theta": thetas, "loglik_integrated": cll}),
        ties=ties, n=pb.index.n, n_events=int(pb.event.sum()), converged=bool(converged),
        notes=notes)


def fit_cox_frailty(data: pd.DataFrame, formula: str, *, frailty: str, start: str | None = None,
                    stop: str, event: str, strata: str | Sequence[str] | None = None,
                    ties: str = "efron", weights: str | None = None, offset: str | None = None,
                    missing: str = "raise", max_iter: int = 30, tol: float = 1e-9,
                    timefix: bool = True) -> FrailtyResult:
    """``fit_cox(..., frailty=column)``: Cox model with a shared gamma frailty per ``frailty``.

    Arguments as :func:`imrsurv.models.cox.fit_cox` (no ``cluster``: the
    frailty replaces the robust variance).  As R ``coxph(Surv(start, stop,
    event) ~ ... + frailty(column))``; see the module docstring.
    """
    from . import cox

    prep = cox.prepare(data, formula, start=start, stop=stop, event=event, strata=strata,
                       ties=ties, weights=weights, offset=offset, missing=missing,
                       timefix=timefix, grouping={"frailty": [frailty]})
    frame, design, pb, notes = prep.frame, prep.design, prep.problem, prep.notes
    codes, labels = pd.factorize(frame[frailty], sort=True)
    res = fit_gamma_frailty(pb, list(design.columns), codes.astype(np.int64),
                            pd.Index(labels, name=frailty), ties, max_iter, tol)
    res.notes[:0] = notes
    return res

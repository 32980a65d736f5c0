"""Shared frailty for the Cox model, as R ``coxph(... + frailty(site))``.

Model: rows of group (site) ``j`` share a frailty ``f_j`` on the log-hazard
scale, ``exp(f_j) ~ Gamma(mean 1, variance theta)`` (``distribution="gamma"``,
R ``frailty.gamma``, default ``method = "em"``) or ``f_j ~ N(0, theta)``
(``"gaussian"``, R ``frailty.gaussian``, default ``method = "reml"``).
Following Therneau & Grambsch (2000, ch. 9) and R's ``coxpenal.fit``:

* Inner fit, theta fixed: R's ``agfit5`` Newton-Raphson on the penalised
  partial log-likelihood over ``(beta, f)`` (:mod:`._frailty_newton`).  With
  more than 5 groups (R's ``sparse = TRUE`` default) only the diagonal of the
  frailty block of the information is kept, which makes each step O(n) for
  any number of groups; with at most 5 the groups are indicator columns and
  the full information is used (R ``sparse = FALSE``).
* Outer search over theta, the same trial sequence as R:

  - gamma (``frailty.controlgam``): maximise the approximate marginal
    ("integrated") log-likelihood ``PPL(beta_hat, f_hat) + G(d, nu)``,
    ``nu = 1 / theta``, ``d_j`` the (unweighted) events of group j::

        G = sum_j [d_j + nu log(nu / (nu + d_j))
                   + lgamma(nu + d_j) - lgamma(nu) - d_j log(nu + d_j)]

    trials theta = 0, 1, then a parabolic step on ``sqrt(theta)``
    (``frailty.brent``); stop when the relative change of the marginal
    log-likelihood is below ``1e-5``, or after 10 trials.
  - Gaussian (``frailty.controlgauss``, REML): solve
    ``resid(theta) = sum f_j^2 / (q - trH / theta) - theta = 0`` with ``trH``
    the trace of the frailty block of ``H^-1``; trials 1, then x3 or /3,
    then a secant-type step; stop when ``|resid| < sqrt(tol)`` (R's
    ``eps2``), or after 10 trials.

  The reported theta is that of the last inner fit (R prints it as
  "Variance of random effect"), not a more exactly located optimum.

Standard errors are R's ``se(coef)``: the beta block of ``H^-1``, ``H`` the
penalised information (frailty block diagonal when sparse); ``se2`` is R's
``H^-1 I H^-1`` version, ``I`` the unpenalised information.  Neither accounts
for the estimation of theta.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import DataError, NotEstimable
from . import _coxcore as core
from . import _frailty_newton as fn
from ._result import ResultProtocol, coef_table, format_table
from .cox_prepare import prepare
from .design import required_columns

__all__ = ["Frailty", "FrailtyResult", "fit_cox_frailty", "fit_frailty", "fit_gamma_frailty",
           "gamma_correction", "memory_estimate"]

DISTRIBUTIONS = ("gamma", "gaussian")
SPARSE_ABOVE = 5      # R frailty(): sparse = (number of levels > 5)
MEMORY_FRACTION = 0.8


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


@dataclass(frozen=True)
class Frailty:
    """A frailty term for ``fit_cox(..., frailty=Frailty("site", "gaussian"))``.

    As R ``frailty(site, distribution = ...)``; ``sparse=None`` follows R
    (sparse for more than 5 groups).  ``fit_cox(..., frailty="site")`` is
    ``Frailty("site")``.
    """

    column: str
    distribution: str = "gamma"
    sparse: bool | None = None


def _gauss_step(hist: np.ndarray, outer: int) -> float:
    """Next theta of R ``frailty.controlgauss`` from rows (theta, resid) tried so far."""
    theta, resid = hist[:, 0], hist[:, 1]
    if outer == 1:
        return float(theta[0] * 3 if resid[0] > 0 else theta[0] / 3)
    if outer == 2:
        if np.all(resid > 0):
            return float(theta[1] * 2)
        if np.all(resid < 0):
            return float(theta[1] / 2)
        return float(np.mean(theta[:2]))
    order = np.argsort(theta, kind="stable")
    tx, ty = theta[order], resid[order]
    if np.all(ty > 0):
        return float(2 * tx.max())
    if np.all(ty < 0):
        return float(0.5 * tx.min())
    b1 = int(np.flatnonzero(order == outer - 1)[0])
    b1 = min(max(b1, 1), outer - 2)
    r_ = ty[b1] / ty[b1 + 1]
    s_ = ty[b1] / ty[b1 - 1]
    u_ = r_ / s_
    num = s_ * (u_ * (r_ - u_) * (tx[b1 + 1] - tx[b1]) - (1 - r_) * (tx[b1] - tx[b1 - 1]))
    den = (u_ - 1) * (r_ - 1) * (s_ - 1)
    new = tx[b1] + num / den
    if new > tx[b1 + 1]:
        new = (tx[b1] + tx[b1 + 1]) / 2
    if new < tx[b1 - 1]:
        new = (tx[b1] + tx[b1 - 1]) / 2
    return float(new)


@dataclass(repr=False)
class FrailtyResult(ResultProtocol):
    """A Cox fit with a shared frailty (see the module docstring).

    ``loglik`` is R's ``fit$loglik[2]``: the (unpenalised) partial
    log-likelihood at the penalised estimates, ``loglik_null`` R's
    ``fit$loglik[1]`` (beta = 0, no frailty); ``loglik_penalised`` subtracts
    R's penalty ``fit$penalty[2]`` (gamma: ``-sum(f_j) / theta``, R drops the
    constant ``sum(exp f_j) / theta``; Gaussian: ``sum(f_j^2 / theta +
    log(2 pi theta)) / 2``).  Gamma only: ``loglik_integrated`` is the
    approximate marginal log-likelihood ``loglik_penalised + G(d, nu)``
    maximised over theta (R's "I-likelihood", ``fit$history[[1]]$c.loglik``)
    and ``lrt_theta_zero`` tests theta = 0 against the fit without frailty:
    ``2 (loglik_integrated - loglik_nofrailty)``; theta = 0 lies on the
    boundary, so the p-value uses the 50:50 mixture of chi-square(0) and
    chi-square(1), ``0.5 * P(chi2_1 > stat)`` (Self & Liang 1987).
    ``frailties_var`` is R's ``fit$fvar`` (diagonal of the frailty block of
    ``H^-1``) and ``df_frailty`` R's degrees of freedom of the frailty term,
    ``q - sum(fvar * penalty'')``.
    """

    params: pd.Series
    se: pd.Series
    se2: pd.Series
    cov: pd.DataFrame
    frailty_variance: float
    frailties: pd.Series
    frailties_var: pd.Series
    loglik: float
    loglik_null: float
    loglik_penalised: float
    loglik_integrated: float
    loglik_nofrailty: float
    theta_history: pd.DataFrame
    distribution: str
    sparse: bool
    df_frailty: float
    ties: str
    n: int
    n_events: int
    n_groups: int
    iterations: tuple[int, int]
    converged: bool
    frailty: str = "group"
    notes: list[str] = field(default_factory=list)

    @property
    def se_naive(self) -> pd.Series:
        """The model-based (R ``se(coef)``) errors; a frailty fit has no robust ones."""
        return self.se

    @property
    def lrt_theta_zero(self) -> dict[str, float]:
        if self.distribution != "gamma":
            return {"statistic": math.nan, "df": 1.0, "p": math.nan}
        stat = max(2.0 * (self.loglik_integrated - self.loglik_nofrailty), 0.0)
        return {"statistic": stat, "df": 1.0, "p": 0.5 * float(stats.chi2.sf(stat, 1))}

    _display_columns = ("coef", "exp(coef)", "se", "se2", "z", "p", "lower 95%", "upper 95%")

    @property
    def summary(self) -> pd.DataFrame:
        """Standard Wald table (:func:`._result.coef_table`) with R's ``se2`` after ``se``.

        ``se`` is R's ``se(coef)`` (z, p and the limits use it); ``se2`` is R's
        sandwich-type ``se2`` (see the class and module docstrings).
        """
        sm = coef_table(self.params, self.se)
        sm.insert(sm.columns.get_loc("se") + 1, "se2", self.se2)
        return sm

    def _header(self) -> str:
        kind = "gamma" if self.distribution == "gamma" else "Gaussian (log-normal)"
        head = (f"Cox model with a shared {kind} frailty by {self.frailty} "
                f"({self.n_groups} groups, {'sparse' if self.sparse else 'dense'}); "
                f"ties = {self.ties}\n  n = {self.n} rows, {self.n_events} events; "
                f"variance of the random effect = {self.frailty_variance:.4g}")
        if self.distribution == "gamma":
            lrt = self.lrt_theta_zero
            head += f"\n  LRT theta = 0: {lrt['statistic']:.3f}, p = {lrt['p']:.3g}"
        return head + ("" if self.converged else "\n  (not converged: see notes)")

    def __repr__(self) -> str:
        return f"{self._header()}\n\n{format_table(self.summary, self._display_columns[:6])}"


# ---------------------------------------------------------------------------
# Memory


def _available_memory() -> int:
    """Bytes of memory available now (Linux ``MemAvailable``, else physical memory)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def memory_estimate(n: int, p: int, q: int, sparse: bool) -> int:
    """Peak bytes of the frailty fit beyond its input (float64 arrays).

    Sparse: about 60 + 4p length-n arrays (the prepared problem, risk-set sums,
    per-row terms, the 2n sorted row end points) plus the p x q beta-by-frailty
    block (measured: 49 MB traced for 100,000 rows, p = 2, 7,000 groups; this
    gives 56 MB).  Dense: the n x (p + q) augmented design, held about three
    times, and (p + q)^2 matrices.
    """
    if sparse:
        return 8 * (n * (60 + 4 * p) + 4 * q * (p + 4) + 4 * p * p)
    m = p + q
    return 8 * (3 * n * m + 30 * n + 6 * m * m)


def _bytes(b: float) -> str:
    return f"{b / 1e9:.2f} GB" if b >= 1e9 else f"{b / 1e6:.1f} MB"


def _check_memory(n: int, p: int, q: int, sparse: bool) -> None:
    need = memory_estimate(n, p, q, sparse)
    have = _available_memory()
    if need > MEMORY_FRACTION * have:
        raise DataError([f"the frailty fit ({n} rows, {p} coefficients, {q} groups, "
                         f"{'sparse' if sparse else 'dense'}) needs about {_bytes(need)} "
                         f"of memory and {_bytes(have)} are available; use fewer rows "
                         "or coefficients" + ("" if sparse else ", or sparse=True")],
                        title="not enough memory")


# ---------------------------------------------------------------------------
# Fitting


def _singular(exc: fn.Singular, names: list[str], labels: pd.Index, theta: float,
              column: str) -> NotEstimable:
    if exc.frailty:
        which = ", ".join(f'"{labels[i]}"' for i in exc.columns[:10])
        more = f" and {len(exc.columns) - 10} more" if len(exc.columns) > 10 else ""
        what = (f"the frailty of {column} {which}{more} cannot be estimated at theta = "
                f"{theta:.4g}: its penalised information is not positive")
    else:
        cols = [names[i] for i in exc.columns if i < len(names)] or names
        what = (f"the coefficient{'s' if len(cols) > 1 else ''} of "
                f"{', '.join(cols)} cannot be estimated in the frailty model "
                f"(theta = {theta:.4g}): the penalised information matrix is singular, so "
                "the column is constant, collinear with other columns, or constant within "
                f"every {column} group; drop or recode it")
    return NotEstimable(what)


def fit_frailty(pb: core.CoxProblem, names: list[str], group: np.ndarray,
                group_labels: pd.Index, ties: str, *, distribution: str = "gamma",
                sparse: bool | None = None, max_iter: int = 20, tol: float = 1e-9,
                eps: float | None = None, outer_max: int = 10) -> FrailtyResult:
    """Fit the frailty model on an already built (non-frailty) problem ``pb``.

    ``group`` holds integer codes ``0..q-1`` of each row's frailty group.
    ``sparse=None`` follows R (sparse when more than 5 groups).  ``tol`` is
    the inner convergence tolerance (R ``coxph.control(eps)``), ``eps`` the
    outer one (default as R: 1e-5 for gamma, ``sqrt(tol)`` for Gaussian).
    """
    p, q = pb.x.shape[1], int(group.max()) + 1
    sparse = q > SPARSE_ABOVE if sparse is None else bool(sparse)
    gamma = distribution == "gamma"
    eps = (1e-5 if gamma else math.sqrt(tol)) if eps is None else eps
    model: fn.SparseFrailty | fn.DenseFrailty = (fn.SparseFrailty(pb, group, q) if sparse
                                                 else fn.DenseFrailty(pb, group, q))
    d = np.bincount(group, pb.event.astype(float), minlength=q)
    column = str(group_labels.name or "group")

    def inner(theta: float, beta0: np.ndarray, f0: np.ndarray) -> fn.InnerFit:
        try:
            return fn.newton_agfit5(model, fn.Penalty(distribution, theta), beta0, f0,
                                    max_iter, tol)
        except fn.Singular as exc:
            raise _singular(exc, names, group_labels, theta, column) from None

    thetas: list[float] = []
    fits: list[fn.InnerFit] = []
    rows: list[list[float]] = []
    theta, done = (0.0 if gamma else 1.0), False
    for outer in range(1, outer_max + 1):
        if fits:   # warm start from the fit at the nearest theta tried (as R)
            near = fits[int(np.argmin([(t - theta) ** 2 for t in thetas]))].state
            b0, f0 = near.beta, near.f
        else:
            b0, f0 = np.zeros(p), np.zeros(q)
        fit = inner(theta, b0, f0)
        thetas.append(theta)
        fits.append(fit)
        st = fit.state
        if gamma:
            corr = 0.0 if theta == 0 else gamma_correction(d, 1.0 / theta)
            rows.append([theta, st.ppl, st.ppl + corr])
            x, y = np.array(thetas), np.array([r[2] for r in rows])
            if outer == 1:
                theta = 1.0
            elif outer == 2:
                theta = float(np.mean(x)) if y[1] < y[0] + 1 else 2 * x[1]
            else:
                if abs(1 - y[-1] / y[-2]) < eps:
                    done = True
                    break
                if y[-1] == y.max() and x[-1] == x.max():
                    theta = 2 * float(x.max())
                else:
                    theta = _parabola_step(np.sqrt(x), y, lower=0.0) ** 2
        else:
            trh = float(np.sum(model.inverse(st, fit.parts)[2]))
            fsum = float(np.sum(st.f ** 2))
            resid = fsum / (q - trh / theta) - theta
            rows.append([theta, resid, fsum, trh])
            if outer >= 3 and abs(resid) < eps:
                done = True
                break
            theta = _gauss_step(np.array(rows), outer)
    final = fits[-1]
    st, theta_hat = final.state, thetas[-1]
    var, bfb, fvar = model.inverse(st, final.parts)
    var2 = var if theta_hat == 0 else var - bfb.T @ (st.second[:, None] * bfb)
    if gamma:
        plain = fits[0]
    else:
        plain = inner(0.0, np.zeros(p), np.zeros(q))
    # R's fit$loglik[1] (agfit5a): beta = 0, no frailty; the dense fit adds the penalty of its
    # frailty columns at 0 at the first trial theta
    null = model.evaluate(np.zeros(p), np.zeros(q), fn.Penalty(distribution, 0.0))
    loglik_null = null.loglik
    if not sparse and not gamma:
        loglik_null -= fn.Penalty(distribution, 1.0).terms(np.zeros(q))[0]
    idx = pd.Index(names)
    n_inner = sum(f.iterations for f in fits)
    hist_cols = (["theta", "loglik_penalised", "loglik_integrated"] if gamma
                 else ["theta", "resid", "fsum", "trH"])
    converged = final.converged and done
    notes = _notes(distribution, theta_hat, q, sparse, done, fits, outer_max, pb)
    return FrailtyResult(
        params=pd.Series(st.beta, index=idx, name="coef"),
        se=pd.Series(np.sqrt(np.diag(var)), index=idx, name="se"),
        se2=pd.Series(np.sqrt(np.maximum(np.diag(var2), 0)), index=idx, name="se2"),
        cov=pd.DataFrame(var, index=idx, columns=idx),
        frailty_variance=theta_hat,
        frailties=pd.Series(st.f, index=group_labels, name="frailty"),
        frailties_var=pd.Series(fvar, index=group_labels, name="frailty_var"),
        loglik=st.loglik, loglik_null=loglik_null, loglik_penalised=st.ppl,
        loglik_integrated=rows[-1][2] if gamma else math.nan,
        loglik_nofrailty=plain.state.loglik,
        theta_history=pd.DataFrame(rows, columns=hist_cols),
        distribution=distribution, sparse=sparse,
        df_frailty=float(q - np.sum(fvar * st.second)), ties=ties, n=pb.index.n,
        n_events=int(pb.event.sum()), n_groups=q, iterations=(len(fits), n_inner),
        converged=bool(converged), frailty=column, notes=notes)


def _notes(distribution: str, theta: float, q: int, sparse: bool, done: bool,
           fits: list[fn.InnerFit], outer_max: int, pb: core.CoxProblem) -> list[str]:
    if distribution == "gamma":
        notes = [f"Shared gamma frailty: variance theta = {theta:.6g}, chosen by maximising "
                 "the approximate marginal likelihood (R frailty.gamma, method = 'em'); the "
                 "likelihood-ratio test of theta = 0 uses the 50:50 chi-square(0)/(1) mixture."]
    else:
        notes = [f"Shared Gaussian (log-normal) frailty: variance theta = {theta:.6g}, chosen "
                 "by REML (R frailty.gaussian, method = 'reml')."]
    how = ("sparse: only the diagonal of the frailty block of the information is kept" if sparse
           else "dense: full information")
    notes.append(
        f"{q} groups, fit as R ({how}). se is R's se(coef), the beta block of the inverse "
        "penalised information; se2 is R's se2 (H^-1 I H^-1); neither accounts for the "
        "estimation of theta.")
    if not done:
        notes.append(f"The search over theta did not converge in {outer_max} trials; theta is "
                     "the last trial (as R).")
    bad = [i + 1 for i, f in enumerate(fits) if not f.converged]
    if bad:
        notes.append("The inner Newton-Raphson did not converge at trial(s) "
                     f"{', '.join(map(str, bad))} of theta (as R warns).")
    if not pb.unweighted:
        notes.append("Case weights: the penalised likelihood is weighted; the marginal "
                     "likelihood's event counts per group are unweighted, as R.")
        if pb.efron and not pb.index.identity:
            notes.append("Weighted tied deaths use the textbook Efron term (as fit_cox and R "
                         "coxph without frailty), not R's sparse-frailty code, whose Efron term "
                         "weights tied deaths by r * w and whose inner loop does not converge; "
                         "estimates then differ from R's by up to a few per cent.")
    return notes


def fit_gamma_frailty(pb: core.CoxProblem, names: list[str], group: np.ndarray,
                      group_labels: pd.Index, ties: str, max_iter: int = 20,
                      tol: float = 1e-9, eps: float = 1e-5, outer_max: int = 10
                      ) -> FrailtyResult:
    """Gamma frailty on a built problem (:func:`fit_frailty` with ``distribution="gamma"``)."""
    return fit_frailty(pb, names, group, group_labels, ties, distribution="gamma",
                       max_iter=max_iter, tol=tol, eps=eps, outer_max=outer_max)


def _check_groups(frame: pd.DataFrame, column: str) -> tuple[np.ndarray, pd.Index]:
    codes, labels = pd.factorize(frame[column], sort=True)
    q = labels.size
    if q < 2:
        only = f' (every row has {column} = "{labels[0]}")' if q else ""
        raise DataError([f'frailty column "{column}" has a single group{only}: a shared '
                         "frailty needs at least 2 groups"], title="invalid frailty")
    size = np.bincount(codes, minlength=q)
    if size.max() == 1:
        raise DataError([f'frailty column "{column}" has one row per group ({q} groups, '
                         f"{len(frame)} rows): a shared frailty needs groups with several rows"
                         " (is it a row identifier?)"], title="invalid frailty")
    return codes.astype(np.int64), pd.Index(labels, name=column)


def fit_cox_frailty(data: pd.DataFrame, formula: str, *, frailty: str | Frailty, start: str | None = None,
                    stop: str, event: str, strata: str | Sequence[str] | None = None,
                    ties: str = "efron", weights: str | None = None, offset: str | None = None,
                    missing: str = "raise", max_iter: int = 20, tol: float = 1e-9,
                    timefix: bool = True, distribution: str = "gamma",
                    sparse: bool | None = None) -> FrailtyResult:
    """``fit_cox(..., frailty=column)``: Cox model with a shared frailty per ``frailty``.

    ``frailty`` is a column name or a :class:`Frailty` (column, distribution,
    sparse), which is how ``fit_cox`` reaches the Gaussian frailty.
    Arguments as :func:`imrsurv.models.cox.fit_cox` (no ``cluster``: the
    frailty replaces the robust variance).  As R ``coxph(Surv(start, stop,
    event) ~ ... + frailty(column, distribution=...))``; see the module
    docstring.  ``sparse=None`` follows R (sparse for more than 5 groups).
    ``max_iter`` (inner Newton-Raphson steps per theta) defaults to R's 20.

    Raises :class:`~imrsurv.errors.DataError` for unusable input (a single
    group, one row per group, too little memory) and
    :class:`~imrsurv.errors.NotEstimable` when the penalised information is
    singular.
    """

    problems = []
    if isinstance(frailty, Frailty):
        if distribution != "gamma" and distribution != frailty.distribution:
            problems.append(f"distribution={distribution!r} contradicts frailty={frailty!r}")
        if sparse is not None and sparse != frailty.sparse:
            problems.append(f"sparse={sparse!r} contradicts frailty={frailty!r}")
        frailty, distribution, sparse = frailty.column, frailty.distribution, frailty.sparse
    if distribution not in DISTRIBUTIONS:
        problems.append(f"distribution={distribution!r} is not allowed: distribution must be "
                        'one of "gamma", "gaussian"')
    if sparse is not None and not isinstance(sparse, bool):
        problems.append(f"sparse={sparse!r} is not allowed: sparse must be True, False or None")
    if not isinstance(frailty, str):
        problems.append(f"frailty={frailty!r} is not allowed: frailty must be a column name "
                        "or a Frailty(column, distribution, sparse)")
    if problems:
        raise DataError(problems, title="invalid argument")
    if isinstance(data, pd.DataFrame) and frailty in data.columns:
        # before the design is built: the formula's columns bound the coefficients from below
        q0 = int(data[frailty].nunique())
        _check_memory(len(data), len(required_columns(formula)), q0,
                      q0 > SPARSE_ABOVE if sparse is None else sparse)
    prep = prepare(data, formula, start=start, stop=stop, event=event, strata=strata,
                       ties=ties, weights=weights, offset=offset, missing=missing,
                       timefix=timefix, grouping={"frailty": [frailty]})
    frame, design, pb, notes = prep.frame, prep.design, prep.problem, prep.notes
    codes, labels = _check_groups(frame, frailty)
    q = labels.size
    use_sparse = q > SPARSE_ABOVE if sparse is None else sparse
    _check_memory(len(frame), pb.x.shape[1], q, use_sparse)
    del frame, prep
    res = fit_frailty(pb, list(design.columns), codes, labels, ties, distribution=distribution,
                      sparse=use_sparse, max_iter=max_iter, tol=tol)
    res.notes[:0] = notes
    return res

"""Discrete-time hazard models for annual panels (Hunter et al. 2015 style).

Each site contributes one row per interview year at which it was at risk
(active at the previous interview, for discontinuation; inactive, for
restart); the response is whether the event happened by this interview. A
binomial GLM on those rows is the discrete-time hazard model:

* ``link="cloglog"``: ``log(-log(1 - h_t)) = alpha_t + x'beta``; ``exp(beta)``
  are hazard ratios of the continuous-time proportional-hazards model that
  the yearly data are grouped from (Prentice & Gloeckler 1978);
* ``link="logit"``: ``logit(h_t) = alpha_t + x'beta``; ``exp(beta)`` are odds
  ratios of the yearly discrete hazard.

The baseline ``alpha_t`` is whatever the formula makes of time: ``C(year)``
(one parameter per year, the nonparametric baseline) or ``bs(year, df=3)``
(a cubic B-spline, same basis as R's ``splines::bs``).

Fit: statsmodels ``GLM(Binomial(link))`` by IRLS to a deviance tolerance of
1e-12; coefficients and model-based errors equal R ``glm(...,
family=binomial(link=...))``. The reported ``se`` are cluster-robust by site:
the sandwich ``B M B`` with bread ``B`` the inverse expected information (R's
``vcov(glm)``), meat ``M`` the outer product of each site's summed score
(statsmodels ``score_obs``), times G/(G-1) for G sites. That is R
``sandwich::vcovCL(fit, cluster = ~site)``'s default for a glm and Stata's
``vce(cluster site)`` for logit/cloglog. statsmodels' ``cov_type="cluster"``
gives the same for the logit link but uses the observed information as bread,
which differs for cloglog, and by default also multiplies by (N-1)/(N-K).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats

from ..errors import DataError, Problem
from ..formula import SAFE_CONTEXT
from ..panel import DERIVED, read_panel
from .design import check_columns, safe_model_matrix

_OUTCOMES = {"discontinue": ("at_risk", "event"), "restart": ("restart_at_risk", "restart_event")}
_LINKS = {"cloglog": sm.families.links.CLogLog, "logit": sm.families.links.Logit}


@dataclass
class DiscreteTimeResult:
    """A fitted discrete-time hazard model."""

    formula: str
    link: str
    outcome: str
    params: pd.Series
    se: pd.Series  # cluster-robust
    se_naive: pd.Series  # model-based (R glm's)
    cov: pd.DataFrame
    conf_level: float
    nobs: int
    n_events: int
    n_sites: int
    loglik: float
    deviance: float
    notes: list[str] = field(default_factory=list)
    dropped: pd.DataFrame = field(default_factory=pd.DataFrame)
    model: object = field(default=None, repr=False)  # the statsmodels results
    model_spec: object = field(default=None, repr=False)  # formulaic spec, for new data

    @property
    def ratio_name(self) -> str:
        return "HR" if self.link == "cloglog" else "OR"

    @property
    def summary(self) -> pd.DataFrame:
        """coef, exp(coef) (HR for cloglog, OR for logit), robust se, z, p, CIs."""
        z = stats.norm.ppf(1 - (1 - self.conf_level) / 2)
        zz = self.params / self.se
        lo = self.params - z * self.se
        hi = self.params + z * self.se
        pct = f"{100 * self.conf_level:g}%"
        return pd.DataFrame({
            "coef": self.params, f"exp(coef) [{self.ratio_name}]": np.exp(self.params),
            "se": self.se, "se_naive": self.se_naive, "z": zz,
            "p": 2 * stats.norm.sf(np.abs(zz)),
            f"lower {pct}": lo, f"upper {pct}": hi,
            f"exp lower {pct}": np.exp(lo), f"exp upper {pct}": np.exp(hi),
        })

    def hazard(self, newdata: pd.DataFrame) -> pd.Series:
        """Predicted yearly hazard for rows of ``newdata`` (same columns as the panel)."""
        check_columns(self.formula, newdata, "new data")
        X = self.model_spec.get_model_matrix(newdata, context=SAFE_CONTEXT)
        eta = np.asarray(X) @ self.params.to_numpy()
        h = 1 - np.exp(-np.exp(eta)) if self.link == "cloglog" else 1 / (1 + np.exp(-eta))
        return pd.Series(h, index=X.index, name="hazard")

    def __str__(self) -> str:
        what = "discontinuation" if self.outcome == "discontinue" else "restart"
        head = (f"Discrete-time hazard model of {what} ({self.link} link)\n"
                f"  formula: {self.formula}\n"
                f"  {self.nobs} site-years at risk, {self.n_events} events, {self.n_sites} sites;"
                f" log-likelihood {self.loglik:.4f}\n")
        with pd.option_context("display.width", 140, "display.max_columns", 20):
            body = self.summary.round(4).to_string()
        return head + body + "\nNotes:\n" + "\n".join(f"  - {n}" for n in self.notes)

    __repr__ = __str__


def _split_formula(formula: str, response: str) -> str:
    if "~" not in formula:
        return formula
    lhs, rhs = formula.split("~", 1)
    lhs = lhs.strip()
    if lhs and lhs != response:
        raise ValueError(f"the response is set by outcome= ({response!r}); give only the "
                         f"right-hand side of the formula, not {lhs!r} ~ ...")
    return rhs.strip()


def fit_discrete_time(panel, formula: str, *, link: str = "cloglog", cluster: str = "site",
                      outcome: str = "discontinue", conf_level: float = 0.95,
                      tol: float = 1e-12) -> DiscreteTimeResult:
    """Fit a discrete-time hazard model to an annual panel.

    Parameters
    ----------
    panel
        A person-period frame from :func:`imrsurv.read_panel`, or a raw panel
        (``site, year, active, covariates``; frame or path), which is read
        with :func:`read_panel`'s default column names.
    formula
        Right-hand side, R style, e.g. ``"C(year) + team_size +
        leader_change"`` or ``"bs(year, df=3) + training_access"``.
    link
        ``"cloglog"`` (grouped proportional hazards) or ``"logit"``.
    cluster
        Column whose levels are the clusters of the robust variance (sites).
    outcome
        ``"discontinue"`` (rows with ``at_risk``, response ``event``) or
        ``"restart"`` (``restart_at_risk``, ``restart_event``).
    """
    if link not in _LINKS:
        raise ValueError(f"link must be one of {', '.join(_LINKS)}, got {link!r}")
    if outcome not in _OUTCOMES:
        raise ValueError(f"outcome must be one of {', '.join(_OUTCOMES)}, got {outcome!r}")
    if isinstance(panel, pd.DataFrame) and all(c in panel.columns for c in DERIVED):
        pp = panel
    else:
        pp = read_panel(panel)
    risk_col, y_col = _OUTCOMES[outcome]
    if cluster not in pp.columns:
        raise DataError([Problem("panel", None, None, f"cluster column {cluster!r} not found")],
                        "invalid panel")
    risk = pp[pp[risk_col] == 1]
    if len(risk) == 0:
        raise DataError([Problem("panel", None, None, f"no site-years at risk of {outcome}")],
                        "nothing to fit")
    rhs = _split_formula(formula, y_col)
    X = safe_model_matrix(rhs, risk, na_action="drop")  # parsed and checked, never eval'd
    used = risk.loc[X.index]
    dropped_rows = risk.drop(index=X.index)
    notes: list[str] = []
    y = used[y_col].to_numpy(float)
    groups = pd.factorize(used[cluster])[0]
    G = int(groups.max()) + 1 if len(groups) else 0
    family = sm.families.Binomial(link=_LINKS[link]())
    Xd = pd.DataFrame(np.asarray(X, float), columns=list(X.columns), index=used.index)
    model = sm.GLM(y, Xd, family=family)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        fit = model.fit(tol=tol, maxiter=200)
    names = list(X.columns)
    params = pd.Series(np.asarray(fit.params), index=names, name="coef")
    se_naive = pd.Series(np.asarray(fit.bse), index=names, name="se_naive")
    # Cluster sandwich: bread = inverse expected information (R's vcov(glm)), meat = outer
    # product of the per-site score sums, times G/(G-1). statsmodels' cov_type="cluster" uses
    # the observed information as bread, which differs for the (non-canonical) cloglog link;
    # this matches R sandwich::vcovCL(fit, cluster = ~site) for either link.
    bread = np.asarray(fit.normalized_cov_params)
    score = model.score_obs(np.asarray(fit.params))
    site_score = np.zeros((G, score.shape[1]))
    np.add.at(site_score, groups, score)
    factor = G / (G - 1) if G > 1 else np.nan
    cov = pd.DataFrame(factor * bread @ (site_score.T @ site_score) @ bread, index=names,
                       columns=names)
    se = pd.Series(np.sqrt(np.diag(cov.to_numpy())), index=names, name="se")
    n_events = int(y.sum())

    what = "discontinuation" if outcome == "discontinue" else "restart"
    notes.append(f"rows: site-years at risk of {what} ({risk_col} == 1): {len(risk)} of "
                 f"{len(pp)} panel rows; response {y_col}")
    notes.append(
        f"se: cluster-robust (sandwich) by {cluster!r} over {G} clusters, with the small-sample "
        "factor G/(G-1) (the default of R sandwich::vcovCL for glm, and of Stata's "
        "vce(cluster) for logit/cloglog). They allow "
        "any correlation among a site's years (a site's repeated years are not independent "
        "observations) and a misspecified binomial variance. They take the covariates and the "
        "time terms as given, and beyond G/(G-1) make no few-clusters correction. se_naive is "
        "the model-based (R glm) error, which treats every site-year as independent.")
    if G < 30:
        notes.append(f"only {G} clusters: cluster-robust errors may be too small with fewer than "
                     "about 30-50 clusters; compare with se_naive")
    if link == "cloglog":
        notes.append("exp(coef) are hazard ratios of the underlying continuous-time "
                     "proportional-hazards model (grouped-time interpretation)")
    else:
        notes.append("exp(coef) are odds ratios of the yearly (discrete) hazard")
    if len(dropped_rows):
        where = dropped_rows["where"] if "where" in dropped_rows.columns else dropped_rows.index
        listed = ", ".join(f"{w} (site {s})" for w, s in
                           zip(list(where)[:10], list(dropped_rows[cluster])[:10], strict=True))
        more = "" if len(dropped_rows) <= 10 else f" and {len(dropped_rows) - 10} more"
        notes.append(f"left out {len(dropped_rows)} at-risk site-year(s) with missing values in "
                     f"the formula's variables: {listed}{more}")
    if not fit.converged:
        notes.append("IRLS did not converge")
    # separation: years (or levels) with no events give runaway coefficients
    big = params.index[(params.abs() > 15) & (se_naive > 100)]
    if len(big):
        notes.append("possible separation (no events in some level): "
                     + ", ".join(map(str, big)))
    return DiscreteTimeResult(
        formula=rhs, link=link, outcome=outcome, params=params, se=se, se_naive=se_naive,
        cov=cov, conf_level=conf_level, nobs=len(used), n_events=n_events, n_sites=G,
        loglik=float(fit.llf), deviance=float(fit.deviance), notes=notes,
        dropped=dropped_rows, model=fit, model_spec=X.model_spec)

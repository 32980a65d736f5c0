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
family=binomial(link=...))``. The reported ``se`` are cluster-robust by site,
``vcov=`` choosing the sandwich (formulas in :mod:`imrsurv.models._cr2`):

* ``"CR2"`` (default): the bias-reduced linearisation of Bell & McCaffrey (2002),
  as R ``clubSandwich::vcovCR(fit, cluster = site, type = "CR2")`` computes it for a
  ``glm`` (working model ``Xd = diag(dmu/deta) X``, weights ``1/v(mu)``, residuals
  ``y - mu``), with t tests on Satterthwaite degrees of freedom per coefficient
  (``clubSandwich::coef_test(fit, vcov = "CR2", test = "Satterthwaite")``;
  Pustejovsky & Tipton 2018), the small-sample choice for 9-49 sites;
* ``"CR1"`` (alias ``"CL"``): the sandwich ``B M B`` with bread ``B`` the inverse
  expected information (R's ``vcov(glm)``), meat ``M`` the outer product of each
  site's summed score, times G/(G-1) for G sites: R ``sandwich::vcovCL(fit, cluster =
  ~site)``'s default for a glm, clubSandwich's CR1, and Stata's ``vce(cluster site)``
  for logit/cloglog (statsmodels' ``cov_type="cluster"`` uses the observed information
  as bread, which differs for cloglog, and multiplies by (N-1)/(N-K));
* ``"CR0"``: the same without G/(G-1).

``test=`` chooses the reference distribution of ``coef/se``: ``"Satterthwaite"`` (t on
the Satterthwaite df; default with CR2), ``"naive-t"`` (t on G-1 df) or ``"z"``
(standard normal; default with CR1/CR0, the earlier behaviour). p-values and
confidence limits use the same reference.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.genmod import families
from statsmodels.genmod.generalized_linear_model import GLM

from ..errors import DataError, Problem
from ..formula import SAFE_CONTEXT
from ..panel import DERIVED, read_panel
from ._cr2 import glm_cluster_robust
from ._result import ResultProtocol
from .design import check_columns, safe_model_matrix

_OUTCOMES = {"discontinue": ("at_risk", "event"), "restart": ("restart_at_risk", "restart_event")}
_LINKS = {"cloglog": families.links.CLogLog, "logit": families.links.Logit}
_VCOV = {"CR2": "CR2", "CR1": "CR1", "CL": "CR1", "CR0": "CR0"}
_TESTS = ("Satterthwaite", "naive-t", "z")


@dataclass
class DiscreteTimeResult(ResultProtocol):
    """A fitted discrete-time hazard model (the result protocol of :mod:`._result`)."""

    formula: str
    link: str
    outcome: str
    params: pd.Series
    se: pd.Series  # cluster-robust (vcov_type)
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
    vcov_type: str = "CR2"  # "CR2", "CR1" or "CR0"
    test: str = "Satterthwaite"  # "Satterthwaite", "naive-t" or "z"
    df: pd.Series | None = None  # degrees of freedom of the t reference (None for z)
    df_satterthwaite: pd.Series | None = None  # Satterthwaite df of vcov_type, always computed
    time_col: str = "year"  # the panel's period (interview year) column
    periods: tuple = ()  # the sorted periods present among the site-years fitted

    @property
    def ratio_name(self) -> str:
        return "HR" if self.link == "cloglog" else "OR"

    @property
    def summary(self) -> pd.DataFrame:
        """coef, exp(coef) (HR for cloglog, OR for logit), robust se, z or t, [df], p, CIs.

        With a t reference (``test`` "Satterthwaite" or "naive-t") the statistic column is
        ``t``, ``df`` gives its degrees of freedom, and p-values and limits
        ``coef -/+ q se`` use the t quantile ``q`` on those df (clubSandwich ``coef_test``
        and ``conf_int``); with ``test="z"`` the normal.
        """
        a = (1 - self.conf_level) / 2
        stat = self.params / self.se
        pct = f"{100 * self.conf_level:g}%"
        with np.errstate(over="ignore"):  # a separated term: exp(coef) is inf, said in notes
            cols: dict[str, pd.Series] = {"coef": self.params, "exp(coef)": np.exp(self.params),
                                          "se": self.se}
        if self.df is None:
            q = stats.norm.ppf(1 - a)
            cols["z"] = stat
            cols["p"] = 2 * stats.norm.sf(np.abs(stat))
        else:
            q = stats.t.ppf(1 - a, self.df)
            cols["t"] = stat
            cols["df"] = self.df
            cols["p"] = pd.Series(2 * stats.t.sf(np.abs(stat), self.df), index=self.params.index)
        lo = self.params - q * self.se
        hi = self.params + q * self.se
        with np.errstate(over="ignore"):
            cols.update({f"lower {pct}": lo, f"upper {pct}": hi,
                         f"exp(lower {pct})": np.exp(lo), f"exp(upper {pct})": np.exp(hi)})
        return pd.DataFrame(cols)

    def hazard(self, newdata: pd.DataFrame) -> pd.Series:
        """Predicted yearly hazard for rows of ``newdata`` (same columns as the panel)."""
        check_columns(self.formula, newdata, "new data")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # formulaic only warns of an unseen level
                X = self.model_spec.get_model_matrix(newdata, context=SAFE_CONTEXT)
        except Exception as exc:
            raise DataError([Problem("new data", None, None, f"cannot code the new data with "
                                     f"the fit's formula: {exc}")], "invalid new data") from None
        eta = np.asarray(X) @ self.params.to_numpy()
        h = 1 - np.exp(-np.exp(eta)) if self.link == "cloglog" else 1 / (1 + np.exp(-eta))
        return pd.Series(h, index=X.index, name="hazard")

    @property
    def separated_terms(self) -> list[str]:
        """Terms flagged as possibly separated (runaway coefficient; see the notes)."""
        return separated_terms(self.params, self.se_naive)

    def predict_survival(self, profile, periods=None, *, conf_level: float | None = None,
                         conf_type: str = "log-log", vcov: str | None = None,
                         reference: str = "normal") -> pd.DataFrame:
        """Survival ``S(t) = prod_{k <= t} (1 - h_k)`` for a covariate profile or path, with
        delta-method se and limits; see :func:`imrsurv.models.discrete_predict.predict_survival`.
        """
        from .discrete_predict import predict_survival

        return predict_survival(self, profile, periods, conf_level=conf_level,
                                conf_type=conf_type, vcov=vcov, reference=reference)

    def restricted_mean(self, profile, horizon, *, conf_level: float | None = None,
                        vcov: str | None = None, reference: str = "normal") -> pd.DataFrame:
        """Expected number of interviews up to ``horizon`` at which the programme is still
        running, ``sum_{k <= horizon} S(k)``; see
        :func:`imrsurv.models.discrete_predict.restricted_mean`."""
        from .discrete_predict import restricted_mean

        return restricted_mean(self, profile, horizon, conf_level=conf_level, vcov=vcov,
                               reference=reference)

    def plot_survival(self, pred: pd.DataFrame, ax=None, **kwargs):
        """Step curve of :meth:`predict_survival` output with its band; returns the Axes."""
        from .discrete_predict import plot_survival

        return plot_survival(pred, ax, **kwargs)

    def _header(self) -> str:
        return str(self).split("\n  se:")[0]

    def __str__(self) -> str:
        what = "discontinuation" if self.outcome == "discontinue" else "restart"
        head = (f"Discrete-time hazard model of {what} ({self.link} link)\n"
                f"  formula: {self.formula}\n"
                f"  {self.nobs} site-years at risk, {self.n_events} events, {self.n_sites} sites;"
                f" log-likelihood {self.loglik:.4f}\n"
                f"  se: {self.vcov_type} by site; test: {self.test};"
                f" exp(coef) = {self.ratio_name}\n")
        with pd.option_context("display.width", 140, "display.max_columns", 20):
            body = self.summary.round(4).to_string()
        return head + body + "\nNotes:\n" + "\n".join(f"  - {n}" for n in self.notes)

    __repr__ = __str__


def separated_terms(params: pd.Series, se_naive: pd.Series) -> list[str]:
    """Terms with a runaway coefficient (|coef| > 15 and model-based se > 100): the sign
    of separation (a level or year without events, or with only events)."""
    return [str(t) for t in params.index[(params.abs() > 15) & (se_naive > 100)]]


def _split_formula(formula: str, response: str) -> str:
    if "~" not in formula:
        return formula
    lhs, rhs = formula.split("~", 1)
    lhs = lhs.strip()
    if lhs and lhs != response:
        raise DataError([Problem("formula", None, None,
                                 f"the response is set by outcome= ({response!r}); give only "
                                 f"the right-hand side of the formula, not {lhs!r} ~ ...")],
                        "invalid formula")
    return rhs.strip()


def _check_arguments(link: str, outcome: str, vcov: str, test: str | None,
                     conf_level: float) -> tuple[str, str]:
    """Every misspelt argument in one DataError; returns the canonical (vcov, test)."""
    problems = []

    def bad(arg: str, value: object, allowed) -> None:
        problems.append(Problem("argument", None, None,
                                f"{arg}={value!r} is not allowed; use one of "
                                + ", ".join(repr(a) for a in allowed)))

    if link not in _LINKS:
        bad("link", link, _LINKS)
    if outcome not in _OUTCOMES:
        bad("outcome", outcome, _OUTCOMES)
    vc = _VCOV.get(vcov.upper()) if isinstance(vcov, str) else None
    if vc is None:
        bad("vcov", vcov, _VCOV)
    tests = {t.lower(): t for t in _TESTS}
    if test is None:
        ts = "Satterthwaite" if vc == "CR2" else "z"
    else:
        ts = tests.get(test.lower()) if isinstance(test, str) else None
        if ts is None:
            bad("test", test, _TESTS)
    if not (isinstance(conf_level, float | int) and 0 < conf_level < 1):
        problems.append(Problem("argument", None, None,
                                f"conf_level={conf_level!r} is not allowed; use a number "
                                "strictly between 0 and 1"))
    if problems:
        raise DataError(problems, "invalid arguments to fit_discrete_time")
    return vc, ts


def _rank_problem(X: np.ndarray, names: list[str]) -> DataError | None:
    """A DataError naming the columns that are linear combinations of earlier ones."""
    import scipy.linalg

    _, r, piv = scipy.linalg.qr(X, mode="economic", pivoting=True)
    d = np.abs(np.diag(r))
    rank = int((d > d[0] * 1e-10).sum()) if len(d) else 0
    if rank == X.shape[1]:
        return None
    aliased = ", ".join(names[i] for i in sorted(piv[rank:]))
    return DataError([Problem("formula", None, None,
                              f"the design matrix has rank {rank} < {X.shape[1]} columns: "
                              f"{aliased} are linear combinations of the other columns (R glm "
                              "would report NA for them); drop or recode them")],
                     "cannot fit the discrete-time model")


def fit_discrete_time(panel, formula: str, *, link: str = "cloglog", cluster: str = "site",
                      outcome: str = "discontinue", vcov: str = "CR2", test: str | None = None,
                      conf_level: float = 0.95, tol: float = 1e-12) -> DiscreteTimeResult:
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
    vcov
        Cluster-robust variance: ``"CR2"`` (bias-reduced, R ``clubSandwich::vcovCR(type =
        "CR2")``), ``"CR1"`` / ``"CL"`` (R ``sandwich::vcovCL``: HC0 times G/(G-1)) or
        ``"CR0"``.
    test
        Reference distribution of ``coef/se``: ``"Satterthwaite"`` (t on Satterthwaite df,
        R ``clubSandwich::coef_test``), ``"naive-t"`` (t on G-1 df) or ``"z"``. Default:
        ``"Satterthwaite"`` with CR2, ``"z"`` otherwise.
    """
    vcov, test = _check_arguments(link, outcome, vcov, test, conf_level)
    if isinstance(panel, pd.DataFrame) and all(c in panel.columns for c in DERIVED):
        pp = panel
    else:
        pp = read_panel(panel)
    risk_col, y_col = _OUTCOMES[outcome]
    time_col = str(pp.attrs.get("year", "year"))
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
    missing_cluster = used[cluster].isna().to_numpy()
    if missing_cluster.any():
        where = (used["where"] if "where" in used.columns else used.index)[missing_cluster]
        raise DataError([Problem("panel", str(w), None, f"missing cluster ({cluster}) value")
                         for w in where], "invalid panel")
    groups = pd.factorize(used[cluster])[0]
    G = int(groups.max()) + 1 if len(groups) else 0
    if G < 2:
        only = used[cluster].iloc[0] if len(used) else None
        raise DataError([Problem("panel", None, None if only is None else str(only),
                                 f"cluster-robust errors need at least 2 clusters ({cluster!r} "
                                 f"levels) among the site-years used; found {G}")],
                        "cannot fit the discrete-time model")
    names = list(X.columns)
    Xn = np.asarray(X, float)
    rank_error = _rank_problem(Xn, names)
    if rank_error is not None:
        raise rank_error
    links = _LINKS[link]()
    family = families.Binomial(link=links)
    Xd = pd.DataFrame(Xn, columns=names, index=used.index)
    model = GLM(y, Xd, family=family)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        fit = model.fit(tol=tol, maxiter=200)
    params = pd.Series(np.asarray(fit.params), index=names, name="coef")
    se_naive = pd.Series(np.asarray(fit.bse), index=names, name="se_naive")
    # The bread is statsmodels' normalized_cov_params: the information at the working weights
    # of the last IRLS step, which is what R's summary(glm)$cov.unscaled (and so sandwich and
    # clubSandwich) use; see _cr2.glm_cluster_robust.
    eta = Xn @ params.to_numpy()
    mu = np.asarray(fit.mu)
    with np.errstate(all="ignore"):
        cr = glm_cluster_robust(Xn, y, mu, links.inverse_deriv(eta), family.variance(mu),
                                groups, vcov, bread=np.asarray(fit.normalized_cov_params))
    cov = pd.DataFrame(cr.cov, index=names, columns=names)
    with np.errstate(invalid="ignore"):  # a separated term's variance can round below 0
        se = pd.Series(np.sqrt(np.diag(cr.cov)), index=names, name="se")
    df_satt = pd.Series(cr.df_satterthwaite, index=names, name="df")
    if test == "Satterthwaite":
        df = df_satt
    elif test == "naive-t":
        df = pd.Series(float(G - 1), index=names, name="df")
    else:
        df = None
    n_events = int(y.sum())

    what = "discontinuation" if outcome == "discontinue" else "restart"
    notes.append(f"rows: site-years at risk of {what} ({risk_col} == 1): {len(risk)} of "
                 f"{len(pp)} panel rows; response {y_col}")
    notes.extend(_inference_notes(vcov, test, cluster, G, df_satt))
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
    big = separated_terms(params, se_naive)
    if len(big):
        notes.append("possible separation (no events in some level): "
                     + ", ".join(map(str, big)) + "; their cluster-robust se, t/z and "
                     "limits are not meaningful (the sandwich collapses where fitted "
                     "probabilities reach 0 or 1)")
    return DiscreteTimeResult(
        formula=rhs, link=link, outcome=outcome, params=params, se=se, se_naive=se_naive,
        cov=cov, conf_level=conf_level, nobs=len(used), n_events=n_events, n_sites=G,
        loglik=float(fit.llf), deviance=float(fit.deviance), notes=notes,
        dropped=dropped_rows, model=fit, model_spec=X.model_spec, vcov_type=vcov, test=test,
        df=df, df_satterthwaite=df_satt, time_col=time_col,
        periods=tuple(sorted(used[time_col].unique().tolist())) if time_col in used else ())


def _inference_notes(vcov: str, test: str, cluster: str, G: int, df_satt: pd.Series) -> list[str]:
    """What the errors and tests account for, in words."""
    common = (f"by {cluster!r} over {G} clusters. They allow any correlation among a site's "
              "years (a site's repeated years are not independent observations) and a "
              "misspecified binomial variance; they take the covariates and the time terms as "
              "given. se_naive is the model-based (R glm) error, which treats every site-year "
              "as independent.")
    if vcov == "CR2":
        se = ("se: bias-reduced cluster-robust sandwich (CR2, Bell & McCaffrey 2002; "
              "Pustejovsky & Tipton 2018; as R clubSandwich::vcovCR(fit, cluster, type='CR2') "
              "for a glm) " + common + " CR2 removes the downward bias of the plain sandwich "
              "that matters with few sites (exactly unbiased for a linear model under its "
              "working model; approximately, by linearisation, for this GLM).")
    elif vcov == "CR1":
        se = ("se: cluster-robust sandwich with the small-sample factor G/(G-1) (CR1; the "
              "default of R sandwich::vcovCL for glm and of Stata's vce(cluster)) " + common
              + " Beyond G/(G-1) it makes no few-clusters correction; vcov='CR2' does.")
    else:
        se = ("se: cluster-robust sandwich without small-sample factor (CR0, HC0) " + common
              + " It is biased downwards with few sites; vcov='CR2' corrects that.")
    finite = df_satt[np.isfinite(df_satt)]
    rng = (f"{finite.min():.3g} to {finite.max():.3g}" if len(finite) else "not finite")
    if test == "Satterthwaite":
        tt = (f"tests and confidence limits: t with Satterthwaite degrees of freedom per "
              f"coefficient (as R clubSandwich::coef_test(test='Satterthwaite')), here {rng}; "
              f"they carry the uncertainty of estimating the variance from {G} sites, and a df "
              "far below G-1 means the coefficient is identified by few sites.")
    elif test == "naive-t":
        tt = (f"tests and confidence limits: t on G-1 = {G - 1} degrees of freedom (clubSandwich "
              f"'naive-t'); the Satterthwaite df for this variance ({rng}) would be "
              "more conservative where smaller.")
    else:
        tt = ("tests and confidence limits: normal (Wald z) reference, which ignores that the "
              f"variance is estimated from {G} sites (anti-conservative with few sites; "
              f"Satterthwaite df for this variance: {rng}); test='Satterthwaite' accounts "
              "for it.")
    out = [se, tt]
    if test == "Satterthwaite" and len(finite) and finite.min() < 4:
        low = ", ".join(map(str, finite.index[finite < 4]))
        out.append(f"Satterthwaite df below 4 for {low}: even the CR2 t test may be inaccurate "
                   "there (Pustejovsky & Tipton 2018); interpret with caution")
    if vcov != "CR2" and G < 30:
        out.append(f"only {G} clusters: cluster-robust errors without the CR2 correction may be "
                   "too small with fewer than about 30-50 clusters; compare with se_naive or use "
                   "vcov='CR2'")
    return out

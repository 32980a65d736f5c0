"""Cox proportional hazards models for (start, stop] data, numerically equal to R survival.

``fit_cox`` reproduces ``survival::coxph`` (Efron or Breslow ties, strata,
case weights, offsets, counting-process risk sets ``start < t <= stop``,
Lin-Wei robust variance with ``cluster``); ``fit_recurrent`` fits the
recurrent-event schemes (Andersen-Gill, PWP total and gap time, WLW, first
event) of Amorim & Cai (2015) from a History, clustered by site.

References: Therneau & Grambsch (2000) *Modeling Survival Data*; Lin & Wei
(1989) JASA 84:1074; Grambsch & Therneau (1994) Biometrika 81:515 and R
``cox.zph`` (survival >= 3.0) for the proportional-hazards test.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterable, Mapping, Sequence
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from imrsurv.errors import DataError
from imrsurv.models import _coxcore as core
from imrsurv.models import _result
from imrsurv.models import cox_inference as inference
from imrsurv.models import firth as _firth
from imrsurv.models.cox_prepare import TIES, Prepared, _as_list, _fmt_level, prepare
from imrsurv.models.design import Design, required_columns

__all__ = ["CoxResult", "CoxConvergenceWarning", "fit_cox", "fit_recurrent", "TIES", "Prepared",
           "prepare"]

PENALTIES = ("none", "firth")
RESIDUAL_KINDS = ("martingale", "score", "schoenfeld", "dfbeta")


class CoxConvergenceWarning(UserWarning):
    """A coefficient seems to run to infinity (monotone likelihood) or no convergence."""


# ---------------------------------------------------------------------------
# Result


class CoxResult(_result.ResultProtocol):
    """A fitted Cox model; numbers follow R ``coxph`` (see module docstring).

    Attributes: ``params``, ``se`` (robust when clustered), ``se_naive``,
    ``cov``, ``cov_naive``, ``loglik``, ``loglik_null``, ``n``, ``n_events``,
    ``n_clusters``, ``n_dropped``, ``iterations``, ``converged``, ``summary``,
    ``tests``, ``term_tests``, ``diverging``, ``notes``, ``concordance``,
    ``baseline_cumulative_hazard``; ``conf_int(method="profile")`` and
    ``profile_ci()`` for profile-likelihood limits.

    With ``penalty="firth"`` ``loglik``/``loglik_null`` are the penalised
    log partial likelihoods ``l + 0.5 log det I`` (``loglik_unpenalised`` keeps
    ``l``), the summary's p-values are penalised likelihood-ratio tests and its
    limits profile penalised-likelihood limits, as R ``coxphf``.
    """

    frailty_variance: float | None = None

    def __init__(self, *, problem: core.CoxProblem, newton: core.NewtonResult, design: Design,
                 formula: str, ties: str, row_index: pd.Index, strata: list[str],
                 strata_labels: list[str], cluster: str | None, cluster_codes: np.ndarray | None,
                 weights: str | None, offset: str | None, n_dropped: int, notes: list[str],
                 counting: bool, penalty: str | None = None,
                 loglik_penalised: float | None = None, separated: dict[str, str] | None = None,
                 max_iter: int = 30, tol: float = 1e-9, small_sample: str | None = None):
        self._pb = problem
        self.small_sample = small_sample
        self.penalty = penalty
        self._max_iter, self._tol = max_iter, tol
        self._nr = newton
        self._design = design
        self._row_index = row_index
        self._cluster_codes = cluster_codes
        self.formula = formula
        self.ties = ties
        self.strata = strata
        self.strata_labels = strata_labels
        self.cluster = cluster
        self.weights = weights
        self.offset = offset
        self.counting_process = counting
        names = design.columns
        self.terms = dict(design.terms)
        self.params = pd.Series(newton.state.beta.copy(), index=names, name="coef")
        self.cov_naive = pd.DataFrame(newton.var, index=names, columns=names)
        self.loglik = newton.state.loglik if loglik_penalised is None else loglik_penalised
        self.loglik_null = newton.loglik_null
        self.loglik_unpenalised = newton.state.loglik
        self.n = problem.index.n
        self.n_events = int(problem.event.sum())
        self.n_dropped = n_dropped
        self.iterations = newton.iterations
        self.converged = newton.converged
        if cluster_codes is not None:
            self.n_clusters: int | None = int(cluster_codes.max()) + 1
            cov = (inference.cr2_vcov(problem, newton.state, newton.var, cluster_codes)
                   if small_sample == "cr2" else self._robust_var())
            self.cov = pd.DataFrame(cov, index=names, columns=names)
        else:
            self.n_clusters = None
            self.cov = self.cov_naive.copy()
        self.se_naive = pd.Series(np.sqrt(np.diag(newton.var)), index=names, name="se_naive")
        self.se = pd.Series(np.sqrt(np.diag(self.cov.to_numpy())), index=names, name="se")
        # t / F reference on G - 1 degrees of freedom with the few-cluster correction
        self.df_resid: int | None = (self.n_clusters - 1 if small_sample == "cr2"
                                     and self.n_clusters else None)
        self.diverging = pd.Series(_diverging(newton, tol) if penalty is None
                                   else np.zeros(len(names), bool), index=names,
                                   name="diverging")
        self.separated = dict(separated or {})
        self.notes = notes + self._variance_notes() + self._divergence_notes()

    # -- variance -----------------------------------------------------------

    def _collapse(self, m: np.ndarray) -> np.ndarray:
        codes = self._cluster_codes
        assert codes is not None
        g = int(codes.max()) + 1
        return np.column_stack([np.bincount(codes, m[:, j], minlength=g)
                                for j in range(m.shape[1])])

    def _robust_var(self) -> np.ndarray:
        """Lin-Wei sandwich: D'D with D = dfbeta residuals summed within cluster (R coxph)."""
        assert self._cluster_codes is not None
        # large fits sum the residuals per cluster without the n x p matrix (_coxkernels)
        d = core.cluster_score_sums(self._pb, self._nr.state, self._cluster_codes) @ self._nr.var
        return d.T @ d

    def _variance_notes(self) -> list[str]:
        notes = [f"Ties handled by the {self.ties.capitalize()} approximation."]
        if self.penalty == "firth":
            notes.append("Firth-penalised partial likelihood (Heinze & Schemper 2001, as R "
                         "coxphf): l(beta) + 0.5 log det I(beta), finite under monotone "
                         "likelihood; p-values in the summary are penalised likelihood-ratio "
                         "tests and limits are profile penalised-likelihood limits; these "
                         "treat rows as independent.")
        if self.small_sample == "cr2":
            notes.append(f"Bias-reduced (CR2-type) robust standard errors clustered by "
                         f"{self.cluster}: each of the {self.n_clusters} cluster scores is "
                         "inflated by (I - H_g)^(-1/2), H_g its leverage (Kauermann & Carroll "
                         "2001, Fay & Graubard 2001); Wald z and p use a t reference on "
                         f"{self.df_resid} df (clusters - 1). Model-based errors are in "
                         "se_naive.")
        elif self.cluster is not None:
            notes.append(f"Robust (Lin-Wei sandwich) standard errors clustered by "
                         f"{self.cluster}: {self.n_clusters} clusters; model-based "
                         "(naive) errors are in se_naive.")
            notes.append("The likelihood-ratio and score tests assume independent rows "
                         "within a cluster; the Wald and robust score tests do not.")
        else:
            notes.append("Model-based (naive) standard errors: rows are treated as "
                         "independent (pass cluster= for robust errors).")
        return notes

    def _divergence_notes(self) -> list[str]:
        out = [f'"{term}": {why}' for term, why in self.separated.items()]
        div = [t for t in self.params.index[self.diverging.to_numpy()]]
        if div:
            out.append(f"Monotone likelihood: the coefficient{'s' if len(div) > 1 else ''} of "
                       f"{', '.join(repr(t) for t in div)} diverge{'' if len(div) > 1 else 's'} "
                       "(the partial likelihood keeps rising as it grows); the maximum "
                       "likelihood estimate is infinite, its Wald test and interval are "
                       "meaningless. Refit with penalty=\"firth\" for a finite estimate, or "
                       "read the likelihood-ratio test and profile limits (term_tests, "
                       "conf_int(method=\"profile\")).")
        return out

    # -- tables -------------------------------------------------------------

    @property
    def summary(self) -> pd.DataFrame:
        """Standard columns (coef, exp(coef), se, [se_naive], z, p, 95% limits, note).

        ``se`` is robust when clustered (R's ``robust se``), ``se_naive`` is R's
        ``se(coef)``.  A diverging coefficient keeps its last iterate in ``coef``
        and gets NaN elsewhere, with the note ``"diverges (monotone
        likelihood)..."``.  For a Firth fit ``p`` is the penalised
        likelihood-ratio test and the limits are profile penalised-likelihood
        limits.
        """
        note = pd.Series(np.where(self.diverging.to_numpy(), _result.DIVERGES, ""),
                         index=self.params.index)
        tab = _result.coef_table(self.params, self.se,
                                 se_naive=self.se_naive if self.cluster else None,
                                 df=self.df_resid, note=note)
        if self.penalty == "firth":
            lim = self.profile_ci()
            tt = self.term_tests
            for term, cols in self.terms.items():
                if len(cols) == 1:
                    tab.loc[self.params.index[cols[0]], "p"] = tt.loc[term, "p lrt"]
            tab["lower 95%"], tab["upper 95%"] = lim["lower"], lim["upper"]
            tab["exp(lower 95%)"], tab["exp(upper 95%)"] = np.exp(lim["lower"]), np.exp(
                lim["upper"])
        return tab

    @cached_property
    def term_tests(self) -> pd.DataFrame:
        """Per formula term: df, Wald (robust when clustered), likelihood-ratio, score and
        robust score statistics with p-values (see :mod:`.cox_inference`)."""
        out = inference.term_tests(self._pb, self.penalty, self.params.to_numpy(),
                                   self.loglik, self.cov.to_numpy(), self.terms,
                                   self._cluster_codes, self._max_iter, self._tol)
        if self.df_resid is not None:   # Wald W / q against F(q, G - 1)
            out["p wald"] = stats.f.sf(out["wald"] / out["df"], out["df"], self.df_resid)
        div = self.diverging.to_numpy()
        bad = [name for name, cols in self.terms.items() if div[list(cols)].any()]
        out.loc[bad, ["wald", "p wald"]] = np.nan   # the se of a diverging term is an artefact
        return out

    def profile_ci(self, level: float = 0.95, terms: Sequence[str] | None = None
                   ) -> pd.DataFrame:
        """Profile (penalised, for Firth) likelihood limits per coefficient: ``lower``, ``upper``.

        A limit is ``-inf``/``inf`` where the profile likelihood never falls far
        enough (monotone likelihood in that direction).  These limits treat rows
        as independent (they do not use the robust variance).
        """
        key = (round(level, 12), tuple(terms) if terms is not None else None)
        cache = self.__dict__.setdefault("_profile_cache", {})
        if key not in cache:
            names = list(self.params.index) if terms is None else list(terms)
            cols = [self.params.index.get_loc(t) for t in names]
            lim = inference.profile_limits(self._pb, self.penalty, self.params.to_numpy(),
                                           self.loglik, self.se_naive.to_numpy(), cols, level,
                                           self._max_iter, self._tol)
            cache[key] = pd.DataFrame(lim, index=names, columns=["lower", "upper"])
        return cache[key].copy()

    def term_inference(self, term: str, method: str = "lrt", level: float = 0.95
                       ) -> dict[str, float]:
        """Test of ``coef = 0`` and the matching interval for one single-column term.

        ``method``: ``"wald"`` (the fit's covariance: robust when clustered, t on
        G - 1 df with ``small_sample="cr2"``), ``"wald-cr2"`` (the CR2 variance
        and t on G - 1 df, whatever the fit used), ``"lrt"`` (likelihood-ratio
        test and profile-likelihood interval; penalised for a Firth fit) or
        ``"score"`` (the robust score test when clustered, else the model-based
        one, and the interval that inverts it).  Returns ``estimate``, ``se``,
        ``statistic``, ``p``, ``lower``, ``upper`` on the log-HR scale.
        """
        if term not in self.params.index:
            raise DataError([f"term {term!r} is not a coefficient of the fit; coefficients: "
                             f"{', '.join(self.params.index)}"], title="invalid argument")
        j = self.params.index.get_loc(term)
        beta = self.params.to_numpy()
        est, se = float(beta[j]), float(self.se.iloc[j])
        if method in ("wald", "wald-cr2"):
            df = self.df_resid
            if method == "wald-cr2" and self.small_sample != "cr2":
                if self._cluster_codes is None:
                    raise DataError(['method="wald-cr2" needs a clustered fit'],
                                    title="invalid argument")
                cov = inference.cr2_vcov(self._pb, self._nr.state, self._nr.var,
                                         self._cluster_codes)
                se, df = float(np.sqrt(cov[j, j])), int(self.n_clusters or 0) - 1
            stat = est / se if se > 0 else np.nan
            ref = stats.norm if df is None else stats.t(df)
            q = ref.ppf(0.5 + level / 2)
            return {"estimate": est, "se": se, "statistic": stat ** 2,
                    "p": float(2 * ref.sf(abs(stat))), "lower": est - q * se,
                    "upper": est + q * se}
        if method == "lrt":
            t = inference.term_test(self._pb, self.penalty, beta, self.loglik,
                                    self.cov.to_numpy(), [j], None, self._max_iter, self._tol,
                                    need=("lrt",))
            lim = self.profile_ci(level, [term]).iloc[0]
            return {"estimate": est, "se": se, "statistic": t["lrt"],
                    "p": float(stats.chi2.sf(t["lrt"], 1)), "lower": float(lim["lower"]),
                    "upper": float(lim["upper"])}
        if method == "score":
            if self.penalty is not None:
                raise DataError(['method="score" is the ordinary score test: use an '
                                 "unpenalised fit"], title="invalid argument")
            t = inference.term_test(self._pb, None, beta, self.loglik, self.cov.to_numpy(), [j],
                                    self._cluster_codes, self._max_iter, self._tol,
                                    need=("score",))
            stat = t["robust score"] if self._cluster_codes is not None else t["score"]
            lo, hi = inference.score_limits(self._pb, beta, self.se_naive.to_numpy(), j,
                                            self._cluster_codes, level, self._max_iter,
                                            self._tol)
            return {"estimate": est, "se": se, "statistic": stat,
                    "p": float(stats.chi2.sf(stat, 1)), "lower": lo, "upper": hi}
        raise DataError([f'method must be "wald", "wald-cr2", "lrt" or "score", not {method!r}'],
                        title="invalid argument")

    def conf_int(self, level: float = 0.95, method: str = "wald") -> pd.DataFrame:
        """``lower``/``upper`` on the coefficient scale: ``method="wald"`` (robust when
        clustered; NaN for a diverging term) or ``"profile"`` (likelihood-based)."""
        if method == "profile":
            return self.profile_ci(level)
        if method != "wald":
            raise DataError([f'method must be "wald" or "profile", not {method!r}'],
                            title="invalid argument")
        return super().conf_int(level)

    @cached_property
    def tests(self) -> pd.DataFrame:
        """Global tests as R prints them: likelihood ratio, Wald (robust with cluster), score."""
        p = self.params.size
        rows = {"likelihood ratio": 2 * (self.loglik - self.loglik_null),
                # meaningless when a coefficient diverges: its se is an artefact
                "wald": (np.nan if self.diverging.any() else
                         float(self.params @ np.linalg.solve(self.cov, self.params))),
                "score": self._nr.score_test}
        if self.cluster is not None:
            rows["robust score"] = self._robust_score_test()
        out = pd.DataFrame({"statistic": rows, "df": p})
        out["p"] = stats.chi2.sf(out["statistic"], p)
        return out

    def _robust_score_test(self, keep_offset: bool = False) -> float:
        """Robust (Lin-Wei) score statistic ``U' (T'T)^{-1} U`` at the initial value.

        ``T`` holds the weighted score residuals summed by cluster and ``U = colSums(T)``.
        As R ``coxph`` (``fit$rscore``), the residuals are taken at linear predictor
        ``x'beta0`` *without the offset* (R sets ``fit2$linear.predictors <- 0 *
        fit$linear.predictors``), so with an offset this is the statistic of the model
        without it. ``keep_offset=True`` evaluates at ``x'beta0 + offset`` instead: the
        robust score test of beta = beta0 in the model with the offset.
        """
        pb = self._pb
        if not keep_offset and np.any(pb.offset):
            pb = dataclasses.replace(pb, offset=np.zeros_like(pb.offset))
        state0 = core.evaluate(pb, self._nr.beta0, need_info=False)
        res0 = core.score_residuals(pb, state0) * pb.weights[:, None]
        t0 = self._collapse(res0)
        u = t0.sum(0)
        return float(u @ np.linalg.solve(t0.T @ t0, u))

    # -- concordance ----------------------------------------------------------

    @cached_property
    def concordance_counts(self) -> dict[str, float]:
        """Pair counts, concordance and its std, as R ``fit$concordance``."""
        pb = self._pb
        # Column-by-column sums give identical rows identical lp (a BLAS
        # product need not: its vector and tail paths round differently).
        # Centred x shifts lp by a constant per stratum, and pairs are only
        # compared within strata, so ranks and ties are those of R's lp.
        lp = pb.offset.copy()
        for j, b in enumerate(self.params.to_numpy()):
            lp += pb.x[:, j] * b
        return core.concordance_counts(pb.start, pb.stop, pb.event, pb.strata, pb.weights, lp,
                                       self._cluster_codes)

    @property
    def concordance(self) -> float:
        """Harrell's C for counting-process data, within strata, as R ``coxph`` reports it."""
        return self.concordance_counts["concordance"]

    # -- baseline hazard and prediction ---------------------------------------

    @cached_property
    def baseline_cumulative_hazard(self) -> pd.DataFrame:
        """Cumulative baseline hazard at covariates 0 (R ``basehaz(fit, centered=FALSE)``).

        With an offset it is, as R's, the curve at the offset's case-weighted mean over the
        fitted rows (``_coxcore.offset_reference``), not at offset 0.

        One row per distinct stop time (per stratum); columns ``time``,
        ``cumhaz`` and, when stratified, ``strata`` first.
        """
        codes, times, cum = core.baseline_hazard(self._pb, self._nr.state)
        out = pd.DataFrame({"time": times, "cumhaz": cum})
        if self.strata:
            out.insert(0, "strata", pd.Categorical.from_codes(codes, self.strata_labels))
        return out

    def predict_cumulative_hazard(self, profile: Mapping[str, Any] | pd.DataFrame,
                                  times: Iterable[float]) -> pd.DataFrame:
        """``H(t | x) = H0_s(t) exp(x'beta)`` for each profile row at ``times``.

        ``profile`` gives the formula's columns (and the strata columns when the
        model is stratified).  Returns a frame indexed by time, one column per
        profile row.
        """
        prof = pd.DataFrame([profile]) if isinstance(profile, Mapping) else profile.copy()
        t = np.asarray(list(times), dtype=float)
        missing = [c for c in required_columns(self.formula) + self.strata
                   + ([self.offset] if self.offset else []) if c not in prof.columns]
        if missing:
            raise DataError([f'profile lacks column "{c}"' for c in missing],
                            title="invalid profile")
        x = self._design.transform(prof)
        lp = x @ self.params.to_numpy()
        if self.offset:
            # the baseline is at the mean offset (as R's); a profile's offset enters relative
            # to it, as R survfit.coxph's risk2 = exp(x'beta + offset2 - xcenter)
            lp = lp + prof[self.offset].to_numpy(dtype=float) - core.offset_reference(self._pb)
        codes = self._profile_strata(prof)
        bh = core.baseline_hazard(self._pb, self._nr.state)
        out = np.empty((t.size, len(prof)))
        for col, (s, eta) in enumerate(zip(codes, lp, strict=True)):
            sel = bh[0] == s
            ts, hs = bh[1][sel], bh[2][sel]
            pos = np.searchsorted(ts, t, side="right") - 1
            h0 = np.where(pos >= 0, hs[np.maximum(pos, 0)], 0.0)
            out[:, col] = h0 * np.exp(eta)
        return pd.DataFrame(out, index=pd.Index(t, name="time"), columns=prof.index)

    def _profile_strata(self, prof: pd.DataFrame) -> np.ndarray:
        if not self.strata:
            return np.zeros(len(prof), np.int64)
        lookup = {lab: i for i, lab in enumerate(self.strata_labels)}
        labels = [", ".join(f"{c}={_fmt_level(v)}" for c, v in zip(self.strata, row,
                                                                 strict=True))
                  for row in prof[self.strata].itertuples(index=False)]
        bad = [lab for lab in labels if lab not in lookup]
        if bad:
            raise DataError([f"profile stratum {b} is not a stratum of the fit" for b in bad],
                            title="invalid profile")
        return np.array([lookup[lab] for lab in labels], np.int64)

    # -- residuals ------------------------------------------------------------

    def residuals(self, kind: str = "martingale", weighted: bool | None = None
                  ) -> pd.Series | pd.DataFrame:
        """Residuals equal to R ``residuals.coxph(fit, type=kind)``.

        ``weighted`` defaults as in R: True for ``dfbeta`` (score residuals @
        naive variance, times the case weight), False otherwise.  Martingale,
        score and dfbeta are indexed by row label in data order; Schoenfeld
        residuals have one row per event, sorted by stratum and time, indexed
        by (row, time).
        """
        if kind not in RESIDUAL_KINDS:
            raise ValueError(f"kind must be one of {', '.join(RESIDUAL_KINDS)}; got {kind!r}")
        weighted = (kind == "dfbeta") if weighted is None else weighted
        pb, st = self._pb, self._nr.state
        cols = self.params.index
        w = pb.weights if weighted else np.ones(pb.index.n)
        if kind == "martingale":
            return pd.Series(core.martingale_residuals(pb, st) * w, index=self._row_index,
                             name="martingale")
        if kind == "schoenfeld":
            rows, res = core.schoenfeld_residuals(pb, st)
            idx = pd.MultiIndex.from_arrays([self._row_index[rows], pb.stop[rows]],
                                            names=["row", "time"])
            return pd.DataFrame(res * w[rows, None], index=idx, columns=cols)
        res = core.score_residuals(pb, st)
        if kind == "dfbeta":
            res = res @ self._nr.var
        return pd.DataFrame(res * w[:, None], index=self._row_index, columns=cols)

    # -- proportional hazards -------------------------------------------------

    def check_proportional_hazards(self, transform: str = "km") -> pd.DataFrame:
        """Score test of ``x * g(t)`` terms per formula term and globally (R ``cox.zph``).

        ``transform``: ``"km"`` (``g = 1 - KM(t-)``, R's default), ``"identity"``,
        ``"log"`` or ``"rank"``; ``g`` is centred at its mean over events.
        Returns ``chisq``, ``df``, ``p`` per term plus a ``GLOBAL`` row, equal
        to ``cox.zph(fit, transform)$table`` (survival >= 3.0).
        """
        pb = self._pb
        times = pb.stop
        if transform == "km":
            gt = 1.0 - core.km_left_continuous(pb.start, pb.stop, pb.event)
        elif transform == "identity":
            gt = times.copy()
        elif transform == "log":
            gt = np.log(times)
        elif transform == "rank":
            gt = stats.rankdata(times)
        else:
            raise ValueError('transform must be "km", "identity", "log" or "rank"')
        gt = gt - gt[pb.event].mean()
        gk = np.zeros(pb.index.n_times)
        gk[pb.index.death_k] = gt[pb.index.death_rows]
        u, imat = core.zph_statistics(pb, self._nr.state, gk)
        p = self.params.size
        rows: dict[str, tuple[float, int]] = {}
        for name, jj in self.terms.items():
            kk = list(range(p)) + [p + j for j in jj]
            uu = np.r_[np.zeros(p), u[[p + j for j in jj]]]
            rows[name] = (float(uu @ np.linalg.solve(imat[np.ix_(kk, kk)], uu)), len(jj))
        uu = np.r_[np.zeros(p), u[p:]]
        rows["GLOBAL"] = (float(uu @ np.linalg.solve(imat, uu)), p)
        out = pd.DataFrame.from_dict(rows, orient="index", columns=["chisq", "df"])
        out["p"] = stats.chi2.sf(out["chisq"], out["df"])
        return out

    # -- display --------------------------------------------------------------

    def plot(self, ax: Any = None, *, exponentiate: bool = True) -> Any:
        """Forest plot of hazard ratios with 95% intervals (robust when clustered);
        a diverging term is drawn as "not estimable"."""
        kind = ("profile penalised likelihood" if self.penalty == "firth"
                else "robust" if self.cluster else "")
        what = "hazard ratio" if exponentiate else "log hazard ratio"
        return _result.forest_plot(self.summary, ax, exponentiate=exponentiate,
                                   xlabel=f"{what} (95% CI{', ' + kind if kind else ''})")

    def _header(self) -> str:
        kind = "counting process (start, stop]" if self.counting_process else "right-censored"
        parts = [f"Cox model{' (Firth-penalised)' if self.penalty == 'firth' else ''}, "
                 f"{kind}; ties = {self.ties}"]
        if self.strata:
            parts.append(f"strata: {', '.join(self.strata)} ({len(self.strata_labels)})")
        return "; ".join(parts) + f"\n  formula: {self.formula}\n" + \
            f"  n = {self.n} rows, {self.n_events} events" + \
            (f", {self.n_clusters} clusters ({self.cluster})" if self.cluster else "") + \
            (f"; {self.n_dropped} rows dropped (missing)" if self.n_dropped else "")

    def _table_text(self) -> str:
        stat = ["z"] if self.df_resid is None else ["t", "df"]
        cols = ["coef", "exp(coef)", "se"] + (["se_naive"] if self.cluster else []) + stat + ["p"]
        if self.penalty == "firth":
            cols += ["lower 95%", "upper 95%"]
        return _result.format_table(self.summary, cols)

    def __repr__(self) -> str:
        t = self.tests
        wald = "Wald test (robust)" if self.cluster else "Wald test"
        lines = [self._header(), "", self._table_text(), ""]
        if self.diverging.any():
            lines += ["Monotone likelihood: " + ", ".join(self.params.index[self.diverging])
                      + " diverge(s); refit with penalty=\"firth\".", ""]
        lr = "Penalised likelihood" if self.penalty == "firth" else "Likelihood"
        lines += [f"{lr} ratio test = {t.loc['likelihood ratio', 'statistic']:.4g} on "
                 f"{self.params.size} df, p = {t.loc['likelihood ratio', 'p']:.3g}",
                 (f"{wald} = {t.loc['wald', 'statistic']:.4g}, p = {t.loc['wald', 'p']:.3g}"
                  if np.isfinite(t.loc["wald", "statistic"]) else
                  f"{wald}: not shown (a coefficient diverges, so its se is meaningless)"),
                 f"Score (log-rank) test = {t.loc['score', 'statistic']:.4g}, "
                 f"p = {t.loc['score', 'p']:.3g}"]
        if self.cluster:
            lines.append(f"Robust score test = {t.loc['robust score', 'statistic']:.4g}, "
                         f"p = {t.loc['robust score', 'p']:.3g}")
        if not self.converged:
            lines.append(f"NOT CONVERGED after {self.iterations} iterations")
        return "\n".join(lines)

    def print_summary(self) -> None:
        """Print the fit as R ``summary.coxph`` does, plus concordance and notes."""
        sm = self.summary
        text = [repr(self), "",
                _result.format_table(sm, ["exp(coef)", "exp(lower 95%)", "exp(upper 95%)"]), "",
                f"Concordance = {self.concordance:.4f} "
                f"(se = {self.concordance_counts['std']:.4f}"
                + (f", robust by {self.cluster})" if self.cluster else ")"),
                f"Log-likelihood = {self.loglik:.6g} (null {self.loglik_null:.6g}); "
                f"{self.iterations} Newton-Raphson iterations"]
        text += ["Notes:"] + [f"  - {n}" for n in self.notes]
        print("\n".join(text))


# ---------------------------------------------------------------------------
# Fitting


def fit_cox(data: pd.DataFrame, formula: str, *, start: str | None = None, stop: str,
            event: str, cluster: str | None = None, strata: str | Sequence[str] | None = None,
            ties: str = "efron", weights: str | None = None, frailty: str | None = None,
            offset: str | None = None, missing: str = "raise", max_iter: int = 30,
            tol: float = 1e-9, timefix: bool = True, penalty: str | None = None,
            small_sample: str | None = None) -> CoxResult:
    """Fit a Cox proportional hazards model, as R ``survival::coxph``.

    ``formula`` is the right-hand side only (e.g. ``"team_size + C(practice)"``),
    coded with treatment contrasts.  ``start=None`` means right-censored data;
    otherwise a row is at risk at event time t iff ``start < t <= stop``.
    ``strata``: column name(s); ``cluster``: column giving the Lin-Wei robust
    variance; ``weights``: case weights (> 0); ``offset``: column added to the
    linear predictor.  Newton-Raphson from beta = 0 with step halving,
    converged when ``|1 - loglik_old / loglik_new| <= tol`` (R's defaults,
    except that R stops after 20 iterations rather than ``max_iter = 30``).
    ``timefix`` (R's default too) treats times closer than 1.5e-8 (absolute
    or relative to the mean time) as tied, so that computed times such as
    ``stop - previous_event`` tie when they should.

    ``penalty="firth"`` maximises Firth's penalised partial likelihood
    ``l(beta) + 0.5 log det I(beta)`` (Heinze & Schemper 2001; R ``coxphf``),
    finite when the ordinary likelihood is monotone (a rare time-varying
    exposure at 9-49 sites); Newton steps on the penalised likelihood,
    converged when every step is below 1e-8.  Without it, a coefficient that runs to infinity is
    flagged in ``diverging`` and its summary row says so.

    ``small_sample="cr2"`` (with ``cluster``) replaces the Lin-Wei sandwich by
    its bias-reduced, CR2-type version (see
    :func:`.cox_inference.cr2_vcov`) and refers Wald statistics to t / F on
    clusters - 1 degrees of freedom: use it with fewer than about 50 sites.

    Raises :class:`~imrsurv.errors.DataError` for unusable input; with
    ``missing="drop"`` rows with missing values are left out and counted in
    ``n_dropped`` and ``notes``.
    """
    penalty = _check_penalty(penalty)
    if small_sample not in (None, "cr2"):
        raise DataError([f'small_sample must be None or "cr2", not {small_sample!r}'],
                        title="invalid argument")
    if small_sample is not None and cluster is None:
        raise DataError(['small_sample="cr2" corrects the cluster-robust variance: pass '
                         "cluster= too"], title="invalid argument")
    if penalty is not None and frailty is not None:
        raise DataError(['penalty="firth" cannot be combined with frailty=: the Firth '
                         "penalty is defined for the fixed-effects partial likelihood only"],
                        title="invalid argument")
    if frailty is not None:  # shared gamma frailty, as R coxph(... + frailty(site))
        from .frailty import fit_cox_frailty

        if cluster is not None:
            raise DataError(["frailty= and cluster= cannot be combined"], title="invalid argument")
        return fit_cox_frailty(  # type: ignore[return-value]
            data, formula, frailty=frailty, start=start, stop=stop, event=event, strata=strata,
            ties=ties, weights=weights, offset=offset, missing=missing, max_iter=max_iter,
            tol=tol, timefix=timefix)
    if hasattr(data, "to_delayed") and not isinstance(data, pd.DataFrame):
        if penalty is not None or small_sample is not None:
            raise DataError(['penalty="firth" and small_sample="cr2" are not available for '
                             "dask DataFrames"], title="invalid argument")
        return _fit_dask(data, formula, start=start, stop=stop, event=event, cluster=cluster,
                         strata=strata, ties=ties, weights=weights, frailty=frailty, offset=offset,
                         missing=missing, max_iter=max_iter, tol=tol, timefix=timefix)
    prep = prepare(data, formula, start=start, stop=stop, event=event, strata=strata, ties=ties,
                   weights=weights, offset=offset, missing=missing, timefix=timefix,
                   grouping={"cluster": _as_list(cluster)})
    frame, design, pb, notes = prep.frame, prep.design, prep.problem, prep.notes
    strata_cols, slabels, n_dropped = prep.strata_cols, prep.strata_labels, prep.n_dropped
    # int32 codes: at 10M rows the robust variance's memory peak is 40 MB lower
    ccodes = pd.factorize(frame[cluster])[0].astype(np.int32) if cluster else None
    # the problem holds its own (centred) copy: free the inputs before iterating
    design = dataclasses.replace(design, matrix=np.empty((0, design.matrix.shape[1])))
    row_index = frame.index
    del frame, prep
    separated = separation_check(pb, design)
    penalised = None
    try:
        if penalty == "firth":
            nr, penalised = _fit_firth(pb, max_iter, tol)
        else:
            nr = core.newton_raphson(pb, max_iter=max_iter, eps=tol)
            if _diverging(nr, tol).any():   # diverging, or no information at all?
                _check_information(pb, core.evaluate(pb, nr.beta0).info)
    except core.SingularInformation as exc:
        raise _singular_error(design, exc.diag, bool(strata_cols)) from None
    if penalty is None:
        _warn_infinite(nr, design.columns, tol)
    elif not nr.converged:
        warnings.warn(f"Firth-penalised Cox model did not converge in {nr.iterations} "
                      "iterations", CoxConvergenceWarning, stacklevel=2)
    return CoxResult(problem=pb, newton=nr, design=design, formula=formula, ties=ties,
                     row_index=row_index, strata=strata_cols, strata_labels=slabels,
                     cluster=cluster, cluster_codes=ccodes, weights=weights, offset=offset,
                     n_dropped=n_dropped, notes=notes, counting=start is not None,
                     penalty=penalty, loglik_penalised=penalised,
                     separated=separated if penalty is None else None, max_iter=max_iter,
                     tol=tol, small_sample=small_sample)


def _check_penalty(penalty: str | None) -> str | None:
    if penalty is None or penalty == "none":
        return None
    if penalty not in PENALTIES:
        raise DataError([f"penalty must be one of {', '.join(map(repr, PENALTIES))} or None, "
                         f"not {penalty!r}"], title="invalid argument")
    return penalty


def _fit_firth(pb: core.CoxProblem, max_iter: int, tol: float
               ) -> tuple[core.NewtonResult, float]:
    """Maximise the penalised likelihood; the result holds the ordinary state at beta_hat.

    Newton steps use the Hessian of the penalised likelihood
    (:func:`.firth.evaluate_firth_newton`); the variance is the inverse of the
    ordinary information at the estimate, as coxphf reports.
    """
    p = pb.x.shape[1]
    _check_information(pb, core.evaluate(pb, np.zeros(p)).info)
    nr = core.maximise(lambda b: _firth.evaluate_firth_newton(pb, b), np.zeros(p),
                       max(max_iter, 50), tol, step_tol=1e-8)
    fs = nr.state
    var = np.linalg.inv(fs.base.info)
    st0 = core.evaluate(pb, nr.beta0)      # the score test is the ordinary one, at 0
    score_test = float(st0.score @ np.linalg.solve(st0.info, st0.score))
    out = core.NewtonResult(state=fs.base, beta0=nr.beta0, loglik_null=nr.loglik_null,
                            score_test=score_test, iterations=nr.iterations,
                            converged=nr.converged, var=(var + var.T) / 2)
    return out, float(fs.loglik)


def _check_information(pb: core.CoxProblem, info: np.ndarray) -> None:
    """Columns with (numerically) no information at beta = 0: their variation within the
    risk sets is below 1e-10 of their overall variation, or the columns are (numerically)
    linearly dependent within the risk sets (smallest eigenvalue of the correlation-scaled
    information below 1e-10), so no fit can estimate them (log det I, the Firth penalty, is
    then minus infinity).  Scale-free."""
    w = pb.weights
    var = (w @ (pb.x ** 2)) / w.sum()             # x is centred per stratum
    n_ev = max(float(pb.event.sum()), 1.0)
    rel = np.diag(info) / np.maximum(n_ev * var, 1e-300)
    flat = np.flatnonzero(rel < 1e-10)
    if flat.size:
        raise core.SingularInformation(np.where(rel < 1e-10, 0.0, np.diag(info)))
    d = 1 / np.sqrt(np.diag(info))
    if np.linalg.eigvalsh(info * d[:, None] * d[None, :]).min() < 1e-10:
        raise core.SingularInformation(np.diag(info))   # dependent within the risk sets


def separation_check(pb: core.CoxProblem, design: Design) -> dict[str, str]:
    """Before iterating: 0/1 columns whose every event falls on one side (monotone likelihood).

    For a 0/1 column x the partial likelihood is monotone in its coefficient
    (with the others held) when every death has x = 1 while the risk set holds
    an x = 0 row, or no death has x = 1 while x = 1 rows are at risk; then the
    ordinary estimate runs to +/- infinity.  Only such indicator columns are
    checked here; other monotone patterns are caught after the fit.
    """
    ix = pb.index
    out: dict[str, str] = {}
    for j, name in enumerate(design.columns):
        xj = pb.x[:, j]
        if pb.n_strata == 1 and xj.size:
            # a looser test of the extremes than the one below, on the centred column:
            # most columns are not 0/1 and leave without an n-row temporary
            c = pb.centers[0, j]
            if not np.allclose([xj.min() + c, xj.max() + c], (0.0, 1.0), atol=1e-6):
                continue
        raw = xj + (pb.centers[pb.strata, j] if pb.n_strata > 1 else pb.centers[0, j])
        col = np.round(raw, 12)
        # the unique values without a sort: only a column whose extremes are ~0 and ~1
        # and which holds nothing else is a 0/1 column (np.unique costs 50 ms at 1M rows)
        vals = np.array([col.min(), col.max()]) if col.size else col
        if vals.size != 2 or vals[0] == vals[1] or not np.allclose(vals, (0.0, 1.0)) \
                or not np.all((col == vals[0]) | (col == vals[1])):
            continue
        deaths_one = col[ix.death_rows] == 1.0
        if deaths_one.any() and not deaths_one.all():
            continue  # events on both sides: nothing to check (the risk-set sums cost)
        ones = col == 1.0
        at_risk_ones = core._riskset_sum(ix, ones.astype(float) * pb.weights)
        if not deaths_one.any() and at_risk_ones.max() > 0:
            out[name] = ("no event happened while it was 1 (at-risk rows with value 1 exist): "
                         "its coefficient runs to -infinity (monotone likelihood)")
        elif deaths_one.all() and (core._riskset_sum(ix, pb.weights)
                                   - at_risk_ones).max() > 1e-12:
            out[name] = ("every event happened while it was 1: its coefficient runs to "
                         "+infinity (monotone likelihood)")
    return out


def _diverging(nr: core.NewtonResult, eps: float) -> np.ndarray:
    """Coefficients running to infinity (monotone likelihood).

    After convergence, R's check: the next Newton step ``|U V|`` is still large
    relative to ``|beta|`` (or the score is not finite); a coefficient whose step
    is only dragged along by a diverging neighbour keeps a finite, moderate
    se and estimate, so the check also needs ``|beta| > 5`` or ``se > 5``.  A fit
    that ran out of iterations is judged by the coefficient alone: far out
    (``|beta| > 10``) with a huge variance (``se > 10``).
    """
    beta = nr.state.beta
    se = np.sqrt(np.maximum(np.diag(nr.var), 0))
    far = (np.abs(beta) > 10) & (se > 10)
    if not nr.converged:
        return far | ~np.isfinite(beta)
    step = np.abs(nr.state.score @ nr.var)
    r_flag = ~np.isfinite(nr.state.score) | (step > np.sqrt(eps) * (1 + np.abs(beta)))
    return (r_flag & ((np.abs(beta) > 5) | (se > 5))) | far


def coef_table(params: pd.Series, se: pd.Series, se_naive: pd.Series,
               robust: bool, note: pd.Series | None = None) -> pd.DataFrame:
    """Standard table (see :mod:`._result`): Wald z, p and 95% limits from ``se``
    (robust when clustered, then ``se_naive`` is R's ``se(coef)``)."""
    return _result.coef_table(params, se, se_naive=se_naive if robust else None, note=note)


def _fit_dask(data: Any, formula: str, *, strata, frailty, offset, **kw: Any) -> Any:
    """A dask DataFrame goes to the out-of-core engine (numeric columns, one stratum column)."""
    from .cox_dask import fit_cox_dask

    if frailty is not None or offset is not None:
        raise DataError(["frailty and offset are not supported for dask DataFrames"])
    strata_cols = _as_list(strata)
    if len(strata_cols) > 1:
        raise DataError(["a dask DataFrame takes at most one strata column"])
    return fit_cox_dask(data, formula, strata=strata_cols[0] if strata_cols else None, **kw)


def _singular_error(design: Design, diag: np.ndarray, stratified: bool) -> DataError:
    scale = max(float(np.abs(diag).max()), 1e-300)
    flat = [c for c, d in zip(design.columns, diag, strict=True) if d <= 1e-10 * scale]
    where = "within every stratum's risk sets" if stratified else "within the risk sets"
    if flat:
        msg = [f'column "{c}" does not vary {where} at any event time, so its '
               "coefficient cannot be estimated" for c in flat]
    else:
        msg = [f"the covariates {', '.join(design.columns)} are linearly dependent {where}; "
               "drop or combine some of them"]
    return DataError(msg, title="covariates cannot all be estimated")


def _warn_infinite(nr: core.NewtonResult, names: list[str], eps: float) -> None:
    """Warn as R does when a coefficient seems infinite (see :func:`_diverging`)."""
    if not nr.converged:
        warnings.warn(f"Cox model did not converge in {nr.iterations} iterations",
                      CoxConvergenceWarning, stacklevel=3)
    for j in np.flatnonzero(_diverging(nr, eps)):
        warnings.warn(f'Loglik converged before variable "{names[j]}"; its coefficient may '
                      "be infinite (monotone likelihood: e.g. no events in one group); "
                      'refit with penalty="firth" for a finite estimate',
                      CoxConvergenceWarning, stacklevel=3)


# ---------------------------------------------------------------------------
# Recurrent events

SCHEMES = ("ag", "pwp-tt", "pwp-gt", "wlw", "first")


def fit_recurrent(history: Any, formula: str, scheme: str = "ag", outcome: str = "discontinue",
                  ties: str = "efron", **kw: Any) -> CoxResult:
    """Recurrent-event Cox model of ``history`` with robust errors clustered by site.

    ``history.counting_process(scheme, outcome=outcome)`` supplies the rows
    (columns ``site, start, stop, event, episode`` and, for PWP gap time,
    ``gap_start, gap_stop``).  Schemes: ``ag`` Andersen-Gill (common baseline),
    ``pwp-tt`` / ``pwp-gt`` Prentice-Williams-Peterson stratified by episode in
    total / gap time, ``wlw`` Wei-Lin-Weissfeld marginal model stratified by
    episode, ``first`` time to the first event.  Other keywords go to
    :func:`fit_cox`.
    """
    if scheme not in SCHEMES:
        raise DataError([f"scheme must be one of {', '.join(SCHEMES)}; got {scheme!r}"],
                        title="invalid argument")
    for k in ("start", "stop", "event", "cluster", "strata"):
        if k in kw:
            raise TypeError(f"fit_recurrent sets {k}= from the scheme; do not pass it")
    cp = history.counting_process(scheme, outcome=outcome)
    args: dict[str, Any] = {"start": "start", "stop": "stop", "event": "event",
                            "cluster": "site", "strata": None}
    if scheme in ("pwp-tt", "wlw"):
        args["strata"] = "episode"
    elif scheme == "pwp-gt":
        args.update(start="gap_start", stop="gap_stop", strata="episode")
    res = fit_cox(cp, formula, ties=ties, **args, **kw)
    res.notes.insert(0, _SCHEME_NOTES[scheme])
    return res


_SCHEME_NOTES = {
    "ag": "Andersen-Gill model: all discontinuations share one baseline hazard on the "
          "calendar (total) time scale.",
    "pwp-tt": "Prentice-Williams-Peterson total-time model: stratified by episode, a site is "
              "at risk for its k-th event only after its (k-1)-th.",
    "pwp-gt": "Prentice-Williams-Peterson gap-time model: stratified by episode, time "
              "restarts at 0 after each event.",
    "wlw": "Wei-Lin-Weissfeld marginal model: stratified by episode, every site is at risk "
           "for each episode from the start of follow-up.",
    "first": "Time to the first event only.",
}

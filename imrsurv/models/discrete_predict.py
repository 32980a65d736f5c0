"""Survival curves with confidence limits from a fitted discrete-time hazard model.

For an annual panel (Hunter et al. 2015: sustainment by year since funding ended) the
model of :func:`imrsurv.models.discrete.fit_discrete_time` gives the yearly hazard
``h_k = P(discontinued by interview k | running at interview k-1)``; for a covariate
profile ``x_k`` (fixed, or a path such as "a leadership change in year 2"):

* linear predictor ``eta_k = x_k' beta``; ``h_k = 1 - exp(-exp(eta_k))`` (cloglog) or
  ``1 / (1 + exp(-eta_k))`` (logit);
* survival at interview ``t``: ``S(t) = prod_{k <= t} (1 - h_k)``, the product over the
  fitted periods (interview years) up to ``t``; ``S = 1`` at the origin (the period
  before the first interview, when every site is running by definition);
* delta method: ``grad log S(t) = sum_{k <= t} d log(1 - h_k) / d eta_k * x_k`` with
  ``d log(1 - h)/d eta = -exp(eta)`` (cloglog) or ``-h`` (logit);
  ``se(log S) = sqrt(g' V g)``, ``se(S) = S se(log S)``, ``V`` the model's covariance
  (cluster-robust, CR2 by default; ``vcov="naive"`` for R ``vcov(glm)``);
* limits from ``q`` = the normal quantile (``reference="normal"``) or the t quantile on
  G-1 df (``reference="t"``, G sites) on the ``log(-log S)`` scale (``"log-log"``,
  R survfit's ``conf.type="log-log"``: ``S^exp(+-q se(log S)/|log S|)``), the
  ``log S`` scale (``"log"``, upper limit capped at 1) or plainly (``"plain"``,
  clipped to [0, 1]).

A limit that cannot be computed is NaN with a note, never a number: a period whose
design row uses a separated term (a runaway coefficient, flagged by the fit), or a
survival of exactly 1 or 0 (no log-log scale).

The restricted mean (:func:`restricted_mean`) is the discrete analogue of the RMST for
annual interviews: the expected number of interviews ``k <= horizon`` at which the
programme is still running, ``sum_{k <= horizon} S(k)`` (``= E[min(T, horizon + 1)] -
1`` with ``T`` the first interview at which it is found discontinued, when the periods
are 1..horizon), with the delta-method se ``sqrt(G' V G)``, ``G = sum_k S(k) grad log
S(k)``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import DataError, Problem, check_choice
from ..formula import SAFE_CONTEXT
from .design import check_columns

if TYPE_CHECKING:
    from .discrete import DiscreteTimeResult

__all__ = ["predict_survival", "restricted_mean", "plot_survival", "CONF_TYPES"]

CONF_TYPES = ("log-log", "log", "plain")
REFERENCES = ("normal", "t")
VCOVS = ("robust", "naive")


def _problem(message: str) -> Problem:
    return Problem("profile", None, None, message)


def _fitted_periods(res: DiscreteTimeResult) -> np.ndarray:
    if not res.periods:
        raise DataError([_problem(f"the fit does not record its periods (column "
                                  f"{res.time_col!r} was not among the fitted rows); refit "
                                  "with a panel from imrsurv.read_panel")],
                        "cannot predict survival")
    return np.asarray(res.periods)


def _show(v: Any) -> str:
    """A period as the user would write it (``2``, not ``np.int64(2)``)."""
    if isinstance(v, (np.integer, np.floating)):
        v = v.item()
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return repr(v) if isinstance(v, str) else str(v)


def _span(fitted: np.ndarray) -> str:
    return f"{fitted[0]}-{fitted[-1]}" if len(fitted) > 1 else str(fitted[0])


def _check_periods(res: DiscreteTimeResult, periods: Iterable[Any] | None) -> np.ndarray:
    """The periods to report: all fitted ones by default; others are a DataError."""
    fitted = _fitted_periods(res)
    if periods is None:
        return fitted
    items = list(periods) if isinstance(periods, Iterable) and not isinstance(
        periods, str) else [periods]
    if not items:
        raise DataError([_problem("periods is empty: give one or more fitted periods")],
                        "invalid periods")
    have = set(fitted.tolist())
    bad = []
    for v in items:
        ok = (isinstance(v, (int, float, np.integer, np.floating))
              and not isinstance(v, (bool, np.bool_)) and np.isfinite(v) and v in have)
        if not ok:
            bad.append(v)
    if bad:
        raise DataError([_problem(
            f"{res.time_col} {_show(v)} is not a fitted period ({res.time_col}s "
            f"{_span(fitted)} with site-years at risk): the model has no hazard there "
            "(a C(year) baseline has no such level; a smooth or linear term would be "
            "extrapolated), so survival through it is not estimated") for v in bad],
            "invalid periods")
    return np.array(sorted({float(v) for v in items}), dtype=fitted.dtype)


def _profile_rows(res: DiscreteTimeResult, profile: Mapping[str, Any] | pd.DataFrame,
                  needed: np.ndarray) -> tuple[pd.DataFrame, bool]:
    """One row per needed period (the fitted periods up to the horizon); is it a path?"""
    tc = res.time_col
    if isinstance(profile, Mapping):
        if tc in profile:
            raise DataError([_problem(
                f"a fixed profile (dict) must not give {tc!r}: it is filled in per period; "
                f"for covariates that change over {tc}s give a DataFrame with one row per "
                f"{tc}")], "invalid profile")
        bad = [k for k, v in profile.items() if not np.isscalar(v) and v is not None]
        if bad:
            raise DataError([_problem(f"profile value of {k!r} is not a single value; a "
                                      "covariate path is a DataFrame with one row per period")
                             for k in bad], "invalid profile")
        frame = pd.DataFrame({k: [v] * len(needed) for k, v in profile.items()})
        frame[tc] = needed
        return frame, False
    if not isinstance(profile, pd.DataFrame):
        raise DataError([_problem(f"profile must be a dict of covariate values or a "
                                  f"DataFrame (one row per {tc}), not "
                                  f"{type(profile).__name__}")], "invalid profile")
    if tc not in profile.columns:
        raise DataError([_problem(f"the covariate path lacks the period column {tc!r} "
                                  f"(one row per {tc})")], "invalid profile")
    per = pd.to_numeric(profile[tc], errors="coerce").to_numpy(float)
    problems = []
    dup = pd.Series(per).duplicated(keep="first").to_numpy()
    for i in np.flatnonzero(dup):
        problems.append(f"row {i + 1}: {tc} {_show(profile[tc].iloc[i])} appears twice")
    fitted = set(np.asarray(res.periods, float).tolist())
    for i in np.flatnonzero(~np.isin(per, list(fitted))):
        problems.append(f"row {i + 1}: {tc} {_show(profile[tc].iloc[i])} is not a fitted period "
                        f"({_span(np.asarray(res.periods))})")
    lacking = [p for p in needed if float(p) not in set(per.tolist())]
    if lacking:
        problems.append(f"the path has no row for {tc} " + ", ".join(map(str, lacking))
                        + f"; survival through period t needs the covariates at every "
                        f"fitted {tc} up to t")
    if problems:
        raise DataError([_problem(m) for m in problems], "invalid profile")
    keep = np.isin(per, np.asarray(needed, float))
    frame = profile.loc[keep].copy()
    frame = frame.iloc[np.argsort(per[keep], kind="stable")].reset_index(drop=True)
    frame[tc] = needed
    return frame, True


def _design(res: DiscreteTimeResult, frame: pd.DataFrame) -> np.ndarray:
    check_columns(res.formula, frame, "profile")
    used = [c for c in frame.columns if c in res.model_spec.required_variables]
    miss = [(c, frame[res.time_col].iloc[i]) for c in used
            for i in np.flatnonzero(frame[c].isna().to_numpy())]
    if miss:
        raise DataError([_problem(f"missing value of {c!r} at {res.time_col} {t}")
                         for c, t in miss], "invalid profile")
    try:
        with warnings.catch_warnings():
            # formulaic only warns of an unseen level and codes it as the reference level
            warnings.simplefilter("error")
            X = res.model_spec.get_model_matrix(frame, context=SAFE_CONTEXT)
    except Exception as exc:  # an unseen factor level, a string in a numeric column, ...
        raise DataError([_problem(f"cannot code the profile with the fit's formula: {exc}")],
                        "invalid profile") from None
    if len(X) != len(frame):
        raise DataError([_problem("the profile has values the formula cannot use (missing "
                                  "after transformation)")], "invalid profile")
    return np.asarray(X.reindex(columns=res.params.index), float)


def _covariance(res: DiscreteTimeResult, vcov: str | None) -> tuple[np.ndarray, str]:
    if vcov is None or vcov == "robust":
        return res.cov.to_numpy(float), (
            f"{res.vcov_type} cluster-robust covariance by site ({res.n_sites} sites), the "
            "fit's own")
    check_choice("vcov", vcov, VCOVS)
    return np.asarray(res.model.cov_params(), float), (
        "model-based covariance (R vcov(glm)), which treats every site-year as independent")


def _quantile(res: DiscreteTimeResult, level: float, reference: str) -> tuple[float, str]:
    check_choice("reference", reference, REFERENCES)
    if reference == "normal":
        return float(stats.norm.ppf(0.5 + level / 2)), "normal quantile"
    df = res.n_sites - 1
    return float(stats.t.ppf(0.5 + level / 2, df)), f"t quantile on G-1 = {df} df"


def _level(res: DiscreteTimeResult, conf_level: float | None) -> float:
    level = res.conf_level if conf_level is None else conf_level
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise DataError([Problem("argument", None, None, f"conf_level={conf_level!r} is not "
                                 "allowed; use a number strictly between 0 and 1")],
                        "invalid argument")
    return float(level)


def _curve(res: DiscreteTimeResult, X: np.ndarray, V: np.ndarray):
    """Hazards, log S, grad log S (rows) and the unusable rows, over the periods of X."""
    eta = X @ res.params.to_numpy(float)
    with np.errstate(over="ignore", under="ignore"):
        if res.link == "cloglog":
            log1mh = -np.exp(eta)
            dlog = log1mh
            h = -np.expm1(log1mh)
        else:
            h = 1.0 / (1.0 + np.exp(-eta))
            log1mh = -np.logaddexp(0.0, eta)
            dlog = -h
    log_s = np.cumsum(log1mh)
    grad = np.cumsum(dlog[:, None] * X, axis=0)
    sep = [res.params.index.get_loc(t) for t in res.separated_terms]
    uses_sep = np.zeros(len(X), bool)
    if sep:
        uses_sep = np.cumsum(np.any(X[:, sep] != 0, axis=1)) > 0
    bad_v = ~np.all(np.isfinite(V))
    return h, log_s, grad, uses_sep | bad_v


def _unusable_reason(res: DiscreteTimeResult) -> str:
    if res.separated_terms:
        return ("the design there uses possibly separated term(s) "
                + ", ".join(res.separated_terms) + " whose runaway coefficient has no "
                "meaningful variance (the survival shown is the boundary estimate)")
    return "the covariance matrix has non-finite entries"


def _limits(s: np.ndarray, se_log: np.ndarray, q: float, conf_type: str):
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if conf_type == "log-log":
            w = q * se_log / np.abs(np.log(s))
            return s ** np.exp(w), s ** np.exp(-w)
        if conf_type == "log":
            return s * np.exp(-q * se_log), np.minimum(s * np.exp(q * se_log), 1.0)
        se = s * se_log
        return np.clip(s - q * se, 0.0, 1.0), np.clip(s + q * se, 0.0, 1.0)


def _setup(res, profile, periods, conf_level, vcov, reference):
    level = _level(res, conf_level)
    report = _check_periods(res, periods)
    fitted = _fitted_periods(res)
    needed = fitted[fitted <= report.max()]
    frame, is_path = _profile_rows(res, profile, needed)
    X = _design(res, frame)
    V, v_note = _covariance(res, vcov)
    q, q_note = _quantile(res, level, reference)
    return level, report, needed, X, V, v_note, q, q_note, is_path


def _common_notes(res, v_note, q_note, is_path, fitted) -> list[str]:
    notes = [f"se: delta method with the {v_note}",
             f"limits use the {q_note}" + (" (the t on G-1 df is wider with few sites)"
                                           if "normal" in q_note else ""),
             f"S(t) = prod over fitted {res.time_col}s k <= t of (1 - h_k), h_k the yearly "
             f"{'discontinuation' if res.outcome == 'discontinue' else 'restart'} hazard "
             f"({res.link} link); S = 1 at {res.time_col} {fitted[0] - 1}, before the first "
             "interview",
             ("covariates follow the given path, period by period" if is_path else
              f"covariates fixed at the profile's values; {res.time_col} filled in per "
              "period")]
    if len(fitted) > 1 and np.any(np.diff(fitted) != 1):
        notes.append(f"the fitted {res.time_col}s are not consecutive ({list(fitted)}); the "
                     "product skips the missing ones")
    if res.outcome == "restart":
        notes.append(f"outcome restart: the curve is the probability of no restart by each "
                     f"{res.time_col} for a site inactive from the first one; the time axis is "
                     "the panel's, not time since discontinuation")
    return notes


def predict_survival(res: DiscreteTimeResult, profile: Mapping[str, Any] | pd.DataFrame,
                     periods: Iterable[Any] | None = None, *, conf_level: float | None = None,
                     conf_type: str = "log-log", vcov: str | None = None,
                     reference: str = "normal") -> pd.DataFrame:
    """Survival curve of a covariate profile or path with delta-method se and limits.

    Parameters
    ----------
    res
        A :class:`~imrsurv.models.discrete.DiscreteTimeResult`.
    profile
        A dict of covariate values (time-fixed; the period column, e.g. ``year``, is
        filled in per period), or a DataFrame with one row per period (a covariate
        path, e.g. ``leadership_change`` 1 in year 2) including the period column and
        covering every fitted period up to the last one reported.
    periods
        The periods (interview years) to report; default every fitted period. A period
        outside the fitted ones is a :class:`~imrsurv.DataError`.
    conf_level
        Default: the fit's.
    conf_type
        ``"log-log"`` (default), ``"log"`` or ``"plain"`` (see the module docstring).
    vcov
        ``None`` or ``"robust"``: the fit's cluster-robust covariance (``vcov_type``,
        CR2 by default); ``"naive"``: the model-based one (R ``vcov(glm)``).
    reference
        ``"normal"`` (default) or ``"t"`` (t on G-1 df, G sites).

    Returns
    -------
    DataFrame with ``period, hazard, survival, se, lower <L>%, upper <L>%`` (``se`` of
    survival); ``attrs["notes"]`` say what the errors and limits rest on and which cells
    are NaN and why; ``attrs`` also hold ``time_col``, ``origin`` and ``conf_level``.
    """
    check_choice("conf_type", conf_type, CONF_TYPES)
    level, report, needed, X, V, v_note, q, q_note, is_path = _setup(
        res, profile, periods, conf_level, vcov, reference)
    h, log_s, grad, unusable = _curve(res, X, V)
    var = np.einsum("ij,jk,ik->i", grad, V, grad)
    with np.errstate(invalid="ignore"):
        se_log = np.sqrt(var)
    s = np.exp(log_s)
    se = s * se_log
    lo, hi = _limits(s, se_log, q, conf_type)
    fitted = _fitted_periods(res)
    notes = _common_notes(res, v_note, q_note, is_path, fitted)
    notes.append(f"limits on the {conf_type} scale")
    no_se = unusable | ~np.isfinite(var) | (var < 0)
    if unusable.any():
        first = needed[np.argmax(unusable)]
        notes.append(f"se and limits are NaN from {res.time_col} {first} on: "
                     + _unusable_reason(res))
    degenerate = (s >= 1.0) | (s <= 0.0)
    if (degenerate & ~no_se).any() or (~np.isfinite(lo) | ~np.isfinite(hi))[~no_se].any():
        notes.append("limits are NaN where the survival is exactly 1 or 0 (a hazard that "
                     "rounds to 0 or 1): no interval can be formed on that scale")
    lo = np.where(no_se | degenerate | ~np.isfinite(lo), np.nan, lo)
    hi = np.where(no_se | degenerate | ~np.isfinite(hi), np.nan, hi)
    se = np.where(no_se, np.nan, se)
    pct = f"{100 * level:g}%"
    out = pd.DataFrame({"period": needed, "hazard": h, "survival": s, "se": se,
                        f"lower {pct}": lo, f"upper {pct}": hi})
    out = out[np.isin(needed, report)].reset_index(drop=True)
    out.attrs.update({"notes": notes, "time_col": res.time_col, "origin": fitted[0] - 1,
                      "conf_level": level, "conf_type": conf_type})
    return out


def restricted_mean(res: DiscreteTimeResult, profile: Mapping[str, Any] | pd.DataFrame,
                    horizon: Any, *, conf_level: float | None = None, vcov: str | None = None,
                    reference: str = "normal") -> pd.DataFrame:
    """Expected number of interviews up to ``horizon`` at which the programme is running.

    ``RM(horizon) = sum_{fitted k <= horizon} S(k)`` (the discrete restricted mean for
    annual interviews: each interview counts 1 if the site is still running then);
    ``se = sqrt(G' V G)`` with ``G = sum_k S(k) grad log S(k)``; limits ``RM -/+ q se``
    clipped to [0, number of periods]. ``profile``, ``vcov``, ``reference`` as in
    :func:`predict_survival`; ``horizon`` must be a fitted period.

    Returns a one-row DataFrame ``horizon, periods, restricted_mean, se, lower <L>%,
    upper <L>%`` with ``attrs["notes"]``.
    """
    level, report, needed, X, V, v_note, q, q_note, is_path = _setup(
        res, profile, [horizon], conf_level, vcov, reference)
    h, log_s, grad, unusable = _curve(res, X, V)
    s = np.exp(log_s)
    rm = float(s.sum())
    g = (s[:, None] * grad).sum(axis=0)
    var = float(g @ V @ g)
    fitted = _fitted_periods(res)
    notes = _common_notes(res, v_note, q_note, is_path, fitted)
    notes.append(f"restricted mean: sum of S(k) over the {len(needed)} fitted "
                 f"{res.time_col}s up to {report[0]}: the expected number of those interviews "
                 "at which the programme is still running; limits RM -/+ q se, clipped")
    if unusable.any() or not np.isfinite(var) or var < 0:
        notes.append("se and limits are NaN: " + _unusable_reason(res))
        se, lo, hi = np.nan, np.nan, np.nan
    else:
        se = float(np.sqrt(var))
        lo, hi = max(rm - q * se, 0.0), min(rm + q * se, float(len(needed)))
    pct = f"{100 * level:g}%"
    out = pd.DataFrame({"horizon": [report[0]], "periods": [len(needed)],
                        "restricted_mean": [rm], "se": [se], f"lower {pct}": [lo],
                        f"upper {pct}": [hi]})
    out.attrs.update({"notes": notes, "time_col": res.time_col, "conf_level": level})
    return out


def plot_survival(pred: pd.DataFrame, ax: Any = None, *, label: str | None = None,
                  color: str = "black", linestyle: str = "-", band: bool = True) -> Any:
    """Step curve of :func:`predict_survival` output, with its confidence band.

    The curve starts at 1 at ``attrs["origin"]`` (the period before the first interview)
    and drops at each interview; the band is a light grey fill (gaps where limits are
    NaN), so the figure reads in greyscale (give a second curve ``linestyle="--"``).
    Returns the Axes.
    """
    import matplotlib.pyplot as plt

    need = {"period", "survival"}
    if not isinstance(pred, pd.DataFrame) or not need <= set(pred.columns):
        raise DataError([Problem("argument", None, None, "plot_survival needs the frame "
                                 "returned by predict_survival (columns period, survival)")],
                        "invalid argument")
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.8))
    origin = pred.attrs.get("origin", float(pred["period"].iloc[0]) - 1)
    t = np.r_[origin, pred["period"].to_numpy(float)]
    s = np.r_[1.0, pred["survival"].to_numpy(float)]
    lo_col = next((c for c in pred.columns if c.startswith("lower ")), None)
    hi_col = next((c for c in pred.columns if c.startswith("upper ")), None)
    if band and lo_col and hi_col:
        lo = np.r_[1.0, pred[lo_col].to_numpy(float)]
        hi = np.r_[1.0, pred[hi_col].to_numpy(float)]
        ax.fill_between(t, lo, hi, step="post", color="0.8", alpha=0.6, lw=0,
                        label=f"{label + ': ' if label else ''}{lo_col.split(' ', 1)[1]} CI")
    ax.step(t, s, where="post", color=color, ls=linestyle, lw=1.6, label=label)
    ax.plot(t[1:], s[1:], "o", color=color, ms=3.5)
    tc = pred.attrs.get("time_col", "period")
    ax.set_xlabel(tc)
    ax.set_ylabel("probability still running")
    ax.set_ylim(0, 1.02)
    ax.set_xlim(t[0], t[-1] + 0.5)
    if label is not None or band:
        ax.legend(frameon=False, loc="lower left")
    return ax

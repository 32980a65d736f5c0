"""Predictions with uncertainty from transition-specific Cox models.

:func:`predict_transitions` (``TransitionsResult.predict``) gives, for one
covariate profile (fixed, or a path such as "a leadership change in year 2"):

* state occupation probabilities ``P_m(t)`` (the product integral of
  :meth:`TransitionsResult.predict_state_probabilities`),
* cumulative transition hazards ``A_j(t)``,
* the programme's survival curve, ``P(still in the first state)``, when the
  first state cannot be re-entered (sustained, before any discontinuation),
* expected years in each state up to a horizon, ``int_0^tau P_m(t) dt``,

each with a standard error and confidence limits.  The errors are the
infinitesimal jackknife by site (:mod:`.transition_predict`): they account for
the estimation of every coefficient and baseline hazard, cluster-robust like
the coefficients' Lin-Wei errors, and are checked against a site bootstrap
(:func:`bootstrap_transitions`, seeded) in the tests.  Limits: ``log`` by
default for probabilities and survival (R ``survfit``'s default), on the
log scale for cumulative hazards, plain (clipped to ``[0, tau]``) for years.
A prediction is refused (:class:`~imrsurv.NotEstimable`) when a coefficient it
uses diverges (monotone likelihood) or a fit did not converge: its curve would
rest on an infinite hazard ratio; refit with ``penalty="firth"``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from imrsurv.errors import ArgumentError, DataError, NotEstimable, check_choice
from imrsurv.models import transition_predict as tp
from imrsurv.models.multistate import _ci

__all__ = ["TransitionPrediction", "predict_transitions", "bootstrap_transitions"]

CONF_TYPES = ("log", "log-log", "logit", "plain")
# influence arrays are built in chunks of functionals of about this many cells
_CHUNK_CELLS = 8_000_000


@dataclass(eq=False, repr=False)
class TransitionPrediction:
    """Predictions for one profile with standard errors; see :func:`predict_transitions`.

    ``probabilities``: ``time, state, probability, se, lower, upper``;
    ``cumulative_hazards``: ``time, transition, cumhaz, se, lower, upper``;
    ``expected_years`` (with a horizon): ``state, years, se, lower, upper``;
    ``survival`` (when the first state cannot be re-entered): ``time, survival,
    se, lower, upper``.  ``notes`` say what the errors account for.
    """

    states: tuple[str, ...]
    probabilities: pd.DataFrame
    cumulative_hazards: pd.DataFrame
    expected_years: pd.DataFrame | None
    horizon: float | None
    conf_level: float
    notes: list[str] = field(default_factory=list)
    survival_state: str | None = None

    @property
    def survival(self) -> pd.DataFrame:
        """``P(in the first state at t)``: the survival curve of the first spell."""
        if self.survival_state is None:
            raise NotEstimable(f'the first state "{self.states[0]}" can be re-entered, so its '
                               "probability is not a survival curve; read .probabilities")
        sub = self.probabilities[self.probabilities["state"] == self.survival_state]
        return sub.drop(columns="state").rename(columns={"probability": "survival"}
                                                ).reset_index(drop=True)

    def summary_text(self) -> str:
        pct = f"{100 * self.conf_level:g}%"
        lines = [f"Predicted state occupation (transition-specific Cox models), "
                 f"probability ({pct} CI)", ""]
        pr = self.probabilities
        cells = [("" if not np.isfinite(p) else f"{p:.3f}") if not np.isfinite(lo + hi)
                 else f"{p:.3f} ({lo:.3f}-{hi:.3f})"
                 for p, lo, hi in zip(pr["probability"], pr["lower"], pr["upper"], strict=True)]
        tab = pr.assign(cell=cells).pivot(index="time", columns="state", values="cell")
        lines.append(tab.to_string())
        if self.expected_years is not None:
            lines += ["", f"Expected years in each state up to {self.horizon:g}:",
                      self.expected_years.round(3).to_string(index=False)]
        return "\n".join(lines + ["", "Notes:"] + [f"  - {n}" for n in self.notes])

    __repr__ = __str__ = summary_text

    def plot(self, ax: Any = None, *, title: str | None = None, band: bool = True) -> Any:
        """State probabilities over time (steps) with pointwise CI bands; grayscale-safe."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(6.4, 3.8))
        styles = ["-", "--", ":", "-.", (0, (5, 1, 1, 1))]
        greys = ["0.0", "0.35", "0.55", "0.2", "0.45"]
        for i, state in enumerate(self.states):
            sub = self.probabilities[self.probabilities["state"] == state]
            t = sub["time"].to_numpy(float)
            ok = np.isfinite(sub["probability"].to_numpy(float))
            c, ls = greys[i % len(greys)], styles[i % len(styles)]
            ax.step(t[ok], sub["probability"].to_numpy(float)[ok], where="post", color=c,
                    ls=ls, lw=1.4, label=state)
            if band:
                lo, hi = sub["lower"].to_numpy(float), sub["upper"].to_numpy(float)
                fin = ok & np.isfinite(lo) & np.isfinite(hi)
                ax.fill_between(t[fin], lo[fin], hi[fin], step="post", color=c, alpha=0.12,
                                lw=0)
        ax.set_ylim(0, 1)
        ax.set_xlabel("years since start")
        ax.set_ylabel("probability")
        ax.legend(frameon=False, fontsize=8)
        if title:
            ax.set_title(title)
        return ax


def _units(result) -> tuple[list[np.ndarray], int, str]:
    """Global site code of every fitted row of each transition (rows if unclustered)."""
    if result.cluster is None:
        codes, off = [], 0
        for fit in result.fits.values():
            codes.append(np.arange(off, off + fit.n))
            off += fit.n
        return codes, off, "rows (no cluster given: each row an independent unit)"
    labels = [result.frames[name].loc[fit._row_index, result.cluster].to_numpy()
              for name, fit in result.fits.items()]
    uniq, inv = np.unique(np.concatenate(labels).astype(str), return_inverse=True)
    cuts = np.cumsum([len(v) for v in labels])[:-1]
    return list(np.split(inv, cuts)), uniq.size, f"site ({result.cluster})"


def _refuse_diverging(result) -> None:
    bad = []
    for name, fit in result.fits.items():
        if not getattr(fit, "converged", True):
            bad.append(f"{name}: the fit did not converge")
        div = getattr(fit, "diverging", None)
        if div is not None and bool(div.any()):
            bad += [f"{name}: {term} diverges (monotone likelihood)"
                    for term in div.index[div.to_numpy()]]
    if bad:
        raise NotEstimable("predictions rest on an infinite hazard ratio, so no curve or "
                           "error is shown (" + "; ".join(bad) + "); refit with "
                           'penalty="firth" for finite penalised estimates')


def _check_conf(conf_level: float, conf_type: str) -> None:
    if not isinstance(conf_level, (int, float)) or not 0 < conf_level < 1:
        raise ArgumentError([f"conf_level must be a number in (0, 1), not {conf_level!r}"])
    check_choice("conf_type", conf_type, CONF_TYPES)


def _limits(p: np.ndarray, se: np.ndarray, conf_level: float, conf_type: str
            ) -> tuple[np.ndarray, np.ndarray]:
    """Pointwise limits for probabilities; ``log-log`` as R ``survfit``'s."""
    if conf_type != "log-log":
        return _ci(p, se, conf_level, conf_type)
    z = stats.norm.ppf(0.5 + conf_level / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        xx = np.where((p <= 0) | (p >= 1), np.nan, p)
        s = z * se / (xx * np.log(xx))
        return xx ** np.exp(-s), xx ** np.exp(s)


def predict_transitions(result, profile: Mapping[str, Any] | pd.DataFrame,
                        times: Iterable[float] | None = None, *, horizon: float | None = None,
                        conf_level: float = 0.95, conf_type: str = "log",
                        method: str = "exp", p0: Sequence[float] | None = None
                        ) -> TransitionPrediction:
    """State probabilities, cumulative hazards, survival and expected years, with errors.

    Parameters as :meth:`TransitionsResult.predict_state_probabilities`, except
    that ``method`` defaults to ``"exp"`` (the product of ``exp(dA)``, R's default
    for multi-state ``coxph``): with few sites a baseline increment from a small risk
    set times a hazard ratio can exceed 1, where ``I + dA`` stops being a
    probability matrix; ``exp(dA)`` always is one. Plus ``horizon`` (expected years
    in each state up to it; at most the last follow-up), ``conf_level`` and
    ``conf_type`` (``"log"``, ``"log-log"``, ``"logit"`` or ``"plain"`` for
    probabilities). Standard errors: the infinitesimal jackknife by site (see
    :mod:`.transition_predict`).
    """
    _check_conf(conf_level, conf_type)
    result._require_all()
    _refuse_diverging(result)
    probs = result.predict_state_probabilities(profile, times, method=method, p0=p0)
    t = np.unique(probs["time"].to_numpy(float))
    t_end = result.last_time
    if horizon is not None:
        if not isinstance(horizon, (int, float)) or not np.isfinite(horizon) or horizon <= 0:
            raise ArgumentError([f"horizon must be a positive number, not {horizon!r}"])
        if horizon > t_end:
            raise DataError([f"horizon {horizon:g} is after the last follow-up ({t_end:g}): "
                             "expected years are not extrapolated"], title="cannot predict")
    base = result._baseline_increments()
    grid = base.times
    xs = result.profile_design(profile, grid)
    codes, n_units, unit_label = _units(result)
    fis = _influences(result, codes, n_units)
    S, J, K = len(result.states), len(result.fits), grid.size
    at = [np.searchsorted(grid, fi.times) for fi in fis]
    elp = [np.exp(fi.lp(xs[j][at[j]])) for j, fi in enumerate(fis)]
    da = np.zeros((K, J))
    for j, fi in enumerate(fis):
        da[at[j], j] = fi.dlam * elp[j]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # predict_state_probabilities already warned
        from imrsurv.models.transitions import _transition_matrices  # noqa: PLC0415
        mats = _transition_matrices(da, result.pairs, method, S)
    start = result.initial(p0)
    reads_at = np.searchsorted(grid, t, side="right")  # P(s_k) index read at each time
    inside = t <= t_end
    # functionals: P_m(t_l) for every (inside) time and state, then expected years
    reads_idx = [(int(reads_at[i]), m) for i in np.flatnonzero(inside) for m in range(S)]
    exp_weights = _interval_weights(grid, horizon) if horizon is not None else None
    n_p = len(reads_idx)
    n_f = n_p + (S if horizon is not None else 0)
    se_all = np.full(n_f, np.nan)
    chunk = max(1, _CHUNK_CELLS // max(1, (K + 1) * S + n_units))
    for lo in range(0, n_f, chunk):
        f_ids = range(lo, min(n_f, lo + chunk))
        reads = np.zeros((K + 1, S, len(f_ids)))
        for c, f in enumerate(f_ids):
            if f < n_p:
                k, m = reads_idx[f]
                reads[k, m, c] = 1.0
            else:
                m = f - n_p
                reads[: exp_weights.size, m, c] = exp_weights
        if method == "aalen-johansen":
            sens = tp.aj_sensitivities(mats, start, result.pairs, reads)
        else:
            sens = tp.exp_sensitivities(_generators(da, result.pairs, S), mats, start,
                                        result.pairs, reads)
        total = np.zeros((n_units, len(f_ids)))
        for j, fi in enumerate(fis):
            total += tp.influence_of(fi, sens[at[j], j, :] * elp[j][:, None], xs[j][at[j]],
                                     n_units)
        se_all[lo: lo + len(f_ids)] = tp.summarise(total)
    se_p = np.full((t.size, S), np.nan)
    se_p[inside] = se_all[:n_p].reshape(-1, S)
    p = probs["probability"].to_numpy(float).reshape(t.size, S)
    lo_p, hi_p = _limits(p, se_p, conf_level, conf_type)
    probs = probs.assign(se=se_p.ravel(), lower=lo_p.ravel(), upper=hi_p.ravel())
    cum = _cumhaz_table(result, fis, at, elp, xs, grid, t, inside, n_units, conf_level)
    years = None
    if horizon is not None:
        e = _expected(grid, horizon, start, mats)
        se_e = se_all[n_p:]
        z = stats.norm.ppf(0.5 + conf_level / 2)
        years = pd.DataFrame({"state": list(result.states), "years": e, "se": se_e,
                              "lower": np.clip(e - z * se_e, 0, horizon),
                              "upper": np.clip(e + z * se_e, 0, horizon)})
    notes = list(probs.attrs.get("notes", [])) + [
        f"Standard errors: infinitesimal jackknife by {unit_label}, {n_units} units; they "
        "include the estimation of every coefficient and baseline hazard (as the Lin-Wei "
        "robust errors of the coefficients do).",
        f"{100 * conf_level:g}% pointwise limits: {conf_type} scale for probabilities, log "
        "scale for cumulative hazards" + (", plain (clipped to [0, horizon]) for expected "
                                          "years." if horizon is not None else "."),
    ]
    if any(fit.penalty == "firth" for fit in result.fits.values()):
        notes.append("Firth-penalised fits: the influence of each site on the coefficients is "
                     "the derivative of the penalised fit in the site's weight (central "
                     "differences of refits), since the penalty's own share is not small when "
                     "a transition has few events." if result.cluster is not None else
                     "Firth-penalised fits without a cluster: the influence of the "
                     "coefficients leaves out the penalty's own derivative (O(1/events)).")
    entered = {b for _, b in result.pairs}
    return TransitionPrediction(states=tuple(result.states), probabilities=probs,
                                cumulative_hazards=cum, expected_years=years, horizon=horizon,
                                conf_level=conf_level, notes=notes,
                                survival_state=None if 0 in entered else result.states[0])


def _influences(result, codes: list[np.ndarray], n_units: int) -> list[tp.FitInfluence]:
    """Each fit's influence pieces (cached on the result: they do not depend on a profile)."""
    cache = result.__dict__.setdefault("_influence_cache", {})
    if n_units not in cache:
        out = []
        for j, (name, fit) in enumerate(result.fits.items()):
            if_beta = (_firth_if_beta(result, name, codes[j], n_units)
                       if fit.penalty == "firth" and result.cluster is not None else None)
            out.append(tp.fit_influence(fit, codes[j], n_units, if_beta=if_beta))
        cache[n_units] = out
    return cache[n_units]


def _firth_if_beta(result, name: str, unit: np.ndarray, n_units: int, eps: float = 1e-4
                   ) -> np.ndarray:
    """``d beta / d w_c`` of a Firth fit by central differences of weighted refits."""
    from imrsurv.models.cox import fit_cox  # noqa: PLC0415

    fit = result.fits[name]
    frame = result.frames[name].loc[fit._row_index].reset_index(drop=True)
    out = np.zeros((n_units, fit.params.size))
    for u in np.unique(unit):
        on = unit == u
        beta = []
        for e in (eps, -eps):
            fr = frame.assign(_w=np.where(on, 1.0 + e, 1.0))
            beta.append(fit_cox(fr, result.formulas[name], start="start", stop="stop",
                                event="event", weights="_w", ties=result.ties, penalty="firth",
                                tol=1e-12, max_iter=60).params.to_numpy(float))
        out[u] = (beta[0] - beta[1]) / (2 * eps)
    return out


def _generators(da: np.ndarray, pairs: list[tuple[int, int]], n_states: int) -> np.ndarray:
    gen = np.zeros((da.shape[0], n_states, n_states))
    for j, (a, b) in enumerate(pairs):
        gen[:, a, b] += da[:, j]
        gen[:, a, a] -= da[:, j]
    return gen


def _interval_weights(grid: np.ndarray, horizon: float) -> np.ndarray:
    """Length of time P(s_k) holds within [0, horizon], k = 0..(last grid time <= horizon)."""
    edges = np.r_[0.0, grid[grid <= horizon], horizon]
    return np.diff(edges)


def _expected(grid: np.ndarray, horizon: float, start: np.ndarray, mats: np.ndarray
              ) -> np.ndarray:
    w = _interval_weights(grid, horizon)
    path = np.empty((w.size, start.size))
    path[0] = start
    for k in range(1, w.size):
        path[k] = path[k - 1] @ mats[k - 1]
    return w @ path


def _cumhaz_table(result, fis, at, elp, xs, grid, t, inside, n_units, conf_level
                  ) -> pd.DataFrame:
    z = stats.norm.ppf(0.5 + conf_level / 2)
    rows = []
    for j, name in enumerate(result.fits):
        fi = fis[j]
        da = fi.dlam * elp[j]
        upto = np.searchsorted(fi.times, t, side="right")
        a = (np.arange(fi.times.size)[:, None] < upto[None, :]) * elp[j][:, None]
        se = tp.summarise(tp.influence_of(fi, a, xs[j][at[j]], n_units))
        cum = np.r_[0.0, np.cumsum(da)][upto]
        cum, se = np.where(inside, cum, np.nan), np.where(inside, se, np.nan)
        with np.errstate(divide="ignore", invalid="ignore"):
            s = np.where(cum > 0, se / cum, np.nan)
            lo, hi = cum * np.exp(-z * s), cum * np.exp(z * s)
        rows.append(pd.DataFrame({"time": t, "transition": name, "cumhaz": cum, "se": se,
                                  "lower": lo, "upper": hi}))
    out = pd.concat(rows, ignore_index=True)
    out["transition"] = pd.Categorical(out["transition"], categories=list(result.fits))
    return out


# ---------------------------------------------------------------------------
# site bootstrap (the check of the analytic errors, and an option for users)


def bootstrap_transitions(result, profile: Mapping[str, Any] | pd.DataFrame,
                          times: Iterable[float], *, horizon: float | None = None,
                          n_boot: int = 500, seed: int, method: str = "exp"
                          ) -> dict[str, Any]:
    """Site bootstrap of the same predictions: resample sites with replacement, refit.

    Each replicate draws as many sites as were fitted (with ``numpy``'s
    ``default_rng(seed)``), keeps every row of a drawn site (a site drawn twice
    enters as two sites), refits every transition with the same formula, ties,
    cluster and penalty, and predicts.  A replicate whose refit fails or has a
    diverging coefficient is counted in ``failed`` and left out.  Returns
    ``{"probabilities": (n_ok, T, S) array, "expected_years": (n_ok, S) or
    None, "failed": int, "times": array}``.
    """
    from imrsurv.models.cox import fit_cox  # noqa: PLC0415
    from imrsurv.models.transitions import TransitionsResult  # noqa: PLC0415

    if result.cluster is None:
        raise ArgumentError(["the site bootstrap needs a clustered fit (cluster=...)"])
    if not isinstance(n_boot, int) or n_boot < 2:
        raise ArgumentError([f"n_boot must be an integer >= 2, not {n_boot!r}"])
    t = np.asarray(list(times), float)
    rng = np.random.default_rng(seed)
    cl = result.cluster
    sites = np.unique(np.concatenate([fr[cl].astype(str).to_numpy()
                                      for fr in result.frames.values()]))
    by_site = {name: {s: g for s, g in fr.assign(**{cl: fr[cl].astype(str)}).groupby(cl)}
               for name, fr in result.frames.items()}
    probs, years, failed = [], [], 0
    for _ in range(n_boot):
        draw = rng.integers(0, sites.size, sites.size)
        fits, frames = {}, {}
        try:
            for name, fit in result.fits.items():
                parts = [by_site[name][sites[i]].assign(**{cl: f"{sites[i]}#{c}"})
                         for c, i in enumerate(draw) if sites[i] in by_site[name]]
                fr = pd.concat(parts, ignore_index=True)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # a diverging refit is counted below
                    f = fit_cox(fr, result.formulas[name], start="start", stop="stop",
                                event="event", cluster=cl, ties=result.ties,
                                penalty=fit.penalty)
                if bool(f.diverging.any()) or not f.converged:
                    raise NotEstimable("diverges")
                fits[name], frames[name] = f, fr
        except DataError:
            failed += 1
            continue
        boot = TransitionsResult(fits=fits, formulas=result.formulas, frames=frames,
                                 ties=result.ties, cluster=cl,
                                 recent_window=result.recent_window,
                                 state_names=result.state_names, required=result.required)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pr = boot.predict_state_probabilities(profile, t, method=method)
        probs.append(pr["probability"].to_numpy(float).reshape(t.size, -1))
        if horizon is not None:
            base = boot._baseline_increments()
            da = base.dh * np.exp(boot._profile_lp(profile, base.times))
            from imrsurv.models.transitions import _transition_matrices  # noqa: PLC0415
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the same warning as the probabilities'
                mats = _transition_matrices(da, boot.pairs, method, len(boot.states))
            years.append(_expected(base.times, horizon, boot.initial(None), mats))
    return {"probabilities": np.array(probs), "expected_years": np.array(years) if horizon
            is not None else None, "failed": failed, "times": t}

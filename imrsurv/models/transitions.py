"""Transition-specific Cox models for the sustained / discontinued / restarted model.

::

    sustained --> discontinued <==> restarted

Each of the three transitions gets its own Cox model (its own baseline hazard
and coefficients), fitted with :func:`~imrsurv.models.cox.fit_cox` on the rows
at risk for it, with Lin-Wei robust errors clustered by site:

=========================  ===================================================
transition                 rows (from :meth:`History.counting_process`)
=========================  ===================================================
sustained->discontinued    ``counting_process("first")``: the sustained spell
discontinued->restarted    ``counting_process("ag", outcome="restart")``
restarted->discontinued    ``counting_process("ag")`` rows with ``episode >= 2``
=========================  ===================================================

This is R's multi-state ``coxph(Surv(tstart, tstop, to) ~ x, id = site,
istate = from)`` (survival >= 3.0) with transition-specific coefficients: the
stacked model's information matrix is block diagonal, so its coefficients and
its robust (grouped by ``id``) errors are those of the three separate fits with
``cluster(site)`` (checked in ``tests/fixtures/transitions/make_fixtures.R``).
Ties: ``ties="efron"`` by default, like a single-transition ``coxph``. R's
multi-state ``coxph`` defaults to Breslow in recent ``survival`` releases, and
``survival`` 3.5-3 fits Breslow whenever ``ties`` is passed to a multi-state
model at all; pass ``ties="breslow"`` to compare with those.

Predicted state occupation probabilities for a covariate profile come from the
product integral over the union of the transitions' event times ``s``::

    P(t) = p0  prod_{s <= t} (I + dA(s | profile)),
    dA_hk(s) = dLambda0_hk(s) exp(x_hk(s)' beta_hk)

with ``dLambda0_hk`` the Breslow (or, with Efron ties, the Efron-corrected)
baseline hazard increments of R ``survfit.coxph`` and ``p0 = (1, 0, 0)`` (the
site starts sustained). This is R ``survfit(fit, newdata, p0, stype = 1)``;
``method="exp"`` uses ``exp(dA)`` for each factor instead, R's default
(``stype = 2``) for multi-state ``coxph``. R cannot predict for a covariate
*path* in a multi-state model; here the profile may change over time (e.g. a
leadership change at year 2).

Two deliberate differences from R's ``survfit`` of a *multi-state* ``coxph``
(``survfit.coxphms``, survival 3.5-3); both vanish with Breslow ties and
increments below 1, where the numbers agree to ~1e-12:

* Efron ties: ``survfit.coxphms`` uses the increment ``d / mean_k(S - k S_d /
  d^2)`` (its C routine ``coxsurv2``), not the Efron estimator ``sum_k 1 / (S
  - k/d S_d)`` that ``survfit.coxph`` uses for a one-transition model. We use
  the latter, so our curves equal the per-transition ``survfit.coxph`` hazards
  combined by R's own product integral (the fixtures check both facts).
* An increment above 1 (a large hazard ratio on a jump from a small risk
  set): R sets the negative diagonal of ``I + dA`` to 0, so its probabilities
  stop summing to 1; we keep ``I + dA`` (the sum stays 1, a probability may
  leave [0, 1]) and warn, pointing to ``method="exp"``.

The matrix product is a prefix product of per-time 3x3 matrices, done as a
log-depth (Hillis-Steele) scan with batched ``matmul``: ``ceil(log2 K)``
vectorised steps for K event times, no Python loop over event times (5,000
sites with ~4,700 event times: about 0.07 s per profile). ``exp(dA)`` is a
batched scaling-and-squaring Taylor series (``scipy.linalg.expm`` agrees to
~1e-15 but is far slower on a stack of small matrices).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from imrsurv.errors import DataError, Problem
from imrsurv.models._result import HR_LIMIT, ResultProtocol, format_table
from imrsurv.models.cox import TIES, CoxResult, fit_cox
from imrsurv.models.design import required_columns

__all__ = ["STATES", "TRANSITIONS", "TransitionsResult", "fit_transitions"]

STATES = ("sustained", "discontinued", "restarted")
TRANSITIONS = ("sustained->discontinued", "discontinued->restarted", "restarted->discontinued")
# (from, to) state positions of each transition
_INDEX = {name: (STATES.index(name.split("->")[0]), STATES.index(name.split("->")[1]))
          for name in TRANSITIONS}
METHODS = ("aalen-johansen", "exp")
# covariates a History derives from the leadership_change column
_DERIVED = ("leader_changes", "recent_leader_change")


# ---------------------------------------------------------------------------
# argument checking


def _transition_name(x: Any) -> str | None:
    """Canonical name of a transition given as ``"a->b"`` (any spacing) or ``(a, b)``."""
    if isinstance(x, tuple) and len(x) == 2 and all(isinstance(v, str) for v in x):
        x = f"{x[0]}->{x[1]}"
    if not isinstance(x, str):
        return None
    parts = [p.strip().lower() for p in x.split("->")]
    name = "->".join(parts)
    return name if name in TRANSITIONS else None


def _bad_transition(x: Any, what: str) -> str:
    return (f"{what} {x!r} is not a transition of the model; use one of "
            f"{', '.join(TRANSITIONS)}")


def _resolve(formula: Any, transitions: Any) -> dict[str, str]:
    """Transition -> formula, in the model's order; DataError listing every problem."""
    problems: list[str] = []
    chosen: list[str] | None = None
    if transitions is not None:
        items = [transitions] if isinstance(transitions, str | tuple) else list(transitions)
        if not items:
            problems.append("transitions is empty; leave it out to fit all three")
        chosen = []
        for t in items:
            name = _transition_name(t)
            if name is None:
                problems.append(_bad_transition(t, "transitions entry"))
            elif name in chosen:
                problems.append(f"transition {name} is listed twice")
            else:
                chosen.append(name)
    per: dict[str, Any] = {}
    if isinstance(formula, str):
        per = dict.fromkeys(chosen if chosen is not None else TRANSITIONS, formula)
    elif isinstance(formula, Mapping):
        for key, f in formula.items():
            name = _transition_name(key)
            if name is None:
                problems.append(_bad_transition(key, "formula key"))
            elif name in per:
                problems.append(f"formula gives transition {name} twice")
            else:
                per[name] = f
        if chosen is not None:
            missing = [t for t in chosen if t not in per]
            if missing:
                problems.append(f"formula has no entry for transition(s) {', '.join(missing)}")
            per = {t: per[t] for t in chosen if t in per}
        if not formula:
            problems.append("formula is an empty mapping")
    else:
        problems.append("formula must be a string (one right-hand side for every transition) "
                        f"or a dict transition -> string, not {type(formula).__name__}")
    for name, f in per.items():
        if not isinstance(f, str) or not f.strip():
            problems.append(f"formula for {name} must be a non-empty string, got {f!r}")
    if problems:
        raise DataError(problems, title="invalid transition model")
    return {t: per[t] for t in TRANSITIONS if t in per}


def _frame(history: Any, name: str) -> pd.DataFrame:
    """The (start, stop] rows at risk for a transition."""
    if name == "sustained->discontinued":
        return history.counting_process("first")
    if name == "discontinued->restarted":
        return history.counting_process("ag", outcome="restart")
    cp = history.counting_process("ag")
    return cp[cp["episode"] >= 2].reset_index(drop=True)


def _prefixed(name: str, err: DataError) -> list[Problem]:
    return [Problem(p.source, p.where, p.site, f"{name}: {p.message}") for p in err.problems]


# ---------------------------------------------------------------------------
# fitting


def fit_transitions(history: Any, formula: str | Mapping[Any, str], *, ties: str = "efron",
                    transitions: Iterable[Any] | str | None = None,
                    cluster: str | None = "site", missing: str = "raise",
                    penalty: str | None = None) -> TransitionsResult:
    """One Cox model per transition of the sustained / discontinued / restarted model.

    Parameters
    ----------
    history
        A :class:`~imrsurv.History`. Covariates come from its covariate log
        (time-varying, split at every change, with the derived
        ``leader_changes`` / ``recent_leader_change``) and its site columns.
    formula
        Right-hand side for every transition (``"recent_leader_change +
        team_size"``), or a dict transition -> right-hand side. Transitions
        are named ``"sustained->discontinued"``, ``"discontinued->restarted"``
        and ``"restarted->discontinued"`` (or given as (from, to) tuples).
    ties
        ``"efron"`` (default) or ``"breslow"``; also sets the baseline hazard
        estimator used for predictions, as R.
    transitions
        The transitions to fit (default: all three, or the keys of a dict
        ``formula``). Predictions need all three.
    cluster
        Column for the Lin-Wei robust variance (default ``"site"``); None for
        model-based errors.
    missing
        ``"raise"`` or ``"drop"``, passed to :func:`~imrsurv.fit_cox`.
    penalty
        ``None`` or ``"firth"`` (Firth-penalised partial likelihood, finite
        estimates under monotone likelihood), passed to :func:`~imrsurv.fit_cox`.

    Returns
    -------
    TransitionsResult
        ``.fits`` (transition -> :class:`~imrsurv.CoxResult`), ``.summary``,
        ``.plot()``, ``.predict_state_probabilities(profile, times)``.

    Raises :class:`~imrsurv.DataError` listing every problem (unknown
    transition names, bad formulas, columns absent from a transition's rows,
    a transition without events, ...), each prefixed by its transition.
    """
    if not callable(getattr(history, "counting_process", None)):
        raise DataError([f"history must be an imrsurv History (see read_history), not "
                         f"{type(history).__name__}"], title="invalid input")
    problems: list[str | Problem] = []
    if ties not in TIES:
        problems.append(f'ties must be "efron" or "breslow", not {ties!r}')
    if missing not in ("raise", "drop"):
        problems.append(f'missing must be "raise" or "drop", not {missing!r}')
    try:
        formulas = _resolve(formula, transitions)
    except DataError as err:
        problems = err.problems + problems
        formulas = {}
    if problems:
        raise DataError(problems, title="invalid transition model")

    frames = {name: _frame(history, name) for name in formulas}
    # check every formula and column before fitting anything
    for name, f in formulas.items():
        try:
            cols = required_columns(f)
        except DataError as err:
            problems += _prefixed(name, err)
            continue
        have = frames[name].columns
        for c in cols:
            if c not in have:
                problems.append(f'{name}: formula names column "{c}", which is not in the '
                                f"transition's data")
        if cluster is not None and cluster not in have:
            problems.append(f'{name}: cluster="{cluster}" is not a column of the data')
    if problems:
        avail = sorted({c for fr in frames.values() for c in fr.columns})
        problems.append(f"available columns: {', '.join(map(str, avail))}")
        raise DataError(problems, title="invalid transition model")

    fits: dict[str, CoxResult] = {}
    for name, f in formulas.items():
        try:
            fits[name] = fit_cox(frames[name], f, start="start", stop="stop", event="event",
                                 cluster=cluster, ties=ties, missing=missing, penalty=penalty)
        except DataError as err:
            problems += _prefixed(name, err)
    if problems:
        raise DataError(problems, title="cannot fit the transition models")
    window = float(getattr(history, "recent_window", 1.0))
    return TransitionsResult(fits=fits, formulas=formulas, frames=frames, ties=ties,
                             cluster=cluster, recent_window=window)


# ---------------------------------------------------------------------------
# result


@dataclass
class _Baseline:
    times: np.ndarray  # (K,) union of the transitions' event times
    dh: np.ndarray  # (K, n_transitions) baseline hazard increments (covariates 0)


@dataclass(eq=False, repr=False)
class TransitionsResult(ResultProtocol):
    """Transition-specific Cox fits; see :func:`fit_transitions`.

    Attributes: ``fits`` (transition -> CoxResult), ``formulas`` (transition
    -> right-hand side), ``frames`` (the rows each model used), ``ties``,
    ``cluster``, ``recent_window`` (the History's window for
    ``recent_leader_change``, used to derive it in profiles).
    """

    fits: dict[str, CoxResult]
    formulas: dict[str, str]
    frames: dict[str, pd.DataFrame] = field(repr=False)
    ties: str = "efron"
    cluster: str | None = "site"
    recent_window: float = 1.0
    state_names: tuple[str, ...] = STATES
    required: tuple[str, ...] = TRANSITIONS  # transitions a prediction needs
    _baseline: _Baseline | None = field(default=None, init=False, repr=False)

    @property
    def transitions(self) -> tuple[str, ...]:
        return tuple(self.fits)

    @property
    def states(self) -> tuple[str, ...]:
        return self.state_names

    @property
    def pairs(self) -> list[tuple[int, int]]:
        """(from, to) state positions of each fitted transition, in ``fits`` order."""
        pos = {s: i for i, s in enumerate(self.state_names)}
        return [(pos[a], pos[b]) for a, b in (n.split("->") for n in self.fits)]

    @property
    def last_time(self) -> float:
        """Last follow-up time of the data (the end of every prediction)."""
        return float(max(fr["stop"].max() for fr in self.frames.values()))

    # -- tables -----------------------------------------------------------------

    @property
    def summary(self) -> pd.DataFrame:
        """One row per (transition, term), in the standard result columns.

        Index: (``transition``, ``term``). Columns: ``coef, exp(coef), se, z,
        p, lower 95%, upper 95%, exp(lower 95%), exp(upper 95%)`` (``se`` is
        robust when clustered), ``se_naive`` after ``se``, then ``events`` and
        ``note``. A coefficient that diverges (monotone likelihood) or a fit
        that did not converge keeps ``coef`` but has NaN elsewhere and says so
        in ``note``: no such hazard ratio or p-value is shown as a number.
        """
        parts = []
        for name, fit in self.fits.items():
            sm = fit.summary.copy()
            note = sm["note"] if "note" in sm else pd.Series("", index=sm.index)
            if not getattr(fit, "converged", True) and not (note != "").any():
                # a failure to converge not explained by diverging terms: no row is an estimate
                note = note.where(note != "", "did not converge")
                bad = note != ""
                sm.loc[bad, [c for c in sm.columns if c not in ("coef", "se_naive", "note")]] \
                    = np.nan
            sm["note"] = note
            sm.insert(len(sm.columns) - 1, "events", fit.n_events)
            sm.index = pd.MultiIndex.from_product([[name], sm.index],
                                                  names=["transition", "term"])
            parts.append(sm)
        return pd.concat(parts)

    @property
    def params(self) -> pd.Series:
        """Coefficients indexed by (transition, term)."""
        return self.summary["coef"].rename("coef")

    @property
    def se(self) -> pd.Series:
        """Standard errors (robust when clustered) indexed by (transition, term)."""
        return self.summary["se"].rename("se")

    @property
    def notes(self) -> list[str]:
        out = []
        for name, fit in self.fits.items():
            clusters = f", {fit.n_clusters} clusters" if fit.n_clusters else ""
            out.append(f"{name}: {fit.n} rows, {fit.n_events} events{clusters}; "
                       f"formula {fit.formula}")
        if self.cluster is not None:
            out.append(f"Robust (Lin-Wei) standard errors clustered by {self.cluster}; Wald "
                       "tests and 95% limits on a normal reference.")
        out.append(f"Ties handled by the {self.ties.capitalize()} approximation.")
        sm = self.summary
        flagged = sm.index[sm["note"] != ""]
        if len(flagged):
            out.append("Not estimable (no hazard ratio shown): "
                       + "; ".join(f"{t} {term}: {sm.loc[(t, term), 'note']}"
                                   for t, term in flagged))
        return out

    def _header(self) -> str:
        return f"Transition-specific Cox models ({' / '.join(self.state_names)})"

    def summary_text(self) -> str:
        """The header, one coefficient table per transition, and the notes."""
        sm = self.summary
        cols = [c for c in sm.columns if c not in ("note", "lower 95%", "upper 95%")]
        lines = [self._header(), ""]
        for name in self.fits:
            lines += [name.replace("->", " -> "), format_table(sm.loc[name], cols), ""]
        return "\n".join(lines + ["Notes:"] + [f"  - {n}" for n in self.notes])

    def __repr__(self) -> str:
        return self.summary_text()

    __str__ = __repr__

    # -- plot -------------------------------------------------------------------

    def plot(self, ax: Any = None, *, title: str | None = None) -> Any:
        """Forest plot of hazard ratios with 95% (robust) CIs, terms by transition.

        Transitions differ by marker shape and fill (filled circle, open
        square, gray triangle), so the plot reads in grayscale. Returns the Axes.
        """
        import matplotlib.pyplot as plt
        from matplotlib.ticker import NullLocator

        sm = self.summary.reset_index()
        terms = list(dict.fromkeys(sm["term"]))
        names = list(self.fits)
        if ax is None:
            _, ax = plt.subplots(figsize=(7, 0.5 * len(terms) * len(names) ** 0.5 + 1.9))
        styles = [("o", "black"), ("s", "white"), ("^", "0.6"), ("D", "white"), ("v", "0.3"),
                  ("P", "0.8")]
        step = 0.7 / len(names)
        ok_all = sm["note"] == ""
        finite = sm.loc[ok_all, ["exp(lower 95%)", "exp(upper 95%)"]].to_numpy()
        finite = finite[np.isfinite(finite) & (finite > 0) & (finite < HR_LIMIT)
                        & (finite > 1 / HR_LIMIT)]
        lo = min(float(finite.min()), 0.8) if finite.size else 0.5
        hi = max(float(finite.max()), 1.25) if finite.size else 2.0
        left, right = lo / 1.6, hi * 1.6
        for k, name in enumerate(names):
            sub = sm[sm["transition"] == name].set_index("term").reindex(terms)
            y = np.arange(len(terms)) + (k - (len(names) - 1) / 2) * step
            ok = (sub["note"].fillna("x") == "").to_numpy()
            hr = sub["exp(coef)"].to_numpy(float)
            lo_k = np.clip(sub["exp(lower 95%)"].to_numpy(float), left, right)
            hi_k = np.clip(sub["exp(upper 95%)"].to_numpy(float), left, right)
            marker, face = styles[_INDEX_ORDER.get(name, k) % len(styles)]
            ax.errorbar(hr[ok], y[ok], xerr=[hr[ok] - lo_k[ok], hi_k[ok] - hr[ok]], fmt=marker,
                        color="black", mfc=face, mec="black", ms=6, capsize=2, lw=1,
                        label=name.replace("->", " \u2192 "))
            for yy in y[~ok]:
                ax.text(np.sqrt(left * right), yy, "not estimable", ha="center", va="center",
                        fontsize=7.5, style="italic")
        ax.set_xlim(left, right)
        ax.axvline(1.0, color="0.4", lw=0.8, ls="--")
        ax.set_xscale("log")
        ticks = [t for t in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100)
                 if lo / 1.6 <= t <= hi * 1.6]
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_yticks(range(len(terms)), terms)
        ax.set_ylim(len(terms) - 0.5, -0.5)
        ci = "95% robust CI" if self.cluster is not None else "95% CI"
        ax.set_xlabel(f"hazard ratio (log scale), {ci}")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=len(names), fontsize=8,
                  frameon=False, handletextpad=0.3, columnspacing=1.2)
        if title:
            ax.set_title(title)
        ax.figure.tight_layout()
        return ax

    # -- prediction ---------------------------------------------------------------

    def _require_all(self) -> None:
        missing = [t for t in self.required if t not in self.fits]
        if missing:
            what = "all three transitions" if len(self.required) == 3 else \
                f"all {len(self.required)} declared transitions"
            raise DataError([f"state probabilities need {what}; "
                             f"{', '.join(missing)} {'was' if len(missing) == 1 else 'were'} "
                             "not fitted"], title="cannot predict")

    def _baseline_increments(self) -> _Baseline:
        """Baseline hazard increments of each transition on the union of event times."""
        if self._baseline is None:
            per = []
            for name in self.fits:
                bh = self.fits[name].baseline_cumulative_hazard
                t = bh["time"].to_numpy(float)
                dh = np.diff(bh["cumhaz"].to_numpy(float), prepend=0.0)
                keep = dh > 0
                per.append((t[keep], dh[keep]))
            times = np.unique(np.concatenate([t for t, _ in per]))
            dh = np.zeros((times.size, len(per)))
            for j, (t, h) in enumerate(per):
                dh[np.searchsorted(times, t), j] = h
            self._baseline = _Baseline(times, dh)
        return self._baseline

    def _profile_lp(self, profile: Mapping[str, Any] | pd.DataFrame, grid: np.ndarray
                    ) -> np.ndarray:
        """Linear predictor of each transition at each grid time, (K, n_transitions)."""
        prof, pos = self._profile_rows(profile, grid)
        lp = np.empty((grid.size, len(self.fits)))
        for j, x in enumerate(self._profile_designs(prof)):
            lp[:, j] = (x @ self.fits_params[j])[pos]
        return lp

    @property
    def fits_params(self) -> list[np.ndarray]:
        return [fit.params.to_numpy() for fit in self.fits.values()]

    def profile_design(self, profile: Mapping[str, Any] | pd.DataFrame, grid: np.ndarray
                       ) -> list[np.ndarray]:
        """Each transition's design row in force at each grid time, [(K, p_j)]."""
        prof, pos = self._profile_rows(profile, grid)
        return [x[pos] for x in self._profile_designs(prof)]

    def _profile_designs(self, prof: pd.DataFrame) -> list[np.ndarray]:
        out = []
        for fit in self.fits.values():
            try:
                out.append(fit._design.transform(prof))
            except Exception as exc:  # formulaic: unseen factor level, bad type, ...
                raise DataError([f"cannot code the profile for {fit.formula}: {exc}"],
                                title="invalid profile") from exc
        return out

    def _profile_rows(self, profile: Mapping[str, Any] | pd.DataFrame, grid: np.ndarray
                      ) -> tuple[pd.DataFrame, np.ndarray]:
        """The profile's rows and, per grid time, the row in force there."""
        if isinstance(profile, Mapping):
            prof = pd.DataFrame([dict(profile)])
            if "time" in prof.columns:
                prof = prof.drop(columns="time")
            pos = np.zeros(grid.size, np.int64)
        elif isinstance(profile, pd.DataFrame):
            prof, ptimes = self._profile_path(profile, grid)
            # the row holding at s: the last one with time < s (values change
            # after their time, as covariates in the (start, stop] rows do)
            pos = np.searchsorted(ptimes, grid, side="left") - 1
        else:
            raise DataError(["profile must be a dict of covariate values or a DataFrame with "
                             f"a time column, not {type(profile).__name__}"],
                            title="invalid profile")
        problems = []
        for name, fit in self.fits.items():
            for c in required_columns(fit.formula):
                if c not in prof.columns:
                    problems.append(f'profile lacks column "{c}" (used by {name})')
                elif prof[c].isna().any():
                    problems.append(f'profile column "{c}" has missing values')
        if problems:
            raise DataError(list(dict.fromkeys(problems)), title="invalid profile")
        return prof, pos

    def _profile_path(self, profile: pd.DataFrame, grid: np.ndarray
                      ) -> tuple[pd.DataFrame, np.ndarray]:
        if "time" not in profile.columns:
            raise DataError(['a time-varying profile needs a "time" column (values hold from '
                             "their time on); pass a dict for a time-fixed profile"],
                            title="invalid profile")
        if len(profile) == 0:
            raise DataError(["profile has no rows"], title="invalid profile")
        t = pd.to_numeric(profile["time"], errors="coerce").to_numpy(float)
        problems = []
        if not np.isfinite(t).all():
            problems.append("profile time must be finite numbers")
        elif np.any(np.diff(t) <= 0):
            problems.append("profile times must be strictly increasing (one row per time)")
        elif grid.size and t[0] >= grid[0]:
            problems.append(f"the profile's first row (time {t[0]:g}) must come before the "
                            f"first event time ({grid[0]:g}); give the values from time 0")
        if problems:
            raise DataError(problems, title="invalid profile")
        prof = profile.reset_index(drop=True)
        needed = {c for fit in self.fits.values() for c in required_columns(fit.formula)}
        derive = [c for c in _DERIVED if c in needed and c not in prof.columns]
        if derive and "leadership_change" in prof.columns:
            prof, t = self._derive_leadership(prof)
        return prof, t

    def _derive_leadership(self, prof: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
        """Add leader_changes / recent_leader_change as a History derives them."""
        from imrsurv.timeline import covariate_states

        cov = prof.assign(site="profile")
        cov = cov[["site", "time", *[c for c in prof.columns if c != "time"]]]
        states = covariate_states(cov, self.recent_window).drop(columns="site")
        return states, states["time"].to_numpy(float)

    def _increments(self, profile: Mapping[str, Any] | pd.DataFrame
                    ) -> tuple[np.ndarray, np.ndarray]:
        base = self._baseline_increments()
        lp = self._profile_lp(profile, base.times)
        return base.times, base.dh * np.exp(lp)

    def initial(self, p0: Sequence[float] | None = None) -> np.ndarray:
        """The initial distribution: ``p0`` checked, or all mass on the first state."""
        n_s = len(self.state_names)
        start = np.eye(n_s)[0] if p0 is None else np.asarray(p0, float)
        if start.shape != (n_s,) or not np.all(np.isfinite(start)) or np.any(start < 0) or \
                abs(start.sum() - 1) > 1e-9:
            raise DataError([f"p0 must be {n_s} non-negative probabilities summing to 1 "
                             f"({', '.join(self.state_names)}), got {p0!r}"],
                            title="invalid argument")
        return start

    def predict(self, profile: Mapping[str, Any] | pd.DataFrame,
                times: Iterable[float] | None = None, *, horizon: float | None = None,
                conf_level: float = 0.95, conf_type: str = "log",
                method: str = "exp", p0: Sequence[float] | None = None) -> Any:
        """State probabilities, cumulative hazards, survival and expected years with errors.

        See :func:`imrsurv.models.predictions.predict_transitions`: the
        arguments of :meth:`predict_state_probabilities`, plus ``horizon``
        (expected years in each state up to it), ``conf_level`` and
        ``conf_type``; ``method`` defaults to ``"exp"`` (always a probability, R's
        default for multi-state models). Standard errors are the infinitesimal
        jackknife by site.
        Returns a :class:`~imrsurv.models.predictions.TransitionPrediction`.
        """
        from imrsurv.models.predictions import predict_transitions  # noqa: PLC0415

        return predict_transitions(self, profile, times, horizon=horizon,
                                   conf_level=conf_level, conf_type=conf_type, method=method,
                                   p0=p0)

    def predict_cumulative_hazards(self, profile: Mapping[str, Any] | pd.DataFrame,
                                   times: Iterable[float]) -> pd.DataFrame:
        """Cumulative transition hazards ``A_hk(t | profile)``, one column per transition.

        ``sum_{s <= t} dLambda0_hk(s) exp(x_hk(s)' beta_hk)`` (R ``survfit(fit,
        newdata)$cumhaz`` for a time-fixed profile). Indexed by time; NaN past
        the last follow-up.
        """
        t = _check_times(times)
        grid, da = self._increments(profile)
        cum = np.cumsum(da, axis=0)
        idx = np.searchsorted(grid, t, side="right") - 1
        out = np.where(idx[:, None] >= 0, cum[np.maximum(idx, 0)], 0.0)
        out[t > self.last_time] = np.nan
        return pd.DataFrame(out, index=pd.Index(t, name="time"), columns=list(self.fits))

    def predict_state_probabilities(self, profile: Mapping[str, Any] | pd.DataFrame,
                                    times: Iterable[float] | None = None, *,
                                    method: str = "aalen-johansen",
                                    p0: Sequence[float] | None = None) -> pd.DataFrame:
        """State occupation probabilities for a covariate profile.

        Parameters
        ----------
        profile
            Time-fixed: a dict of covariate values (every column the formulas
            use). Time-varying: a DataFrame with ``time`` and the covariate
            columns, one row per change; a row's values hold from its time on
            (at an event at exactly that time the previous values still
            apply, as in the (start, stop] rows the models were fitted to).
            The first row must come before the first event time (give time
            0). If the formulas use ``leader_changes`` or
            ``recent_leader_change`` and the profile has ``leadership_change``
            instead (1 at the time a new leader takes over), they are derived
            as :class:`~imrsurv.History` does, with its ``recent_window``.
        times
            Times to report; None gives 0, every event time and the last
            follow-up. Times after the last follow-up are NaN (with a
            warning), never extrapolated.
        method
            ``"aalen-johansen"``: ``P(t) = p0 prod (I + dA)`` (R ``stype =
            1``); ``"exp"``: ``prod exp(dA)`` (R's default for multi-state
            ``coxph``, ``stype = 2``), which stays a probability even when an
            increment exceeds 1.
        p0
            Probabilities of (sustained, discontinued, restarted) at the start;
            default (1, 0, 0).

        Returns
        -------
        DataFrame with columns ``time, state, probability`` (long, one row per
        time and state; ``state`` categorical in the order sustained,
        discontinued, restarted). ``df.attrs["notes"]`` says how it was made.
        """
        self._require_all()
        if method not in METHODS:
            raise DataError([f'method must be "aalen-johansen" or "exp", not {method!r}'],
                            title="invalid argument")
        start = self.initial(p0)
        n_s = len(self.state_names)
        grid, da = self._increments(profile)
        t_end = self.last_time
        if times is None:
            t = np.unique(np.r_[0.0, grid, t_end])
        else:
            t = _check_times(times)
        mats = _transition_matrices(da, self.pairs, method, n_s)
        path = start @ _prefix_products(mats) if grid.size else np.empty((0, n_s))
        idx = np.searchsorted(grid, t, side="right") - 1
        p = np.where(idx[:, None] >= 0, path[np.maximum(idx, 0)], start)
        beyond = t > t_end
        if beyond.any():
            warnings.warn(f"{int(beyond.sum())} time(s) after the last follow-up ({t_end:g}) "
                          "give NaN: predictions are not extrapolated", stacklevel=2)
            p[beyond] = np.nan
        out = pd.DataFrame({
            "time": np.repeat(t, n_s),
            "state": pd.Categorical(np.tile(self.state_names, t.size),
                                    categories=list(self.state_names)),
            "probability": p.reshape(-1),
        })
        form = "prod (I + dA)" if method == "aalen-johansen" else "prod exp(dA)"
        out.attrs["notes"] = [
            f"Product integral {form} over {grid.size} event times of the "
            f"{len(self.fits)} transitions; "
            f"baseline hazards from the {self.ties.capitalize()} estimator (R survfit.coxph)."]
        return out


_INDEX_ORDER = {name: i for i, name in enumerate(TRANSITIONS)}


def _check_times(times: Iterable[float]) -> np.ndarray:
    try:
        t = np.atleast_1d(np.asarray(list(times) if not np.isscalar(times) else [times],
                                     dtype=float))
    except (TypeError, ValueError) as exc:
        raise DataError([f"times must be numbers: {exc}"], title="invalid argument") from None
    if t.ndim != 1 or not np.isfinite(t).all():
        raise DataError(["times must be a 1-d sequence of finite numbers"],
                        title="invalid argument")
    return t


def _transition_matrices(da: np.ndarray, pairs: list[tuple[int, int]], method: str,
                         n_states: int = 3) -> np.ndarray:
    """(K, S, S) one-step matrices ``I + dA`` or ``exp(dA)`` from per-transition increments.

    Rows of ``I + dA`` always sum to 1, so the probabilities do too. Where a
    state's increments sum past 1 (a large hazard ratio times a baseline
    increment from a small risk set) the diagonal is negative: that is warned
    about and kept. R ``survfit.coxphms`` (``stype = 1``) sets such a diagonal
    to 0 instead, so the two differ only there.
    """
    k = da.shape[0]
    gen = np.zeros((k, n_states, n_states))
    diag = np.arange(n_states)
    for j, (a, b) in enumerate(pairs):
        gen[:, a, b] += da[:, j]
    out_rate = gen.sum(axis=2)
    if method == "exp":
        gen[:, diag, diag] = -out_rate
        return _expm(gen)
    if np.any(out_rate > 1):
        warnings.warn(f"{int((out_rate > 1).any(axis=1).sum())} event time(s) have a "
                      "transition hazard increment above 1 for this profile, so I + dA has "
                      "a negative diagonal there and some probabilities may fall outside "
                      '[0, 1] (R clamps the diagonal at 0 instead, and its probabilities '
                      'stop summing to 1): consider method="exp"', stacklevel=3)
    gen[:, diag, diag] = 1.0 - out_rate
    return gen


def _expm(q: np.ndarray, terms: int = 18) -> np.ndarray:
    """Matrix exponentials of a stack of small matrices (K, n, n), vectorised.

    Scaling and squaring with a Taylor polynomial: each matrix is divided by
    ``2**s`` so that its 1-norm is at most 1/2, the series is summed to
    ``terms`` (truncation error < 0.5**19 / 19! ~ 1e-23), then squared back
    ``s`` times (per matrix). ``scipy.linalg.expm`` gives the same to ~1e-15 but
    takes about 10 ms per 3x3 matrix on a stack.
    """
    norm = np.abs(q).sum(axis=1).max(axis=1)
    s = np.where(norm > 0.5, np.ceil(np.log2(np.maximum(norm, 0.5) / 0.5)), 0).astype(int)
    a = q / (2.0 ** s)[:, None, None]
    eye = np.broadcast_to(np.eye(q.shape[1]), q.shape)
    out = eye.copy()
    term = eye.copy()
    for k in range(1, terms + 1):
        term = term @ a / k
        out += term
    for i in range(int(s.max()) if s.size else 0):
        sel = s > i
        out[sel] = out[sel] @ out[sel]
    return out


def _prefix_products(mats: np.ndarray) -> np.ndarray:
    """Inclusive prefix products ``M_1 M_2 ... M_k`` for every k (Hillis-Steele scan)."""
    out = mats.copy()
    d = 1
    while d < out.shape[0]:
        out[d:] = out[:-d] @ out[d:]
        d *= 2
    return out

"""Power, type-I error, bias and CI coverage of recurrent-event analyses, by simulation.

``power(design, analyses, n_replicates, seed)`` simulates ``n_replicates``
cohorts for every design of a grid (e.g. ``{"n_sites": [49, 100], "years": 6,
"hr": [1, 1.5, 2, 2.5]}``), fits each analysis to each cohort and records the
estimate of the target effect (by default the log hazard ratio of
discontinuation for ``recent_leader_change``, i.e. the first ``window`` years
after a leadership change), its cluster-robust standard error, the Wald
confidence interval, whether it covers the true value and whether the null
``log HR = 0`` is rejected.

Analyses
--------
* ``"ag"``: Andersen-Gill Cox model of all discontinuations, robust (Lin-Wei)
  errors clustered by site (:func:`imrsurv.models.cox.fit_recurrent`).
* ``"pwp-tt"`` / ``"pwp-gt"``: Prentice-Williams-Peterson, stratified by
  episode, total / gap time; ``"first"``: time to first discontinuation.
* ``"discrete"``: discrete-time cloglog model of the annual panel
  (:func:`annual_panel`: status and covariates at yearly interviews;
  ``leadership_change`` = a change during the year), baseline ``C(year)``,
  errors clustered by site (:func:`imrsurv.models.discrete.fit_discrete_time`).
  Its target term is ``leadership_change``; it estimates the effect of a
  change in the year on the grouped-time hazard, which is *not* the same
  quantity as the continuous-time log HR of ``recent_leader_change``, so its
  "bias" and "coverage" against the continuous-time truth measure that
  difference too. Type-I error (``hr = 1``) is a valid check for every analysis.

Tests
-----
``test`` chooses how each Cox analysis tests ``log HR = 0`` and builds its
interval (several may be given; each gives its own rows):

* ``"wald"``: Wald z with the Lin-Wei robust se, Wald interval (R's default
  output). With a monotone likelihood its estimate runs to infinity with a
  too-small se, so at 9-49 sites it rejects far too often.
* ``"wald-cr2"``: Wald with the bias-reduced (CR2-type) robust se and a t
  reference on sites - 1 df.
* ``"lrt"``: likelihood-ratio test and profile-likelihood interval (valid,
  half-infinite, under a monotone likelihood; treats rows as independent).
* ``"score"``: the robust (Lin-Wei) score test of the term, its nuisance
  coefficients estimated under the null, and the interval that inverts it.
* ``"firth-lrt"``: Firth-penalised fit (finite estimate), penalised
  likelihood-ratio test and profile penalised-likelihood interval (as R
  ``coxphf``); the estimate reported is the Firth estimate.

A replicate is **flagged** when the ordinary (unpenalised) fit of that cohort
had a monotone likelihood or did not converge: its maximum likelihood estimate
is infinite (typically no site discontinued in the year after a leadership
change). Flagged replicates stay in every rate (they are part of the design's
sampling distribution); ``*_flagged`` / ``*_unflagged`` split the rates for
diagnosis. The discrete-time analysis offers only its own Wald test (CR2 by
site, Satterthwaite t) and is reported under ``"wald"``.

Random numbers and reproducibility
----------------------------------
The master seed's SeedSequence is spawned into ``n_replicates`` children;
replicate ``r`` of *every* design uses child ``r`` (common random numbers:
designs that differ only in ``hr`` share the covariate histories, which
smooths power curves; each design on its own is an ordinary Monte Carlo
sample). Results are sorted by design, replicate and analysis, so they are
identical whatever the number of workers or batches.
"""

from __future__ import annotations

import itertools
import math
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .cohort import simulate_cohort, spawn, with_effect
from .parallel import default_workers, run_tasks

ANALYSES = ("ag", "pwp-tt", "pwp-gt", "first", "discrete")
TESTS = ("wald", "wald-cr2", "lrt", "score", "firth-lrt")
DEFAULT_TEST = "firth-lrt"
FLAGGED_MEANING = ("flagged: the ordinary Cox fit of the cohort had a monotone likelihood or "
                   "did not converge, so its maximum likelihood estimate is infinite (e.g. no "
                   "site discontinued in the year after a leadership change); flagged "
                   "replicates are kept in every rate")
DEFAULT_FORMULA = "recent_leader_change + team_size + training_access"
DEFAULT_DISCRETE_FORMULA = "C(year) + leadership_change + team_size + training_access"
DESIGN_KEYS = ("n_sites", "years", "hr", "hazards", "effects", "covariates", "frailty_var",
               "frailty_on", "entry", "accrual", "censoring", "recent_window")
RESULT_COLUMNS = ["design", "replicate", "analysis", "test", "term", "true", "estimate", "se",
                  "se_naive", "lower", "upper", "p", "reject", "covered", "flagged", "n_events",
                  "n_sites_events", "problem"]


@dataclass
class PowerResult:
    """Replicate-level results (``results``), one row per design x replicate x analysis,
    ordered by design, replicate and analysis; ``designs`` (one row per design);
    :attr:`summary` (power, type-I error, bias, coverage per design and analysis)."""

    results: pd.DataFrame
    designs: pd.DataFrame
    alpha: float
    conf_level: float
    n_replicates: int
    interrupted: bool
    backend: str
    workers: int
    elapsed: float
    notes: list[str] = field(default_factory=list)

    @property
    def summary(self) -> pd.DataFrame:
        return summarize(self.results, self.designs, self.alpha)

    def plot(self, x: str = "hr", ax: Any = None, **kw: Any) -> Any:
        return plot_power_curve(self.summary, x=x, ax=ax, **kw)

    def __repr__(self) -> str:
        state = "INTERRUPTED, " if self.interrupted else ""
        n_done = self.results[["design", "replicate"]].drop_duplicates().shape[0]
        return (f"<PowerResult: {state}{len(self.designs)} design(s) x {self.n_replicates} "
                f"replicates ({n_done} cohorts done) on {self.backend} ({self.workers} worker(s)), "
                f"{self.elapsed:.1f} s>")


# ---------------------------------------------------------------------------
# Design grid


def design_grid(design: Mapping[str, Any] | Sequence[Mapping[str, Any]] | pd.DataFrame
                ) -> list[dict[str, Any]]:
    """Expand a design into a list of design dicts.

    A dict whose ``n_sites``, ``years``, ``hr``, ``frailty_var``, ``censoring``,
    ``accrual`` or ``entry`` values are lists is crossed (all combinations, in
    the order given, last key fastest); a list of dicts or a DataFrame gives the
    designs one by one. Every design needs ``n_sites`` and ``years``; ``hr``
    (default 1) is the hazard ratio of the target effect.
    """
    if isinstance(design, pd.DataFrame):
        rows = design.to_dict("records")
    elif isinstance(design, Mapping):
        grid_keys = ("n_sites", "years", "hr", "frailty_var", "censoring", "accrual", "entry")
        keys = list(design)
        values = []
        for k in keys:
            v = design[k]
            if k in grid_keys and isinstance(v, list | tuple | np.ndarray | range):
                values.append(list(v))
            else:
                values.append([v])
        rows = [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values)]
    else:
        rows = [dict(d) for d in design]
    out = []
    problems = []
    for i, row in enumerate(rows):
        unknown = sorted(set(row) - set(DESIGN_KEYS))
        if unknown:
            problems.append(f"design {i}: unknown key(s) {', '.join(unknown)} (known: "
                            f"{', '.join(DESIGN_KEYS)})")
        for need in ("n_sites", "years"):
            if need not in row:
                problems.append(f"design {i}: {need} is required")
        hr = row.get("hr", 1.0)
        if not (isinstance(hr, int | float | np.number) and np.isfinite(hr) and hr > 0):
            problems.append(f"design {i}: hr must be a positive number, got {hr!r}")
        d = dict(row)
        d.setdefault("hr", 1.0)
        if "n_sites" in d:
            d["n_sites"] = int(d["n_sites"])
        out.append(d)
    if problems:
        raise ValueError("invalid power design: " + "; ".join(problems))
    if not out:
        raise ValueError("the design grid is empty")
    return out


def _design_table(designs: list[dict[str, Any]]) -> pd.DataFrame:
    simple = []
    for i, d in enumerate(designs):
        row = {"design": i}
        for k, v in d.items():
            row[k] = v if isinstance(v, int | float | str | np.number) or v is None else repr(v)
        simple.append(row)
    return pd.DataFrame(simple)


# ---------------------------------------------------------------------------
# One replicate


@dataclass(frozen=True)
class _Task:
    design_id: int
    design: dict[str, Any]
    replicates: tuple[int, ...]
    seeds: tuple[np.random.SeedSequence, ...]
    analyses: tuple[str, ...]
    tests: tuple[str, ...]
    formula: str
    discrete_formula: str
    target: tuple[str, str]
    conf_level: float
    alpha: float


def _run_batch(task: _Task) -> list[dict[str, Any]]:
    """Worker entry point: every replicate of one batch (top-level, so Dask can pickle it)."""
    rows: list[dict[str, Any]] = []
    for rep, ss in zip(task.replicates, task.seeds, strict=True):
        rows += run_replicate(task.design, ss, task.analyses, tests=task.tests,
                              formula=task.formula,
                              discrete_formula=task.discrete_formula, target=task.target,
                              conf_level=task.conf_level, alpha=task.alpha,
                              design_id=task.design_id, replicate=rep)
    return rows


def run_replicate(design: Mapping[str, Any], seed: Any, analyses: Sequence[str], *,
                  tests: Sequence[str] = (DEFAULT_TEST,), formula: str = DEFAULT_FORMULA,
                  discrete_formula: str = DEFAULT_DISCRETE_FORMULA,
                  target: tuple[str, str] = ("discontinue", "recent_leader_change"),
                  conf_level: float = 0.95, alpha: float = 0.05, design_id: int = 0,
                  replicate: int = 0) -> list[dict[str, Any]]:
    """Simulate one cohort of ``design`` and fit every analysis; one row per analysis and
    test (see the module docstring)."""
    d = dict(design)
    hr = float(d.pop("hr", 1.0))
    transition, covariate = target
    d["effects"] = with_effect(d.get("effects"), transition, covariate, math.log(hr))
    n_sites, years = d.pop("n_sites"), d.pop("years")
    truth = math.log(hr)
    base = {"design": design_id, "replicate": replicate}
    try:
        cohort = simulate_cohort(n_sites, years, seed=seed, **d)
        hist = cohort.history()
    except Exception as exc:  # a design the simulator rejects: every analysis reports it
        return [{**base, "analysis": a, "test": t, "term": covariate, "true": truth,
                 "problem": f"simulation failed: {exc}"} for a in analyses
                for t in (("wald",) if a == "discrete" else tests)]
    rows = []
    panel = None
    for a in analyses:
        if a == "discrete":
            if panel is None:
                panel = annual_panel(hist)
            rows.append(_discrete_row(panel, discrete_formula, covariate, truth, conf_level,
                                      alpha, base))
        else:
            rows += _cox_rows(hist, a, formula, transition, covariate, tests, truth, conf_level,
                              alpha, base)
    ev = hist.events
    n_with = ev.loc[ev["event"] == "discontinue", "site"].nunique()
    for row in rows:
        row["n_sites_events"] = int(n_with)
    return rows


def _caught_problems(caught: list[warnings.WarningMessage]) -> str:
    msgs = sorted({str(w.message).splitlines()[0] for w in caught
                   if any(k in str(w.message).lower()
                          for k in ("converge", "infinite", "separation"))})
    return "; ".join(msgs)


def _error_text(exc: Exception) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[-1].strip()}"


def _finish(row: dict[str, Any], truth: float, alpha: float) -> dict[str, Any]:
    p, lo, hi = row.get("p"), row.get("lower"), row.get("upper")
    row["reject"] = bool(p < alpha) if p is not None and np.isfinite(p) else None
    row["covered"] = (bool(lo <= truth <= hi) if lo is not None and hi is not None
                      and not (np.isnan(lo) or np.isnan(hi)) else None)
    return row


def _cox_rows(hist: Any, scheme: str, formula: str, transition: str, covariate: str,
              tests: Sequence[str], truth: float, conf_level: float, alpha: float,
              base: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per test for a Cox analysis: one ordinary fit, one Firth fit if asked."""
    from ..models.cox import fit_recurrent

    outcome = transition if transition == "restart" else "discontinue"
    rows = [{**base, "analysis": scheme, "test": t, "term": covariate, "true": truth}
            for t in tests]
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = fit_recurrent(hist, formula, scheme=scheme, outcome=outcome)
        flagged = bool(res.diverging.any() or not res.converged)
        problem = _caught_problems(caught)
    except Exception as exc:  # e.g. no events, a covariate that never varies
        for row in rows:
            row["problem"] = _error_text(exc)
        return rows
    firth = None
    for row in rows:
        row.update(n_events=res.n_events, flagged=flagged, problem=problem,
                   se_naive=float(res.se_naive[covariate]))
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                if row["test"] == "firth-lrt":
                    if firth is None:
                        firth = fit_recurrent(hist, formula, scheme=scheme, outcome=outcome,
                                              penalty="firth")
                    inf = firth.term_inference(covariate, "lrt", conf_level)
                else:
                    inf = res.term_inference(covariate, row["test"], conf_level)
            extra = _caught_problems(caught)
            if extra:
                row["problem"] = "; ".join(x for x in (problem, extra) if x)
            row.update(estimate=inf["estimate"], se=inf["se"], p=inf["p"], lower=inf["lower"],
                       upper=inf["upper"])
        except Exception as exc:
            row["problem"] = _error_text(exc)
        _finish(row, truth, alpha)
    return rows


def _discrete_row(panel: pd.DataFrame, formula: str, covariate: str, truth: float,
                  conf_level: float, alpha: float, base: dict[str, Any]) -> dict[str, Any]:
    """The discrete-time analysis: its own Wald test (reported as ``"wald"``)."""
    from ..models.discrete import fit_discrete_time

    term = "leadership_change" if covariate == "recent_leader_change" else covariate
    row: dict[str, Any] = {**base, "analysis": "discrete", "test": "wald", "term": term,
                           "true": truth}
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = fit_discrete_time(panel, formula, link="cloglog", cluster="site",
                                    conf_level=conf_level)
            for note in res.notes:
                if "separation" in note or "did not converge" in note:
                    warnings.warn(note, stacklevel=1)
        sm = res.summary
        est, se = float(res.params[term]), float(res.se[term])
        lo = float(sm.loc[term, [c for c in sm.columns if c.startswith("lower ")][0]])
        hi = float(sm.loc[term, [c for c in sm.columns if c.startswith("upper ")][0]])
        problem = _caught_problems(caught)
        row.update(estimate=est, se=se, se_naive=float(getattr(res, "se_naive", res.se)[term]),
                   p=float(sm.loc[term, "p"]), lower=lo, upper=hi, n_events=res.n_events,
                   flagged=bool(problem), problem=problem)
    except Exception as exc:
        row["problem"] = _error_text(exc)
    return _finish(row, truth, alpha)


# ---------------------------------------------------------------------------
# Annual panel (for the discrete-time analysis)


def annual_panel(hist: Any, years: int | None = None) -> pd.DataFrame:
    """Annual interview panel of a History: one row per site and whole year of follow-up.

    ``active``: the programme ran at the interview (the last event at or before
    the year was start or restart; an event at the interview counts, as in
    :meth:`History.status_at`). ``leadership_change``: 1 if a new leader took
    over during the year (``year - 1 < t <= year``); ``team_size`` and
    ``training_access``: values in force at the interview. Years run from 1 to
    the whole years of follow-up (or ``years``). The layout of
    ``datasets/bond2014/panel.csv``, ready for :func:`imrsurv.read_panel`.
    """
    from ..panel import read_panel

    sites = hist.sites[["site", "exit"]]
    n_years = np.floor(sites["exit"].to_numpy() + 1e-9).astype(int)
    if years is not None:
        n_years = np.minimum(n_years, int(years))
    grid = pd.DataFrame({"site": np.repeat(sites["site"].to_numpy(), n_years),
                         "year": np.concatenate([np.arange(1, k + 1) for k in n_years])
                         if len(n_years) else np.array([], dtype=int)})
    grid["t"] = grid["year"].astype(float)
    ev = hist.events
    ev = ev[ev["event"] != "end"][["site", "time", "event"]].sort_values("time", kind="stable")
    g = grid.sort_values("t", kind="stable")
    m = pd.merge_asof(g, ev, left_on="t", right_on="time", by="site", direction="backward")
    m["active"] = m["event"].isin(["start", "restart"]).astype(int)
    cov = hist.covariates
    if cov is not None:
        cov = cov.sort_values(["site", "time"], kind="stable").copy()
        value_cols = [c for c in ("team_size", "training_access") if c in cov.columns]
        if "leadership_change" in cov.columns:
            cov["_lc"] = cov.groupby("site")["leadership_change"].cumsum()
        cv = cov[["site", "time", *value_cols] + (["_lc"] if "_lc" in cov else [])]
        cv = cv.sort_values("time", kind="stable")
        m = pd.merge_asof(m.drop(columns=["time", "event"]), cv, left_on="t", right_on="time",
                          by="site", direction="backward")
        if "_lc" in m:
            prev = m[["site", "t"]].assign(t=m["t"] - 1.0).sort_values("t", kind="stable")
            prev = pd.merge_asof(prev.reset_index(), cv[["site", "time", "_lc"]], left_on="t",
                                 right_on="time", by="site", direction="backward")
            prev = prev.set_index("index")["_lc"].reindex(m.index).fillna(0.0)
            m["leadership_change"] = ((m["_lc"].fillna(0.0) - prev) > 0).astype(int)
        keep = ["site", "year", "active"] + (["leadership_change"] if "_lc" in m else []) + value_cols
    else:
        keep = ["site", "year", "active"]
    out = m.sort_values(["site", "year"], kind="stable")[keep].reset_index(drop=True)
    return read_panel(out)


# ---------------------------------------------------------------------------
# Driver


def power(design: Mapping[str, Any] | Sequence[Mapping[str, Any]] | pd.DataFrame,
          analyses: Sequence[str] | str = ("ag",), n_replicates: int = 200, seed: Any = None, *,
          scheduler: str | None = None, workers: int | None = None, alpha: float = 0.05,
          conf_level: float = 0.95, formula: str = DEFAULT_FORMULA,
          discrete_formula: str = DEFAULT_DISCRETE_FORMULA,
          target: tuple[str, str] = ("discontinue", "recent_leader_change"),
          batch_size: int | None = None, progress: bool = True,
          connect_timeout: float = 10.0,
          test: str | Sequence[str] = DEFAULT_TEST) -> PowerResult:
    """Simulate, fit and tabulate; see the module docstring.

    ``design``: see :func:`design_grid` (keys ``n_sites``, ``years``, ``hr`` and
    any :func:`~imrsurv.simulate.simulate` model argument: ``hazards``,
    ``effects``, ``covariates``, ``frailty_var``, ``entry``, ``accrual``,
    ``censoring``, ``recent_window``). ``analyses``: any of ``ag``, ``pwp-tt``,
    ``pwp-gt``, ``first``, ``discrete``. ``seed`` is required. ``workers`` /
    ``scheduler``: see :mod:`imrsurv.simulate.parallel` (default: a local Dask
    cluster with one process per CPU; ``workers=1`` runs here). Ctrl-C stops
    the run and returns the finished replicates (``interrupted=True``).
    ``test``: one or several of :data:`TESTS` (see the module docstring);
    the default, ``"firth-lrt"``, is the one that holds its size at Bond-sized
    samples (``benchmarks/RESULTS.md``).
    """
    if seed is None:
        raise ValueError("power() needs an explicit seed (same seed, same results)")
    from ..errors import DataError

    analyses = (analyses,) if isinstance(analyses, str) else tuple(analyses)
    tests = (test,) if isinstance(test, str) else tuple(test)
    bad_tests = [t for t in tests if t not in TESTS]
    if bad_tests or not tests:
        raise DataError([f"test={bad_tests[0] if bad_tests else test!r} is not allowed: test "
                         f"must be one or several of {', '.join(map(repr, TESTS))}"],
                        title="invalid argument")
    bad = [a for a in analyses if a not in ANALYSES]
    if bad or not analyses:
        raise ValueError(f"unknown analysis {bad}; choose from {', '.join(ANALYSES)}")
    if isinstance(n_replicates, bool) or not isinstance(n_replicates, int | np.integer) \
            or n_replicates < 1:
        raise ValueError(f"n_replicates must be a positive integer, got {n_replicates!r}")
    if not 0 < alpha < 1 or not 0 < conf_level < 1:
        raise ValueError("alpha and conf_level must be in (0, 1)")
    from ..formula import parse_formula

    parse_formula(formula)  # a formula outside the grammar fails here, before any replicate
    parse_formula(discrete_formula, allow_response=True)
    designs = design_grid(design)
    for d in designs:  # fail fast on a design the simulator rejects (tiny cohort, any seed)
        dd = dict(d)
        dd["effects"] = with_effect(dd.get("effects"), *target, math.log(dd.pop("hr")))
        n = dd.pop("n_sites")
        simulate_cohort(min(n, 2) if n >= 1 else n, dd.pop("years"), seed=0, **dd)
    children = spawn(seed, int(n_replicates))
    if batch_size is None:  # batching never changes the results, only the overhead
        total = len(designs) * n_replicates
        n_par = workers if workers else (8 if scheduler else default_workers())
        batch_size = max(1, min(25, total // (4 * n_par)))
    tasks = []
    for i, d in enumerate(designs):
        for lo in range(0, n_replicates, batch_size):
            reps = tuple(range(lo, min(lo + batch_size, n_replicates)))
            tasks.append(_Task(i, d, reps, tuple(children[r] for r in reps), analyses, tests,
                               formula, discrete_formula, target, conf_level, alpha))
    from ..models import cox, discrete  # noqa: F401  (imported once here: forked workers inherit them)

    t0 = time.monotonic()
    run = run_tasks(_run_batch, tasks, scheduler=scheduler, workers=workers, progress=progress,
                    desc="power", connect_timeout=connect_timeout)
    rows = [r for res, ok in zip(run.results, run.done, strict=True) if ok for r in res]
    results = _tidy(rows, analyses, tests)
    notes = []
    if run.interrupted:
        notes.append(f"interrupted: {sum(run.done)} of {len(tasks)} batches finished; the "
                     "results hold the finished replicates only")
    notes.append(FLAGGED_MEANING)
    return PowerResult(results=results, designs=_design_table(designs), alpha=alpha,
                       conf_level=conf_level, n_replicates=int(n_replicates),
                       interrupted=run.interrupted, backend=run.backend, workers=run.workers,
                       elapsed=time.monotonic() - t0, notes=notes)


def _tidy(rows: list[dict[str, Any]], analyses: tuple[str, ...],
          tests: tuple[str, ...] = TESTS) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    df["problem"] = df["problem"].fillna("").astype(str)
    for c in ("reject", "covered", "flagged"):
        df[c] = df[c].astype("boolean")
    for c in ("n_events", "n_sites_events"):
        df[c] = df[c].astype("Int64")
    for c in ("true", "estimate", "se", "se_naive", "lower", "upper", "p"):
        df[c] = df[c].astype(float)
    df["analysis"] = pd.Categorical(df["analysis"], categories=list(analyses))
    df["test"] = pd.Categorical(df["test"], categories=list(dict.fromkeys(tests + ("wald",))))
    df = df.sort_values(["design", "replicate", "analysis", "test"],
                        kind="stable").reset_index(drop=True)
    df["analysis"] = df["analysis"].astype(str)
    df["test"] = df["test"].astype(str)
    return df


def summarize(results: pd.DataFrame, designs: pd.DataFrame | None = None, alpha: float = 0.05
              ) -> pd.DataFrame:
    """Per design, analysis and test.

    ``replicates``; ``failed`` (no p-value: left out of the rates); ``flagged``
    (see :data:`FLAGGED_MEANING`: kept in every rate); ``rejection_rate``
    (power, or the type-I error when the true effect is 0) with its Monte
    Carlo se; ``rejection_rate_flagged`` / ``_unflagged`` (the same rate among
    flagged / other replicates, for diagnosis); ``mean_estimate``,
    ``median_estimate`` and ``bias`` (mean - true; a flagged ordinary fit has
    an effectively infinite estimate, so read the median there); ``empirical_sd``;
    ``mean_se``; ``coverage`` of the test's interval (with Monte Carlo se and
    its flagged / unflagged split); ``power`` / ``type_i_error`` repeat the
    rejection rate for non-null / null designs.
    """
    if "test" not in results.columns:
        results = results.assign(test="wald")
    if "flagged" not in results.columns:
        results = results.assign(flagged=results["problem"] != "")
    keys = ["design", "analysis", "test"]
    ok = results[results["p"].notna()]
    g = ok.groupby(keys, sort=False)
    out = pd.DataFrame({"replicates": results.groupby(keys, sort=False).size()})
    out["failed"] = out["replicates"] - g.size().reindex(out.index, fill_value=0)
    out["true"] = results.groupby(keys, sort=False)["true"].first()
    n = g.size().reindex(out.index).astype(float)
    out["flagged"] = g["flagged"].apply(lambda s: int(s.fillna(False).sum())).reindex(
        out.index, fill_value=0)
    out["rejection_rate"] = g["reject"].mean().astype(float)
    out["rejection_mcse"] = np.sqrt(out["rejection_rate"] * (1 - out["rejection_rate"]) / n)
    flag = ok["flagged"].fillna(False).astype(bool)
    for name, part in (("flagged", ok[flag]), ("unflagged", ok[~flag])):
        pg = part.groupby(keys, sort=False)
        out[f"rejection_rate_{name}"] = pg["reject"].mean().astype(float).reindex(out.index)
    out["mean_estimate"] = g["estimate"].mean()
    out["median_estimate"] = g["estimate"].median()
    out["bias"] = out["mean_estimate"] - out["true"]
    out["empirical_sd"] = g["estimate"].std(ddof=1)
    out["mean_se"] = g["se"].mean()
    out["coverage"] = g["covered"].mean().astype(float)
    out["coverage_mcse"] = np.sqrt(out["coverage"] * (1 - out["coverage"]) / n)
    for name, part in (("flagged", ok[flag]), ("unflagged", ok[~flag])):
        pg = part.groupby(keys, sort=False)
        out[f"coverage_{name}"] = pg["covered"].mean().astype(float).reindex(out.index)
    out["null"] = out["true"] == 0
    out["power"] = out["rejection_rate"].where(~out["null"])
    out["type_i_error"] = out["rejection_rate"].where(out["null"])
    out = out.reset_index()
    if designs is not None:
        keep = [c for c in designs.columns if c != "design"]
        out = out.merge(designs[["design", *keep]], on="design", how="left")
        out = out[["design", *keep] + [c for c in out.columns if c not in keep and c != "design"]]
    for c in ("analysis", "test"):
        out[c] = pd.Categorical(out[c], categories=list(dict.fromkeys(results[c])))
    out = out.sort_values(["design", "analysis", "test"]).reset_index(drop=True)
    for c in ("analysis", "test"):
        out[c] = out[c].astype(str)
    return out


def plot_power_curve(summary: pd.DataFrame, x: str = "hr", ax: Any = None, *,
                     by: str | Sequence[str] | None = None, alpha: float | None = 0.05,
                     title: str | None = None) -> Any:
    """Rejection rate against ``x`` (default ``hr``), one line per analysis (and per level of
    ``by``, default the other design columns that vary), with +-2 MC-se bands."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    design_cols = [c for c in summary.columns if c in DESIGN_KEYS and c != x]
    if by is None:
        by = [c for c in design_cols if summary[c].nunique() > 1]
    elif isinstance(by, str):
        by = [by]
    groups = ["analysis", *(["test"] if "test" in summary.columns
                            and summary["test"].nunique() > 1 else []), *by]
    for key, grp in summary.groupby(groups, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        grp = grp.sort_values(x)
        lead = len(groups) - len(by)
        label = ", ".join([str(k) for k in key[:lead]] +
                          [f"{b}={v}" for b, v in zip(by, key[lead:], strict=True)])
        line, = ax.plot(grp[x], grp["rejection_rate"], marker="o", label=label)
        ax.fill_between(grp[x], grp["rejection_rate"] - 2 * grp["rejection_mcse"],
                        grp["rejection_rate"] + 2 * grp["rejection_mcse"],
                        color=line.get_color(), alpha=0.15, linewidth=0)
    if alpha is not None:
        ax.axhline(alpha, color="grey", linestyle=":", linewidth=1)
    ax.axhline(0.8, color="grey", linestyle="--", linewidth=0.8)
    ax.set_ylim(0, 1)
    ax.set_xlabel("hazard ratio of a recent leadership change" if x == "hr" else x)
    ax.set_ylabel("rejection rate (power; type-I error at HR 1)")
    if title:
        ax.set_title(title)
    ax.legend(fontsize="small")
    return ax


__all__ = ["ANALYSES", "PowerResult", "annual_panel", "design_grid", "plot_power_curve", "power",
           "run_replicate", "summarize"]

"""Exact simulation of programme histories (sustained -> discontinued -> restarted -> ...).

The data-generating model
-------------------------
Every site starts the programme at analysis time 0 (years since the site's
start) in state *sustained*. Transitions:

* ``discontinue``: sustained -> discontinued, hazard
  ``h0_disc(t) * Z * exp(x(t)' b_disc)``;
* ``rediscontinue``: restarted -> discontinued, hazard
  ``h0_redisc(t) * Z * exp(x(t)' b_redisc)`` (defaults: the ``discontinue``
  baseline and effects, i.e. the Andersen-Gill model holds);
* ``restart``: discontinued -> restarted, hazard
  ``h0_restart(t) * Z_r * exp(x(t)' b_restart)``.

``h0`` are piecewise-constant baseline hazards on the time since the site's
start; ``x(t)`` are the site's time-varying covariates, exactly as
:meth:`imrsurv.History.counting_process` builds them from the covariate log
(``recent_leader_change``, ``leader_changes``, ``team_size``,
``training_access``); ``Z`` is a gamma site frailty with mean 1 and variance
``frailty_var`` (``Z_r = Z`` when ``"restart"`` is in ``frailty_on``, else 1).

Covariate processes (:class:`CovariateModel`): leadership changes form a
Poisson process; team size starts uniform on ``team_initial`` and moves by
+-1 at the times of a Poisson turnover process (a loss with probability
``team_loss_p``), kept within ``[team_min, team_max]``; training access starts
at 1 with probability ``training_p0`` and switches on/off at the times of a
Poisson process.

Follow-up: with ``entry="common"`` every site is followed ``years`` years.
With ``entry="staggered"`` sites start at calendar times uniform on
``[0, accrual)`` (default ``years / 2``) and the study closes at calendar time
``years``, so a site is followed ``years - entry_year`` years (administrative
censoring). Random loss to follow-up is exponential with rate ``censoring``
per year. Each site's history ends with an ``end`` event at its last contact.

Exactness
---------
No time step: between breakpoints (covariate changes, ends of the recent
leadership-change window, breaks of the baseline hazards) every hazard is
constant, so the cumulative hazard of each transition is piecewise linear.
The next transition time from time ``s`` is ``H^{-1}(H(s) + E)`` with ``E``
standard exponential (inversion), vectorised over all sites with one
``searchsorted`` per round of transitions.

Times are rounded to ``decimals`` (default 6: about 30 seconds) *as they are
drawn*, and the process continues from the rounded time: covariate change
times are rounded before the hazards are built, so the recorded covariate log
is exactly the one that drove the hazards, and the recorded event times differ
from continuous draws by at most half a unit in the last decimal. A transition
that would round onto the previous event time is moved one unit later (a
zero-length episode is not a valid history); the chance of that is about
``rate * 1e-6`` per transition.

Random numbers
--------------
``seed`` (an int, a sequence of ints or a :class:`numpy.random.SeedSequence`)
is spawned into one independent stream per component (entry, loss to
follow-up, frailty, leadership, team, training, transitions), and every stream
draws a fixed number of values per site per step. So the same seed gives the
same cohort (byte-identical CSV files from :func:`write_cohort`), and changing
an effect size leaves the covariate histories, frailties and follow-up of the
sites unchanged (common random numbers across the designs of a power curve).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

TRANSITIONS = ("discontinue", "rediscontinue", "restart")
EFFECT_COVARIATES = ("recent_leader_change", "leader_changes", "team_size", "training_access")
COVARIATE_COLUMNS = ("leadership_change", "team_size", "training_access")
ENTRIES = ("staggered", "common")
STATES_ORDER = ("sustained", "discontinued", "restarted")
SeedLike = int | Sequence[int] | np.random.SeedSequence

# Default baseline hazards: the covariate-free calibration to Bond et al. (2014),
# 47% sustained / 16% restarted / 37% discontinued at 6 years
# (``calibrate()`` reproduces them; see tests/test_simulate.py).
BOND_TARGET = {"sustained": 0.47, "restarted": 0.16, "discontinued": 0.37}
BOND_HAZARDS = {"discontinue": 0.1258371, "restart": 0.1488075}

_STREAMS = ("entry", "dropout", "frailty", "leadership", "team", "training", "transitions")


# ---------------------------------------------------------------------------
# Model specification


@dataclass(frozen=True)
class CovariateModel:
    """Time-varying covariate processes of a site (rates per year)."""

    leadership_rate: float = 0.15
    team_initial: tuple[int, int] = (2, 8)
    turnover_rate: float = 0.6
    team_loss_p: float = 0.55
    team_min: int = 1
    team_max: int = 8
    training_p0: float = 0.6
    training_switch_rate: float = 0.2

    def __post_init__(self) -> None:
        problems = []
        for name in ("leadership_rate", "turnover_rate", "training_switch_rate"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v >= 0):
                problems.append(f"{name} must be a rate >= 0, got {v!r}")
        for name in ("team_loss_p", "training_p0"):
            v = getattr(self, name)
            if not 0 <= v <= 1:
                problems.append(f"{name} must be a probability in [0, 1], got {v!r}")
        lo, hi = self.team_initial
        if not (0 <= self.team_min <= lo <= hi <= self.team_max):
            problems.append("need 0 <= team_min <= team_initial[0] <= team_initial[1] <= team_max, "
                            f"got team_min={self.team_min}, team_initial={self.team_initial}, "
                            f"team_max={self.team_max}")
        if problems:
            raise ValueError("invalid covariate model: " + "; ".join(problems))

    @classmethod
    def from_spec(cls, spec: CovariateModel | Mapping[str, Any] | str | None) -> CovariateModel | None:
        if spec is None:
            return None
        if isinstance(spec, CovariateModel):
            return spec
        if isinstance(spec, str):
            if spec != "default":
                raise ValueError(f'covariates must be "default", None, a dict or a CovariateModel, '
                                 f"got {spec!r}")
            return cls()
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(spec) - known)
        if unknown:
            raise ValueError(f"unknown covariate-model setting(s) {', '.join(unknown)}; "
                             f"known: {', '.join(sorted(known))}")
        kw = dict(spec)
        if "team_initial" in kw:
            kw["team_initial"] = tuple(int(v) for v in kw["team_initial"])
        return cls(**kw)


@dataclass(frozen=True)
class Piecewise:
    """A piecewise-constant hazard: ``rates[k]`` on ``[breaks[k], breaks[k+1])``, breaks[0] = 0."""

    breaks: tuple[float, ...]
    rates: tuple[float, ...]

    @classmethod
    def from_spec(cls, spec: Any, name: str) -> Piecewise:
        """A number (constant), a dict ``{from_time: rate}`` or a list of ``(from_time, rate)``."""
        if isinstance(spec, Piecewise):
            return spec
        if isinstance(spec, int | float | np.floating | np.integer):
            pairs = [(0.0, float(spec))]
        else:
            items = spec.items() if isinstance(spec, Mapping) else spec
            try:
                pairs = sorted((float(t), float(r)) for t, r in items)
            except (TypeError, ValueError):
                raise ValueError(f"hazard {name!r} must be a rate, a dict {{from_time: rate}} or a "
                                 f"list of (from_time, rate) pairs, got {spec!r}") from None
        if not pairs or pairs[0][0] != 0.0:
            raise ValueError(f"hazard {name!r}: the first piece must start at time 0, got {spec!r}")
        times = [t for t, _ in pairs]
        if len(set(times)) != len(times):
            raise ValueError(f"hazard {name!r}: two pieces start at the same time ({spec!r})")
        bad = [r for _, r in pairs if not (np.isfinite(r) and r >= 0)]
        if bad:
            raise ValueError(f"hazard {name!r}: rates must be finite and >= 0, got {bad}")
        return cls(tuple(times), tuple(r for _, r in pairs))

    def at(self, t: np.ndarray) -> np.ndarray:
        idx = np.searchsorted(np.asarray(self.breaks), t, side="right") - 1
        return np.asarray(self.rates)[idx]


@dataclass(frozen=True)
class Model:
    """A validated simulation model (what :func:`simulate` runs)."""

    hazards: dict[str, Piecewise]
    effects: dict[str, dict[str, float]]
    covariates: CovariateModel | None
    frailty_var: float = 0.0
    frailty_on: tuple[str, ...] = ("discontinue", "rediscontinue")
    recent_window: float = 1.0

    @classmethod
    def build(cls, hazards: Mapping[str, Any] | None, effects: Mapping[str, Mapping[str, float]] | None,
              covariates: Any, frailty_var: float, frailty_on: Sequence[str],
              recent_window: float) -> Model:
        hz = dict(BOND_HAZARDS if hazards is None else hazards)
        unknown = sorted(set(hz) - set(TRANSITIONS))
        if unknown:
            raise ValueError(f"unknown hazard(s) {', '.join(unknown)}; transitions are "
                             f"{', '.join(TRANSITIONS)}")
        for need in ("discontinue", "restart"):
            if need not in hz:
                raise ValueError(f"hazards must give a {need!r} baseline hazard")
        pw = {k: Piecewise.from_spec(v, k) for k, v in hz.items()}
        pw.setdefault("rediscontinue", pw["discontinue"])
        eff_in = {k: dict(v) for k, v in (effects or {}).items()}
        unknown = sorted(set(eff_in) - set(TRANSITIONS))
        if unknown:
            raise ValueError(f"unknown transition(s) in effects: {', '.join(unknown)}; transitions "
                             f"are {', '.join(TRANSITIONS)}")
        eff = {t: {} for t in TRANSITIONS}
        for t, d in eff_in.items():
            for c, b in d.items():
                if c not in EFFECT_COVARIATES:
                    raise ValueError(f"effects[{t!r}]: unknown covariate {c!r}; effects act on "
                                     f"{', '.join(EFFECT_COVARIATES)} (log hazard ratios)")
                if not np.isfinite(b):
                    raise ValueError(f"effects[{t!r}][{c!r}] must be a finite log hazard ratio")
                eff[t][c] = float(b)
        if "rediscontinue" not in eff_in:
            eff["rediscontinue"] = dict(eff["discontinue"])
        cov = CovariateModel.from_spec(covariates)
        if cov is None and any(b != 0 for t in TRANSITIONS for b in eff[t].values()):
            raise ValueError("effects need covariates: pass covariates='default' (or a covariate "
                             "model) or drop the effects")
        if not (np.isfinite(frailty_var) and frailty_var >= 0):
            raise ValueError(f"frailty_var must be >= 0, got {frailty_var!r}")
        bad_on = sorted(set(frailty_on) - set(TRANSITIONS))
        if bad_on:
            raise ValueError(f"frailty_on: unknown transition(s) {', '.join(bad_on)}")
        if not recent_window > 0:
            raise ValueError(f"recent_window must be > 0, got {recent_window!r}")
        return cls(pw, eff, cov, float(frailty_var), tuple(frailty_on), float(recent_window))


@dataclass
class Cohort:
    """A simulated cohort as the three input tables of :func:`imrsurv.read_history`.

    ``sites`` holds the simulation truth per site: ``entry_year`` (calendar
    time of the start) and ``frailty``.
    """

    events: pd.DataFrame
    covariates: pd.DataFrame | None
    sites: pd.DataFrame
    model: Model = field(repr=False)
    years: float = 0.0

    def history(self, validate: bool = False):
        """The cohort as a :class:`imrsurv.History`.

        By default the History is built directly
        (:func:`imrsurv.simulate.trusted.trusted_history`): the simulator
        guarantees what :func:`imrsurv.read_history` checks (one start,
        alternating transitions strictly inside follow-up, one end, a covariate
        row at every start, 0/1 and non-negative values), so re-validating
        costs time for nothing. ``validate=True`` goes through
        :func:`~imrsurv.read_history`; both give the same History
        (``tests/test_simulate_trusted.py``).
        """
        if not validate:
            from .trusted import trusted_history

            return trusted_history(self)
        from ..history import read_history

        return read_history(self.events, self.covariates, self.sites,
                            recent_window=self.model.recent_window)


# ---------------------------------------------------------------------------
# Public entry points


def as_seed_sequence(seed: SeedLike) -> np.random.SeedSequence:
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if seed is None:
        raise ValueError("an explicit seed is required (same seed, same cohort)")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer | Sequence):
        raise ValueError(f"seed must be an int >= 0, a sequence of ints or a SeedSequence, got {seed!r}")
    return np.random.SeedSequence(seed)


def streams(seed: SeedLike) -> dict[str, np.random.Generator]:
    """One generator per component, the children of ``seed`` (like ``seed.spawn``, but
    without changing a SeedSequence passed in: the same object always gives the same draws)."""
    kids = spawn(seed, len(_STREAMS))
    return {name: np.random.default_rng(k) for name, k in zip(_STREAMS, kids, strict=True)}


def spawn(seed: SeedLike, n: int) -> list[np.random.SeedSequence]:
    """The first ``n`` children of ``seed`` (as ``SeedSequence.spawn`` on a fresh sequence;
    a SeedSequence passed in is not changed, so repeated calls give the same children)."""
    ss = as_seed_sequence(seed)
    return [np.random.SeedSequence(ss.entropy, spawn_key=(*ss.spawn_key, i), pool_size=ss.pool_size)
            for i in range(n)]


def simulate(n_sites: int, years: float, *, hazards: Mapping[str, Any] | None = None,
             effects: Mapping[str, Mapping[str, float]] | None = None,
             covariates: Any = "default", frailty_var: float = 0.0,
             frailty_on: Sequence[str] = ("discontinue", "rediscontinue"),
             entry: str = "staggered", accrual: float | None = None, censoring: float = 0.0,
             recent_window: float = 1.0, decimals: int = 6, seed: SeedLike):
    """Simulate a cohort of programme histories and return it as a validated History.

    Parameters
    ----------
    n_sites, years
        Number of sites; study length in years (see ``entry``).
    hazards
        Baseline hazards per year of ``discontinue``, ``restart`` and optionally
        ``rediscontinue`` (restarted -> discontinued; default: as
        ``discontinue``). Each is a rate, a dict ``{from_time: rate}`` or a list
        of ``(from_time, rate)`` pairs (piecewise constant, first piece at 0).
        Default: the covariate-free calibration to Bond et al. (2014).
    effects
        Log hazard ratios per transition and covariate, e.g.
        ``{"discontinue": {"recent_leader_change": log(2), "training_access": -0.5}}``;
        covariates: ``recent_leader_change`` (1 for ``recent_window`` years after
        a leadership change), ``leader_changes`` (count so far), ``team_size``,
        ``training_access``. ``rediscontinue`` defaults to the ``discontinue`` effects.
    covariates
        ``"default"`` (:class:`CovariateModel` defaults), a dict of settings, a
        CovariateModel, or None (no covariate log).
    frailty_var
        Variance of the gamma site frailty (mean 1); 0 = none. It multiplies
        the hazards of the transitions in ``frailty_on``.
    entry, accrual
        ``"common"``: all sites followed ``years``. ``"staggered"``: starts
        uniform on ``[0, accrual)`` (default ``years / 2``), study closes at ``years``.
    censoring
        Rate (per year) of random loss to follow-up.
    seed
        int, sequence of ints or SeedSequence (required).

    Returns a :class:`imrsurv.History`; :func:`simulate_cohort` returns the
    tables behind it (with the truth per site).
    """
    return simulate_cohort(n_sites, years, hazards=hazards, effects=effects, covariates=covariates,
                           frailty_var=frailty_var, frailty_on=frailty_on, entry=entry,
                           accrual=accrual, censoring=censoring, recent_window=recent_window,
                           decimals=decimals, seed=seed).history()


def simulate_cohort(n_sites: int, years: float, *, hazards: Mapping[str, Any] | None = None,
                    effects: Mapping[str, Mapping[str, float]] | None = None,
                    covariates: Any = "default", frailty_var: float = 0.0,
                    frailty_on: Sequence[str] = ("discontinue", "rediscontinue"),
                    entry: str = "staggered", accrual: float | None = None,
                    censoring: float = 0.0, recent_window: float = 1.0, decimals: int = 6,
                    seed: SeedLike) -> Cohort:
    """As :func:`simulate`, but return the event, covariate and site tables (a :class:`Cohort`)."""
    model = Model.build(hazards, effects, covariates, frailty_var, frailty_on, recent_window)
    n_sites = _check_int(n_sites, "n_sites", 1)
    if not (np.isfinite(years) and years > 0):
        raise ValueError(f"years must be > 0, got {years!r}")
    if entry not in ENTRIES:
        raise ValueError(f"entry must be one of {', '.join(ENTRIES)}, got {entry!r}")
    accrual = years / 2 if accrual is None else float(accrual)
    if entry == "staggered" and not 0 <= accrual < years:
        raise ValueError(f"accrual must be in [0, years), got {accrual!r}")
    if not (np.isfinite(censoring) and censoring >= 0):
        raise ValueError(f"censoring must be a rate >= 0, got {censoring!r}")
    decimals = _check_int(decimals, "decimals", 0)
    rngs = streams(seed)
    return _generate(model, n_sites, float(years), entry, accrual, float(censoring), decimals, rngs)


def write_cohort(cohort: Cohort, out: str | Path, decimals: int = 6) -> list[Path]:
    """Write ``events.csv``, ``covariates.csv`` (if any) and ``sites.csv`` into ``out``.

    Times are written with ``decimals`` digits, ``\\n`` line ends: the same
    cohort gives the same bytes on every machine.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fmt = f"%.{decimals}f"
    paths = []
    tables = {"events": cohort.events, "covariates": cohort.covariates, "sites": cohort.sites}
    for name, frame in tables.items():
        if frame is None:
            continue
        path = out / f"{name}.csv"
        frame.to_csv(path, index=False, float_format=fmt, lineterminator="\n")
        paths.append(path)
    return paths


# ---------------------------------------------------------------------------
# Generation


def _check_int(v: Any, name: str, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    return int(v)


def _poisson_times(rng: np.random.Generator, rate: float, horizon: float, n: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Sites and times of a homogeneous Poisson process on (0, horizon) per site, sorted."""
    counts = rng.poisson(rate * horizon, size=n)
    site = np.repeat(np.arange(n), counts)
    t = rng.uniform(0.0, horizon, size=site.size)
    order = np.lexsort((t, site))
    return site[order], t[order]


def _rnd(t: np.ndarray, decimals: int) -> np.ndarray:
    return np.round(t, decimals)


def _generate(model: Model, n: int, years: float, entry: str, accrual: float, censoring: float,
              decimals: int, rngs: dict[str, np.random.Generator]) -> Cohort:
    unit = 10.0 ** -decimals
    # -- follow-up ---------------------------------------------------------
    if entry == "staggered":
        entry_year = _rnd(rngs["entry"].uniform(0.0, accrual, size=n), decimals)
    else:
        rngs["entry"].uniform(0.0, 1.0, size=n)  # keep the stream's position
        entry_year = np.zeros(n)
    follow = years - entry_year
    if censoring > 0:
        dropout = rngs["dropout"].exponential(1.0 / censoring, size=n)
    else:
        dropout = np.full(n, np.inf)
    end = _rnd(np.minimum(follow, dropout), decimals)
    end = np.maximum(end, unit)  # at least one unit of follow-up
    if model.frailty_var > 0:
        k = 1.0 / model.frailty_var
        frailty = rngs["frailty"].gamma(k, 1.0 / k, size=n)
    else:
        frailty = np.ones(n)

    cov = None if model.covariates is None else _covariate_log(model.covariates, n, years, end,
                                                               decimals, rngs)
    seg = _segments(model, n, end, cov, frailty)
    ev_site, ev_time, ev_kind = _transitions(seg, n, end, decimals, rngs["transitions"])

    labels = _labels(n)
    e_site = np.r_[np.arange(n), ev_site, np.arange(n)]
    e_time = np.r_[np.zeros(n), ev_time, end]
    e_kind = np.r_[np.full(n, "start", dtype=object), ev_kind, np.full(n, "end", dtype=object)]
    e_o = np.r_[np.zeros(n), np.ones(ev_site.size), np.full(n, 2.0)]
    # by site, start / transitions / end, time; labels sort as their (zero-padded) numbers
    order = np.lexsort((e_time, e_o, e_site))  # stable, as sort_values(kind="stable")
    events = pd.DataFrame({"site": labels[e_site[order]], "time": e_time[order],
                           "event": e_kind[order]})
    sites = pd.DataFrame({"site": labels, "entry_year": entry_year, "frailty": np.round(frailty, 6)})
    covariates = None
    if cov is not None:
        covariates = pd.DataFrame({
            "site": labels[cov["site"]], "time": cov["time"],
            "leadership_change": cov["leadership_change"], "team_size": cov["team_size"],
            "training_access": cov["training_access"]})
    return Cohort(events, covariates, sites, model, years)


def _labels(n: int) -> np.ndarray:
    width = max(3, len(str(n)))
    return np.array([f"S{i:0{width}d}" for i in range(1, n + 1)], dtype=object)


def _covariate_log(cm: CovariateModel, n: int, years: float, end: np.ndarray, decimals: int,
                   rngs: dict[str, np.random.Generator]) -> dict[str, np.ndarray]:
    """Covariate log rows (site, time, leadership_change, team_size, training_access).

    Processes are drawn on (0, years) for every site whatever its follow-up
    (so follow-up does not change the draws) and cut at the site's end.
    """
    # leadership changes
    l_site, l_t = _poisson_times(rngs["leadership"], cm.leadership_rate, years, n)
    # team size: initial value, +-1 steps at turnover times, kept within bounds
    rng = rngs["team"]
    lo, hi = cm.team_initial
    team0 = rng.integers(lo, hi + 1, size=n)
    t_site, t_t = _poisson_times(rng, cm.turnover_rate, years, n)
    step = np.where(rng.random(t_site.size) < cm.team_loss_p, -1, 1)
    team_val = _bounded_walk(t_site, step, team0, cm.team_min, cm.team_max)
    # training access: initial value, switches
    rng = rngs["training"]
    train0 = (rng.random(n) < cm.training_p0).astype(int)
    s_site, s_t = _poisson_times(rng, cm.training_switch_rate, years, n)
    nth = _rank_within(s_site)
    train_val = (train0[s_site] + nth + 1) % 2

    site = np.r_[np.arange(n), l_site, t_site, s_site]
    time = np.r_[np.zeros(n), _rnd(l_t, decimals), _rnd(t_t, decimals), _rnd(s_t, decimals)]
    lead = np.r_[np.zeros(n), np.ones(l_site.size), np.zeros(t_site.size + s_site.size)]
    team = np.r_[team0, np.full(l_site.size, np.nan), team_val, np.full(s_site.size, np.nan)]
    train = np.r_[train0, np.full(l_site.size + t_site.size, np.nan), train_val]
    keep = (time == 0) & (np.arange(site.size) < n) | (time > 0) & (time < end[site])
    return _one_row_per_time(site[keep], time[keep], lead[keep], team[keep], train[keep])


def _one_row_per_time(site: np.ndarray, time: np.ndarray, lead: np.ndarray, team: np.ndarray,
                      train: np.ndarray) -> dict[str, np.ndarray]:
    """One row per (site, time), sorted: a leadership change at the time flags the row; team
    size and training access carry their last value forward; rows where nothing changed (e.g.
    a turnover that hit a bound) are dropped.

    Plain numpy (pandas' groupby / ffill cost more than the draws at Bond size); it relies
    on every site's first row (time 0) holding both values, so a forward fill never crosses
    sites. ``tests/test_simulate_trusted.py`` checks it against the pandas formulation.
    """
    order = np.lexsort((time, site))  # stable: as sort_values(["site", "time"], kind="stable")
    site, time, lead, team, train = site[order], time[order], lead[order], team[order], train[order]
    m = site.size
    last_of_group = np.r_[(site[1:] != site[:-1]) | (time[1:] != time[:-1]), True]
    ends = np.flatnonzero(last_of_group)
    starts = np.r_[0, ends[:-1] + 1]
    lead_g = np.maximum.reduceat(lead, starts) if m else lead

    def carried(v: np.ndarray) -> np.ndarray:  # last non-missing value up to each group's end
        idx = np.maximum.accumulate(np.where(np.isnan(v), -1, np.arange(m)))
        return v[idx[ends]]

    team_g, train_g = carried(team), carried(train)
    g_site, g_time = site[ends], time[ends]
    same_site = np.r_[False, g_site[1:] == g_site[:-1]]
    unchanged = (same_site & (lead_g == 0) & (np.r_[np.nan, np.diff(team_g)] == 0)
                 & (np.r_[np.nan, np.diff(train_g)] == 0))
    k = ~unchanged
    return {"site": g_site[k], "time": g_time[k],
            "leadership_change": lead_g[k].astype(int),
            "team_size": team_g[k].astype(int),
            "training_access": train_g[k].astype(int)}


def _rank_within(site: np.ndarray) -> np.ndarray:
    """0, 1, 2, ... within runs of equal (sorted) site codes."""
    if site.size == 0:
        return site.copy()
    first = np.r_[True, site[1:] != site[:-1]]
    starts = np.flatnonzero(first)
    return np.arange(site.size) - np.repeat(starts, np.diff(np.r_[starts, site.size]))


def _bounded_walk(site: np.ndarray, step: np.ndarray, start: np.ndarray, lo: int, hi: int
                  ) -> np.ndarray:
    """Team size after each step, clipped to [lo, hi]; a loop over the step number, not rows."""
    out = np.empty(site.size, dtype=float)
    if site.size == 0:
        return out
    rank = _rank_within(site)
    current = start.astype(float).copy()
    for j in range(int(rank.max()) + 1):
        idx = np.flatnonzero(rank == j)
        s = site[idx]
        current[s] = np.clip(current[s] + step[idx], lo, hi)
        out[idx] = current[s]
    return out


@dataclass
class _Segments:
    """Per-site pieces of time on which every hazard is constant (sites back to back)."""

    site: np.ndarray
    start: np.ndarray
    stop: np.ndarray
    first: np.ndarray   # per site: index of its first segment
    last: np.ndarray    # per site: index of its last segment
    rates: dict[str, np.ndarray]


def _segments(model: Model, n: int, end: np.ndarray, cov: dict[str, np.ndarray] | None,
              frailty: np.ndarray) -> _Segments:
    # breakpoints: 0, covariate changes, ends of recent-change windows, baseline breaks
    pts_site = [np.arange(n)]
    pts_t = [np.zeros(n)]
    if cov is not None:
        pts_site.append(cov["site"])
        pts_t.append(cov["time"])
        lc = cov["leadership_change"] == 1
        pts_site.append(cov["site"][lc])
        pts_t.append(cov["time"][lc] + model.recent_window)
    for hz in model.hazards.values():
        br = np.asarray(hz.breaks[1:])
        if br.size:
            pts_site.append(np.repeat(np.arange(n), br.size))
            pts_t.append(np.tile(br, n))
    site = np.concatenate(pts_site)
    t = np.concatenate(pts_t)
    keep = t < end[site]
    site, t = site[keep], t[keep]
    order = np.lexsort((t, site))
    site, t = site[order], t[order]
    uniq = np.r_[True, (site[1:] != site[:-1]) | (t[1:] != t[:-1])]
    site, start = site[uniq], t[uniq]
    is_last = np.r_[site[1:] != site[:-1], True]
    stop = np.where(is_last, end[site], np.r_[start[1:], 0.0])
    first = np.flatnonzero(np.r_[True, site[1:] != site[:-1]])
    last = np.flatnonzero(is_last)

    x = _covariates_on(site, start, cov, model.recent_window) if cov is not None else {}
    rates = {}
    for tr in TRANSITIONS:
        lp = np.zeros(site.size)
        for c, b in model.effects[tr].items():
            if b != 0:
                lp += b * x[c]
        r = model.hazards[tr].at(start) * np.exp(lp)
        if tr in model.frailty_on:
            r = r * frailty[site]
        rates[tr] = r
    return _Segments(site, start, stop, first, last, rates)


def _covariates_on(site: np.ndarray, t: np.ndarray, cov: dict[str, np.ndarray], window: float
                   ) -> dict[str, np.ndarray]:
    """Covariate values in force on [t, next breakpoint), as History builds them."""
    c_site, c_t = cov["site"], cov["time"]
    # global sort keys: (site, time) lexicographic through a per-site offset on ranks
    times = np.unique(np.r_[c_t, t, c_t + window])
    m = times.size + 1
    key = lambda s, u: s.astype(np.int64) * m + np.searchsorted(times, u)  # noqa: E731
    k_cov = key(c_site, c_t)
    idx = np.searchsorted(k_cov, key(site, t), side="right") - 1  # every site has a row at 0
    out = {"team_size": cov["team_size"][idx].astype(float),
           "training_access": cov["training_access"][idx].astype(float)}
    lc = cov["leadership_change"] == 1
    k_on = np.sort(key(c_site[lc], c_t[lc]))
    k_off = np.sort(key(c_site[lc], c_t[lc] + window))
    at = key(site, t)
    floor = site.astype(np.int64) * m
    started = np.searchsorted(k_on, at, side="right") - np.searchsorted(k_on, floor, side="left")
    ended = np.searchsorted(k_off, at, side="right") - np.searchsorted(k_off, floor, side="left")
    out["leader_changes"] = started.astype(float)
    out["recent_leader_change"] = (started - ended > 0).astype(float)
    return out


def _transitions(seg: _Segments, n: int, end: np.ndarray, decimals: int,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact multi-state paths by inverting piecewise-linear cumulative hazards."""
    unit = 10.0 ** -decimals
    length = seg.stop - seg.start
    cum = {}
    for tr, r in seg.rates.items():
        h_end = np.cumsum(r * length)
        cum[tr] = (np.r_[0.0, h_end[:-1]], h_end)
    state = np.zeros(n, dtype=np.int8)   # 0 sustained, 1 discontinued, 2 restarted
    now = np.zeros(n)
    alive = np.ones(n, dtype=bool)
    out_site, out_time, out_kind = [], [], []
    names = {0: "discontinue", 1: "restart", 2: "rediscontinue"}
    kinds = {0: "discontinue", 1: "restart", 2: "discontinue"}
    while alive.any():
        e = rng.standard_exponential(n)  # one draw per site per round (common random numbers)
        idx = np.flatnonzero(alive)
        new_t = np.full(idx.size, np.inf)
        for st in (0, 1, 2):
            sel = idx[state[idx] == st]
            if sel.size == 0:
                continue
            h_start, h_end = cum[names[st]]
            rate = seg.rates[names[st]]
            # the segment holding `now`
            k0 = _segment_of(seg, sel, now[sel])
            h_now = h_start[k0] + rate[k0] * (now[sel] - seg.start[k0])
            target = h_now + e[sel]
            k = np.maximum(np.searchsorted(h_end, target, side="left"), k0)
            hit = k <= seg.last[sel]
            kk = np.minimum(k, h_end.size - 1)
            with np.errstate(divide="ignore", invalid="ignore"):
                t_hit = seg.start[kk] + (target - h_start[kk]) / rate[kk]
            t_hit = np.where(hit, np.minimum(t_hit, seg.stop[kk]), np.inf)
            new_t[np.searchsorted(idx, sel)] = t_hit
        t_r = _rnd(new_t, decimals)
        t_r = np.where(np.isfinite(t_r), np.maximum(t_r, now[idx] + unit), np.inf)
        t_r = _rnd(t_r, decimals)
        ok = t_r <= end[idx]
        done = idx[~ok]
        alive[done] = False
        go = idx[ok]
        out_site.append(go)
        out_time.append(t_r[ok])
        out_kind.append(np.array([kinds[s] for s in state[go]], dtype=object)
                        if go.size else np.array([], dtype=object))
        now[go] = t_r[ok]
        state[go] = np.where(state[go] == 1, 2, 1)
        # a transition at the last contact ends the history (end at the same time)
        alive[go[now[go] >= end[go]]] = False
    if not out_site:
        return np.array([], dtype=int), np.array([]), np.array([], dtype=object)
    return np.concatenate(out_site), np.concatenate(out_time), np.concatenate(out_kind)


def _segment_of(seg: _Segments, sites: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Index of the segment of each site that contains time t (start <= t < stop).

    A binary search within each site's range of segments, vectorised over sites.
    """
    lo, hi = seg.first[sites], seg.last[sites]
    left = np.zeros_like(lo)
    right = hi - lo
    while True:
        active = left < right
        if not active.any():
            break
        mid = (left + right + 1) // 2
        go_right = active & (seg.start[lo + mid] <= t)
        go_left = active & ~go_right
        left = np.where(go_right, mid, left)
        right = np.where(go_left, mid - 1, right)
    return lo + left


def describe_model(model: Model) -> dict[str, Any]:
    """A plain-dict account of a model (for provenance and reports)."""
    return {
        "hazards": {k: {"breaks": list(v.breaks), "rates": list(v.rates)}
                    for k, v in model.hazards.items()},
        "effects": {k: dict(v) for k, v in model.effects.items()},
        "covariates": None if model.covariates is None else
        {f.name: getattr(model.covariates, f.name) for f in fields(model.covariates)},
        "frailty_var": model.frailty_var, "frailty_on": list(model.frailty_on),
        "recent_window": model.recent_window,
    }


def with_effect(effects: Mapping[str, Mapping[str, float]] | None, transition: str, covariate: str,
                log_hr: float) -> dict[str, dict[str, float]]:
    """A copy of ``effects`` with one log hazard ratio set."""
    out = {k: dict(v) for k, v in (effects or {}).items()}
    out.setdefault(transition, {})[covariate] = float(log_hr)
    if transition == "discontinue" and "rediscontinue" in out:
        out["rediscontinue"][covariate] = float(log_hr)
    return out


__all__ = ["BOND_HAZARDS", "BOND_TARGET", "Cohort", "CovariateModel", "Model", "Piecewise",
           "as_seed_sequence", "describe_model", "simulate", "simulate_cohort", "spawn", "streams",
           "with_effect", "write_cohort"]


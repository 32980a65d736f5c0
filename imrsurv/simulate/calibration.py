"""Baseline hazards that hit target state probabilities at a horizon.

``calibrate(target={"sustained": .47, "restarted": .16, "discontinued": .37},
horizon=6)`` finds the scale of the discontinuation hazard (sustained ->
discontinued, and restarted -> discontinued) and of the restart hazard
(discontinued -> restarted) at which the expected state occupation of the
model of :mod:`imrsurv.simulate.cohort` at ``horizon`` equals the target.

How the occupation probabilities are computed
---------------------------------------------
Given a site's covariate path and frailty, the state process is a
time-inhomogeneous Markov chain on {sustained, discontinued, restarted} whose
generator is constant between breakpoints. Its state distribution at the
horizon is therefore the exact product of the 3x3 transition matrices
``expm(Q_k * length_k)`` of the pieces (computed by scaling and squaring of a
degree-14 Taylor series, vectorised over all pieces; error ~1e-14).

* No covariates, no frailty (``method="analytic"``): one path; exact.
* No covariates, gamma frailty (``"analytic+quadrature"``): the frailty is
  integrated out by 48-node generalised Gauss-Laguerre quadrature.
* Covariates (``"monte-carlo"``): the expectation over covariate paths (and
  frailties) is a Monte Carlo average over ``n_paths`` paths drawn with
  ``seed`` by the same generator :func:`~imrsurv.simulate.simulate` uses. Only
  the covariate paths are random; the transitions are integrated exactly
  (conditional expectation, "Rao-Blackwellised"), so the average is a smooth
  function of the hazards and its Monte Carlo error is small: the standard
  error of each probability is reported in ``Calibration.mc_se``.

The two unknowns (log scales) are found with :func:`scipy.optimize.root`
(hybrid Powell), started from the covariate-free solution.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.optimize as opt
from scipy import special

from ..errors import DataError
from .cohort import (
    STATES_ORDER,
    Model,
    Piecewise,
    _covariate_log,
    _segments,
    streams,
)

STATES = STATES_ORDER  # ("sustained", "discontinued", "restarted")
_TOL_SUM = 1e-6


@dataclass
class Calibration:
    """Result of :func:`calibrate`.

    ``hazards`` can be passed to :func:`~imrsurv.simulate.simulate` as is;
    :meth:`simulate_kwargs` gives every model argument the calibration used.
    """

    hazards: dict[str, Any]
    target: dict[str, float]
    achieved: dict[str, float]
    horizon: float
    method: str
    mc_se: dict[str, float] | None
    n_paths: int | None
    seed: Any
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    scale: dict[str, float] = field(default_factory=dict)

    def simulate_kwargs(self) -> dict[str, Any]:
        return {"hazards": self.hazards, **self.model_kwargs}

    def __repr__(self) -> str:
        rows = ", ".join(f"{s}: {self.achieved[s]:.4f} (target {self.target[s]:.4f})"
                         for s in STATES)
        hz = ", ".join(f"{k}={_fmt_hazard(v)}" for k, v in self.hazards.items())
        return f"<Calibration at {self.horizon:g} years, {self.method}: {hz}; {rows}>"


def _fmt_hazard(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return "{" + ", ".join(f"{t:g}: {r:.6g}" for t, r in v) + "}"


def check_target(target: Mapping[str, float]) -> dict[str, float]:
    """Validate a target; raise :class:`~imrsurv.DataError` listing every problem."""
    problems = []
    if not isinstance(target, Mapping):
        raise DataError([f"target must be a dict of state probabilities, got {target!r}"],
                        "impossible calibration target")
    unknown = sorted(set(target) - set(STATES))
    missing = [s for s in STATES if s not in target]
    if unknown:
        problems.append(f"unknown state(s) {', '.join(map(repr, unknown))}; states are "
                        f"{', '.join(STATES)}")
    if missing:
        problems.append(f"missing state(s) {', '.join(missing)} (give all three probabilities)")
    vals = {}
    for s in STATES:
        if s not in target:
            continue
        try:
            v = float(target[s])
        except (TypeError, ValueError):
            problems.append(f"{s}: {target[s]!r} is not a number")
            continue
        if not np.isfinite(v):
            problems.append(f"{s}: {v!r} is not a finite number")
        elif v < 0:
            problems.append(f"{s}: probability {v:g} is negative")
        elif v > 1:
            problems.append(f"{s}: probability {v:g} is greater than 1")
        vals[s] = v
    if not problems:
        total = sum(vals.values())
        if abs(total - 1) > _TOL_SUM:
            problems.append(f"probabilities sum to {total:.6g}, not 1 "
                            f"({' + '.join(f'{s} {vals[s]:g}' for s in STATES)})")
    if not problems:
        if vals["sustained"] <= 0:
            problems.append("sustained = 0 needs an infinite discontinuation hazard (every site "
                            "discontinued at once); give a sustained share > 0")
        if vals["restarted"] > 0 and vals["discontinued"] <= 0:
            problems.append(f"a restarted share ({vals['restarted']:g}) with no discontinued share "
                            "is impossible: a site must be discontinued for some time before it "
                            "restarts, so discontinued must be > 0 (it would need an infinite "
                            "restart hazard)")
    if problems:
        raise DataError(problems, "impossible calibration target")
    return vals


def calibrate(target: Mapping[str, float] | None = None, horizon: float = 6.0, *,
              effects: Mapping[str, Mapping[str, float]] | None = None, covariates: Any = None,
              frailty_var: float = 0.0,
              frailty_on: Sequence[str] = ("discontinue", "rediscontinue"),
              shapes: Mapping[str, Any] | None = None, recent_window: float = 1.0,
              n_paths: int = 20_000, seed: Any = None, xtol: float = 1e-12) -> Calibration:
    """Find baseline hazards (discontinue, restart) that hit ``target`` at ``horizon``.

    ``target``: probabilities of ``sustained``, ``restarted``, ``discontinued``
    at ``horizon`` years (default: Bond et al. 2014, .47 / .16 / .37). They
    must be >= 0 and sum to 1; ``sustained`` must be > 0 and a restarted share
    needs a discontinued share.

    ``effects``, ``covariates``, ``frailty_var``, ``frailty_on``,
    ``recent_window``: the model of :func:`~imrsurv.simulate.simulate` the
    hazards are for (default: no covariates, no frailty). ``shapes``: optional
    piecewise-constant shapes (as ``simulate``'s ``hazards``) of
    ``discontinue``, ``restart`` and ``rediscontinue`` that are scaled (the
    ratio rediscontinue / discontinue is kept); default constant hazards.
    With covariates, ``seed`` is required (Monte Carlo over ``n_paths``
    covariate paths; see the module docstring).
    """
    tgt = check_target(BOND_TARGET_DEFAULT if target is None else target)
    if not (np.isfinite(horizon) and horizon > 0):
        raise DataError([f"horizon must be > 0 years, got {horizon!r}"], "invalid calibration")
    shapes = dict(shapes or {"discontinue": 1.0, "restart": 1.0})
    model = Model.build(shapes, effects, covariates, frailty_var, frailty_on, recent_window)
    paths, method, used_seed = _paths(model, float(horizon), n_paths, seed)
    a_obs = tgt["sustained"]
    base_kwargs = {"effects": None if effects is None else {k: dict(v) for k, v in effects.items()},
                   "covariates": covariates, "frailty_var": float(frailty_var),
                   "frailty_on": tuple(frailty_on), "recent_window": float(recent_window)}

    def occupation(log_a: float, log_m: float) -> tuple[np.ndarray, np.ndarray]:
        return paths.occupation(np.exp(log_a), np.exp(log_m) if np.isfinite(log_m) else 0.0)

    # start: covariate-free, constant-hazard solution on the mean relative rates
    la0 = np.log(-np.log(a_obs) / horizon / paths.mean_rate("discontinue")) if a_obs < 1 else -np.inf
    if a_obs >= 1:  # nobody discontinues: zero discontinuation hazard, restart irrelevant
        sa, sm = 0.0, 0.0
    elif tgt["restarted"] == 0:  # no restarts: zero restart hazard; solve for a alone
        sm = 0.0
        f = lambda la: occupation(la, -np.inf)[0][0] - a_obs  # noqa: E731
        lo, hi = _bracket(f, la0)
        sa = float(np.exp(opt.brentq(f, lo, hi, xtol=xtol)))
    else:
        def eqs(z: np.ndarray) -> np.ndarray:
            p, _ = occupation(z[0], z[1])
            return np.array([np.log(p[0]) - np.log(a_obs),
                             _logit(p[2] / (p[1] + p[2])) - _logit(tgt["restarted"] /
                                                                   (1 - a_obs))])
        z0 = np.array([la0, _start_log_m(tgt, horizon, paths)])
        sol = opt.root(eqs, z0, method="hybr", options={"xtol": xtol})
        if not sol.success or np.max(np.abs(sol.fun)) > 1e-8:
            raise DataError([f"calibration did not converge ({sol.message}); the target "
                             f"{tgt} may be out of reach of this model at {horizon:g} years"],
                            "calibration failed")
        sa, sm = float(np.exp(sol.x[0])), float(np.exp(sol.x[1]))
    p, se = paths.occupation(sa, sm)
    hazards = {"discontinue": _scaled(model.hazards["discontinue"], sa),
               "restart": _scaled(model.hazards["restart"], sm)}
    if model.hazards["rediscontinue"] != model.hazards["discontinue"]:
        hazards["rediscontinue"] = _scaled(model.hazards["rediscontinue"], sa)
    return Calibration(hazards=hazards, target=tgt, achieved=dict(zip(STATES, map(float, p),
                                                                      strict=True)),
                       horizon=float(horizon), method=method,
                       mc_se=None if se is None else dict(zip(STATES, map(float, se), strict=True)),
                       n_paths=paths.n if method == "monte-carlo" else None, seed=used_seed,
                       model_kwargs=base_kwargs, scale={"discontinue": sa, "restart": sm})


BOND_TARGET_DEFAULT = {"sustained": 0.47, "restarted": 0.16, "discontinued": 0.37}


def _logit(p: float) -> float:
    p = min(max(p, 1e-300), 1 - 1e-16)
    return float(np.log(p) - np.log1p(-p))


def _start_log_m(tgt: dict[str, float], horizon: float, paths: _Paths) -> float:
    """Restart scale of the constant, covariate-free model (1-d root), a start for the 2-d solve."""
    a = -np.log(tgt["sustained"]) / horizon
    want = tgt["restarted"] / (1 - tgt["sustained"])
    one = _Paths.constant(horizon)

    def f(lm: float) -> float:
        p, _ = one.occupation(a, np.exp(lm))
        return _logit(p[2] / (p[1] + p[2])) - _logit(want)

    lo, hi = _bracket(f, 0.0)
    return float(opt.brentq(f, lo, hi)) - np.log(paths.mean_rate("restart"))


def _bracket(f, x0: float) -> tuple[float, float]:
    lo, hi, step = x0 - 1.0, x0 + 1.0, 1.0
    for _ in range(60):
        if f(lo) < 0 < f(hi) or f(lo) > 0 > f(hi):
            return lo, hi
        step *= 2
        lo, hi = x0 - step, x0 + step
    raise DataError(["could not bracket the calibration equation; the target may be out of "
                     "reach of this model"], "calibration failed")


def _scaled(pw: Piecewise, s: float) -> Any:
    if len(pw.rates) == 1:
        return float(pw.rates[0] * s)
    return [(float(t), float(r * s)) for t, r in zip(pw.breaks, pw.rates, strict=True)]


# ---------------------------------------------------------------------------
# State occupation along piecewise-constant paths


@dataclass
class _Paths:
    """Pieces of paths with relative rates; occupation at the horizon for given scales."""

    path: np.ndarray      # path of each piece (pieces sorted by path, time)
    length: np.ndarray
    rel: dict[str, np.ndarray]  # relative rates per transition, per piece
    weight: np.ndarray    # per path, sums to 1
    n: int
    mc: bool

    @classmethod
    def constant(cls, horizon: float) -> _Paths:
        one = np.ones(1)
        return cls(np.zeros(1, dtype=int), np.array([horizon]),
                   {"discontinue": one, "rediscontinue": one, "restart": one}, one, 1, False)

    def mean_rate(self, tr: str) -> float:
        tot = np.bincount(self.path, self.rel[tr] * self.length, minlength=self.n)
        dur = np.bincount(self.path, self.length, minlength=self.n)
        return float(self.weight @ (tot / dur))

    def occupation(self, sa: float, sm: float) -> tuple[np.ndarray, np.ndarray | None]:
        a = sa * self.rel["discontinue"] * self.length
        c = sa * self.rel["rediscontinue"] * self.length
        m = sm * self.rel["restart"] * self.length
        q = np.zeros((a.size, 3, 3))
        q[:, 0, 0], q[:, 0, 1] = -a, a          # sustained -> discontinued
        q[:, 1, 1], q[:, 1, 2] = -m, m          # discontinued -> restarted
        q[:, 2, 2], q[:, 2, 1] = -c, c          # restarted -> discontinued
        pm = expm_batch(q)
        v = np.zeros((self.n, 3))
        v[:, 0] = 1.0
        rank = _rank(self.path)
        for j in range(int(rank.max()) + 1):
            idx = np.flatnonzero(rank == j)
            p = self.path[idx]
            v[p] = np.einsum("ni,nij->nj", v[p], pm[idx])
        mean = self.weight @ v
        if not self.mc:
            return mean, None
        se = v.std(axis=0, ddof=1) / np.sqrt(self.n)
        return mean, se


def _rank(path: np.ndarray) -> np.ndarray:
    first = np.r_[True, path[1:] != path[:-1]]
    starts = np.flatnonzero(first)
    return np.arange(path.size) - np.repeat(starts, np.diff(np.r_[starts, path.size]))


def expm_batch(a: np.ndarray) -> np.ndarray:
    """``expm`` of a stack of small matrices: scaling and squaring, degree-14 Taylor."""
    norm = np.abs(a).sum(axis=2).max(axis=1)
    sq = np.maximum(0, np.ceil(np.log2(np.maximum(norm, 1e-300) / 0.25))).astype(int)
    b = a / (2.0 ** sq)[:, None, None]
    eye = np.broadcast_to(np.eye(a.shape[1]), a.shape)
    out = eye.copy()
    term = eye.copy()
    for k in range(1, 15):
        term = term @ b / k
        out = out + term
    for j in range(int(sq.max()) if sq.size else 0):
        sel = sq > j
        out[sel] = out[sel] @ out[sel]
    return out


def _paths(model: Model, horizon: float, n_paths: int, seed: Any) -> tuple[_Paths, str, Any]:
    no_cov = model.covariates is None
    if no_cov and model.frailty_var == 0:
        seg = _segments(model, 1, np.array([horizon]), None, np.ones(1))
        return (_Paths(seg.site, seg.stop - seg.start, seg.rates, np.ones(1), 1, False),
                "analytic", None)
    if no_cov:
        k = 1.0 / model.frailty_var
        x, w = special.roots_genlaguerre(48, k - 1.0)
        z = x / k
        w = w / w.sum()
        n = z.size
        seg = _segments(model, n, np.full(n, horizon), None, z)
        return (_Paths(seg.site, seg.stop - seg.start, seg.rates, w, n, False),
                "analytic+quadrature", None)
    if seed is None:
        raise DataError(["calibration with covariates averages over simulated covariate paths: "
                         "give seed= (same seed, same hazards)"], "invalid calibration")
    if isinstance(n_paths, bool) or not isinstance(n_paths, int | np.integer) or n_paths < 100:
        raise DataError([f"n_paths must be an integer >= 100, got {n_paths!r}"],
                        "invalid calibration")
    n = int(n_paths)
    rngs = streams(seed)
    end = np.full(n, horizon)
    if model.frailty_var > 0:
        kk = 1.0 / model.frailty_var
        frailty = rngs["frailty"].gamma(kk, 1.0 / kk, size=n)
    else:
        frailty = np.ones(n)
    cov = _covariate_log(model.covariates, n, horizon, end, 6, rngs)
    seg = _segments(model, n, end, cov, frailty)
    return (_Paths(seg.site, seg.stop - seg.start, seg.rates, np.full(n, 1.0 / n), n, True),
            "monte-carlo", seed)


__all__ = ["Calibration", "calibrate", "check_target", "expm_batch"]

"""Transition-specific Cox models for any declared set of states.

The sustained / discontinued / restarted model (:func:`~imrsurv.fit_transitions`)
is one choice of states; an analyst may define others (high fidelity / low
fidelity / discontinued, or discontinued by cause).  Data are the (start, stop]
rows of :func:`~imrsurv.state_occupation`: ``from`` the state on the row, ``to``
the state entered at ``stop`` or ``censored``, plus covariate columns (constant
on a row; split a row where a covariate changes, ending it ``censored``).

Each declared transition ``a -> b`` gets its own Cox model on the rows in state
``a``, with an event where the row ends in ``b`` (rows ending in another state
or censored are censored for it): R's multi-state ``coxph(Surv(tstart, tstop,
to) ~ x, id = site, istate = from)`` with transition-specific coefficients and
robust errors grouped by site (``tests/fixtures/state_transitions/make_fixtures.R``
checks coefficients, robust errors and ``survfit(fit, newdata, p0)``'s state
probabilities).  The result is a :class:`~imrsurv.models.transitions.TransitionsResult`:
summary, forest plot, ``predict_state_probabilities`` and ``predict`` (with
errors) work as for the default states.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ArgumentError, DataError, Problem, bad_argument
from ..waves import transition_pattern
from .cox import TIES, fit_cox
from .custom_states import CENSORED, check_state_rows
from .design import required_columns
from .transitions import TransitionsResult

__all__ = ["fit_state_transitions"]

_RESERVED = ("start", "stop", "event")


def fit_state_transitions(data: pd.DataFrame, states: Sequence[str], transitions: Any,
                          formula: str | Mapping[str, str], *, site: str = "site",
                          start: str = "tstart", stop: str = "tstop", from_: str = "from",
                          to: str = "to", ties: str = "efron", robust: bool = True,
                          penalty: str | None = None) -> TransitionsResult:
    """One Cox model per declared transition of a user-defined multi-state model.

    Parameters
    ----------
    data
        (start, stop] rows: ``site``, ``start``, ``stop``, ``from``, ``to``
        (column names as given) and the covariates the formulas use.
    states
        State names, in the order of the output (the first is the default
        initial state of predictions).
    transitions
        The allowed moves: ``("a", "b")`` pairs, ``"a -> b"`` strings or a
        square 0/1 pattern (as :func:`~imrsurv.state_occupation`).
    formula
        One right-hand side for every transition, or a dict ``"a->b"`` ->
        right-hand side covering every declared transition.
    ties, penalty
        As :func:`~imrsurv.fit_cox` (``penalty="firth"`` for finite estimates
        under a monotone likelihood).
    robust
        Lin-Wei errors clustered by ``site`` (default), as R's multi-state
        ``coxph`` with ``id``; False for model-based errors.

    Raises :class:`~imrsurv.DataError` naming every bad row (states outside
    the set, undeclared transitions, rows that do not follow each other), a
    transition without events, or a formula column the data lack.
    """
    if isinstance(states, str) or not isinstance(states, Sequence) or len(states) < 2 or \
            len(set(map(str, states))) != len(states):
        raise bad_argument("states", states, "a sequence of at least two distinct state names")
    states = tuple(str(s) for s in states)
    if CENSORED in states or any("->" in s for s in states):
        raise bad_argument("states", states, f'names other than "{CENSORED}" and without "->"')
    if ties not in TIES:
        raise bad_argument("ties", ties, '"efron" or "breslow"')
    if not isinstance(robust, bool):
        raise bad_argument("robust", robust, "True or False")
    allowed = transition_pattern(states, transitions)
    rows = check_state_rows(data, states, allowed, site=site, start=start, stop=stop,
                            from_=from_, to=to)
    names = [f"{states[a]}->{states[b]}" for a, b in zip(*np.nonzero(allowed), strict=True)]
    formulas = _formulas(formula, names)
    clash = [c for c in _RESERVED if c in data.columns and c not in (start, stop)]
    if clash:
        raise DataError([f'data has a column named "{c}", which the transition frames use; '
                         "rename it" for c in clash], title="invalid input")
    covs = data.reset_index(drop=True).drop(columns=[start, stop, from_, to])
    base = pd.DataFrame({"start": pd.to_numeric(data[start]).to_numpy(float),
                         "stop": pd.to_numeric(data[stop]).to_numpy(float),
                         "from": data[from_].astype(str).str.strip().to_numpy(),
                         "to": data[to].astype(str).str.strip().to_numpy()})
    base = pd.concat([base, covs.drop(columns=[c for c in covs.columns if c in base])], axis=1)
    base[site] = base[site].astype(str)
    problems: list[str | Problem] = []
    frames: dict[str, pd.DataFrame] = {}
    for name in names:
        a, b = name.split("->")
        fr = base[base["from"] == a].drop(columns=["from"])
        fr = fr.assign(event=(fr["to"] == b).astype(int)).drop(columns=["to"])
        frames[name] = fr
        for c in required_columns(formulas[name]):
            if c not in fr.columns:
                problems.append(f'{name}: formula names column "{c}", which is not in the data')
    if problems:
        raise DataError(problems, title="invalid multi-state model")
    fits = {}
    for name in names:
        try:
            fits[name] = fit_cox(frames[name], formulas[name], start="start", stop="stop",
                                 event="event", cluster=site if robust else None, ties=ties,
                                 penalty=penalty)
        except DataError as err:
            problems += [Problem(p.source, p.where, p.site, f"{name}: {p.message}")
                         for p in err.problems]
    if problems:
        raise DataError(problems, title="cannot fit the transition models")
    del rows  # validated above; the frames keep the data's own row order
    return TransitionsResult(fits=fits, formulas=formulas, frames=frames, ties=ties,
                             cluster=site if robust else None, state_names=states,
                             required=tuple(names))


def _formulas(formula: str | Mapping[str, str], names: list[str]) -> dict[str, str]:
    if isinstance(formula, str):
        return {n: formula for n in names}
    if not isinstance(formula, Mapping):
        raise ArgumentError([f"formula must be a string or a dict transition -> formula, not "
                             f"{type(formula).__name__}"])
    given = {"->".join(p.strip() for p in str(k).split("->")): v for k, v in formula.items()}
    unknown = [k for k in given if k not in names]
    missing = [n for n in names if n not in given]
    problems = [f'formula for "{k}", which is not a declared transition (declared: '
                f"{', '.join(names)})" for k in unknown]
    problems += [f'no formula for the declared transition "{n}"' for n in missing]
    if problems:
        raise ArgumentError(problems)
    return {n: given[n] for n in names}

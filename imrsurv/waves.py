"""Status seen at interviews (waves): irregular, site-specific observation times.

Wave format (one row per site and interview)::

    site, time, state, [obstype], covariates...

``time`` is a number (years, any origin; waves need not be whole or common to
sites: 0/2/4/8, or 0, 1.9, 4.2, 8.1 at one site and 0, 2.3, 7.7 at another) or
an ISO date (never mixed with numbers). Dates become calendar years since the
site's first interview, by the rule of the event log
(:func:`imrsurv.validate.calendar_years`, lubridate's ``time_length``); the
dates are kept in a ``date`` column.
``state`` is one of the declared states (default ``sustained``,
``discontinued``, ``restarted``). Unlike :func:`imrsurv.read_panel`, which
feeds the discrete-time models and needs consecutive years, gaps are the
point here: what happened between two waves is unknown, and the
continuous-time Markov model (:mod:`imrsurv.models.panel_markov`) sums over it.

Observation types follow R ``msm`` (Jackson 2011, section 2.3):

* 1: the state at an interview (panel observation; the default);
* 2: an exact transition time: the site was in the previous state until this
  time and moved now (``exacttimes=True`` sets every row to 2);
* 3: the exact time of entry into an absorbing state, the state just before it
  unknown (msm's ``deathexact``; ``deathexact=["closed"]``).

Allowed transitions are given as pairs (``[("sustained", "discontinued"),
...]``, ``"a -> b"`` strings) or a square 0/1 pattern (msm's ``qmatrix``,
non-zero = allowed). A change between two waves that no chain of allowed
transitions can produce is an error naming the site, the times and the lines.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._tables import RowProblems, missing_mask, parse_times, read_table, site_time_key
from .errors import ArgumentError, DataError, Problem, bad_argument
from .validate import calendar_years

__all__ = ["DEFAULT_STATES", "DEFAULT_TRANSITIONS", "Waves", "read_waves", "sample_waves",
           "transition_pattern"]

DEFAULT_STATES = ("sustained", "discontinued", "restarted")
DEFAULT_TRANSITIONS = (("sustained", "discontinued"), ("discontinued", "restarted"),
                       ("restarted", "discontinued"))
OBSTYPES = (1, 2, 3)


@dataclass(frozen=True)
class Waves:
    """Validated wave data.

    ``frame``: sorted by site and time, columns ``site, time, state`` (labels),
    ``state_index`` (0-based position in ``states``), ``obstype`` (1/2/3), the
    covariates as given, and ``where`` (input line or row). ``allowed[r, s]``
    is True when the transition ``states[r] -> states[s]`` is declared.
    """

    frame: pd.DataFrame
    states: tuple[str, ...]
    allowed: np.ndarray
    source: str = "waves"
    covariates: tuple[str, ...] = field(default=())
    dates: bool = False  # times were ISO dates, now calendar years since the first interview

    @property
    def transitions(self) -> list[tuple[str, str]]:
        """Declared transitions, row by row of the pattern (msm's parameter order)."""
        r, s = np.nonzero(self.allowed)
        return [(self.states[i], self.states[j]) for i, j in zip(r, s, strict=True)]

    @property
    def n_sites(self) -> int:
        return int(self.frame["site"].nunique())

    @property
    def absorbing(self) -> tuple[str, ...]:
        return tuple(s for i, s in enumerate(self.states) if not self.allowed[i].any())

    def statetable(self) -> pd.DataFrame:
        """Counts of (state at a wave, state at the next wave), as msm's ``statetable.msm``."""
        f = self.frame
        same = f["site"].to_numpy()[1:] == f["site"].to_numpy()[:-1]
        a = f["state"].to_numpy()[:-1][same]
        b = f["state"].to_numpy()[1:][same]
        tab = pd.crosstab(pd.Categorical(a, self.states), pd.Categorical(b, self.states),
                          dropna=False)
        tab.index.name, tab.columns.name = "from", "to"
        return tab

    def __repr__(self) -> str:
        times = self.frame["time"]
        unit = (" calendar years since each site's first interview (from dates)"
                if self.dates else "")
        return (f"Waves: {self.n_sites} sites, {len(self.frame)} interviews "
                f"(times {times.min():g} to {times.max():g}{unit}); states "
                f"{', '.join(self.states)}; transitions "
                f"{', '.join(f'{a} -> {b}' for a, b in self.transitions)}")


def transition_pattern(states: Sequence[str], transitions: Any) -> np.ndarray:
    """Boolean ``allowed`` matrix from pairs, ``"a -> b"`` strings or a square pattern."""
    n = len(states)
    if transitions is None:
        if tuple(states) != DEFAULT_STATES:
            raise ArgumentError(["transitions=None is only allowed with the default states "
                                 f"{', '.join(DEFAULT_STATES)}: declare the allowed transitions "
                                 "of states " + ", ".join(states)])
        transitions = DEFAULT_TRANSITIONS
    if isinstance(transitions, pd.DataFrame):
        if list(map(str, transitions.index)) != list(states) or \
                list(map(str, transitions.columns)) != list(states):
            raise ArgumentError(["a transitions pattern DataFrame must have the states as "
                                 f"index and columns, in order: {', '.join(states)}"])
        transitions = transitions.to_numpy()
    arr = None
    if isinstance(transitions, np.ndarray) or (
            isinstance(transitions, (list, tuple)) and transitions
            and all(isinstance(r, (list, tuple, np.ndarray)) for r in transitions)
            and all(len(r) == n and not any(isinstance(v, str) for v in r)
                    for r in transitions) and len(transitions) == n):
        try:
            arr = np.asarray(transitions, dtype=float)
        except (TypeError, ValueError):
            arr = None
    if arr is not None:
        if arr.shape != (n, n) or not np.isfinite(arr).all() or (arr < 0).any():
            raise bad_argument("transitions", transitions,
                               f"a {n} x {n} pattern of non-negative numbers (non-zero = allowed)")
        allowed = arr > 0
        np.fill_diagonal(allowed, False)
    else:
        allowed = np.zeros((n, n), bool)
        pairs: Iterable[Any] = transitions
        problems = []
        for item in pairs:
            pair = tuple(p.strip() for p in item.split("->")) if isinstance(item, str) else item
            if not isinstance(pair, tuple) or len(pair) != 2:
                problems.append(f"transitions: {item!r} is not a pair (from, to) or 'from -> to'")
                continue
            a, b = (str(p) for p in pair)
            bad = [x for x in (a, b) if x not in states]
            if bad:
                problems.append(f"transitions: {a} -> {b} names state(s) {', '.join(bad)} "
                                f"not among the declared states {', '.join(states)}")
            elif a == b:
                problems.append(f"transitions: {a} -> {b} is not a transition (same state)")
            else:
                allowed[states.index(a), states.index(b)] = True
        if problems:
            raise ArgumentError(problems)
    if not allowed.any():
        raise ArgumentError(["transitions: no transition is allowed"])
    return allowed


def _reach(allowed: np.ndarray) -> np.ndarray:
    """Reflexive-transitive closure: ``reach[r, s]`` iff s can follow r over any interval."""
    n = allowed.shape[0]
    reach = allowed | np.eye(n, dtype=bool)
    for _ in range(n):
        reach = reach | ((reach.astype(int) @ reach.astype(int)) > 0)
    return reach


def read_waves(waves_or_path: str | Path | pd.DataFrame, *, site: str = "site",
               time: str = "time", state: str = "state",
               states: Sequence[str] = DEFAULT_STATES, transitions: Any = None,
               obstype: str | None = None, deathexact: Sequence[str] | None = None,
               exacttimes: bool = False) -> Waves:
    """Read and validate wave data (irregular interview times allowed).

    Raises :class:`~imrsurv.DataError` naming every bad row (line or row, site,
    value and what is allowed): missing columns or sites, times that are not
    finite numbers, duplicate site-times, states outside ``states``, obstype
    not 1/2/3, a site seen at one time only, and a change between consecutive
    waves that the declared ``transitions`` cannot produce (with both times).
    Nothing is dropped.
    """
    for name, value in (("site", site), ("time", time), ("state", state)):
        if not isinstance(value, str) or not value:
            raise bad_argument(name, value, "a column name (a non-empty string)")
    if isinstance(states, str) or not states or len(set(map(str, states))) != len(states):
        raise bad_argument("states", states, "a sequence of at least two distinct state names")
    states = tuple(str(s) for s in states)
    if len(states) < 2:
        raise bad_argument("states", states, "a sequence of at least two distinct state names")
    allowed = transition_pattern(states, transitions)
    absorbing = [s for i, s in enumerate(states) if not allowed[i].any()]
    dexact = tuple(deathexact or ())
    bad_de = [s for s in dexact if s not in absorbing]
    if isinstance(deathexact, str) or bad_de:
        raise bad_argument("deathexact", deathexact,
                           "a list of absorbing states (no transition out): "
                           + (", ".join(absorbing) or "this model has none"))
    if not isinstance(exacttimes, bool):
        raise bad_argument("exacttimes", exacttimes, "True or False")

    table = read_table(waves_or_path, "waves")
    src, frame, where = table.source, table.frame, table.where
    if len(frame) == 0:
        raise DataError([Problem(src, None, None, "the wave table has no rows (only a header)")],
                        "invalid waves")
    need = [site, time, state] + ([obstype] if obstype else [])
    missing = [c for c in need if c not in frame.columns]
    if missing:
        have = ", ".join(map(str, frame.columns)) or "none"
        raise DataError([Problem(src, None, None, f"wave table lacks required column(s) "
                                 f"{', '.join(missing)} (columns: {have})")], "invalid waves")
    rows = RowProblems(src, where, frame[site], site)
    add, site_missing, labels = rows.add, rows.site_missing, rows.labels
    t, dates = _wave_times(frame[time], labels, site_missing, time, add)
    st_text = frame[state].astype(str).str.strip().to_numpy(object)
    st_missing = missing_mask(frame[state])
    code = np.array([states.index(v) if v in states else -1 for v in st_text])
    for i in np.flatnonzero(code < 0):
        got = "missing" if st_missing[i] else repr(st_text[i])
        add(i, f"{state} {got} is not one of the declared states {', '.join(states)}")
    if obstype:
        ob = pd.to_numeric(frame[obstype].where(~pd.Series(missing_mask(frame[obstype]))),
                           errors="coerce").to_numpy(float)
        shown_o = frame[obstype].astype(str).str.strip().to_numpy(object)
        for i in np.flatnonzero(~np.isin(ob, OBSTYPES)):
            add(i, f"{obstype} must be 1 (interview), 2 (exact transition time) or 3 (exact "
                   f"entry into an absorbing state), got {shown_o[i]!r}")
        ob = np.where(np.isin(ob, OBSTYPES), ob, 1).astype(int)
    else:
        ob = np.full(len(frame), 2 if exacttimes else 1, int)
    for s in dexact:
        ob[code == states.index(s)] = 3
    for i in np.flatnonzero((ob == 3) & (code >= 0)):
        if states[code[i]] not in absorbing:
            add(i, f"{obstype} 3 (exact entry into an absorbing state) at state "
                   f"{states[code[i]]}, which is not absorbing")

    ok = ~site_missing & np.isfinite(t)
    uniq, repeats = site_time_key(labels, t, ok, "t")
    for i, j, v in repeats:
        add(i, f"two interviews at {time} {v:g} (also at {where[j]})")
    counts = uniq.groupby("site", sort=False)["i"].transform("size").to_numpy()
    for i in uniq["i"].to_numpy()[counts == 1]:
        add(int(i), f"seen at one time only ({time} {t[i]:g}): a panel model needs at least "
                    "two interviews per site")
    reach = _reach(allowed)
    names = ", ".join(f"{a} -> {b}" for a, b in
                      ((states[r], states[s]) for r, s in zip(*np.nonzero(allowed), strict=True)))
    ii = uniq["i"].to_numpy()
    same = uniq["site"].to_numpy()[1:] == uniq["site"].to_numpy()[:-1]
    for k in np.flatnonzero(same):
        i0, i1 = int(ii[k]), int(ii[k + 1])
        r, s = code[i0], code[i1]
        if r < 0 or s < 0:
            continue
        kind = ob[i1]
        if kind == 1:
            possible = reach[r, s]
        elif kind == 2:
            possible = r == s or allowed[r, s]
        else:
            possible = bool((reach[r] & allowed[:, s]).any())
        if not possible:
            how = {1: "no chain of allowed transitions leads", 2: "it is not an allowed "
                   "transition (an exact transition time, obstype 2) from", 3: "no allowed "
                   "transition into it follows"}[kind]
            add(i1, f"{state} {states[s]} at {time} {t[i1]:g} after {states[r]} at {time} "
                    f"{t[i0]:g} ({where[i0]}): the transition {states[r]} -> {states[s]} is "
                    f"declared impossible ({how} there; allowed: {names})")
    for c in frame.columns:
        if c in need:
            continue
        num = pd.to_numeric(frame[c].where(~pd.Series(missing_mask(frame[c]))),
                            errors="coerce").to_numpy(float)
        for i in np.flatnonzero(np.isinf(num)):
            add(i, f"{c} {frame[c].iloc[i]} is not finite")
    rows.raise_if_any("invalid waves")

    out = frame.drop(columns=[c for c in need]).copy()
    covs = tuple(str(c) for c in out.columns if c not in ("state_index", "obstype", "where"))
    for c in covs:
        if out[c].dtype == object:
            m = missing_mask(out[c])
            num = pd.to_numeric(out[c].where(~m), errors="coerce")
            out[c] = num if num[~m].notna().all() else out[c].where(~m)
    out.insert(0, "site", np.array(labels, dtype=object))
    out.insert(1, "time", t)
    if dates is not None:
        out.insert(2, "date", pd.DatetimeIndex(dates).strftime("%Y-%m-%d").to_numpy(object))
    out.insert(2, "state", np.array([states[c] for c in code], dtype=object))
    out.insert(3, "state_index", code.astype(np.int64))
    out.insert(4, "obstype", ob.astype(np.int64))
    out["where"] = np.asarray(where)
    out = out.sort_values(["site", "time"], kind="stable").reset_index(drop=True)
    return Waves(out, states, allowed, src, covs, dates=dates is not None)


def _wave_times(column: pd.Series, labels: Any, site_missing: np.ndarray, name: str,
                add: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """Interview times as years: numbers as given, or ISO dates as calendar years since
    the site's first interview. Reports every cell that is neither, or that mixes kinds."""
    parsed = parse_times(column)
    shown = column.astype(str).str.strip().to_numpy(object)
    kind = parsed.kind
    n_date, n_num = int((kind == "date").sum()), int((kind == "number").sum())
    if n_date == 0:
        for i in np.flatnonzero(kind != "number"):
            add(i, f"{name} must be a finite number (years) or an ISO date, got {shown[i]!r}")
        return parsed.number, None
    for i in np.flatnonzero(kind != "date"):
        what = ("a number, but other times are dates (numbers and dates are never mixed)"
                if kind[i] == "number" else "not an ISO date (YYYY-MM-DD)")
        add(i, f"{name} {shown[i]!r} is {what}")
    if n_num or (kind != "date").any():
        return np.full(len(column), np.nan), None
    site = pd.Series(np.array(labels, dtype=object))
    first = pd.Series(parsed.date).groupby(site.where(~site_missing, "")).transform("min")
    return calendar_years(first.to_numpy(dtype="datetime64[ns]"), parsed.date), parsed.date


def sample_waves(events: pd.DataFrame, times: Sequence[float] | pd.DataFrame,
                 covariates: pd.DataFrame | None = None) -> pd.DataFrame:
    """States of an event log (``site, time, event``) at interview times.

    ``times`` is one list for every site, or a frame ``site, time`` of each
    site's own interviews. The state at ``t`` is that of the last event at or
    before ``t``: ``start`` -> sustained, ``discontinue`` -> discontinued,
    ``restart`` -> restarted. Interviews after a site's ``end`` are dropped
    (it is no longer followed). With a covariate log (``site, time, ...``),
    each interview gets the values in force at its time (last row at or before).
    """
    ev = events.sort_values(["site", "time"], kind="stable")
    if isinstance(times, pd.DataFrame):
        grid = times[["site", "time"]].copy()
    else:
        sites = ev["site"].drop_duplicates().to_numpy()
        tt = np.asarray(times, float)
        grid = pd.DataFrame({"site": np.repeat(sites, tt.size), "time": np.tile(tt, sites.size)})
    grid = grid.sort_values(["site", "time"], kind="stable").reset_index(drop=True)
    end = ev[ev["event"] == "end"].groupby("site")["time"].max()
    grid = grid[grid["time"].to_numpy() <= end.reindex(grid["site"]).to_numpy()]
    moves = ev[ev["event"] != "end"].copy()
    moves["state"] = moves["event"].map({"start": "sustained", "discontinue": "discontinued",
                                         "restart": "restarted"})
    out = pd.merge_asof(grid.sort_values("time", kind="stable"),
                        moves[["site", "time", "state"]].sort_values("time", kind="stable"),
                        on="time", by="site", direction="backward")
    if covariates is not None:
        cov = covariates.sort_values("time", kind="stable")
        out = pd.merge_asof(out, cov, on="time", by="site", direction="backward")
    return out.sort_values(["site", "time"], kind="stable").reset_index(drop=True)

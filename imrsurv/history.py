"""Event log + covariate log -> a validated, immutable :class:`History`.

A site's history is a sequence of states (cf. R survival's ``survcheck``):
``sustained`` (active, never discontinued) -> ``discontinued`` -> ``restarted``
(active again) -> ``discontinued`` -> ... until the end of follow-up.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import timeline
from ._tables import TIME_UNITS, Table, parse_times, read_table
from .errors import DataError, Problem, bad_argument, check_choice, check_number
from .validate import (
    _EVENT_RANK,
    Checked,
    _line_number,
    check_covariates,
    check_events,
    check_sites,
    require_columns,
    time_kind,
)

STATUSES = ("sustained", "restarted", "discontinued", "censored")
Source = str | Path | pd.DataFrame


@dataclass(frozen=True)
class Accounting:
    """What was read, used and set aside, per input, and why."""

    table: pd.DataFrame  # input, read, used, set_aside
    set_aside: pd.DataFrame  # input, where, site, reason

    def __str__(self) -> str:
        text = self.table.to_string(index=False)
        if len(self.set_aside):
            text += "\nset aside:\n" + self.set_aside.to_string(index=False)
        return text


@dataclass(frozen=True, eq=False)
class History:
    """Validated programme histories of a set of sites.

    Times are in years on the analysis time scale: numeric input divided by
    ``time_unit``; ISO dates as calendar years since the site's start (whole
    anniversaries are whole years, the part of a year counted in days of that
    year, as lubridate's ``time_length(interval, "years")``; see
    :func:`imrsurv.validate.calendar_years`). Build one with :func:`read_history`.
    """

    _events: pd.DataFrame
    _covariates: pd.DataFrame | None
    _sites: pd.DataFrame
    accounting: Accounting
    time_unit: str = "years"
    recent_window: float = 1.0
    covariate_names: tuple[str, ...] = ()
    site_columns: tuple[str, ...] = ()
    _cache: dict = field(default_factory=dict, repr=False)
    from_dates: bool = False  # times were ISO dates (calendar years since each start)

    # -- views (copies: the History itself never changes) --------------------
    @property
    def events(self) -> pd.DataFrame:
        """The event log: ``site, time, event, line`` (+ ``practice``, ``cause``) sorted by
        site and time. ``cause`` is ``"unknown"`` on a discontinuation whose cell was empty
        and ``""`` on other events."""
        return self._events.copy()

    @property
    def covariates(self) -> pd.DataFrame | None:
        """The covariate log as read (times in years), or None."""
        return None if self._covariates is None else self._covariates.copy()

    @property
    def sites(self) -> pd.DataFrame:
        """One row per site: ``site, entry, exit, discontinuations, restarts`` + site columns."""
        return self._sites.copy()

    @property
    def has_causes(self) -> bool:
        """True when the event log has a ``cause`` column (discontinuations only)."""
        return "cause" in self._events.columns

    @property
    def causes(self) -> tuple[str, ...]:
        """Causes of discontinuation in the event log, sorted (``unknown`` for empty cells)."""
        if not self.has_causes:
            return ()
        ev = self._events
        return tuple(sorted(pd.unique(ev.loc[ev["event"] == "discontinue", "cause"])))

    @property
    def n_sites(self) -> int:
        return len(self._sites)

    def __repr__(self) -> str:
        s = self._sites
        scale = ("calendar years since each site's start date" if self.from_dates
                 else "times in years" if self.time_unit == "years"
                 else f"times in {self.time_unit} / {TIME_UNITS[self.time_unit]:g}")
        follow = s["exit"] - s["entry"]
        return (f"<History: {len(s)} sites, {int(s['discontinuations'].sum())} discontinuations, "
                f"{int(s['restarts'].sum())} restarts, follow-up up to {follow.max():.2f} years "
                f"({scale}); covariates: {', '.join(self.covariate_names) or 'none'}>")

    # -- derived frames ---------------------------------------------------------
    def spells(self) -> pd.DataFrame:
        """One row per sojourn in a state.

        Columns ``site, start, stop, state, next, episode``: ``state`` is
        sustained / discontinued / restarted, ``next`` is the state entered at
        ``stop`` or ``censored``. Zero-length sojourns (a discontinuation at the
        last contact) are left out: no time is spent in them. With a ``cause``
        column in the event log, ``cause`` gives the cause of the discontinuation
        at ``stop`` (``""`` when the spell does not end in one).
        """
        if "spells" not in self._cache:
            self._cache["spells"] = timeline.spells(self._events)
        return self._cache["spells"].copy()

    def counting_process(self, scheme: str = "ag", outcome: str = "discontinue") -> pd.DataFrame:
        """Counting-process frame for a recurrent-event scheme.

        ``scheme``: ``ag`` (Andersen-Gill), ``pwp-tt``/``pwp-gt``
        (Prentice-Williams-Peterson, total/gap time; fit with strata=episode),
        ``wlw`` (Wei-Lin-Weissfeld: every episode at risk from entry), ``first``
        (time to first event). ``outcome="restart"`` gives the restart process:
        at risk while discontinued, event = restart. Rows are split at every
        covariate change so covariates are constant on each (start, stop].
        """
        scheme = timeline.check_choice(
            "scheme", scheme.lower() if isinstance(scheme, str) else scheme, timeline.SCHEMES)
        timeline.check_choice("outcome", outcome, timeline.OUTCOMES)
        key = ("cp", scheme, outcome)
        if key not in self._cache:
            self._cache[key] = timeline.counting_process(
                self.spells(), self._sites, self._covariate_states(), scheme, outcome,
                self.site_columns)
        return self._cache[key].copy()

    def covariate_path(self) -> pd.DataFrame | None:
        """Covariate values after every change, with derived leadership covariates."""
        states = self._covariate_states()
        return None if states is None else states.copy()

    def _covariate_states(self) -> pd.DataFrame | None:
        if "cov" not in self._cache:
            self._cache["cov"] = (None if self._covariates is None else
                                  timeline.covariate_states(self._covariates, self.recent_window))
        return self._cache["cov"]

    # -- status and summaries ---------------------------------------------------
    def status_at(self, horizon: float) -> pd.Series:
        """Each site's status at ``horizon`` (years), a Series indexed by site.

        ``sustained``: never discontinued in (entry, horizon]; ``restarted``:
        discontinued at least once and active at the horizon; ``discontinued``:
        not active at the horizon; ``censored``: follow-up ended before the
        horizon (or the site started after it). An event at the horizon counts.
        """
        horizon = check_number("horizon", horizon, minimum=0)
        ev = self._events
        sites = self._sites.set_index("site")
        upto = ev[(ev["time"] <= horizon) & (ev["event"] != "end")]
        last = upto.groupby("site")["event"].last().reindex(sites.index)
        n_disc = (upto["event"] == "discontinue").groupby(upto["site"]).sum().reindex(
            sites.index, fill_value=0)
        active = last.isin(["start", "restart"])
        status = np.where(n_disc == 0, "sustained", np.where(active, "restarted", "discontinued"))
        followed = (sites["exit"] >= horizon) & (sites["entry"] <= horizon)
        status = np.where(followed, status, "censored")
        return pd.Series(pd.Categorical(status, categories=STATUSES), index=sites.index,
                         name="status")

    def summary(self, by: str | None = "practice") -> pd.DataFrame:
        """Sites, person-years active and discontinued, discontinuations, restarts.

        One row per level of ``by`` (a site column) and an ``all`` row.
        """
        if by is not None and (not isinstance(by, str) or (
                by not in self._sites.columns and by != "practice")):
            raise bad_argument("by", by, "None or a site column: "
                               + ", ".join(c for c in self._sites.columns if c != "site"))
        sp = self.spells()
        sp["years"] = sp["stop"] - sp["start"]
        sp["active"] = sp["state"] != "discontinued"
        per_site = pd.DataFrame({
            "years_active": sp[sp["active"]].groupby("site")["years"].sum(),
            "years_discontinued": sp[~sp["active"]].groupby("site")["years"].sum(),
        }).reindex(self._sites["site"]).fillna(0.0)
        s = self._sites.set_index("site")
        per_site["discontinuations"] = s["discontinuations"]
        per_site["restarts"] = s["restarts"]
        per_site["sites"] = 1
        cols = ["sites", "years_active", "years_discontinued", "discontinuations", "restarts"]
        total = per_site[cols].sum().to_frame("all").T
        if by is None or by not in s.columns:
            out = total
        else:
            groups = per_site[cols].groupby(s[by]).sum()
            groups.index = groups.index.astype(str)
            out = pd.concat([groups, total])
        out.index.name = by if by in s.columns else None
        out["sites"] = out["sites"].astype(int)
        out["discontinuations"] = out["discontinuations"].astype(int)
        out["restarts"] = out["restarts"].astype(int)
        return out


# ---------------------------------------------------------------------------
def read_history(
    events: Source,
    covariates: Source | None = None,
    sites: Source | None = None,
    *,
    time_unit: str = "years",
    recent_window: float = 1.0,
    binary: tuple[str, ...] = ("training_access",),
    strict: bool = True,
) -> History:
    """Read and validate an event log (+ covariate log and site table).

    Formats are those of DESIGN.md: events ``site, time, event`` (start /
    discontinue / restart / end), covariates wide ``site, time, <covariates>``
    (values hold until the next row), sites ``site, <site-level columns>``.

    Every problem in every input is collected; with ``strict=True`` (default) a
    :class:`DataError` lists them all. With ``strict=False`` each site with a
    problem is set aside whole, and :attr:`History.accounting` says which and why.
    """
    check_choice("time_unit", time_unit, tuple(TIME_UNITS))
    recent_window = check_number("recent_window", recent_window, minimum=0, strict=True)
    if not isinstance(strict, bool):
        raise bad_argument("strict", strict, "True or False")
    if isinstance(binary, str):
        binary = (binary,)
    if not isinstance(binary, (tuple, list, set, frozenset)) or \
            not all(isinstance(b, str) for b in binary):
        raise bad_argument("binary", binary, "a tuple of covariate column names")
    binary = tuple(binary)
    if events is None:
        raise bad_argument("events", events, "a path to a CSV or Parquet event log, or a "
                           "DataFrame with columns site, time, event")
    ev_t = read_table(events, "events")
    cov_t = None if covariates is None else read_table(covariates, "covariates")
    site_t = None if sites is None else read_table(sites, "sites")
    col_problems = require_columns(ev_t, ("site", "time", "event"), "the event log")
    if cov_t is not None:
        col_problems += require_columns(cov_t, ("site", "time"), "the covariate log")
    if site_t is not None:
        col_problems += require_columns(site_t, ("site",), "the site table")
    if not col_problems and len(ev_t.frame) == 0:
        col_problems.append(Problem(ev_t.source, None, None,
                                    "the event log has no rows (only a header)"))
    if cov_t is not None:
        default = ("training_access",)
        absent = [b for b in binary if b not in cov_t.frame.columns]
        if absent and tuple(binary) != default:
            col_problems.append(Problem(
                "binary", None, None,
                f"binary= names {', '.join(repr(b) for b in absent)}, not a column of the "
                f"covariate log (columns: {', '.join(map(str, cov_t.frame.columns))})"))
    elif tuple(binary) not in (("training_access",), ()):
        col_problems.append(Problem("binary", None, None,
                                    f"binary={binary!r} is given but there is no covariate log"))
    if col_problems:
        raise DataError(col_problems, "invalid input")

    ev_kind = time_kind(parse_times(ev_t.frame["time"]))
    if ev_kind == "date" and time_unit != "years":
        raise bad_argument("time_unit", time_unit, '"years" (the default) when times are ISO '
                           "dates: dates are read as calendar years; time_unit scales numbers")
    ev = check_events(ev_t, time_unit)
    starts = ev.frame[(ev.frame["event"] == "start") & ~ev.bad].groupby("site")
    site_entry = starts["time"].min()
    origin = starts["_date"].min() if ev_kind == "date" else None
    all_sites = pd.unique(ev.frame["site"].dropna())
    cov = (None if cov_t is None else
           check_covariates(cov_t, site_entry, origin, time_unit, ev_kind, binary,
                            event_sites=all_sites, entry_shown=starts["_raw_time"].first()))
    st = None if site_t is None else check_sites(site_t, all_sites)
    problems = ev.problems + (cov.problems if cov else []) + (st.problems if st else [])
    problems.sort(key=lambda p: (_source_order(p, ev_t, cov_t, site_t), _line_number(p.where)))
    if problems and strict:
        raise DataError(problems, "invalid input")
    hist = _build(ev, cov, st, ev_t, cov_t, site_t, problems, time_unit, recent_window)
    if hist.n_sites == 0:
        raise DataError(problems + [Problem(ev_t.source, None, None,
                                            "no site is left to analyse")], "invalid input")
    return dataclasses.replace(hist, from_dates=ev_kind == "date", _cache={})


def _source_order(p: Problem, *tables: Table | None) -> int:
    names = [t.source for t in tables if t is not None]
    return names.index(p.source) if p.source in names else len(names)


def _build(ev: Checked, cov: Checked | None, st: Checked | None, ev_t: Table,
           cov_t: Table | None, site_t: Table | None, problems: list[Problem],
           time_unit: str, recent_window: float) -> History:
    bad_sites = {p.site for p in problems if p.site is not None}
    set_aside: list[dict] = []
    counts = []

    def keep(checked: Checked, table: Table, name: str) -> pd.DataFrame:
        frame = checked.frame
        site_bad = frame["site"].astype(str).isin(bad_sites).to_numpy()
        drop = checked.bad | site_bad | frame["site"].isna().to_numpy()
        reasons = {p.where: str(p.message) for p in problems if p.source == table.source}
        for i in np.flatnonzero(drop):
            where = table.where[i]
            reason = reasons.get(where, "set aside with its site, which has problems")
            set_aside.append({"input": name, "where": where, "site": frame["site"].iat[i],
                              "reason": reason})
        counts.append({"input": name, "read": len(frame), "used": int((~drop).sum()),
                       "set_aside": int(drop.sum())})
        return frame[~drop]

    events = keep(ev, ev_t, "events")
    events = events.assign(_rank=events["event"].map(_EVENT_RANK))
    events = events.sort_values(["site", "time", "_rank"], kind="stable").reset_index(drop=True)
    ev_cols = ["site", "time", "event", "line"] + [c for c in ("practice", "cause")
                                                   if c in events]
    events = events[ev_cols]
    valid_sites = pd.unique(events["site"])

    covariates, cov_names = None, ()
    if cov is not None:
        covariates = keep(cov, cov_t, "covariates")
        covariates = covariates[covariates["site"].isin(valid_sites)]
        value_cols = [c for c in covariates.columns if c not in ("site", "_pos", "line", "time")]
        covariates = covariates.sort_values(["site", "time"], kind="stable").reset_index(drop=True)
        covariates = covariates[["site", "time", *value_cols, "line"]]
        cov_names = tuple(value_cols)

    sites = _site_frame(events)
    site_cols: list[str] = ["practice"] if "practice" in events else []
    if st is not None:
        table = keep(st, site_t, "sites").drop(columns=["_pos"])
        extra = [c for c in table.columns if c != "site" and c not in sites.columns]
        sites = sites.merge(table[["site", *extra]], on="site", how="left")
        site_cols += [c for c in extra if c not in site_cols]
    accounting = Accounting(pd.DataFrame(counts),
                            pd.DataFrame(set_aside, columns=["input", "where", "site", "reason"]))
    return History(events, covariates, sites, accounting, time_unit, float(recent_window),
                   cov_names, tuple(site_cols))


def _site_frame(events: pd.DataFrame) -> pd.DataFrame:
    g = events.groupby("site", sort=True)
    out = pd.DataFrame({
        "entry": g["time"].min(),
        "exit": g["time"].max(),
        "discontinuations": (events["event"] == "discontinue").groupby(events["site"]).sum(),
        "restarts": (events["event"] == "restart").groupby(events["site"]).sum(),
    })
    if "practice" in events:
        out["practice"] = g["practice"].first()
    return out.reset_index()

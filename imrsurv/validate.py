"""Checks on the event log, covariate log and site table.

Each check returns problems for every bad row it finds (never only the
first), with the row's line number and site. ``read_history`` gathers them and
raises one :class:`~imrsurv.errors.DataError`.

The event log's grammar per site is ``start (discontinue restart)* discontinue? end``.
An optional ``cause`` column names why a site discontinued: allowed only on
``discontinue`` rows; an empty cell there means the cause is not known and is
read as ``"unknown"`` (:func:`_check_causes`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ._tables import TIME_UNITS, ParsedTimes, Table, display, missing_mask, parse_times
from .errors import Problem

EVENTS = ("start", "discontinue", "restart", "end")
# Events at the same time as the previous one are ordered like this.
_EVENT_RANK = {"start": 0, "discontinue": 1, "restart": 2, "end": 3}
# Allowed (previous, current) pairs; everything else is reported.
_ALLOWED = {
    ("start", "discontinue"), ("start", "end"),
    ("discontinue", "restart"), ("discontinue", "end"),
    ("restart", "discontinue"), ("restart", "end"),
}
STANDARD_COVARIATES = ("leadership_change", "team_size", "training_access")


@dataclass
class Checked:
    """Rows of one input after checking: the frame, problems, and bad-row mask."""

    frame: pd.DataFrame
    problems: list[Problem]
    bad: np.ndarray  # bool per row: the row itself is invalid


def _problem(table: Table, i: int, site: object, message: str) -> Problem:
    site_label = None if site is None or (isinstance(site, float) and np.isnan(site)) else str(site)
    return Problem(table.source, str(table.where[i]), site_label, message)


def require_columns(table: Table, required: tuple[str, ...], what: str) -> list[Problem]:
    missing = [c for c in required if c not in table.frame.columns]
    if not missing:
        return []
    have = ", ".join(map(str, table.frame.columns)) or "none"
    return [Problem(table.source, None, None,
                    f"{what} lacks required column(s) {', '.join(missing)} (columns: {have})")]


def _site_column(table: Table) -> tuple[np.ndarray, np.ndarray]:
    """Site labels as text, and a mask of rows with no site."""
    raw = table.frame["site"]
    # site ids are labels: "NA" or "None" is a site name; only an empty cell is missing
    missing = (raw.isna() | raw.astype(str).str.strip().eq("")).to_numpy(dtype=bool)
    sites = raw.astype(str).str.strip().to_numpy(dtype=object)
    sites[missing] = None
    return sites, missing


def _time_problems(table: Table, times: ParsedTimes, sites: np.ndarray, col: str) -> list[Problem]:
    shown = display(table.frame[col])
    out = []
    for i in np.flatnonzero(times.kind == "missing"):
        out.append(_problem(table, i, sites[i], f"missing {col}"))
    for i in np.flatnonzero(times.kind == "bad"):
        out.append(_problem(table, i, sites[i],
                            f'{col} "{shown[i]}" is neither a number nor an ISO date'))
    n_num = int((times.kind == "number").sum())
    n_date = int((times.kind == "date").sum())
    if n_num and n_date:
        minority = "date" if n_date <= n_num else "number"
        majority = "numbers" if minority == "date" else "dates"
        for i in np.flatnonzero(times.kind == minority):
            out.append(_problem(table, i, sites[i],
                                f'{col} "{shown[i]}" is a {minority} but other times are '
                                f"{majority} (mixed date and number times)"))
    return out


def time_kind(times: ParsedTimes) -> str | None:
    """'number' or 'date': the kind most parsed times have (the others are reported)."""
    n_num = int((times.kind == "number").sum())
    n_date = int((times.kind == "date").sum())
    if n_num == n_date == 0:
        return None
    return "date" if n_date > n_num else "number"


def check_events(table: Table, time_unit: str) -> Checked:
    """Check the event log and convert times to years on the analysis scale.

    Returns a frame with ``site, time, event, line, _pos`` (+ ``practice``), one
    row per input row, ``time`` in years: numeric times divided by the unit,
    ISO dates as calendar years since that site's ``start`` (:func:`calendar_years`).
    """
    problems: list[Problem] = []
    frame = table.frame
    n = len(frame)
    sites, no_site = _site_column(table)
    bad = no_site.copy()
    for i in np.flatnonzero(no_site):
        problems.append(_problem(table, i, None, "missing site"))

    event = frame["event"].astype(str).str.strip().str.lower().to_numpy(dtype=object)
    unknown = ~np.isin(event, EVENTS)
    shown_event = display(frame["event"])
    for i in np.flatnonzero(unknown):
        problems.append(_problem(table, i, sites[i],
                                 f'unknown event "{shown_event[i]}" (allowed: {", ".join(EVENTS)})'))
    bad |= unknown

    times = parse_times(frame["time"])
    problems += _time_problems(table, times, sites, "time")
    kind = time_kind(times)
    bad |= ~np.isin(times.kind, [kind] if kind else [])

    out = pd.DataFrame({
        "site": sites, "event": event, "_pos": np.arange(n),
        "line": table.where, "_raw_time": display(frame["time"]),
    })
    if "practice" in frame.columns:
        out["practice"] = frame["practice"].astype(str).str.strip().to_numpy(dtype=object)
    if "cause" in frame.columns:
        cause, cause_problems = _check_causes(table, sites, event)
        out["cause"] = cause
        problems += cause_problems  # the row stays in the order checks; its site is set aside
    out["_num"] = times.number
    out["_date"] = times.date
    out["_bad"] = bad

    problems += _duplicate_problems(table, out)
    seq_problems, seq_bad_sites = _sequence_problems(table, out[~out["_bad"]], kind)
    problems += seq_problems
    out["time"] = _to_years(out, kind, time_unit)
    if "practice" in out.columns:
        problems += _constant_within_site(table, out[~out["_bad"]], "practice")
    return Checked(out, problems, bad | out["site"].isin(seq_bad_sites).to_numpy())


CAUSE_UNKNOWN = "unknown"
# labels that mean something else in imrsurv's outputs and cannot name a cause
_RESERVED_CAUSES = ("censored", "sustained", "any")


def _check_causes(table: Table, sites: np.ndarray, event: np.ndarray
                  ) -> tuple[np.ndarray, list[Problem]]:
    """The optional ``cause`` column: text, allowed only on ``discontinue`` rows.

    An empty cell on a discontinuation means the cause is not known and is
    recorded as ``"unknown"`` (its own category, never dropped; ``Unknown``
    written out in any case is the same category); an empty cell
    on any other event is the normal case (``""``). A cause on a start,
    restart or end row, or one of the reserved labels, is a problem.
    """
    raw = table.frame["cause"]
    missing = missing_mask(raw) | raw.astype(str).str.strip().eq("").to_numpy()
    text = raw.astype(str).str.strip().to_numpy(dtype=object)
    text[missing] = ""
    shown = display(raw)
    problems = []
    on_other = ~missing & (event != "discontinue") & np.isin(event, EVENTS)
    for i in np.flatnonzero(on_other):
        problems.append(_problem(table, i, sites[i],
                                 f'cause "{shown[i]}" on a {event[i]} event: a cause is '
                                 "allowed only on discontinue rows (leave the cell empty)"))
    reserved = ~missing & np.isin(np.char.lower(text.astype(str)), _RESERVED_CAUSES)
    for i in np.flatnonzero(reserved & ~on_other):
        problems.append(_problem(table, i, sites[i],
                                 f'cause "{shown[i]}" is a reserved word (not allowed: '
                                 f'{", ".join(_RESERVED_CAUSES)}); name the reason instead'))
    # "Unknown" written out is the same category as an empty cell
    spelled = np.char.lower(text.astype(str)) == CAUSE_UNKNOWN
    cause = np.where((event == "discontinue") & (missing | spelled), CAUSE_UNKNOWN,
                     text).astype(object)
    return cause, problems


def _duplicate_problems(table: Table, out: pd.DataFrame) -> list[Problem]:
    keyed = out.assign(_t=out["_raw_time"])
    dup = keyed.duplicated(["site", "event", "_t"], keep="first").to_numpy()
    if not dup.any():
        return []
    first = keyed.groupby(["site", "event", "_t"], sort=False, dropna=False)["_pos"].transform("first")
    out.loc[dup, "_bad"] = True
    return [_problem(table, i, out["site"].iat[i],
                     f"duplicate row (same as {table.where[first.iat[i]]})")
            for i in np.flatnonzero(dup)]


def _sequence_problems(table: Table, ok: pd.DataFrame, kind: str | None) -> tuple[list[Problem], set]:
    """Problems with the order of events within each site.

    Rows are sorted by site, time and event rank; each row is classified
    against the previous one with array operations, and only the problem rows
    are turned into messages.
    """
    problems: list[Problem] = []
    if ok.empty:
        return problems, set()
    t = ok["_num"].to_numpy() if kind != "date" else ok["_date"].to_numpy().astype("int64") / 8.64e13
    df = ok.assign(_t=t, _rank=ok["event"].map(_EVENT_RANK))
    df = df.sort_values(["site", "_t", "_rank", "_pos"], kind="stable").reset_index(drop=True)
    site = df["site"].to_numpy(dtype=object)
    cur = df["event"].to_numpy(dtype=object)
    pos = df["_pos"].to_numpy()
    raw = df["_raw_time"].to_numpy(dtype=object)
    tt = df["_t"].to_numpy()
    first = np.r_[True, site[1:] != site[:-1]]
    last = np.r_[site[1:] != site[:-1], True]
    prev = np.r_[None, cur[:-1]].astype(object)
    prev_idx = np.r_[0, np.arange(len(df) - 1)]
    has_start = pd.Series(cur == "start").groupby(site).transform("any").to_numpy()
    has_end = pd.Series(cur == "end").groupby(site).transform("any").to_numpy()

    pairs = pd.Series(list(zip(prev, cur, strict=True)))
    allowed = pairs.isin(_ALLOWED).to_numpy()
    same_time = np.r_[False, tt[1:] == tt[:-1]]
    closes_at_last_contact = (cur == "end") & np.isin(prev, ["discontinue", "restart"])
    before = first & (cur != "start") & has_start
    nth_start = pd.Series(cur == "start").groupby(site).cumsum().to_numpy()
    first_start = (cur == "start") & (nth_start == 1)  # events before it are reported as such
    order = ~first & ~allowed & ~first_start
    zero = ~first & allowed & same_time & ~closes_at_last_contact

    bad_sites: set = set()
    for i in np.flatnonzero(first & ~has_start):
        problems.append(_problem(table, pos[i], site[i], "no start event for this site"))
    for i in np.flatnonzero(last & ~has_end):
        problems.append(_problem(table, pos[i], site[i],
                                 "no end event (end of follow-up) for this site"))
    for i in np.flatnonzero(before):
        problems.append(_problem(table, pos[i], site[i],
                                 f"{cur[i]} at {raw[i]} is before the site's start"))
    for i in np.flatnonzero(order):
        j = prev_idx[i]
        problems.append(_problem(
            table, pos[i], site[i],
            f"{_order_message(cur[i], prev[i])} "
            f"(last event: {prev[i]} at {raw[j]}, {table.where[pos[j]]})"))
    for i in np.flatnonzero(zero):
        j = prev_idx[i]
        problems.append(_problem(
            table, pos[i], site[i],
            f"zero-length episode: {cur[i]} at {raw[i]}, the same time as the {prev[i]} on "
            f"{table.where[pos[j]]}"))
    flagged = (first & ~has_start) | (last & ~has_end) | before | order | zero
    bad_sites.update(site[flagged])
    problems.sort(key=lambda p: _line_number(p.where))
    return problems, bad_sites


def _line_number(where: str | None) -> float:
    try:
        return float(str(where).split()[-1])
    except (ValueError, IndexError):
        return float("inf")


def _order_message(cur: str, prev: str) -> str:
    if cur == "start":
        return "more than one start"
    if prev == "end":
        return f"{cur} after end of follow-up"
    if cur == "restart":
        return "restart while active"
    if cur == "discontinue":
        return "discontinue while discontinued"
    if cur == "end":
        return "more than one end"
    return f"{cur} not allowed after {prev}"


def _to_years(out: pd.DataFrame, kind: str | None, time_unit: str) -> np.ndarray:
    if kind == "date":
        start_date = out[out["event"] == "start"].groupby("site")["_date"].min()
        origin = out["site"].map(start_date).to_numpy(dtype="datetime64[ns]")
        return calendar_years(origin, out["_date"].to_numpy(dtype="datetime64[ns]"))
    return out["_num"].to_numpy() / TIME_UNITS[time_unit]


def _constant_within_site(table: Table, ok: pd.DataFrame, col: str) -> list[Problem]:
    n_values = ok.groupby("site")[col].nunique()
    bad = n_values[n_values > 1].index
    out = []
    for site in bad:
        rows = ok[ok["site"] == site]
        first = rows[col].iloc[0]
        for i, v in zip(rows["_pos"], rows[col], strict=True):
            if v != first:
                first_where = table.where[int(rows["_pos"].iloc[0])]
                out.append(_problem(table, int(i), site,
                                    f'{col} "{v}" differs from "{first}" on {first_where}'))
    return out


def check_covariates(
    table: Table,
    site_entry: pd.Series,
    site_origin_date: pd.Series | None,
    time_unit: str,
    event_kind: str | None,
    binary: tuple[str, ...],
    event_sites: object = None,
    entry_shown: pd.Series | None = None,
) -> Checked:
    """Check the covariate log against the sites of the (checked) event log.

    ``site_entry`` maps each valid site to its start time in years;
    ``site_origin_date`` maps it to its start date when event times are dates;
    ``event_sites`` are all sites of the event log (also those with problems,
    whose covariate rows are set aside with them); ``entry_shown`` is each
    site's start time as the user wrote it (for messages).
    """
    problems: list[Problem] = []
    frame = table.frame
    sites, no_site = _site_column(table)
    bad = no_site.copy()
    for i in np.flatnonzero(no_site):
        problems.append(_problem(table, i, None, "missing site"))
    known = pd.Series(sites).isin(site_entry.index).to_numpy()
    # a site of the event log with problems there: its rows go (or are set aside) with it
    with_site = ~no_site & ~known & pd.Series(sites).isin(
        [] if event_sites is None else list(event_sites)).to_numpy()
    unknown = ~no_site & ~known & ~with_site
    for i in np.flatnonzero(unknown):
        problems.append(_problem(table, i, sites[i], "covariate row for a site not in the event log"))
    bad |= unknown | with_site

    times = parse_times(frame["time"])
    problems += _time_problems(table, times, sites, "time")
    kind = time_kind(times)
    if kind and event_kind and kind != event_kind:
        problems.append(Problem(table.source, None, None,
                                f"covariate times are {kind}s but event times are {event_kind}s"))
        kind = None
    bad |= ~np.isin(times.kind, [kind] if kind else [])

    out = pd.DataFrame({"site": sites, "_pos": np.arange(len(frame)), "line": table.where})
    if kind == "date" and site_origin_date is not None:
        origin = pd.Series(sites).map(site_origin_date).to_numpy(dtype="datetime64[ns]")
        out["time"] = calendar_years(origin, times.date)
    else:
        out["time"] = times.number / TIME_UNITS[time_unit]

    value_cols = [c for c in frame.columns if c not in ("site", "time")]
    for col in value_cols:
        col_problems, col_bad, values = _check_covariate_column(table, col, sites, binary)
        problems += col_problems
        bad |= col_bad
        out[col] = values

    shown_time = display(frame["time"])
    parsed_key = np.where(np.isin(times.kind, ["number", "date"]),
                          np.where(times.kind == "number", times.number.astype(str),
                                   times.date.astype(str)), shown_time)
    keyed = out.assign(_raw=parsed_key)
    dup = keyed.duplicated(["site", "_raw"], keep="first").to_numpy() & ~bad
    first = keyed.groupby(["site", "_raw"], sort=False, dropna=False)["_pos"].transform("first")
    for i in np.flatnonzero(dup):
        problems.append(_problem(table, i, sites[i],
                                 f"two covariate rows for the same time (see {table.where[first.iat[i]]})"))
    bad |= dup

    # rows with a known site and time count here even when a value is bad (reported above)
    good = out[~no_site & ~unknown & np.isfinite(out["time"].to_numpy(dtype=float))]
    first_row = good.sort_values(["site", "time"], kind="stable").groupby("site").head(1)
    first_row = first_row.set_index("site").reindex(site_entry.index)
    for site in site_entry.index[first_row["time"].isna().to_numpy()]:
        problems.append(Problem(table.source, None, str(site),
                                "no covariate rows for this site (covariates missing at its start)"))
    late = (first_row["time"] > site_entry + 1e-12).to_numpy()
    for site, row in first_row[late].iterrows():
        start = (entry_shown[site] if entry_shown is not None and site in entry_shown.index
                 else f"{site_entry[site]:g}")
        problems.append(_problem(table, int(row["_pos"]), site,
                                 f"covariates missing at the site's start: first row is at "
                                 f"{shown_time[int(row['_pos'])]}, start is at {start}"))
    return Checked(out, problems, bad)


def _check_covariate_column(
    table: Table, col: str, sites: np.ndarray, binary: tuple[str, ...]
) -> tuple[list[Problem], np.ndarray, pd.Series]:
    raw = table.frame[col]
    missing = missing_mask(raw)
    problems = [_problem(table, i, sites[i], f"missing value for {col}") for i in np.flatnonzero(missing)]
    bad = missing.copy()
    shown = display(raw)
    numeric = pd.to_numeric(raw.where(~missing), errors="coerce")
    must_be_numeric = col in STANDARD_COVARIATES or col in binary
    not_number = ~missing & numeric.isna().to_numpy()
    if not must_be_numeric and not_number.any():
        # a user column of labels: carried through as text
        values = raw.astype(str).str.strip().where(~missing)
        return problems, bad, values
    for i in np.flatnonzero(not_number):
        problems.append(_problem(table, i, sites[i], f'{col} "{shown[i]}" is not a number'))
    bad |= not_number
    v = numeric.to_numpy(dtype=float)
    infinite = np.isinf(v)
    for i in np.flatnonzero(infinite):
        problems.append(_problem(table, i, sites[i], f"{col} {shown[i]} is not finite"))
    bad |= infinite
    v = np.where(infinite, np.nan, v)
    if col == "team_size":
        neg = v < 0
        for i in np.flatnonzero(neg):
            problems.append(_problem(table, i, sites[i], f"negative team size {shown[i]}"))
        bad |= neg
    if col in binary or col == "leadership_change":
        nb = ~np.isnan(v) & ~np.isin(v, [0.0, 1.0])
        for i in np.flatnonzero(nb):
            problems.append(_problem(table, i, sites[i], f"{col} must be 0 or 1, got {shown[i]}"))
        bad |= nb
    return problems, bad, pd.Series(v)


def check_sites(table: Table, event_sites: np.ndarray) -> Checked:
    """Check the site-level table: one row per site, every event-log site present."""
    problems: list[Problem] = []
    sites, no_site = _site_column(table)
    for i in np.flatnonzero(no_site):
        problems.append(_problem(table, i, None, "missing site"))
    frame = table.frame.copy()
    frame["site"] = sites
    frame["_pos"] = np.arange(len(frame))
    dup = frame.duplicated("site", keep="first").to_numpy() & ~no_site
    for i in np.flatnonzero(dup):
        problems.append(_problem(table, i, sites[i], "site listed more than once in the site table"))
    unknown = ~no_site & ~pd.Series(sites).isin(event_sites).to_numpy()
    for i in np.flatnonzero(unknown):
        problems.append(_problem(table, i, sites[i], "site not in the event log"))
    listed = set(sites[~no_site])
    for s in event_sites:
        if s not in listed:
            problems.append(Problem(table.source, None, str(s),
                                    "site from the event log missing from the site table"))
    for col in frame.columns:
        if col in ("site", "_pos"):
            continue
        num = pd.to_numeric(frame[col].where(~missing_mask(frame[col])), errors="coerce")
        if num.notna().sum() == (~missing_mask(frame[col])).sum():
            frame[col] = num
    return Checked(frame, problems, no_site | dup | unknown)


def calendar_years(origin: np.ndarray, dates: np.ndarray) -> np.ndarray:
    """Calendar years from ``origin`` to ``dates`` (datetime64 arrays; NaT gives NaN).

    As lubridate's ``time_length(interval(origin, date), "years")``: the number
    ``n`` of whole anniversaries of ``origin`` passed, plus the time since the
    last anniversary over the length of the year that follows it (365 or 366
    days); an anniversary of 29 February is 1 March in a common year.  So
    2016-07-01 to 2022-07-01 is exactly 6 years.  Checked against lubridate 1.9.2
    (tests/fixtures/dates).  Dates before ``origin`` give
    the negative of the same rule counted backwards.
    """
    o = pd.DatetimeIndex(np.asarray(origin, dtype="datetime64[ns]"))
    d = pd.DatetimeIndex(np.asarray(dates, dtype="datetime64[ns]"))
    out = np.full(len(d), np.nan)
    ok = ~(o.isna() | d.isna())
    if not ok.any():
        return out
    o, d = o[ok], d[ok]
    sign = np.where(d >= o, 1, -1)
    n = (d.year - o.year).to_numpy()

    def anniversary(k: np.ndarray) -> np.ndarray:
        # first of the month plus (day - 1) days: 29 February rolls to 1 March in a
        # common year, as in lubridate
        first = pd.to_datetime(pd.DataFrame({"year": o.year.to_numpy() + k, "month": o.month,
                                             "day": 1}))
        return (first + pd.to_timedelta(o.day - 1, unit="D") + (o - o.normalize())
                ).to_numpy(dtype="datetime64[ns]")

    dv = d.to_numpy(dtype="datetime64[ns]")
    ann = anniversary(n)
    past = np.where(sign > 0, ann > dv, ann < dv)  # went one anniversary too far
    n = n - np.where(past, sign, 0)
    prev = anniversary(n)
    nxt = anniversary(n + sign)
    sofar = (dv - prev).astype("int64").astype(float)
    total = np.abs((nxt - prev).astype("int64").astype(float))
    out[ok] = n + sofar / total
    return out

"""Annual site-year panels -> person-period frames for discrete-time models.

Panel format (one row per site and interview year)::

    site, year, active, covariates...

``active`` is 0/1: was the programme being delivered at this interview.
Years must be whole numbers without gaps inside a site (a missed interview
is a gap: the status in between is unknown, and discrete-time models need
it; waves such as 0/2/4/8 are read by :func:`imrsurv.read_waves` for the
continuous-time Markov model, :func:`imrsurv.fit_panel_markov`).

:func:`read_panel` validates, sorts and adds, for each row, what happened
since the previous interview. The first interview of a site is compared with
the start of the programme, when the site was active by definition (previous
state = active):

* ``at_risk`` (1 if active at the previous interview) and ``event`` (1 if
  active then and not now): the discontinuation outcome;
* ``restart_at_risk`` (1 if inactive at the previous interview) and
  ``restart_event`` (1 if inactive then and active now): the restart outcome.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ._tables import RowProblems, missing_mask, numeric_cells, read_table, site_time_key
from .errors import DataError, Problem, bad_argument

DERIVED = ("at_risk", "event", "restart_at_risk", "restart_event")


def read_panel(panel_or_path: str | Path | pd.DataFrame, *, site: str = "site",
               year: str = "year", active: str = "active") -> pd.DataFrame:
    """Read and validate an annual panel; return the person-period frame.

    Raises :class:`~imrsurv.DataError` naming every bad row (file line number
    or DataFrame row, and site): missing columns, missing site, year not a
    whole number, ``active`` not 0/1, duplicate site-years, gaps in a site's
    years. Nothing is dropped.

    Returns the panel sorted by site and year, with numeric covariates
    converted to numbers and the columns ``at_risk, event, restart_at_risk,
    restart_event`` added (any existing columns of those names are replaced),
    plus ``where``: the input line (``line 7``) or row (``row 5``) of each
    site-year, so that later notes can point back at it.
    ``attrs`` records the site/year/active column names and the source.
    """
    for name, value in (("site", site), ("year", year), ("active", active)):
        if not isinstance(value, str) or not value:
            raise bad_argument(name, value, "a column name (a non-empty string)")
    table = read_table(panel_or_path, "panel")
    src = table.source
    frame = table.frame
    if len(frame) == 0:
        raise DataError([Problem(src, None, None, "the panel has no rows (only a header)")],
                        "invalid panel")
    missing = [c for c in (site, year, active) if c not in frame.columns]
    if missing:
        have = ", ".join(map(str, frame.columns)) or "none"
        raise DataError([Problem(src, None, None,
                                 f"panel lacks required column(s) {', '.join(missing)} "
                                 f"(columns: {have})")], "invalid panel")
    where = table.where
    rows = RowProblems(src, where, frame[site], site)
    add, site_missing, labels = rows.add, rows.site_missing, rows.labels

    yr, shown = numeric_cells(frame[year])
    bad_year = ~np.isfinite(yr) | (yr != np.round(yr))
    for i in np.flatnonzero(bad_year):
        add(i, f"{year} must be a whole number, got {shown[i]!r}")

    raw_act = frame[active]
    act_text = raw_act.astype(str).str.strip().str.lower()
    act = pd.to_numeric(raw_act.where(~pd.Series(missing_mask(raw_act))), errors="coerce")
    act = act.to_numpy(float)
    act[act_text.isin(["true"]).to_numpy()] = 1.0
    act[act_text.isin(["false"]).to_numpy()] = 0.0
    bad_act = ~np.isin(act, [0.0, 1.0])
    shown_a = raw_act.astype(str).str.strip().to_numpy(object)
    for i in np.flatnonzero(bad_act):
        add(i, f"{active} must be 0 or 1, got {shown_a[i]!r}")

    # duplicates and gaps among rows with a site and a valid year
    ok = ~site_missing & ~bad_year
    uniq, repeats = site_time_key(labels, yr, ok, "year")
    for i, j, v in repeats:
        add(i, f"duplicate {year} {int(v)} (also at {where[j]})")
    same = uniq["site"].to_numpy()[1:] == uniq["site"].to_numpy()[:-1]
    step = np.diff(uniq["year"].to_numpy())
    for k in np.flatnonzero(same & (step > 1)):
        i = int(uniq["i"].iloc[k + 1])
        y0, y1 = int(uniq["year"].iloc[k]), int(uniq["year"].iloc[k + 1])
        gap = ", ".join(str(v) for v in range(y0 + 1, y1))
        add(i, f"gap in {year}s: {y1} follows {y0} (missing {gap}); discrete-time models "
               "need every year: for interviews at irregular waves use imrsurv.read_waves "
               "and imrsurv.fit_panel_markov")

    for c in frame.columns:
        if c in (site, year, active) or c in DERIVED:
            continue
        num = pd.to_numeric(frame[c].where(~pd.Series(missing_mask(frame[c]))),
                            errors="coerce").to_numpy(float)
        shown_c = frame[c].astype(str).str.strip().to_numpy(object)
        for i in np.flatnonzero(np.isinf(num)):
            add(i, f"{c} {shown_c[i]} is not finite")

    rows.raise_if_any("invalid panel")

    out = frame.copy()
    out[site] = np.array(labels, dtype=object) if not isinstance(panel_or_path, pd.DataFrame) \
        else panel_or_path[site].to_numpy()
    out[year] = yr.astype(np.int64)
    out[active] = act.astype(np.int64)
    out = out.drop(columns=[c for c in DERIVED if c in out.columns])
    for c in out.columns:
        if c in (site, year, active) or out[c].dtype != object:
            continue
        m = missing_mask(out[c])
        num = pd.to_numeric(out[c].where(~m), errors="coerce")
        if num[~m].notna().all():
            out[c] = num
        else:
            out[c] = out[c].where(~m)
    out["_order"] = np.arange(len(out))
    out = out.sort_values([site, year], kind="stable").reset_index(drop=True)
    a = out[active].to_numpy()
    first = np.r_[True, out[site].to_numpy()[1:] != out[site].to_numpy()[:-1]]
    prev = np.where(first, 1, np.r_[1, a[:-1]])
    out["at_risk"] = (prev == 1).astype(np.int64)
    out["event"] = ((prev == 1) & (a == 0)).astype(np.int64)
    out["restart_at_risk"] = (prev == 0).astype(np.int64)
    out["restart_event"] = ((prev == 0) & (a == 1)).astype(np.int64)
    out["where"] = np.asarray(where)[out["_order"].to_numpy()]
    out = out.drop(columns="_order")
    out.attrs.update({"site": site, "year": year, "active": active, "source": src})
    return out

"""Competing-risks data: one row per site for the first discontinuation and its cause.

Shared by :mod:`imrsurv.models.causes` (cumulative incidence) and
:mod:`imrsurv.models.gray` (Gray's test).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .._tables import require_columns
from ..errors import ArgumentError, DataError, Problem, bad_argument

__all__ = ["ANY_CAUSE", "CAUSE_UNKNOWN", "CENSORED", "competing_risks_frame"]

CENSORED = "censored"
CAUSE_UNKNOWN = "unknown"  # an empty cause cell on a discontinuation (imrsurv.validate)
ANY_CAUSE = "discontinued"  # the one cause when the event log has no cause column


def competing_risks_frame(data: Any, by: str | None = None, *, time: str = "time",
                          status: str = "status", entry: str | None = None, id: str = "site",
                          censored: object = CENSORED) -> pd.DataFrame:
    """One row per site: ``site, entry, time, status[, group]`` for the first discontinuation.

    ``data`` is a :class:`~imrsurv.History` (time from the site's start to its
    first discontinuation, ``status`` its cause, or ``censored`` at the last
    contact; without a cause column every discontinuation has the cause
    ``discontinued``) or a plain frame with columns ``time`` and ``status``
    (a cause label, or the value ``censored``: with numeric codes as in
    ``cmprsk`` pass ``censored=0``), optional ``entry`` (late entry, default 0)
    and ``id`` (default ``site``; one row per id). ``by`` names a site column
    (History) or a column of the frame. Raises :class:`DataError` naming every
    bad row.
    """
    if by is not None and not isinstance(by, str):
        raise bad_argument("by", by, "None or the name of a column")
    if hasattr(data, "spells") and callable(data.spells) and hasattr(data, "sites"):
        return _from_history(data, by)
    if not isinstance(data, pd.DataFrame):
        raise ArgumentError([f"data must be a History or a DataFrame with columns {time}, "
                             f"{status}, not {type(data).__name__}"])
    return _from_frame(data, by, time, status, entry, id, censored)


def _from_history(hist: Any, by: str | None) -> pd.DataFrame:
    sp = hist.spells()
    first = sp[sp["state"] == "sustained"].sort_values(["site", "start"], kind="stable")
    first = first.groupby("site", sort=True).head(1)
    ended = (first["next"] == "discontinued").to_numpy()
    cause = (first["cause"].to_numpy(dtype=object) if "cause" in first.columns
             else np.full(len(first), ANY_CAUSE, dtype=object))
    out = pd.DataFrame({
        "site": first["site"].to_numpy(dtype=object),
        "entry": first["start"].to_numpy(float),
        "time": first["stop"].to_numpy(float),
        "status": np.where(ended, cause, CENSORED).astype(object),
    })
    if by is not None:
        sites = hist.sites
        if by not in sites.columns or by == "site":
            raise bad_argument("by", by, "None or a site column: " + ", ".join(
                c for c in sites.columns if c != "site"))
        out["group"] = out["site"].map(sites.set_index("site")[by]).to_numpy(dtype=object)
        missing = out["group"].isna().to_numpy()
        if missing.any():
            raise DataError([Problem("sites", None, str(s), f"no value of {by!r} (every site "
                                     "needs one to be grouped)") for s in out["site"][missing]],
                            "cannot group")
    return out.reset_index(drop=True)


def _from_frame(df: pd.DataFrame, by: str | None, time: str, status: str, entry: str | None,
                id: str, censored: object) -> pd.DataFrame:
    require_columns(df, [time, status] + ([entry] if entry else []) + ([by] if by else []),
                    "invalid input")
    where = np.array([f"row {i}" for i in df.index], dtype=object)
    ids = (df[id].astype(str).to_numpy(dtype=object) if id in df.columns
           else np.array([str(i) for i in df.index], dtype=object))
    problems: list[Problem] = []

    def bad(mask: np.ndarray, message: str) -> None:
        for i in np.flatnonzero(mask):
            problems.append(Problem("data", where[i], str(ids[i]), message))

    t = pd.to_numeric(df[time], errors="coerce").to_numpy(float)
    bad(~np.isfinite(t), f"{time} is not a finite number")
    e = (np.zeros(len(df)) if entry is None
         else pd.to_numeric(df[entry], errors="coerce").to_numpy(float))
    if entry is not None:
        bad(~np.isfinite(e), f"{entry} is not a finite number")
    ok = np.isfinite(t) & np.isfinite(e)
    bad(ok & (t <= e), f"{time} must be after {entry or 'the entry time 0'}"
                       + ("" if entry else " (pass entry= for late entry)"))
    raw = df[status]
    st_missing = raw.isna().to_numpy() | raw.astype(str).str.strip().eq("").to_numpy()
    bad(st_missing, f"{status} is missing (give a cause or {censored!r} for censored)")
    is_cens = (raw == censored).to_numpy() | (raw.astype(str).str.strip() == str(censored)).to_numpy()
    labels = raw.astype(str).str.strip().to_numpy(dtype=object)
    if by is not None:
        bad(df[by].isna().to_numpy(), f"{by} is missing")
    dup = pd.Series(ids).duplicated(keep="first").to_numpy() if id in df.columns else \
        np.zeros(len(df), bool)
    bad(dup, f"{id} appears on more than one row (one row per site: the first discontinuation)")
    if problems:
        raise DataError(problems, "invalid competing-risks data")
    out = pd.DataFrame({"site": ids, "entry": e, "time": t,
                        "status": np.where(is_cens, CENSORED, labels).astype(object)})
    if by is not None:
        out["group"] = df[by].to_numpy(dtype=object)
    return out.reset_index(drop=True)


def _causes_of(cr: pd.DataFrame) -> tuple[str, ...]:
    """Observed causes, sorted, with ``unknown`` (an empty cause cell) last."""
    found = sorted(pd.unique(cr.loc[cr["status"] != CENSORED, "status"]).astype(str))
    return tuple([c for c in found if c != CAUSE_UNKNOWN] +
                 [c for c in found if c == CAUSE_UNKNOWN])

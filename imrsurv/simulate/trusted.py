"""The History of a simulated cohort, built without re-validating what the simulator guarantees.

:func:`imrsurv.read_history` checks every row of user data (one ``start``,
alternating transitions, one ``end``, a covariate row at each start, 0/1 and
non-negative values, ...). A cohort from :func:`~imrsurv.simulate.cohort.simulate_cohort`
satisfies all of it by construction, and a power analysis builds thousands
of them, so :func:`trusted_history` assembles the History's frames directly
and :class:`SimulatedHistory` builds the counting-process frames with plain
numpy on integer site codes (the general path, :mod:`imrsurv.timeline`,
works on pandas frames of text labels).

Both reproduce the validated path exactly: the same frames, dtypes and
floating-point values (they only select and order recorded times; the one
arithmetic step, PWP gap times ``t - origin``, is the same operation).
``tests/test_simulate_trusted.py`` compares them frame for frame on many
seeds and designs. Only for frames made by the simulator: user data always
goes through ``read_history``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..history import Accounting, History

# event kinds as small integers, in the order read_history sorts ties
_START, _DISC, _RESTART, _END = 0, 1, 2, 3
_KIND_CODE = {"start": _START, "discontinue": _DISC, "restart": _RESTART, "end": _END}
_FAST_SCHEMES = ("ag", "pwp-tt", "pwp-gt", "first")


@dataclass(frozen=True, eq=False, repr=False)
class SimulatedHistory(History):
    """A :class:`~imrsurv.History` of simulated data with a numpy counting-process builder.

    Equal, frame for frame, to the History ``read_history`` gives for the same
    tables; ``counting_process`` gives the frames of
    :func:`imrsurv.timeline.counting_process` (``wlw`` goes through it).
    """

    def counting_process(self, scheme: str = "ag", outcome: str = "discontinue") -> pd.DataFrame:
        key = ("cp", scheme, outcome)
        if (key not in self._cache and "_codes" in self._cache  # gone after a replace()
                and scheme in _FAST_SCHEMES and outcome in ("discontinue", "restart")):
            self._cache[key] = _counting_process(self, scheme, outcome)
        return super().counting_process(scheme, outcome)


def trusted_history(cohort: Any) -> SimulatedHistory:
    """Build the History of a simulated :class:`~imrsurv.simulate.cohort.Cohort` directly.

    Reproduces what :func:`imrsurv.history.read_history` does to valid
    DataFrame input: rows labelled ``row i``; events sorted by site, time and
    event rank; covariate values as floats sorted by site and time; the site
    table merged onto entry / exit / counts; nothing set aside.
    """
    ev_in = cohort.events
    n_ev = len(ev_in)
    site = ev_in["site"].to_numpy(dtype=object)
    time = ev_in["time"].to_numpy(dtype=float)
    kind = ev_in["event"].to_numpy(dtype=object)
    kcode = np.array([_KIND_CODE[k] for k in kind], dtype=np.int64)
    # labels are zero-padded (S001, ...): their order as text is the order of their codes
    codes, uniq = pd.factorize(site, sort=True)
    order = np.lexsort((kcode, time, codes))  # stable, as sort_values(kind="stable")
    codes, time, kind, kcode = codes[order], time[order], kind[order], kcode[order]
    line = np.array([f"row {i}" for i in range(n_ev)], dtype=object)[order]
    uniq = np.asarray(uniq, dtype=object)
    events = pd.DataFrame({"site": uniq[codes], "time": time, "event": kind, "line": line})
    counts = [{"input": "events", "read": n_ev, "used": n_ev, "set_aside": 0}]
    covariates, cov_names = None, ()
    if cohort.covariates is not None:
        cv = cohort.covariates
        n_cv = len(cv)
        c_site = cv["site"].to_numpy(dtype=object)
        c_time = cv["time"].to_numpy(dtype=float)
        c_codes = pd.Index(uniq).get_indexer(c_site)
        c_order = np.lexsort((c_time, c_codes))
        value_cols = [c for c in cv.columns if c not in ("site", "time")]
        data: dict[str, Any] = {"site": c_site[c_order], "time": c_time[c_order]}
        for c in value_cols:
            data[c] = cv[c].to_numpy(dtype=float)[c_order]
        data["line"] = np.array([f"row {i}" for i in range(n_cv)], dtype=object)[c_order]
        covariates = pd.DataFrame(data)
        cov_names = tuple(value_cols)
        counts.append({"input": "covariates", "read": n_cv, "used": n_cv, "set_aside": 0})
    n = len(uniq)
    first = np.r_[0, np.flatnonzero(codes[1:] != codes[:-1]) + 1]
    site_cols: dict[str, Any] = {
        "site": uniq,
        "entry": np.minimum.reduceat(time, first),
        "exit": np.maximum.reduceat(time, first),
        "discontinuations": np.bincount(codes, kcode == _DISC, minlength=n).astype(np.int64),
        "restarts": np.bincount(codes, kcode == _RESTART, minlength=n).astype(np.int64),
    }
    st = cohort.sites
    extra = [c for c in st.columns if c != "site"]
    pos = pd.Index(st["site"].to_numpy(dtype=object)).get_indexer(uniq)
    for c in extra:
        site_cols[c] = st[c].to_numpy()[pos]
    sites = pd.DataFrame(site_cols)
    counts.append({"input": "sites", "read": len(st), "used": len(st), "set_aside": 0})
    accounting = Accounting(pd.DataFrame(counts), _no_set_aside())
    hist = SimulatedHistory(events, covariates, sites, accounting, "years",
                            float(cohort.model.recent_window), cov_names, tuple(extra))
    hist._cache["_codes"] = (codes, time, kcode, uniq)
    return hist


def _no_set_aside() -> pd.DataFrame:
    """The empty set-aside table of ``read_history`` (object columns, empty RangeIndex)."""
    empty = np.array([], dtype=object)
    return pd.DataFrame({"input": empty, "where": empty, "site": empty, "reason": empty})


# ---------------------------------------------------------------------------
# counting-process frames (the numpy twin of imrsurv.timeline for trusted data)


def _keys(codes: np.ndarray, times: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Integer keys ordering (site, time) exactly: time replaced by its rank in ``grid``."""
    return codes.astype(np.int64) * np.int64(grid.size + 1) + np.searchsorted(grid, times)


def _covariate_states(hist: SimulatedHistory, uniq: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]] | None:
    """As :func:`imrsurv.timeline.covariate_states`, on site codes: grid codes, times, values."""
    cov = hist._covariates
    if cov is None:
        return None
    c_codes = pd.Index(uniq).get_indexer(cov["site"].to_numpy(dtype=object)).astype(np.int64)
    t = cov["time"].to_numpy(dtype=float)
    values = [c for c in cov.columns if c not in ("site", "time", "line")]
    has_leader = "leadership_change" in values
    if has_leader:
        changed = cov["leadership_change"].to_numpy(dtype=float) == 1
        ch_codes, ch_t = c_codes[changed], t[changed]
        ch_end = ch_t + hist.recent_window
        g_codes, g_t = np.r_[c_codes, ch_codes], np.r_[t, ch_end]
    else:
        g_codes, g_t = c_codes, t
    grid = np.unique(g_t)
    gk = _keys(g_codes, g_t, grid)
    gk, first = np.unique(gk, return_index=True)  # drop duplicates, sort by (site, time)
    g_codes, g_t = g_codes[first], g_t[first]
    idx = np.searchsorted(_keys(c_codes, t, grid), gk, side="right") - 1
    out: dict[str, np.ndarray] = {}
    for c in values:
        if c != "leadership_change":
            out[c] = cov[c].to_numpy()[idx]
    if has_leader:
        floor = g_codes.astype(np.int64) * np.int64(grid.size + 1)
        started = (np.searchsorted(np.sort(_keys(ch_codes, ch_t, grid)), gk, side="right")
                   - np.searchsorted(np.sort(_keys(ch_codes, ch_t, grid)), floor, side="left"))
        k_end = np.sort(_keys(ch_codes, ch_end, grid))
        ended = np.searchsorted(k_end, gk, side="right") - np.searchsorted(k_end, floor,
                                                                            side="left")
        out["leader_changes"] = started
        out["recent_leader_change"] = (started - ended > 0).astype(int)
    return g_codes, g_t, out


def _counting_process(hist: SimulatedHistory, scheme: str, outcome: str) -> pd.DataFrame:
    """As :func:`imrsurv.timeline.counting_process` for ``ag``, ``pwp-tt``, ``pwp-gt``, ``first``."""
    codes, t, kcode, uniq = hist._cache["_codes"]
    # spells: from each event but an end to the site's next event
    same = np.r_[codes[1:] == codes[:-1], False]
    i = np.flatnonzero(same & (kcode != _END))
    start, stop, k_from, k_to = t[i], t[i + 1], kcode[i], kcode[i + 1]
    keep = stop > start
    i, start, stop, k_from, k_to = i[keep], start[keep], stop[keep], k_from[keep], k_to[keep]
    s_codes = codes[i]
    # at risk: active spells (after start / restart) for discontinuation, off spells for restart
    at_risk = (k_from != _DISC) if outcome == "discontinue" else (k_from == _DISC)
    target = _DISC if outcome == "discontinue" else _RESTART
    s_codes, start, stop = s_codes[at_risk], start[at_risk], stop[at_risk]
    event = (k_to[at_risk] == target).astype(int)
    # episode: the k-th at-risk spell of its site
    n_rows = s_codes.size
    new = np.r_[True, s_codes[1:] != s_codes[:-1]] if n_rows else np.zeros(0, bool)
    grp_start = np.flatnonzero(new)
    episode = np.arange(n_rows) - np.repeat(grp_start, np.diff(np.r_[grp_start, n_rows])) + 1
    origin = start
    if scheme == "first":
        one = episode == 1
        s_codes, start, stop, event, episode, origin = (
            s_codes[one], start[one], stop[one], event[one], episode[one], origin[one])
    cols: dict[str, np.ndarray] = {}
    states = _covariate_states(hist, uniq)
    if states is not None and s_codes.size:
        g_codes, g_t, g_vals = states
        grid = np.unique(np.r_[start, stop, g_t])
        c_keys = _keys(g_codes, g_t, grid)
        lo = np.searchsorted(c_keys, _keys(s_codes, start, grid), side="right")
        hi = np.searchsorted(c_keys, _keys(s_codes, stop, grid), side="left")
        pieces = hi - lo + 1
        row = np.repeat(np.arange(s_codes.size), pieces)
        j = np.arange(row.size) - np.repeat(np.cumsum(pieces) - pieces, pieces)
        is_first, is_last = j == 0, j == pieces[row] - 1
        cut_lo = np.minimum(lo[row] + j - 1, g_t.size - 1)
        cut_hi = np.minimum(lo[row] + j, g_t.size - 1)
        p_codes = s_codes[row]
        p_start = np.where(is_first, start[row], g_t[cut_lo])
        p_stop = np.where(is_last, stop[row], g_t[cut_hi])
        p_event = np.where(is_last, event[row], 0)
        idx = np.searchsorted(c_keys, _keys(p_codes, p_start, grid), side="right") - 1
        # the simulator writes a covariate row at every site's start, so idx is never -1
        s_codes, start, stop, event = p_codes, p_start, p_stop, p_event
        episode, origin = episode[row], origin[row]
        cols = {c: v[idx] for c, v in g_vals.items()}
    data: dict[str, np.ndarray] = {"site": uniq[s_codes], "start": start, "stop": stop,
                                   "event": event, "episode": episode}
    if scheme == "pwp-gt":
        data["gap_start"] = start - origin
        data["gap_stop"] = stop - origin
    data.update(cols)
    sites = hist._sites
    for c in hist.site_columns:
        data[c] = sites[c].to_numpy()[s_codes]
    order = np.lexsort((start, s_codes))
    frame = pd.DataFrame({k: v[order] for k, v in data.items()})
    return frame

"""Programme histories -> spells and counting-process frames (AG, PWP, WLW, first).

Everything here is vectorised over rows: intervals are located among sorted
(site, time) keys with ``np.searchsorted`` (cf. R survival's ``tmerge``).
Intervals are ``(start, stop]``; a covariate value recorded at time ``t`` holds
on intervals that start at or after ``t``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .errors import check_choice

SCHEMES = ("ag", "pwp-tt", "pwp-gt", "wlw", "first")
OUTCOMES = ("discontinue", "restart")
_STATE_AFTER = {"start": "sustained", "restart": "restarted", "discontinue": "discontinued"}
_NEXT = {"discontinue": "discontinued", "restart": "restarted", "end": "censored"}


# -- exact (site, time) keys -----------------------------------------------------
class _Keys:
    """Integer keys that sort like (site, time) for every site and time given.

    Times are replaced by their rank among all times passed in, so equal times
    get equal keys and no floating-point arithmetic decides a tie.
    """

    def __init__(self, sites: list[np.ndarray], times: list[np.ndarray]):
        codes, self._levels = pd.factorize(np.concatenate(sites), sort=True)
        self._times, ranks = np.unique(np.concatenate(times), return_inverse=True)
        self._m = np.int64(len(self._times) + 1)

    def __call__(self, sites: np.ndarray, times: np.ndarray) -> np.ndarray:
        codes = pd.Index(self._levels).get_indexer(sites).astype(np.int64)
        ranks = np.searchsorted(self._times, times).astype(np.int64)
        return codes * self._m + ranks

    def site_floor(self, sites: np.ndarray) -> np.ndarray:
        return pd.Index(self._levels).get_indexer(sites).astype(np.int64) * self._m


def _locf_index(keys: _Keys, sites_at: np.ndarray, t_at: np.ndarray,
                sites_from: np.ndarray, t_from: np.ndarray) -> np.ndarray:
    """For each (site, t) in ``at``, the row of ``from`` with the same site and the
    latest time <= t (``from`` sorted by site, time), or -1 if there is none."""
    k_from = keys(sites_from, t_from)
    idx = np.searchsorted(k_from, keys(sites_at, t_at), side="right") - 1
    ok = idx >= 0
    ok[ok] = sites_from[idx[ok]] == sites_at[ok]
    return np.where(ok, idx, -1)


# -- spells --------------------------------------------------------------------------
def spells(events: pd.DataFrame) -> pd.DataFrame:
    """Sojourns in states from an event log sorted by site, time and event order."""
    site = events["site"].to_numpy(dtype=object)
    ev = events["event"].to_numpy(dtype=object)
    t = events["time"].to_numpy(dtype=float)
    has_next = np.r_[site[1:] == site[:-1], False]
    restarts = pd.Series(ev == "restart").groupby(site).cumsum().to_numpy()
    discs = pd.Series(ev == "discontinue").groupby(site).cumsum().to_numpy()
    i = np.flatnonzero(has_next & (ev != "end"))
    state = pd.Series(ev[i]).map(_STATE_AFTER).to_numpy(dtype=object)
    out = pd.DataFrame({
        "site": site[i],
        "start": t[i],
        "stop": t[i + 1],
        "state": state,
        "next": pd.Series(ev[i + 1]).map(_NEXT).to_numpy(dtype=object),
        "episode": np.where(state == "discontinued", discs[i], restarts[i] + 1).astype(int),
    })
    if "cause" in events.columns:
        cause = events["cause"].to_numpy(dtype=object)[i + 1]
        out["cause"] = np.where(out["next"].to_numpy() == "discontinued", cause, "")
    return out[out["stop"] > out["start"]].reset_index(drop=True)


# -- covariates ------------------------------------------------------------------------
def covariate_states(cov: pd.DataFrame, window: float) -> pd.DataFrame:
    """Covariate values at every time one of them changes, per site.

    Values are carried forward from the last row at or before each time.
    ``leadership_change`` (1 when a new leader took over) becomes
    ``leader_changes`` (changes so far) and ``recent_leader_change`` (1 on
    [change, change + window)); the grid gains the times the window closes.
    """
    values = [c for c in cov.columns if c not in ("site", "time", "line")]
    site = cov["site"].to_numpy(dtype=object)
    t = cov["time"].to_numpy(dtype=float)
    has_leader = "leadership_change" in values
    if has_leader:
        changed = cov["leadership_change"].to_numpy(dtype=float) == 1
        ch_site, ch_t = site[changed], t[changed]
        grid = pd.DataFrame({"site": np.r_[site, ch_site], "time": np.r_[t, ch_t + window]})
    else:
        grid = pd.DataFrame({"site": site, "time": t})
    grid = grid.drop_duplicates().sort_values(["site", "time"], kind="stable")
    g_site = grid["site"].to_numpy(dtype=object)
    g_t = grid["time"].to_numpy(dtype=float)
    keys = _Keys([g_site, site], [g_t, t])
    idx = _locf_index(keys, g_site, g_t, site, t)
    out = pd.DataFrame({"site": g_site, "time": g_t})
    for c in values:
        if c != "leadership_change":
            out[c] = cov[c].to_numpy()[idx]
    if has_leader:
        floor = keys.site_floor(g_site)
        at = keys(g_site, g_t)
        started = _count_upto(keys(ch_site, ch_t), floor, at)
        ended = _count_upto(keys(ch_site, ch_t + window), floor, at) if len(ch_t) else 0
        out["leader_changes"] = started
        out["recent_leader_change"] = (started - ended > 0).astype(int)
    return out.reset_index(drop=True)


def _count_upto(event_keys: np.ndarray, floor: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Number of events of the same site at or before each key."""
    k = np.sort(event_keys)
    return np.searchsorted(k, at, side="right") - np.searchsorted(k, floor, side="left")


# -- counting-process layouts ------------------------------------------------------------
def counting_process(sp: pd.DataFrame, sites: pd.DataFrame, cov: pd.DataFrame | None,
                     scheme: str, outcome: str, site_columns: tuple[str, ...]) -> pd.DataFrame:
    """The (start, stop] frame for a scheme; see :meth:`History.counting_process`."""
    scheme = check_choice("scheme", scheme.lower() if isinstance(scheme, str) else scheme,
                          tuple(SCHEMES))
    check_choice("outcome", outcome, tuple(OUTCOMES))
    at_risk_state = sp["state"] == "discontinued"
    if outcome == "discontinue":
        at_risk_state = ~at_risk_state
    target = "discontinued" if outcome == "discontinue" else "restarted"
    base = sp[at_risk_state]
    base = pd.DataFrame({
        "site": base["site"].to_numpy(dtype=object),
        "start": base["start"].to_numpy(),
        "stop": base["stop"].to_numpy(),
        "event": (base["next"] == target).to_numpy().astype(int),
        "episode": _renumber(base),
        "origin": base["start"].to_numpy(),
    })
    if scheme == "first":
        base = base[base["episode"] == 1]
    elif scheme == "wlw":
        base = _wlw(base, sites)
    frame = _split(base, cov)
    if scheme == "pwp-gt":
        frame.insert(5, "gap_start", frame["start"] - frame["origin"])
        frame.insert(6, "gap_stop", frame["stop"] - frame["origin"])
    frame = frame.drop(columns="origin")
    if site_columns:
        extra = sites[["site", *site_columns]]
        frame = frame.merge(extra, on="site", how="left", validate="many_to_one")
    order = ["site", "episode", "start"] if scheme == "wlw" else ["site", "start"]
    return frame.sort_values(order, kind="stable").reset_index(drop=True)


def _renumber(base: pd.DataFrame) -> np.ndarray:
    """Episode = the k-th at-risk spell of the site (1, 2, ...)."""
    return base.groupby("site", sort=False).cumcount().to_numpy() + 1


def _wlw(base: pd.DataFrame, sites: pd.DataFrame) -> pd.DataFrame:
    """Every site at risk of its k-th event from entry, for k = 1..K (K = most events)."""
    ev = base[base["event"] == 1]
    k_of = ev.groupby("site").cumcount().to_numpy() + 1
    n_max = max(int(k_of.max()) if len(k_of) else 0, 1)
    s = sites[["site", "entry", "exit"]]
    grid = s.loc[s.index.repeat(n_max)].reset_index(drop=True)
    grid["episode"] = np.tile(np.arange(1, n_max + 1), len(s))
    times = pd.DataFrame({"site": ev["site"].to_numpy(), "episode": k_of,
                          "t": ev["stop"].to_numpy()})
    grid = grid.merge(times, on=["site", "episode"], how="left")
    hit = grid["t"].notna().to_numpy()
    return pd.DataFrame({
        "site": grid["site"].to_numpy(dtype=object),
        "start": grid["entry"].to_numpy(),
        "stop": np.where(hit, grid["t"], grid["exit"]),
        "event": hit.astype(int),
        "episode": grid["episode"].to_numpy(),
        "origin": grid["entry"].to_numpy(),
    })


def _split(base: pd.DataFrame, cov: pd.DataFrame | None) -> pd.DataFrame:
    """Split (start, stop] rows at every covariate change and attach the values."""
    if cov is None or base.empty:
        return base.reset_index(drop=True)
    site = base["site"].to_numpy(dtype=object)
    start = base["start"].to_numpy(dtype=float)
    stop = base["stop"].to_numpy(dtype=float)
    c_site = cov["site"].to_numpy(dtype=object)
    c_t = cov["time"].to_numpy(dtype=float)
    keys = _Keys([site, c_site], [start, stop, c_t])
    c_keys = keys(c_site, c_t)  # cov is sorted by site, time
    lo = np.searchsorted(c_keys, keys(site, start), side="right")
    hi = np.searchsorted(c_keys, keys(site, stop), side="left")
    pieces = hi - lo + 1
    row = np.repeat(np.arange(len(base)), pieces)
    j = np.arange(len(row)) - np.repeat(np.cumsum(pieces) - pieces, pieces)
    first, last = j == 0, j == pieces[row] - 1
    cut_lo = np.minimum(lo[row] + j - 1, len(c_t) - 1)
    cut_hi = np.minimum(lo[row] + j, len(c_t) - 1)
    out = base.iloc[row].reset_index(drop=True)
    out["start"] = np.where(first, start[row], c_t[cut_lo])
    out["stop"] = np.where(last, stop[row], c_t[cut_hi])
    out["event"] = np.where(last, out["event"].to_numpy(), 0)
    idx = _locf_index(keys, out["site"].to_numpy(dtype=object), out["start"].to_numpy(),
                      c_site, c_t)
    values = [c for c in cov.columns if c not in ("site", "time")]
    taken = cov[values].iloc[np.maximum(idx, 0)].reset_index(drop=True)
    taken[idx < 0] = np.nan
    return pd.concat([out, taken], axis=1)

"""Aalen-Johansen state occupation for any set of states and allowed transitions.

The sustained / discontinued / restarted model of :mod:`imrsurv.models.multistate`
is one choice; an analyst may define others, e.g. *high fidelity / low fidelity /
discontinued* from fidelity ratings, or discontinued by cause. Data are
(start, stop] rows per site: ``from`` the state occupied on the row, ``to`` the
state entered at ``stop`` or ``censored`` (a row split for another reason ends
``censored`` and the next row goes on in the same state).

Estimator and errors are those of :func:`imrsurv.models.multistate._aalen_johansen`
(R ``survfit(Surv(tstart, tstop, to) ~ 1, id=site, istate=from)``):
``p(t_k) = p(t_{k-1}) (I + dA_k)``, ``dA_k[h, l] = dN_hl / Y_h``, and
infinitesimal-jackknife standard errors summed by site. The initial
distribution is that of the rows at risk at the first transition time, as in R.

Checks (every bad row named, with site and times): states outside the declared
set, a transition the declared ``transitions`` do not allow (e.g. discontinued ->
high fidelity when restarts are not in the model), a row that starts in a state
other than the one the site's previous row entered, overlapping rows.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .._tables import interval_bounds
from ..errors import ArgumentError, DataError, Problem, bad_argument
from ..waves import transition_pattern
from .multistate import _aalen_johansen, _check_common, _check_times, _ci

__all__ = ["check_state_rows", "plot_state_occupation", "state_occupation"]

CENSORED = "censored"


def check_state_rows(data: pd.DataFrame, states: Sequence[str], allowed: np.ndarray, *,
                     site: str, start: str, stop: str, from_: str, to: str,
                     by: str | None = None) -> pd.DataFrame:
    """Validated rows ``site, start, stop, from, to[, group]`` sorted by site and start.

    Raises :class:`DataError` naming every bad row (row label, site, times).
    """
    if not isinstance(data, pd.DataFrame):
        raise ArgumentError([f"data must be a DataFrame of (start, stop] rows, not "
                             f"{type(data).__name__}"])
    need = [c for c in (site, start, stop, from_, to) + ((by,) if by else ())
            if c not in data.columns]
    if need:
        raise DataError([Problem("data", None, None,
                                 f"missing column(s) {', '.join(need)} (have: "
                                 f"{', '.join(map(str, data.columns))})")], "invalid input")
    df = data.reset_index(drop=True)
    where = np.array([f"row {i}" for i in data.index], dtype=object)
    sites = df[site].astype(str).to_numpy(dtype=object)
    problems: list[Problem] = []

    def bad(mask: np.ndarray, message: Any) -> None:
        for i in np.flatnonzero(mask):
            text = message(i) if callable(message) else message
            problems.append(Problem("data", where[i], str(sites[i]), text))

    t0, t1 = interval_bounds(df, start, stop, bad)
    bad(df[site].isna().to_numpy(), "site is missing")
    a = df[from_].astype(str).str.strip().to_numpy(dtype=object)
    b = df[to].astype(str).str.strip().to_numpy(dtype=object)
    declared = ", ".join(states)
    bad(~np.isin(a, list(states)),
        lambda i: f'{from_} "{a[i]}" is not a declared state (states: {declared})')
    bad(~np.isin(b, [*states, CENSORED]),
        lambda i: f'{to} "{b[i]}" is not a declared state or "{CENSORED}" (states: {declared})')
    ok = np.isin(a, list(states)) & np.isin(b, list(states))
    code = {s: k for k, s in enumerate(states)}
    ia = np.array([code.get(v, -1) for v in a])
    ib = np.array([code.get(v, -1) for v in b])
    same = ok & (ia == ib)
    bad(same, lambda i: f'{from_} and {to} are both "{a[i]}": a row that does not change '
                        f'state ends "{CENSORED}"')
    impossible = ok & ~same & ~allowed[np.maximum(ia, 0), np.maximum(ib, 0)]
    bad(impossible, lambda i: f"transition {a[i]} -> {b[i]} at {t1[i]:g} (row ({t0[i]:g}, "
                              f"{t1[i]:g}]) is not among the declared transitions")
    if problems:
        raise DataError(problems, "invalid state data")
    order = np.lexsort((t0, sites))
    s_site, s0, s1 = sites[order], t0[order], t1[order]
    cont = s_site[1:] == s_site[:-1]
    overlap = cont & (s0[1:] < s1[:-1])
    prev_to = b[order][:-1]
    jump = cont & ~overlap & (prev_to != CENSORED) & (prev_to != a[order][1:])
    resumed = cont & ~overlap & (prev_to == CENSORED) & (a[order][:-1] != a[order][1:])
    for i in np.flatnonzero(overlap):
        r = order[i + 1]
        problems.append(Problem("data", where[r], str(sites[r]),
                                f"({s0[i + 1]:g}, {s1[i + 1]:g}] overlaps the site's row "
                                f"({s0[i]:g}, {s1[i]:g}]"))
    for i in np.flatnonzero(jump | resumed):
        r = order[i + 1]
        what = (f"the previous row entered {prev_to[i]} at {s1[i]:g}" if jump[i] else
                f"the previous row was in {a[order][i]} and ended censored at {s1[i]:g}")
        problems.append(Problem("data", where[r], str(sites[r]),
                                f'starts in "{a[r]}" at {s0[i + 1]:g} but {what}'))
    if problems:
        raise DataError(problems, "invalid state data")
    out = pd.DataFrame({"site": sites, "start": t0, "stop": t1, "from": a, "to": b})
    if by is not None:
        out["group"] = df[by].to_numpy(dtype=object)
        n_groups = out.groupby("site")["group"].nunique(dropna=False)
        if (n_groups > 1).any():
            raise DataError([Problem("data", None, str(s), f"has more than one value of {by!r}")
                             for s in n_groups.index[n_groups > 1]], "invalid state data")
    return out.iloc[order].reset_index(drop=True)


def state_occupation(data: pd.DataFrame, states: Sequence[str], transitions: Any, *,
                     times: Any = None, by: str | None = None, site: str = "site",
                     start: str = "tstart", stop: str = "tstop", from_: str = "from",
                     to: str = "to", conf_level: float = 0.95,
                     conf_type: str = "log", p0_se: bool = True) -> pd.DataFrame:
    """Aalen-Johansen probabilities of each declared state, with IJ errors by site.

    ``states``: the state names, in the order of the output; ``transitions``:
    the allowed moves, as ``("a", "b")`` pairs, ``"a -> b"`` strings or a square
    0/1 pattern (as :func:`imrsurv.read_waves`). ``data``: (start, stop] rows
    with ``from`` (state on the row) and ``to`` (state entered at stop, or
    ``censored``). ``times``: report times (default: the start, every
    transition time and the last follow-up). ``by``: a column constant within a
    site; one set of curves per level. Returns ``[group,] time, state,
    probability, se, lower, upper`` (long); ``attrs["notes"]`` says what was
    assumed. As R ``survfit(Surv(tstart, tstop, to) ~ 1, id=site, istate=from,
    influence=TRUE)``; ``p0_se=False`` leaves out the variance of the estimated
    initial distribution, as R's default ``influence=FALSE`` does (the two agree
    when every site starts in one state).
    """
    if not isinstance(p0_se, bool):
        raise bad_argument("p0_se", p0_se, "True or False")
    _check_common(by=by, conf_level=conf_level, conf_type=conf_type)
    if isinstance(states, str) or not isinstance(states, Sequence) or \
            len(set(map(str, states))) != len(states) or len(states) < 2:
        raise bad_argument("states", states, "a sequence of at least two distinct state names")
    states = tuple(str(s) for s in states)
    if CENSORED in states:
        raise bad_argument("states", states, f'state names other than "{CENSORED}" (it marks '
                           "a row that ends without a transition)")
    allowed = transition_pattern(states, transitions)
    if times is not None:
        _check_times(times)
    rows = check_state_rows(data, states, allowed, site=site, start=start, stop=stop,
                            from_=from_, to=to, by=by)
    code = {s: k for k, s in enumerate(states)}
    frames, beyond = [], []
    parts = [(None, rows)] if by is None else list(rows.groupby("group", sort=True))
    for g, sub in parts:
        f = sub["from"].map(code).to_numpy(np.int64)
        t_ = sub["to"].map(code).fillna(-1).to_numpy(np.int64)
        s0, s1 = sub["start"].to_numpy(float), sub["stop"].to_numpy(float)
        if times is None:
            ev = np.unique(s1[t_ >= 0])
            t = np.concatenate([[min(0.0, float(s0.min()))], ev])
            if s1.max() > t[-1]:
                t = np.append(t, s1.max())
        else:
            t = _check_times(times)
        fit = _aalen_johansen(s0, s1, f, t_, pd.factorize(sub["site"], sort=True)[0],
                              len(states), eval_times=t, states=states, p0_se=p0_se)
        p, se = fit.eval_p.copy(), fit.eval_se.copy()
        late = t > fit.t_end
        if late.any():
            beyond.append(f"{'all sites' if g is None else g}: last follow-up {fit.t_end:g}")
            p[late], se[late] = np.nan, np.nan
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            lo, hi = _ci(p, se, conf_level, conf_type)
        frame = pd.DataFrame({"time": np.repeat(t, len(states)),
                              "state": np.tile(np.array(states, dtype=object), len(t)),
                              "probability": p.ravel(), "se": se.ravel(),
                              "lower": lo.ravel(), "upper": hi.ravel()})
        if by is not None:
            frame.insert(0, "group", g)
        frames.append(frame)
    out = pd.concat(frames, ignore_index=True)
    out["state"] = pd.Categorical(out["state"], categories=states)
    names = {i: s for i, s in enumerate(states)}
    declared = ", ".join(f"{names[int(a)]} -> {names[int(b)]}"
                         for a, b in zip(*np.nonzero(allowed), strict=True))
    notes = [f"States {', '.join(states)}; declared transitions {declared}.",
             "Aalen-Johansen estimates with infinitesimal-jackknife errors by site (R survfit "
             "multi-state std.err); the initial distribution is that of the rows at risk at "
             "the first transition time" + (", and its estimation is counted in the errors."
                                             if p0_se else ", taken as known.")]
    if beyond:
        notes.append("times beyond the last follow-up are NaN (not extrapolated): "
                     + "; ".join(beyond))
    out.attrs["notes"] = notes
    return out


def plot_state_occupation(probs: pd.DataFrame, ax: Any = None, *, title: str | None = None) -> Any:
    """Stacked step areas of state probabilities for any set of states; returns the Axes.

    ``probs``: a :func:`state_occupation` (or
    :func:`~imrsurv.models.causes.cause_state_probabilities`) frame without a
    ``group`` column (select one group first), best at every transition time
    (``times=None``). States are stacked in the frame's order.
    """
    import matplotlib.pyplot as plt

    if not isinstance(probs, pd.DataFrame) or not {"time", "state", "probability"} <= set(
            probs.columns):
        raise ArgumentError(["probs must be a frame with columns time, state, probability "
                             "(from state_occupation)"])
    if "group" in probs.columns and probs["group"].nunique() > 1:
        raise ArgumentError(["probs has several groups: plot one at a time, e.g. "
                             "probs[probs['group'] == g].drop(columns='group')"])
    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 4.5))
    states = (list(probs["state"].cat.categories) if hasattr(probs["state"], "cat")
              else list(pd.unique(probs["state"])))
    wide = probs.pivot_table(index="time", columns="state", values="probability",
                             observed=False, dropna=False).sort_index().dropna(how="all")
    t = wide.index.to_numpy(float)
    bottom = np.zeros(len(t))
    colors = plt.get_cmap("tab10")
    for k, st in enumerate(states):
        y = np.nan_to_num(wide[st].to_numpy(float)) if st in wide.columns else np.zeros(len(t))
        ax.fill_between(t, bottom, bottom + y, step="post", facecolor=colors(k % 10),
                        edgecolor="0.15", lw=0.4, label=str(st))
        bottom = bottom + y
    ax.set_xlim(t.min() if len(t) else 0, t.max() if len(t) else 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("Years since start")
    ax.set_ylabel("Probability of state")
    ax.set_title(title or "State occupation probabilities (Aalen-Johansen)")
    ax.legend(fontsize=8, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.15),
              ncol=min(len(states), 4))
    ax.figure.tight_layout()
    return ax

"""Causes of discontinuation: cumulative incidence by cause and Gray's test.

A site is at risk of its *first* discontinuation from its start; it leaves by
one of K causes (financing, priorities, workforce, ..., ``unknown`` for an
empty cause cell) or is censored at its last contact. The cumulative incidence
of cause k is ``F_k(t) = P(T <= t, cause = k)``, the Aalen-Johansen estimator
of the competing-risks multi-state model ``event-free -> cause k``
(Aalen & Johansen 1978; Kalbfleisch & Prentice 2002, ch. 8)::

    F_k(t) = sum_{t_j <= t} S(t_j-) d_kj / n_j

with S the all-cause Kaplan-Meier, d_kj the cause-k discontinuations at t_j
and n_j the sites at risk (``entry < t_j <= time``, so late entry is handled).
1 - sum_k F_k is the probability of having sustained the programme.

Errors:

* ``se``: the infinitesimal jackknife, by site, as R ``survfit(Surv(time,
  factor(status)) ~ group, id=site)`` (``std.err``), from the multi-state core
  :func:`imrsurv.models.multistate._aalen_johansen`;
* ``se_cuminc``: the delta-method variance of R ``cmprsk::cuminc`` (Gray's
  ``cinc``; Aalen 1978 counting-process variance, ties corrected by
  ``1 - (d - 1)/(n - 1)``), available when every site enters at one time.

Gray's (1988) test across groups is in :mod:`imrsurv.models.gray`; the one-row-
per-site data in :mod:`imrsurv.models._crdata`.
"""

from __future__ import annotations

import html
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ArgumentError, DataError, Problem, bad_argument, check_number
from ._crdata import (
    ANY_CAUSE,
    CAUSE_UNKNOWN,
    CENSORED,
    _causes_of,
    competing_risks_frame,
)
from .gray import GrayTest, _gray_on, _group_order, gray_test
from .multistate import _aalen_johansen, _check_common, _check_times, _ci

__all__ = ["CumulativeIncidence", "GrayTest", "cause_spells", "cause_state_probabilities",
           "competing_risks_frame", "cumulative_incidence", "gray_test"]


# ---------------------------------------------------------------------------
# estimators
def _cuminc_variance(time: np.ndarray, status: np.ndarray, cause: str,
                     at: np.ndarray) -> np.ndarray:
    """cmprsk ``cuminc``'s variance of F_cause at the distinct event times ``at``.

    Per distinct time t_j (n_j at risk, d1 cause events, d2 other events, S the
    all-cause KM before t_j, S+ after, F after): with c(d) = 1 - (d - 1)/(n - 1)
    for d > 1 (else 1) and w = S^2 c d / n^2,

    * other causes: a += (F/S+)^2 w2, b += F/S+^2 w2, c += w2/S+^2 (when S+ > 0);
    * this cause: q = 1/S+ (0 when S+ = 0), a += (1 + q F)^2 w1, b += q (1 + q F) w1,
      c += q^2 w1;

    and Var F(t_j) = a + F^2 c - 2 F b, updated only where d1 > 0 (it is a
    step function with the estimate's jumps).
    """
    order = np.argsort(time, kind="stable")
    y, st = time[order], status[order]
    u, first = np.unique(y, return_index=True)
    n = len(y)
    n_risk = (n - first).astype(float)
    ev = st != CENSORED
    d = np.add.reduceat(ev.astype(float), first) if n else np.zeros(0)
    d1 = np.add.reduceat((st == cause).astype(float), first) if n else np.zeros(0)
    d2 = d - d1
    s_after = np.cumprod(1 - d / n_risk)
    s_before = np.r_[1.0, s_after[:-1]]
    f = np.cumsum(s_before * d1 / n_risk)
    with np.errstate(divide="ignore", invalid="ignore"):
        def tie(dk: np.ndarray) -> np.ndarray:
            return np.where(dk > 1, 1 - (dk - 1) / (n_risk - 1), 1.0)

        w1 = s_before ** 2 * tie(d1) * d1 / n_risk ** 2
        w2 = s_before ** 2 * tie(d2) * d2 / n_risk ** 2
        pos = s_after > 0
        q = np.where(pos, 1 / np.where(pos, s_after, 1.0), 0.0)
        use2 = (d2 > 0) & pos
        a = np.where(use2, (f * q) ** 2 * w2, 0) + np.where(d1 > 0, (1 + q * f) ** 2 * w1, 0)
        b = np.where(use2, q * (f * q) * w2, 0) + np.where(d1 > 0, q * (1 + q * f) * w1, 0)
        c = np.where(use2, q ** 2 * w2, 0) + np.where(d1 > 0, q ** 2 * w1, 0)
    a, b, c = np.cumsum(a), np.cumsum(b), np.cumsum(c)
    var = a + f ** 2 * c - 2 * f * b
    jump = d1 > 0
    # the variance changes only at this cause's event times: carry it forward
    idx = np.where(jump, np.arange(len(u)), -1)
    idx = np.maximum.accumulate(idx) if len(idx) else idx
    var_step = np.where(idx >= 0, var[np.maximum(idx, 0)], 0.0)
    k = np.searchsorted(u, at, side="right") - 1
    return np.where(k >= 0, var_step[np.maximum(k, 0)], 0.0)


@dataclass
class _Curve:
    times: np.ndarray  # 0, event times, last follow-up
    cif: np.ndarray  # (T, K)
    se: np.ndarray  # (T, K) infinitesimal jackknife
    se_cuminc: np.ndarray  # (T, K) or NaN
    n_risk: np.ndarray  # (T,)
    n_event: np.ndarray  # (T, K)
    t_end: float


def _fit_group(cr: pd.DataFrame, causes: tuple[str, ...], eval_times: np.ndarray | None,
               same_entry: bool) -> _Curve:
    code = {c: i + 1 for i, c in enumerate(causes)}
    to = cr["status"].map(code).fillna(-1).to_numpy(np.int64)
    clusters = pd.factorize(cr["site"], sort=True)[0]
    start, stop = cr["entry"].to_numpy(float), cr["time"].to_numpy(float)
    t_end = float(stop.max())
    if eval_times is None:
        ev_t = np.unique(stop[to > 0])
        t = np.concatenate([[min(0.0, float(start.min()))], ev_t])
        if t_end > t[-1]:
            t = np.append(t, t_end)
    else:
        t = eval_times
    fit = _aalen_johansen(start, stop, np.zeros(len(cr), np.int64), to, clusters,
                          len(causes) + 1, eval_times=t, states=("event-free", *causes))
    cif, se = fit.eval_p[:, 1:], fit.eval_se[:, 1:]
    # at risk at t: entry < t <= time; events of each cause exactly at t
    n_risk = (np.searchsorted(np.sort(start), t, side="left")
              - np.searchsorted(np.sort(stop), t, side="left"))
    n_event = np.zeros((len(t), len(causes)))
    for k in range(len(causes)):
        ev = np.sort(stop[to == k + 1])
        upto = np.searchsorted(ev, t, side="right")
        # at event times: the events at t; at requested times: those in (previous time, t],
        # as R's summary(survfit, times=)
        n_event[:, k] = (upto - np.searchsorted(ev, t, side="left") if eval_times is None
                         else np.diff(np.r_[0, upto]))
    if same_entry:
        rel = stop - start[0]
        se_c = np.stack([np.sqrt(np.maximum(_cuminc_variance(
            rel, cr["status"].to_numpy(dtype=object), c, t - start[0]), 0.0))
            for c in causes], axis=1) if causes else np.zeros((len(t), 0))
    else:
        se_c = np.full_like(cif, np.nan)
    return _Curve(t, cif, se, se_c, n_risk.astype(float), n_event.astype(float), t_end)


# ---------------------------------------------------------------------------
# result
class CumulativeIncidence:
    """Cumulative incidence of each cause of (first) discontinuation, by group.

    ``curves``: long frame ``[group,] time, cause, cif, se, lower, upper,
    se_cuminc, n_risk, n_event`` at the start, every event time and the last
    follow-up (a step function, right-continuous; ``n_event`` the events at
    that time). ``summary``: the same at ``times`` (default: every whole year
    of follow-up; ``n_event`` the events since the previous time, as R's
    ``summary(survfit, times=)``). ``at(times)`` gives
    other times; ``gray`` is Gray's test when ``by`` was given (None if it
    cannot be computed: see ``notes``). ``plot()`` draws the curves.
    """

    def __init__(self, curves: pd.DataFrame, summary: pd.DataFrame, causes: tuple[str, ...],
                 by: str | None, gray: GrayTest | None, notes: list[str], conf_level: float,
                 conf_type: str, fits: dict, n_sites: pd.Series):
        self.curves = curves
        self.summary = summary
        self.causes = causes
        self.by = by
        self.gray = gray
        self.notes = notes
        self.conf_level = conf_level
        self.conf_type = conf_type
        self._fits = fits
        self.n_sites = n_sites

    def at(self, times: Any) -> pd.DataFrame:
        """Estimates at ``times`` (years); NaN (with a note) beyond a group's follow-up."""
        t = _check_times(times)
        return _table(self._fits, t, self.causes, self.by, self.conf_level, self.conf_type)

    def _header(self) -> str:
        groups = ", ".join(f"{g}: {n}" for g, n in self.n_sites.items())
        return (f"Cumulative incidence of the first discontinuation by cause "
                f"(Aalen-Johansen); causes: {', '.join(self.causes) or 'none'}\n"
                f"  sites: {groups}")

    def summary_text(self) -> str:
        sm = self.summary.copy()
        pct = f"{100 * self.conf_level:g}%"
        lines = [self._header(), ""]
        keys = ["group"] if self.by is not None else []
        for key, sub in (sm.groupby(keys, sort=False) if keys else [(None, sm)]):
            if key is not None:
                lines.append(f"{self.by} = {key[0] if isinstance(key, tuple) else key}")
            wide = sub.assign(text=[
                "NaN (beyond follow-up)" if np.isnan(p) else
                f"{100 * p:5.1f} ({100 * lo:.1f}-{100 * hi:.1f})" if np.isfinite(lo) else
                f"{100 * p:5.1f}" for p, lo, hi in zip(sub["cif"], sub["lower"], sub["upper"],
                                                        strict=True)])
            tab = wide.pivot(index="time", columns="cause", values="text")[list(self.causes)]
            tab.index = [f"{t:g}" for t in tab.index]
            tab.index.name = "years"
            lines.append(f"  cumulative incidence % ({pct} CI)")
            lines += ["  " + line for line in tab.to_string().splitlines()]
            lines.append("")
        if self.gray is not None:
            lines.append(str(self.gray).splitlines()[0])
            lines += [f"  {r['cause']:<16} chi-square = {r['statistic']:.4g} on {int(r['df'])} "
                      f"df, p = {r['p']:.3g}" for _, r in self.gray.table.iterrows()]
            lines.append("")
        lines += ["Notes:"] + [f"  - {n}" for n in self.notes]
        return "\n".join(lines)

    def print_summary(self) -> None:
        print(self.summary_text())

    def __repr__(self) -> str:
        return self.summary_text()

    def _repr_html_(self) -> str:
        head = "<br>".join(html.escape(x) for x in self._header().splitlines())
        table = self.summary.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="")
        gray = "" if self.gray is None else self.gray._repr_html_()
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in self.notes)
        return f"<div><p>{head}</p>{table}{gray}<ul>{notes}</ul></div>"

    def plot(self, ax: Any = None, *, ci: bool = True, causes: Any = None) -> Any:
        """Step curves of the cumulative incidence of each cause (per group), with CIs."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(6.5, 4))
        chosen = list(self.causes) if causes is None else [causes] if isinstance(causes, str) \
            else list(causes)
        unknown = [c for c in chosen if c not in self.causes]
        if unknown:
            raise bad_argument("causes", causes, "None or causes of the data: "
                               + ", ".join(self.causes))
        cv = self.curves
        groups = [None] if self.by is None else list(pd.unique(cv["group"]))
        styles = ["-", "--", ":", "-."]
        colors = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0", "C1", "C2"])
        for gi, g in enumerate(groups):
            sub = cv if g is None else cv[cv["group"] == g]
            for ci_, cause in enumerate(chosen):
                d = sub[sub["cause"] == cause]
                label = cause if g is None else f"{cause}, {g}"
                color = colors[ci_ % len(colors)]
                # one set of curves: causes differ in line style too (greyscale prints)
                ls = styles[(ci_ if g is None else gi) % len(styles)]
                ax.step(d["time"], d["cif"], where="post", color=color, ls=ls, label=label)
                if ci:
                    ax.fill_between(d["time"], d["lower"].fillna(0), d["upper"].fillna(0),
                                    step="post", color=color, alpha=0.12, lw=0)
        ax.set_xlabel("years since start")
        ax.set_ylabel("cumulative incidence")
        ax.set_ylim(0, max(0.05, float(np.nanmax(cv["upper"].to_numpy(float), initial=0.0))
                           if ci else float(np.nanmax(cv["cif"].to_numpy(float), initial=0.0))
                           ) * 1.05)
        ax.legend(fontsize=8, frameon=False)
        return ax


def _table(fits: dict, t: np.ndarray | None, causes: tuple[str, ...], by: str | None,
           conf_level: float, conf_type: str) -> pd.DataFrame:
    frames = []
    for g, (cr, same_entry) in fits.items():
        cv = _fit_group(cr, causes, t, same_entry)
        cif, se, sec = cv.cif.copy(), cv.se.copy(), cv.se_cuminc.copy()
        late = cv.times > cv.t_end
        cif[late], se[late], sec[late] = np.nan, np.nan, np.nan
        lo, hi = _ci(cif, se, conf_level, conf_type)
        k = len(causes)
        frame = pd.DataFrame({
            "time": np.repeat(cv.times, k),
            "cause": np.tile(np.array(causes, dtype=object), len(cv.times)),
            "cif": cif.ravel(), "se": se.ravel(), "lower": lo.ravel(), "upper": hi.ravel(),
            "se_cuminc": sec.ravel(), "n_risk": np.repeat(cv.n_risk, k),
            "n_event": cv.n_event.ravel(),
        })
        if by is not None:
            frame.insert(0, "group", g)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def cumulative_incidence(data: Any, by: str | None = None, *, times: Any = None,
                         conf_level: float = 0.95, conf_type: str = "log", rho: float = 0.0,
                         time: str = "time", status: str = "status", entry: str | None = None,
                         id: str = "site", censored: object = CENSORED) -> CumulativeIncidence:
    """Aalen-Johansen cumulative incidence of each cause of the first discontinuation.

    ``data``: a :class:`~imrsurv.History` (causes from the event log's
    ``cause`` column; empty cells are the cause ``unknown``) or a plain frame
    (see :func:`competing_risks_frame`). ``by``: a site column; one set of
    curves per level, and Gray's test (``rho``) across levels. ``times``: the
    summary's times (default every whole year to the last follow-up).
    ``conf_type``: ``log`` (R survfit's default), ``logit`` or ``plain``, on
    the infinitesimal-jackknife ``se``. Matches R ``survfit(Surv(time,
    factor(status)) ~ group, id=site)`` (``pstate``, ``std.err``) and
    ``cmprsk::cuminc`` (``est``, ``var`` as ``se_cuminc**2``, ``Tests``).
    """
    _check_common(by=by, conf_level=conf_level, conf_type=conf_type)
    rho = check_number("rho", rho)
    if times is not None:
        _check_times(times)
    cr = competing_risks_frame(data, by, time=time, status=status, entry=entry, id=id,
                               censored=censored)
    causes = _causes_of(cr)
    notes: list[str] = []
    if isinstance(data, pd.DataFrame):
        pass
    elif not getattr(data, "has_causes", False):
        notes.append("The event log has no cause column: every discontinuation has the one "
                     "cause 'discontinued' (the curve is 1 - Kaplan-Meier).")
    elif CAUSE_UNKNOWN in causes:
        n_unk = int((cr["status"] == CAUSE_UNKNOWN).sum())
        notes.append(f"{n_unk} first discontinuation(s) with an empty cause cell are the "
                     "cause 'unknown', a category of its own (not dropped, not redistributed).")
    if not causes:
        notes.append("No discontinuation is observed: every cumulative incidence is 0.")
    if by is None:
        parts = [(None, cr)]
    else:
        parts = [(g, cr[cr["group"] == g]) for g in _group_order(cr["group"])]
    fits = {g: (sub, sub["entry"].nunique() == 1) for g, sub in parts}
    n_sites = pd.Series({("all" if g is None else g): len(sub) for g, sub in parts})
    notes.append("Standard errors are the infinitesimal jackknife by site (R survfit's "
                 "std.err for multi-state curves); se_cuminc is cmprsk::cuminc's "
                 "delta-method error. Limits use se on the "
                 f"{conf_type} scale. Censoring is assumed independent of the cause.")
    if not all(same for _, same in fits.values()):
        notes.append("Sites enter at different times: the estimate handles late entry (risk "
                     "sets entry < t <= time); se_cuminc and Gray's test, which do not, are "
                     "left out.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        curves = _table(fits, None, causes, by, conf_level, conf_type)
    if times is None:
        t_end = float(cr["time"].max())
        grid = np.arange(0.0, np.floor(t_end) + 1)
        grid = grid[grid > 0] if len(grid) > 1 else grid
    else:
        grid = _check_times(times)
    summary = _table(fits, grid, causes, by, conf_level, conf_type)
    if summary["cif"].isna().any():
        notes.append("Times beyond a group's last follow-up are NaN (not extrapolated).")
    gray = None
    if by is not None and causes:
        try:
            gray = _gray_on(cr, rho, None)
        except DataError as exc:
            notes.append(f"Gray's test not computed: {exc.problems[0].message}")
    return CumulativeIncidence(curves, summary, causes, by, gray, notes, conf_level, conf_type,
                               fits, n_sites)


# ---------------------------------------------------------------------------
# restarts: sustained -> discontinued (cause k) <-> restarted
def cause_state(cause: str) -> str:
    """Label of the state "discontinued for ``cause``"."""
    return f"discontinued ({cause})"


def cause_spells(hist: Any) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """Spells with discontinued split by cause, and the states in order.

    The multi-state model of :mod:`imrsurv.models.multistate` with one
    discontinued state per cause: ``sustained -> discontinued (k)``,
    ``restarted -> discontinued (k)``, ``discontinued (k) -> restarted``. A
    discontinued spell takes the cause of the discontinuation that began it.
    Columns ``site, start, stop, state, next``.
    """
    if not (hasattr(hist, "spells") and callable(hist.spells)):
        raise ArgumentError([f"data must be a History, not {type(hist).__name__}"])
    sp = hist.spells().sort_values(["site", "start"], kind="stable").reset_index(drop=True)
    cause = (sp["cause"].to_numpy(dtype=object) if "cause" in sp.columns
             else np.where(sp["next"] == "discontinued", ANY_CAUSE, "").astype(object))
    site = sp["site"].to_numpy(dtype=object)
    same = np.r_[False, site[1:] == site[:-1]]
    began = np.concatenate([np.array([""], dtype=object), cause[:-1]])  # the spell before
    disc = (sp["state"] == "discontinued").to_numpy()
    if (disc & ~same).any():  # cannot happen for a History: every site starts sustained
        raise DataError([Problem("spells", None, str(s), "starts discontinued")
                         for s in site[disc & ~same]], "invalid spells")
    state = np.where(disc, [cause_state(c) for c in began], sp["state"].to_numpy(dtype=object))
    nxt = np.where(sp["next"] == "discontinued", [cause_state(c) for c in cause],
                   sp["next"].to_numpy(dtype=object))
    causes = sorted({c for c in cause[sp["next"] == "discontinued"]})
    causes = [c for c in causes if c != CAUSE_UNKNOWN] + [c for c in causes
                                                          if c == CAUSE_UNKNOWN]
    states = ("sustained", "restarted", *(cause_state(c) for c in causes))
    out = pd.DataFrame({"site": site, "start": sp["start"].to_numpy(float),
                        "stop": sp["stop"].to_numpy(float), "state": state.astype(object),
                        "next": nxt.astype(object)})
    return out, states


def cause_state_probabilities(hist: Any, times: Any, *, conf_level: float = 0.95,
                              conf_type: str = "log") -> pd.DataFrame:
    """Aalen-Johansen probability of being sustained, restarted or discontinued *for each cause*.

    The restarts model of :func:`~imrsurv.state_probabilities` with the
    discontinued state split by the cause that began it (:func:`cause_spells`),
    so a site that stopped for financing, restarted and stopped for workforce
    reasons is counted under workforce afterwards. Same estimator and
    infinitesimal-jackknife errors by site, as R ``survfit(Surv(start, stop,
    to) ~ 1, id=site, istate=state)``. Returns ``time, state, probability, se,
    lower, upper`` (long); times beyond the last follow-up are NaN.
    """
    _check_common(conf_level=conf_level, conf_type=conf_type)
    t = _check_times(times)
    sp, states = cause_spells(hist)
    code = {st: i for i, st in enumerate(states)}
    from_ = sp["state"].map(code).to_numpy(np.int64)
    to = sp["next"].map(code).fillna(-1).to_numpy(np.int64)
    clusters = pd.factorize(sp["site"], sort=True)[0]
    fit = _aalen_johansen(sp["start"].to_numpy(float), sp["stop"].to_numpy(float), from_, to,
                          clusters, len(states), eval_times=t, states=states)
    p, se = fit.eval_p.copy(), fit.eval_se.copy()
    late = t > fit.t_end
    p[late], se[late] = np.nan, np.nan
    lo, hi = _ci(p, se, conf_level, conf_type)
    out = pd.DataFrame({"time": np.repeat(t, len(states)),
                        "state": np.tile(np.array(states, dtype=object), len(t)),
                        "probability": p.ravel(), "se": se.ravel(), "lower": lo.ravel(),
                        "upper": hi.ravel()})
    out["state"] = pd.Categorical(out["state"], categories=states)
    out.attrs["notes"] = (["times beyond the last follow-up are NaN (not extrapolated)"]
                          if late.any() else [])
    return out

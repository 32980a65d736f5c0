"""Gray's (1988) k-sample test of cumulative incidence curves, as R ``cmprsk::cuminc``.

For one cause, groups g = 1..G: the score ``s_g = sum_t (1 - F(t-))^rho [d_g1(t) -
R_g(t) d_1(t) / sum_r R_r(t)]`` with ``R_g = n_g (1 - F_g(t-)) / S_g(t-)`` the
subdistribution risk set of group g (F_g its cumulative incidence, S_g its
all-cause Kaplan-Meier, F the pooled cumulative incidence), and its variance as
cmprsk's ``crstm``; ``s' V^-1 s`` on the first G - 1 groups is chi-square on G - 1
df. Strata: scores and variances summed over strata.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import DataError, Problem, bad_argument, check_number
from ._crdata import CENSORED, _causes_of, competing_risks_frame

__all__ = ["GrayTest", "gray_test"]


@dataclass
class GrayTest:
    """Gray's (1988) k-sample test of cumulative incidence, one row per cause."""

    table: pd.DataFrame  # cause, statistic, df, p
    groups: tuple[str, ...]
    rho: float
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"Gray's test of equal cumulative incidence across {len(self.groups)} groups "
                 f"({', '.join(self.groups)}); rho = {self.rho:g}"]
        for _, r in self.table.iterrows():
            lines.append(f"  {r['cause']:<16} chi-square = {r['statistic']:.4g} on "
                         f"{int(r['df'])} df, p = {r['p']:.3g}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return (f"<div><p>{html.escape(str(self).splitlines()[0])}</p>"
                f"{self.table.to_html(index=False, float_format=lambda v: f'{v:.4g}')}</div>")


def _gray_score(y: np.ndarray, m: np.ndarray, g: np.ndarray, ng: int, rho: float
                ) -> tuple[np.ndarray, np.ndarray]:
    """Score and variance of Gray's test in one stratum (cmprsk ``crst``).

    ``y`` sorted times, ``m`` 0 censored / 1 this cause / 2 other cause, ``g``
    group codes 0..ng-1. Loops over distinct times (each step needs the
    previous left-continuous CIF and KM of every group); vectorised over groups.
    """
    ng1 = ng - 1
    rs = np.bincount(g, minlength=ng).astype(float)
    f1m = np.zeros(ng)
    skmm = np.ones(ng)
    f1, skm = f1m.copy(), skmm.copy()
    v3 = np.zeros(ng)
    v2 = np.zeros((ng1, ng))
    c = np.zeros((ng, ng))
    v = np.zeros((ng1, ng1))
    s = np.zeros(ng1)
    fm = 0.0
    u, first = np.unique(y, return_index=True)
    last = np.r_[first[1:], len(y)]
    for lo, hi in zip(first, last, strict=True):
        d = np.zeros((3, ng))
        np.add.at(d, (m[lo:hi], g[lo:hi]), 1.0)
        nd1, nd2 = d[1].sum(), d[2].sum()
        if nd1 > 0 or nd2 > 0:
            at = rs > 0
            safe_rs = np.where(at, rs, 1.0)
            skm = np.where(at, skmm * (rs - d[1] - d[2]) / safe_rs, skm)
            f1 = np.where(at, f1m + skmm * d[1] / safe_rs, f1)
            h = np.where(at, rs / np.where(at, skmm, 1.0), 0.0)
            tr = h.sum()
            tq = np.where(at, rs * (1 - f1m) / np.where(at, skmm, 1.0), 0.0).sum()
            f = fm + nd1 / tr
            fb = (1 - fm) ** rho
            a = fb * (np.diag(h) - np.outer(h, h) / tr)
            c += a * nd1 / (tr * (1 - fm))
            s += np.where(at[:ng1], fb * (d[1, :ng1] - nd1 * h[:ng1] * (1 - f1m[:ng1]) / tq), 0)
            if nd1 > 0:
                with np.errstate(divide="ignore", invalid="ignore"):
                    t4 = np.where(skm > 0, 1 - (1 - f) / np.where(skm > 0, skm, 1.0), 1.0)
                    t5 = 1 - (nd1 - 1) / (tr * skmm - 1) if nd1 > 1 else np.ones(ng)
                    t3 = np.where(at, t5 * skmm * nd1 / (tr * safe_rs), 0.0)
                v3 += t4 ** 2 * t3
                t1 = a[:ng1] - t4[None, :] * c[:ng1]
                v2 += t1 * (t4 * t3)[None, :]
                v += (t1 * t3[None, :]) @ t1.T
            if nd2 > 0:
                use = (skm > 0) & (d[2] > 0)
                with np.errstate(divide="ignore", invalid="ignore"):
                    t4 = np.where(use, (1 - f) / np.where(skm > 0, skm, 1.0), 0.0)
                    t5 = np.where(d[2] > 1, 1 - (d[2] - 1) / (rs - 1), 1.0)
                    t3 = np.where(use, t5 * skmm ** 2 * d[2] / safe_rs ** 2, 0.0)
                v3 += t4 ** 2 * t3
                t1 = t4[None, :] * c[:ng1]
                v2 -= t1 * (t4 * t3)[None, :]
                v += (t1 * t3[None, :]) @ t1.T
            fm = f
        rs -= np.bincount(g[lo:hi], minlength=ng)
        f1m, skmm = f1.copy(), skm.copy()
    cc = c[:ng1]
    v = v + (cc * v3[None, :]) @ cc.T + cc @ v2.T + v2 @ cc.T
    return s, v


def _gray(cr: pd.DataFrame, causes: tuple[str, ...], groups: list, rho: float,
          strata: np.ndarray | None) -> pd.DataFrame:
    rows = []
    gcode = pd.Index(groups).get_indexer(cr["group"].to_numpy(dtype=object))
    y = (cr["time"] - cr["entry"]).to_numpy(float)
    strata = np.zeros(len(cr), np.int64) if strata is None else strata
    ng = len(groups)
    for cause in causes:
        m = np.where(cr["status"] == cause, 1, np.where(cr["status"] == CENSORED, 0, 2))
        s, v = np.zeros(ng - 1), np.zeros((ng - 1, ng - 1))
        for k in np.unique(strata):
            sel = np.flatnonzero(strata == k)
            sel = sel[np.argsort(y[sel], kind="stable")]
            sk, vk = _gray_score(y[sel], m[sel], gcode[sel], ng, rho)
            s, v = s + sk, v + vk
        try:
            stat = float(s @ np.linalg.solve(v, s))
        except np.linalg.LinAlgError:
            stat = np.nan
        rows.append({"cause": cause, "statistic": stat, "df": ng - 1,
                     "p": float(stats.chi2.sf(stat, ng - 1)) if np.isfinite(stat) else np.nan})
    return pd.DataFrame(rows)


def _group_order(values: pd.Series) -> list:
    return sorted(pd.unique(values), key=lambda v: (str(type(v)), v))


def gray_test(data: Any, by: str, *, rho: float = 0.0, strata: str | None = None,
              time: str = "time", status: str = "status", entry: str | None = None,
              id: str = "site", censored: object = CENSORED) -> GrayTest:
    """Gray's test that the cumulative incidence of each cause is equal across ``by``.

    As R ``cmprsk::cuminc(ftime, fstatus, group, rho=, strata=)$Tests``; data as
    :func:`competing_risks_frame`. ``strata``: a column (site column for a
    History) within which groups are compared, scores and variances summed.
    Needs every site to enter at the same time (Gray's test has no late entry).
    """
    if not isinstance(by, str):
        raise bad_argument("by", by, "the name of a column defining the groups")
    rho = check_number("rho", rho)
    cr = competing_risks_frame(data, by, time=time, status=status, entry=entry, id=id,
                               censored=censored)
    return _gray_on(cr, rho, _strata_codes(data, cr, strata))


def _strata_codes(data: Any, cr: pd.DataFrame, strata: str | None) -> np.ndarray | None:
    if strata is None:
        return None
    if not isinstance(strata, str):
        raise bad_argument("strata", strata, "None or the name of a column")
    if isinstance(data, pd.DataFrame):
        if strata not in data.columns:
            raise bad_argument("strata", strata, "a column of the data: "
                               + ", ".join(map(str, data.columns)))
        values = data[strata].to_numpy(dtype=object)
    else:
        sites = data.sites
        if strata not in sites.columns:
            raise bad_argument("strata", strata, "a site column: " + ", ".join(
                c for c in sites.columns if c != "site"))
        values = cr["site"].map(sites.set_index("site")[strata]).to_numpy(dtype=object)
    return pd.factorize(values, sort=True)[0].astype(np.int64)


def _gray_on(cr: pd.DataFrame, rho: float, strata: np.ndarray | None) -> GrayTest:
    if cr["entry"].nunique() > 1:
        raise DataError([Problem("data", None, None,
                                 "Gray's test needs every site to enter at the same time; "
                                 f"entries range from {cr['entry'].min():g} to "
                                 f"{cr['entry'].max():g} (late entry is not part of the test)")],
                        "cannot test")
    groups = _group_order(cr["group"])
    if len(groups) < 2:
        raise DataError([Problem("data", None, None,
                                 f"Gray's test needs two or more groups; only {groups!r}")],
                        "cannot test")
    causes = _causes_of(cr)
    table = _gray(cr, causes, groups, rho, strata)
    notes = ["Gray's (1988) test as R cmprsk::cuminc: weights (1 - F(t-))^rho on the "
             "subdistribution risk sets; sites are independent units (one row each)."]
    if strata is not None:
        notes.append("Stratified: scores and variances are summed over strata.")
    return GrayTest(table, tuple(map(str, groups)), rho, notes)

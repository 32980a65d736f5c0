"""One protocol for every fitted model: summary columns, intervals, p-values, notes, display.

Every result object (Cox, frailty, transitions, discrete-time, ...) offers

- ``params`` and ``se`` (pandas Series indexed by term),
- ``summary``: a DataFrame with the columns of :data:`SUMMARY_COLUMNS`, in that
  order, plus optional extras (``se_naive`` after ``se``; ``df`` before ``p``
  when a t reference is used, then the statistic column is ``t``, not ``z``),
  and a last column ``note`` that is empty unless the row cannot be read as an
  estimate (e.g. ``"diverges (monotone likelihood)"``),
- ``conf_int(level)``, ``pvalues``, ``notes`` (what the errors and tests account for),
- ``print_summary()``, ``_repr_html_()`` for notebooks, ``plot()`` returning Axes.

A row with a non-empty ``note`` never shows its hazard ratio, z or p as a number:
:func:`format_table` prints the note instead, and :func:`coef_table` leaves
those cells NaN.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["SUMMARY_COLUMNS", "HR_LIMIT", "coef_table", "format_table", "ResultProtocol",
           "forest_plot"]

SUMMARY_COLUMNS = ("coef", "exp(coef)", "se", "z", "p", "lower 95%", "upper 95%",
                   "exp(lower 95%)", "exp(upper 95%)")

# A hazard ratio beyond this is never printed as an estimate (|log HR| > 13.8).
HR_LIMIT = 1e6

DIVERGES = "diverges (monotone likelihood); see penalty=\"firth\""


def coef_table(params: pd.Series, se: pd.Series, *, se_naive: pd.Series | None = None,
               df: float | pd.Series | None = None, note: pd.Series | None = None,
               level: float = 0.95) -> pd.DataFrame:
    """Wald table in the standard layout.

    ``z = coef / se`` with a normal reference, or ``t`` on ``df`` degrees of
    freedom when ``df`` is given; limits ``coef -/+ q se``.  Rows with a
    non-empty ``note`` keep ``coef`` (the last iterate) but get NaN elsewhere.
    """
    params = params.astype(float)
    se = pd.Series(np.asarray(se, float), index=params.index)
    note = pd.Series("", index=params.index) if note is None else note.reindex(
        params.index).fillna("")
    stat = params / se
    if df is None:
        q = stats.norm.ppf(0.5 + level / 2)
        p = 2 * stats.norm.sf(np.abs(stat))
    else:
        dfs = pd.Series(np.broadcast_to(np.asarray(df, float), params.shape), index=params.index)
        q = stats.t.ppf(0.5 + level / 2, dfs)
        p = 2 * stats.t.sf(np.abs(stat), dfs)
    lo, hi = params - q * se, params + q * se
    pct = f"{100 * level:g}%"
    with np.errstate(over="ignore"):    # a diverging coefficient: its cells are NaN below
        ex, exlo, exhi = np.exp(params), np.exp(lo), np.exp(hi)
    cols: dict[str, Any] = {"coef": params, "exp(coef)": ex, "se": se}
    if se_naive is not None:
        cols["se_naive"] = se_naive.reindex(params.index)
    cols["z" if df is None else "t"] = stat
    if df is not None:
        cols["df"] = dfs
    cols.update({"p": pd.Series(p, index=params.index), f"lower {pct}": lo,
                 f"upper {pct}": hi, f"exp(lower {pct})": exlo, f"exp(upper {pct})": exhi})
    out = pd.DataFrame(cols)
    bad = note.to_numpy() != ""
    if bad.any():
        out.loc[bad, [c for c in out.columns if c not in ("coef", "se_naive", "df")]] = np.nan
    out["note"] = note
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, str):
        return v
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return ""
    if isinstance(v, (int, np.integer)):
        return str(v)
    v = float(v)
    if np.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.4g}"


def format_table(sm: pd.DataFrame, columns: Sequence[str] | None = None) -> str:
    """Plain-text table; a row with a note shows the note instead of its numbers.

    Hazard ratios (``exp(...)`` columns) above :data:`HR_LIMIT` or below its
    inverse are shown as ``">1e6"`` / ``"<1e-6"``: such a number is never an
    estimate worth reading.
    """
    cols = [c for c in (columns or [c for c in sm.columns if c != "note"]) if c in sm.columns]
    notes = sm["note"] if "note" in sm.columns else pd.Series("", index=sm.index)
    rows = []
    for term, row in sm.iterrows():
        if notes.loc[term]:
            rows.append([_fmt(row["coef"]) if "coef" in cols else ""] +
                        [""] * (len(cols) - 1) + [notes.loc[term]])
            continue
        cells = []
        for c in cols:
            v = row[c]
            if c.startswith("exp(") and isinstance(v, float) and np.isfinite(v):
                if v > HR_LIMIT:
                    cells.append(f">{HR_LIMIT:.0e}")
                    continue
                if 0 < v < 1 / HR_LIMIT:
                    cells.append(f"<{1 / HR_LIMIT:.0e}")
                    continue
            cells.append(_fmt(v))
        rows.append(cells + [""])
    has_note = bool(notes.astype(bool).any())
    header = [""] + cols + (["note"] if has_note else [])
    body = [[str(t)] + (r if has_note else r[:-1]) for t, r in zip(sm.index, rows, strict=True)]
    widths = [max(len(line[i]) for line in [header] + body) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [c.rjust(w) if i < len(cols) else c.ljust(w)
                for i, (c, w) in enumerate(zip(cells[1:], widths[1:], strict=True))]
        return "  ".join([first] + rest).rstrip()

    return "\n".join(line(r) for r in [header] + body)


def forest_plot(sm: pd.DataFrame, ax: Any = None, *, exponentiate: bool = True,
                xlabel: str | None = None) -> Any:
    """Point estimates with 95% limits; rows with a note are drawn as "not estimable".

    The axis spans only the finite, readable limits, so a diverging term cannot
    squeeze the others or crowd the tick labels.
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import LogLocator, NullFormatter

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 0.45 * len(sm) + 1.2))
    notes = sm["note"] if "note" in sm.columns else pd.Series("", index=sm.index)
    ok = notes.to_numpy() == ""
    pre = "exp(" if exponentiate else ""
    lim = [next(c for c in sm.columns if c.startswith(f"{pre}{side} "))
           for side in ("lower", "upper")]        # at the result's own level
    cols = ["exp(coef)" if exponentiate else "coef", *lim]
    est, lo, hi = (sm[c].to_numpy(float) for c in cols)
    y = np.arange(len(sm))[::-1]
    ref = 1.0 if exponentiate else 0.0
    lim_hi, lim_lo = (HR_LIMIT, 1 / HR_LIMIT) if exponentiate else (np.log(HR_LIMIT),
                                                                    -np.log(HR_LIMIT))
    ok &= np.isfinite(est) & np.isfinite(lo) & np.isfinite(hi)
    ok &= (lo > lim_lo) & (hi < lim_hi)
    if ok.any():
        ax.errorbar(est[ok], y[ok], xerr=[est[ok] - lo[ok], hi[ok] - est[ok]], fmt="o",
                    color="black", capsize=3)
        span = np.r_[lo[ok], hi[ok], ref]
    else:
        span = np.array([ref / 2, ref * 2]) if exponentiate else np.array([-1.0, 1.0])
    if exponentiate:
        ax.set_xscale("log")
        left, right = span.min() / 1.3, span.max() * 1.3
        ax.xaxis.set_major_locator(LogLocator(base=10, numticks=6))
        ax.xaxis.set_minor_formatter(NullFormatter())
    else:
        pad = 0.1 * (span.max() - span.min() or 1.0)
        left, right = span.min() - pad, span.max() + pad
    ax.set_xlim(left, right)
    ax.axvline(ref, color="grey", lw=0.8, ls="--")
    for yy, term_ok in zip(y, ok, strict=True):
        if not term_ok:
            mid = np.sqrt(left * right) if exponentiate else (left + right) / 2
            ax.text(mid, yy, "not estimable", ha="center", va="center", fontsize=8,
                    style="italic")
    ax.set_yticks(y)
    ax.set_yticklabels([str(t) for t in sm.index])
    ax.set_ylim(-0.7, len(sm) - 0.3)
    ax.set_xlabel(xlabel or ("hazard ratio (95% CI)" if exponentiate
                             else "log hazard ratio (95% CI)"))
    return ax


class ResultProtocol:
    """Mixin: needs ``params``, ``se``, ``summary`` and ``notes``; may override ``_header``.

    ``_display_columns`` names the summary columns the text table shows.
    """

    _display_columns: tuple[str, ...] | None = None

    @property
    def pvalues(self) -> pd.Series:
        """p-values of the summary table (NaN where a term is not estimable)."""
        sm = self.summary  # type: ignore[attr-defined]
        return sm["p"].rename("p")

    def conf_int(self, level: float = 0.95) -> pd.DataFrame:
        """Limits on the coefficient scale (``lower``, ``upper``), as in the summary.

        At ``level`` other than 0.95 the Wald limits are recomputed with the
        summary's reference distribution (normal, or t on its ``df``).
        """
        sm = self.summary  # type: ignore[attr-defined]
        pct = f"{100 * level:g}%"
        if f"lower {pct}" in sm.columns:
            out = sm[[f"lower {pct}", f"upper {pct}"]].copy()
        else:
            b, se = sm["coef"], sm["se"]
            q = (stats.t.ppf(0.5 + level / 2, sm["df"]) if "df" in sm.columns
                 else stats.norm.ppf(0.5 + level / 2))
            out = pd.DataFrame({"lower": b - q * se, "upper": b + q * se})
            if "note" in sm.columns:
                out.loc[sm["note"] != "", :] = np.nan
        out.columns = ["lower", "upper"]
        return out

    def _header(self) -> str:
        return type(self).__name__

    def summary_text(self) -> str:
        """The header, the coefficient table and the notes, as plain text."""
        sm = self.summary  # type: ignore[attr-defined]
        cols = list(self._display_columns) if self._display_columns else None
        notes = getattr(self, "notes", [])
        return "\n".join([self._header(), "", format_table(sm, cols), "", "Notes:"]
                         + [f"  - {n}" for n in notes])

    def print_summary(self) -> None:
        print(self.summary_text())

    def _repr_html_(self) -> str:
        sm = self.summary  # type: ignore[attr-defined]
        shown = sm.astype(object)
        for c in shown.columns:
            if c.startswith("exp("):
                big = shown[c].apply(lambda v: isinstance(v, float) and v > HR_LIMIT)
                shown.loc[big, c] = f">{HR_LIMIT:.0e}"
        if "note" in shown.columns:
            bad = (shown["note"] != "").to_numpy()
            shown.loc[bad, [c for c in shown.columns if c not in ("coef", "note")]] = ""
        head = "<br>".join(html.escape(line) for line in self._header().splitlines())
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in getattr(self, "notes", []))
        table = shown.to_html(float_format=lambda v: f"{v:.4g}", na_rep="")
        return f"<div><p>{head}</p>{table}<ul>{notes}</ul></div>"

    def plot(self, ax: Any = None, *, exponentiate: bool = True) -> Any:
        """Forest plot of the summary's estimates and 95% limits; returns the Axes."""
        return forest_plot(self.summary, ax, exponentiate=exponentiate)  # type: ignore[attr-defined]

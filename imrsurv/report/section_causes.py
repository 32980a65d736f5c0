"""Report section ``causes``: cumulative incidence by cause, Gray's test, Fine-Gray models.

Asked for with ``sections = [..., "causes"]``. Needs a ``cause`` column in the
event log (on discontinue rows); without one the section raises
:class:`DataError`, so the PDF says the section could not be estimated and
why (the report's usual degradation) and the rest is still written.
"""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..errors import DataError

TITLE = "Causes of discontinuation"
MIN_EVENTS = 5  # a Fine-Gray model is fitted for causes with at least this many first events


def section_causes(ctx: Any) -> None:
    """Add the causes pages to ``ctx.doc`` (a report ``_Context``)."""
    from ..models.causes import cumulative_incidence
    from . import figures
    from .build import NUMERICAL_FAILURES, _ci_text, _fit, _formula, _p_text, _reason, diverging

    hist = ctx.hist
    if not getattr(hist, "has_causes", False):
        raise DataError(["the event log has no cause column, so causes of discontinuation "
                         "cannot be analysed (add a 'cause' column on the discontinue rows: "
                         "financing, priorities, workforce, ...; an empty cell means unknown)"],
                        "no causes")
    d = ctx.doc
    times = _times(ctx)
    res = cumulative_incidence(hist, by=ctx.group, times=times)
    if not res.causes:
        raise DataError(["no site discontinued, so there is no cause to analyse"], "no causes")
    d.heading(TITLE)
    counts = _first_counts(res)
    d.paragraph("First discontinuations by cause: " + ", ".join(
        f"{c} {counts[c]}" for c in res.causes) + f" (of {int(res.n_sites.sum())} sites).")
    overall = res if ctx.group is None else cumulative_incidence(hist, times=times)
    fig, ax = plt.subplots(figsize=(7.5, 4.0))
    bands = len(res.causes) <= 2
    overall.plot(ax=ax, ci=bands)
    d.figure(figures.drawing(fig), "Cumulative incidence of the first discontinuation by cause "
             "(Aalen-Johansen, all sites"
             + ("; shaded: 95% CI from infinitesimal-jackknife errors by site)" if bands else
                "; 95% CIs from infinitesimal-jackknife errors by site are in the table: bands "
                "for more than two causes would overlap)")
             + ". The curves add up to 1 minus the Kaplan-Meier probability of not yet having "
             "discontinued.")
    d.table(_cif_table(ctx, overall.summary, "all"), caption="Cumulative incidence by cause at "
            "yearly times, all sites (95% CI).")
    if ctx.group is not None:
        for g in pd.unique(res.summary["group"]):
            sub = res.summary[res.summary["group"] == g]
            d.table(_cif_table(ctx, sub, g), caption=f"Cumulative incidence by cause, "
                    f"{ctx.label(ctx.group)} = {g} (95% CI).")
        if res.gray is not None:
            gt = res.gray.table
            d.table(pd.DataFrame({
                "Cause": gt["cause"], "Chi-square": [f"{v:.2f}" for v in gt["statistic"]],
                "df": gt["df"].astype(int), "p": [_p_text(v) for v in gt["p"]]}),
                caption=f"Gray's test of equal cumulative incidence across "
                        f"{ctx.label(ctx.group)}.")
            ctx.cite("GRAY")
        else:
            d.paragraph("Gray's test was not computed: " + "; ".join(
                n for n in res.notes if n.startswith("Gray")))

    ctx.methods.append(
        "Causes of the first discontinuation were analysed as competing risks: cumulative "
        "incidence by cause with the Aalen-Johansen estimator and infinitesimal-jackknife "
        "errors by site (as R survfit); an empty cause is its own category, 'unknown'"
        + ("; groups were compared with Gray's test (as R cmprsk::cuminc)." if ctx.group
           else "."))
    ctx.cite("AJ")

    # Fine-Gray models for the causes with enough events
    rows = []
    try:
        formula = _formula(ctx)
    except DataError as exc:
        formula = None
        d.paragraph(f"No Fine-Gray model was fitted: {_reason(exc)}")
    firth = ctx.spec.test == "firth-lrt"
    if formula is not None:
        from ..models.finegray import fit_fine_gray

        for cause in res.causes:
            if counts.get(cause, 0) < MIN_EVENTS:
                ctx.failures.append((f"Fine-Gray model for {cause}",
                                     f"{counts.get(cause, 0)} first discontinuations "
                                     f"(fewer than {MIN_EVENTS})"))
                continue
            try:
                f, warned = _fit(ctx, lambda c=cause: fit_fine_gray(
                    hist, formula, cause=c, ties=ctx.spec.ties,
                    penalty="firth" if firth else None))
            except (DataError, *NUMERICAL_FAILURES) as exc:
                ctx.failures.append((f"Fine-Gray model for {cause}",
                                     f"{type(exc).__name__}: {_reason(exc)}"))
                continue
            sm, div = f.summary, diverging(f, warned)
            for term in sm.index:
                ok = not bool(div.get(term, False))
                rows.append({"Cause": cause, "Term": ctx.label(term),
                             "Subdistribution HR": (f"{sm.loc[term, 'exp(coef)']:.2f}" if ok
                                                    else "not estimable"),
                             ("95% CI (profile)" if firth else "95% CI (robust)"):
                                 (_ci_text([sm.loc[term, "exp(lower 95%)"]],
                                           [sm.loc[term, "exp(upper 95%)"]])[0]
                                  if ok else "diverges (monotone likelihood)"),
                             "p": _p_text(sm.loc[term, "p"]) if ok else "–",
                             "Events": f.n_events})
    if rows:
        how = ("Firth-penalised fits (finite under a monotone likelihood), penalised "
               "likelihood-ratio p and profile penalised-likelihood limits" if firth else
               "Lin-Wei robust errors by site, Wald p and limits")
        d.table(pd.DataFrame(rows), caption="Fine-Gray subdistribution hazard ratios for the "
                f"first discontinuation by cause (time-varying covariates; {how}). A ratio "
                "above 1 means a higher cumulative incidence of that cause.")
        ctx.cite("FG", "GESKUS", "LW", *(("FIRTH",) if firth else ()))
        ctx.methods.append(
            "Fine-Gray subdistribution hazard models were fitted for each cause with at least "
            f"{MIN_EVENTS} first discontinuations, as weighted Cox models on the counting-process "
            "layout of R survival::finegray (sites that stopped for another cause stay at risk "
            "with inverse-probability-of-censoring weights)"
            + (", Firth-penalised (Heinze & Schemper 2001) with penalised likelihood-ratio "
               "tests and profile limits." if firth else ", with robust errors by site."))


def _times(ctx: Any) -> list[float]:
    from .build import _yearly

    return _yearly(ctx)


def _first_counts(res: Any) -> dict[str, int]:
    cv = res.curves
    return {c: int(cv.loc[cv["cause"] == c, "n_event"].sum()) for c in res.causes}


def _cif_table(ctx: Any, summary: pd.DataFrame, group: object) -> pd.DataFrame:
    t = summary.copy()
    t["cell"] = [("–" if np.isnan(v) else f"{v:.2f}") if (np.isnan(lo) or np.isnan(hi)) else
                 f"{v:.2f} ({lo:.2f}–{hi:.2f})"
                 for v, lo, hi in zip(t["cif"], t["lower"], t["upper"], strict=True)]
    wide = t.pivot(index="cause", columns="time", values="cell")
    wide = wide.reindex([c for c in pd.unique(t["cause"])])
    wide.columns = [f"Year {c:g}" for c in wide.columns]
    wide.index.name = "Cause"
    return wide.reset_index()

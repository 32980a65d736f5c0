"""Report section ``predictions``: trajectories of a typical site, with uncertainty.

Asked for with ``sections = [..., "predictions"]``. For a *typical site* (the
sites' median team size, their more common training access, no recent
leadership change) and, when the models use leadership, the same site with a
new leader in year ``analysis.change_year`` (default 2):

* state probabilities (sustained / discontinued / restarted) from the
  transition-specific Cox models, with 95% limits from infinitesimal-jackknife
  errors by site (:meth:`TransitionsResult.predict`), as a figure and a table;
* expected years in each state up to the horizon;
* with an annual panel, the discrete-time survival curve (Hunter et al. 2015
  style) for the same profile, with delta-method limits on the CR2 covariance.

The Cox models are Firth-penalised when the report's test is ``firth-lrt`` (the
default), so a monotone likelihood at 9-49 sites still gives finite curves. A
part that cannot be estimated (a transition without events, a diverging
coefficient under ``test = "wald"``) is replaced by a sentence saying why; the
other parts are still shown.
"""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..errors import DataError

TITLE = "Predicted trajectories with uncertainty"
DERIVED = ("recent_leader_change", "leader_changes")


def section(ctx: Any) -> None:
    """Add the predictions pages to ``ctx.doc`` (a report ``_Context``)."""
    from .build import NUMERICAL_FAILURES, _formula, _reason

    d = ctx.doc
    d.heading(TITLE)
    horizon = float(ctx.spec.horizon)
    change = float(getattr(ctx.spec, "change_year", 2.0))
    try:
        formula = _formula(ctx)
    except DataError as exc:
        formula = None
        d.paragraph(f"No transition model could be set up: {_reason(exc)}")
    shown = False
    if formula is not None:
        try:
            shown = _transition_part(ctx, formula, horizon, change)
        except (DataError, *NUMERICAL_FAILURES) as exc:
            plt.close("all")
            d.paragraph("State probabilities for a typical site could not be estimated on these "
                        f"data: {_reason(exc)}")
            ctx.failures.append(("Predicted state probabilities",
                                 f"{type(exc).__name__}: {_reason(exc)}"))
    discrete = False
    if ctx.panel is not None:
        try:
            discrete = _discrete_part(ctx)
        except (DataError, *NUMERICAL_FAILURES) as exc:
            plt.close("all")
            d.paragraph(f"The discrete-time survival curve could not be estimated: "
                        f"{_reason(exc)}")
            ctx.failures.append(("Discrete-time survival curve",
                                 f"{type(exc).__name__}: {_reason(exc)}"))
    else:
        d.paragraph("No annual panel was given, so no discrete-time survival curve is shown.")
    if not shown and not discrete:
        return
    ctx.cite("ANDERSEN", "AJ", "LW")
    if discrete:
        ctx.cite("HUNTER")


def typical_profile(frame: pd.DataFrame, terms: list[str], time: str = "start"
                    ) -> dict[str, float]:
    """Median of each numeric term over the sites' first rows (0/1 terms: the majority).

    ``time`` orders each site's rows. Leadership terms derived by the History are
    0 (no recent change, none so far).
    """
    first = frame.sort_values(["site", time], kind="stable").groupby("site", sort=True).head(1)
    out: dict[str, float] = {}
    for t in terms:
        if t in DERIVED:
            out[t] = 0.0
            continue
        v = pd.to_numeric(first[t], errors="coerce").dropna()
        if v.empty:
            raise DataError([f"covariate {t!r} has no numeric values at the sites' start"],
                            "no typical value")
        binary = set(np.unique(v)) <= {0.0, 1.0}
        out[t] = float(v.mean() >= 0.5) if binary else float(v.median())
    return out


def _describe(ctx: Any, profile: dict[str, float]) -> str:
    return ", ".join(f"{ctx.label(k)} {v:g}" for k, v in profile.items() if k not in DERIVED)


def _transition_part(ctx: Any, formula: str, horizon: float, change: float) -> bool:
    from ..models.transitions import fit_transitions
    from . import figures
    from .build import _fit, _yearly

    d = ctx.doc
    penalty = "firth" if ctx.spec.test == "firth-lrt" else None
    res, _ = _fit(ctx, lambda: fit_transitions(ctx.hist, formula, ties=ctx.spec.ties,
                                               penalty=penalty))
    terms = [t.strip() for t in formula.split("+")]
    prof = typical_profile(ctx.hist.counting_process("ag"), terms)
    profiles: list[tuple[str, Any]] = [("typical site, no leadership change", prof)]
    uses_leader = any(t in DERIVED for t in terms)
    if uses_leader and change < res.last_time:
        path = pd.DataFrame({"time": [0.0, change], "leadership_change": [0, 1],
                             **{k: [v, v] for k, v in prof.items() if k not in DERIVED}})
        profiles.append((f"new leader in year {change:g}", path))
    h = min(horizon, res.last_time)
    times = [t for t in _yearly(ctx) if t <= res.last_time]
    preds = [(label, res.predict(p, times, horizon=h)) for label, p in profiles]
    fine = [(label, res.predict(p, None)) for label, p in profiles]
    fig, axes = plt.subplots(1, len(fine), figsize=(7.5 if len(fine) > 1 else 6.0, 3.6),
                             sharey=True, squeeze=False)
    for ax, (label, pr) in zip(axes[0], fine, strict=True):
        pr.plot(ax=ax, title=label)
        ax.set_xlim(0, h)
    fig.tight_layout()
    fitted = "Firth-penalised " if penalty else ""
    d.paragraph(f"Predictions from the {fitted}transition-specific Cox models "
                f"({' + '.join(ctx.label(t) for t in terms)}) for a typical site: "
                f"{_describe(ctx, prof)}"
                + (f"; and the same site with a new leader in year {change:g}" if
                   len(profiles) > 1 else "") + ".")
    d.figure(figures.drawing(fig), "Predicted probability of each state (steps) with pointwise "
             "95% limits (shaded; log scale, infinitesimal-jackknife errors by site, which "
             "include the estimation of every coefficient and baseline hazard).")
    for label, pr in preds:
        d.table(_prob_table(pr), caption=f"State probabilities (95% CI), {label}.")
    d.table(_years_table(preds, h), caption=f"Expected years in each state over the first "
            f"{h:g} years (95% CI)" + (f"; the last follow-up ({res.last_time:g} years) comes "
                                       f"before the horizon ({horizon:g})" if h < horizon
                                       else "") + ".")
    ctx.methods.append(
        "Predicted state probabilities for covariate profiles come from the transition-specific "
        f"{fitted}Cox models by the product integral of their cumulative hazards (a product of "
        "matrix exponentials exp(dA), R's default for multi-state models, which stays a "
        "probability when a small risk set gives a large increment); expected years in a "
        "state are its area under the curve. Standard errors are the infinitesimal jackknife "
        "by site of the whole prediction (checked against a site bootstrap in the test "
        "suite); limits are pointwise.")
    return True


def _cells(values: Any, lower: Any, upper: Any) -> list[str]:
    """``"p (lo–hi)"``; ``"p"`` alone without finite limits; ``"–"`` without a value."""
    return [("–" if not np.isfinite(v) else f"{v:.2f}") if not (np.isfinite(lo)
                                                               and np.isfinite(hi))
            else f"{v:.2f} ({lo:.2f}–{hi:.2f})"
            for v, lo, hi in zip(values, lower, upper, strict=True)]


def _prob_table(pr: Any) -> pd.DataFrame:
    t = pr.probabilities
    wide = t.assign(cell=_cells(t["probability"], t["lower"], t["upper"])).pivot(
        index="time", columns="state", values="cell")
    wide.columns = [str(c).capitalize() for c in wide.columns]
    wide.index = [f"Year {v:g}" for v in wide.index]
    wide.index.name = "Time"
    return wide.reset_index()


def _years_table(preds: list[tuple[str, Any]], h: float) -> pd.DataFrame:
    rows = []
    for label, pr in preds:
        ey = pr.expected_years
        rows.append({"Profile": label, **{
            str(s).capitalize(): f"{y:.2f} ({lo:.2f}–{hi:.2f})"
            for s, y, lo, hi in zip(ey["state"], ey["years"], ey["lower"], ey["upper"],
                                    strict=True)}})
    return pd.DataFrame(rows)


def _discrete_part(ctx: Any) -> bool:
    from ..models.discrete import fit_discrete_time
    from . import figures

    d = ctx.doc
    cols = set(ctx.panel.columns)
    terms = [c for c in ctx.spec.model_covariates if c in cols]
    formula = ctx.spec.discrete_formula or " + ".join(["C(year)", *terms])
    res = fit_discrete_time(ctx.panel, formula, link=ctx.spec.link, cluster="site")
    used = [t for t in terms if t in formula]
    prof = typical_profile(ctx.panel, used, time="year") if used else {}
    pred = res.predict_survival(prof)
    fig, ax = plt.subplots(figsize=(6.0, 3.4))
    res.plot_survival(pred, ax=ax)
    ax.set_ylim(0, 1.02)
    fig.tight_layout()
    d.paragraph("Discrete-time model of the annual interviews (Hunter et al. 2015 style): the "
                "probability that the programme is still running, by year, for the typical "
                "site" + (f" ({_describe(ctx, prof)})" if prof else "") + ".")
    d.figure(figures.drawing(fig), "Discrete-time survival S(t) = prod (1 - h_k) with 95% "
             "limits (log-log scale, delta method on the cluster-robust CR2 covariance).")
    lo_col = next(c for c in pred.columns if c.startswith("lower"))
    hi_col = next(c for c in pred.columns if c.startswith("upper"))
    cells = _cells(pred["survival"], pred[lo_col], pred[hi_col])
    d.table(pd.DataFrame({"Interview year": [f"{v:g}" for v in pred["period"]],
                          "Annual hazard": [f"{v:.3f}" for v in pred["hazard"]],
                          "Still running (95% CI)": cells}),
            caption="Discrete-time survival for the typical site.")
    notes = [n for n in pred.attrs.get("notes", []) if "NaN" in n]
    if notes:
        d.bullets(notes)
    ctx.methods.append("The discrete-time survival curve multiplies the predicted annual "
                       "survival probabilities; its limits come from the delta method on the "
                       "cluster-robust (CR2) covariance of the coefficients.")
    return True

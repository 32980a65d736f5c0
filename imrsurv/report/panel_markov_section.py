"""Report section ``panel_markov``: states seen only at interviews (waves).

Reads ``[data] waves`` (site, time, state, covariates; :func:`imrsurv.read_waves`),
fits the continuous-time Markov model (:func:`imrsurv.fit_panel_markov`, the
method of R msm) with ``[analysis] waves_formula`` (default: the model
covariates present in the wave table) and shows the interview transitions,
intensities, hazard ratios, mean sojourn times and the state occupation at the
horizon from *sustained* with 95% limits, and a figure of occupation over
time. Without wave data the section says so; rows the data cannot estimate are
printed as notes, never as numbers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

TITLE = "Status seen at interviews: continuous-time Markov model"
REFS = ("KL", "MSM")  # keys of .references.REFERENCES this section cites


def check_waves(files: dict) -> None:
    """Read the wave table so that invalid waves stop the report before any page."""
    if "waves" in files:
        from ..waves import read_waves

        read_waves(files["waves"])


def _ci(lo: Any, hi: Any, fmt: str = "{:.3f}") -> list[str]:
    return ["–" if not (np.isfinite(a) and np.isfinite(b)) else f"{fmt.format(a)}–{fmt.format(b)}"
            for a, b in zip(np.asarray(lo, float), np.asarray(hi, float), strict=True)]


def _p(p: float) -> str:
    if p != p:
        return "–"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def section(ctx: Any) -> None:
    """Write the section into ``ctx.doc`` (a :class:`imrsurv.report.build._Context`)."""
    from ..models.panel_markov import BASELINE, fit_panel_markov
    from ..waves import read_waves
    from . import figures

    d, sp = ctx.doc, ctx.spec
    files = sp.input_files()
    if "waves" not in files:
        d.heading(TITLE)
        d.paragraph("No interview waves were given (spec: [data] waves = \"waves.csv\" with "
                    "columns site, time, state and covariates), so no panel-observed Markov "
                    "model was fitted.")
        return
    waves = read_waves(files["waves"])
    formula = getattr(sp, "waves_formula", None)
    if not formula:
        terms = [c for c in sp.model_covariates if c in waves.covariates]
        formula = " + ".join(terms) or None
    res = fit_panel_markov(waves, formula)
    d.heading(TITLE)
    times = np.sort(waves.frame["time"].unique())
    shown = ", ".join(f"{t:g}" for t in times[:12]) + (", ..." if times.size > 12 else "")
    d.paragraph(f"{waves.n_sites} sites, {len(waves.frame)} interviews at times {shown}. "
                "Only the state at each interview is known; the model integrates over what "
                "happened in between, with transition intensities constant between interviews"
                + (f" and covariate effects ({', '.join(ctx.label(t) for t in res.terms)}) "
                   "taken at the start of each interval" if res.terms else "") + ".")
    tab = waves.statetable()
    tab.insert(0, "At an interview", tab.index.astype(str))
    tab.columns = ["At an interview"] + [f"next: {c}" for c in tab.columns[1:]]
    d.table(tab, caption="Consecutive interviews: state at one and at the next (R msm's "
            "statetable).", fmt="{:.0f}")
    q = res.intensities
    d.table(pd.DataFrame({
        "Transition": q.index,
        "Intensity per year": [f"{v:.3f}" if not n else "not estimable"
                               for v, n in zip(q["estimate"], q["note"], strict=True)],
        "95% CI": _ci(q["lower"], q["upper"]),
        "Note": q["note"]}), caption="Transition intensities" + (" at covariates 0" if
                                                                 res.terms else "") +
        "; limits exp(log q -/+ 1.96 se).")
    sm = res.summary
    hr = sm[sm.index.get_level_values("term") != BASELINE]
    if len(hr):
        ok = (hr["note"] == "").to_numpy()
        d.table(pd.DataFrame({
            "Transition": hr.index.get_level_values("transition"),
            "Term": [ctx.label(t) for t in hr.index.get_level_values("term")],
            "Hazard ratio": [f"{v:.2f}" if k else "not estimable"
                             for v, k in zip(hr["exp(coef)"], ok, strict=True)],
            "95% CI": _ci(hr["exp(lower 95%)"], hr["exp(upper 95%)"], "{:.2f}"),
            "p": [_p(v) for v in hr["p"]]}),
            caption="Hazard ratios of the transition intensities (Wald, observed information).")
    horizon = float(sp.horizon)
    if "sustained" in res.states:
        occ = res.occupation(horizon, initial="sustained")
        d.table(pd.DataFrame({"State": occ["state"],
                              "Probability": [f"{v:.3f}" for v in occ["probability"]],
                              "95% CI": _ci(occ["lower"], occ["upper"])}),
                caption=f"Estimated state occupation at {horizon:g} years for a site sustained "
                "at time 0" + (" with covariates 0" if res.terms else "") +
                " (rows of P(0, t); delta-method limits on the logit scale).")
        ax = res.plot_occupation(horizon, initial="sustained")
        d.figure(figures.drawing(ax.figure), f"State occupation from sustained at time 0 to "
                 f"{horizon:g} years, 95% delta-method bands.")
    soj = res.sojourn()
    d.table(pd.DataFrame({"State": soj.index, "Mean years per stay": [f"{v:.2f}" for v in
                                                                       soj["estimate"]],
                          "95% CI": _ci(soj["lower"], soj["upper"], "{:.2f}")}),
            caption="Mean sojourn time -1/q_rr in each transient state.")
    d.bullets(list(res.notes))
    ctx.methods.append("States seen only at interviews were analysed with a continuous-time "
                       "Markov multi-state model (Kalbfleisch & Lawless 1985), likelihood and "
                       "standard errors as R msm (Jackson 2011).")
    for key in REFS:
        ctx.cite(key)

"""Run the analyses a spec asks for and lay them out as a PDF.

Each ``_section_*`` function adds pages to the document and returns the
methods sentences and references for what it actually ran; the methods
section is assembled from those, so it never describes an analysis that was
not done.
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .. import __version__
from ..errors import DataError
from ..history import History, read_history
from . import figures
from .pdf import TEXT_WIDTH, Document
from .provenance import input_table, versions
from .spec import ReportSpec, load_spec

REFERENCES = {
    "AG": "Andersen PK, Gill RD (1982). Cox's regression model for counting processes: a large "
          "sample study. Annals of Statistics 10:1100-1120.",
    "PWP": "Prentice RL, Williams BJ, Peterson AV (1981). On the regression analysis of "
           "multivariate failure time data. Biometrika 68:373-379.",
    "WLW": "Wei LJ, Lin DY, Weissfeld L (1989). Regression analysis of multivariate incomplete "
           "failure time data by modeling marginal distributions. JASA 84:1065-1073.",
    "LW": "Lin DY, Wei LJ (1989). The robust inference for the Cox proportional hazards model. "
          "JASA 84:1074-1078.",
    "AJ": "Aalen OO, Johansen S (1978). An empirical transition matrix for non-homogeneous Markov "
          "chains based on censored observations. Scand J Statist 5:141-150.",
    "LN": "Lawless JF, Nadeau C (1995). Some simple robust methods for the analysis of recurrent "
          "events. Technometrics 37:158-168.",
    "KM": "Kaplan EL, Meier P (1958). Nonparametric estimation from incomplete observations. "
          "JASA 53:457-481.",
    "GT": "Grambsch PM, Therneau TM (1994). Proportional hazards tests and diagnostics based on "
          "weighted residuals. Biometrika 81:515-526.",
    "DT": "Singer JD, Willett JB (1993). It's about time: using discrete-time survival analysis to "
          "study duration and the timing of events. J Educ Stat 18:155-195.",
    "BOND": "Bond GR, Drake RE, McHugo GJ, Peterson AE, Jones AM, Williams J (2014). Long-term "
            "sustainability of evidence-based practices in community mental health agencies. "
            "Adm Policy Ment Health 41:228-236.",
}


@dataclass
class _Context:
    spec: ReportSpec
    hist: History
    panel: pd.DataFrame | None
    doc: Document
    methods: list[str] = field(default_factory=list)
    refs: list[str] = field(default_factory=list)

    def cite(self, *keys: str) -> None:
        for k in keys:
            if k not in self.refs:
                self.refs.append(k)

    @property
    def group(self) -> str | None:
        g = self.spec.group
        return g if g and g in self.hist.sites.columns else None


def report(spec: str | Path | dict, out: str | Path, *, command: str | None = None) -> Path:
    """Build the PDF report a spec describes and write it atomically to ``out``.

    Invalid data stops with :class:`DataError` before any page is written.
    """
    out = Path(out)
    if not out.parent.exists():
        raise DataError([f"output directory {out.parent} does not exist"], "cannot write report")
    sp = load_spec(spec)
    hist, panel = _load_data(sp)
    figures.style()
    doc = Document(sp.title)
    ctx = _Context(sp, hist, panel, doc)
    _title_page(ctx)
    sections = {"summary": _section_summary, "bond": _section_bond, "km": _section_km,
                "mcf": _section_mcf, "states": _section_states,
                "recurrent": _section_recurrent, "ph": _section_ph,
                "discrete": _section_discrete, "frailty": _section_frailty}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for name in sp.sections:
            sections[name](ctx)
    _section_methods(ctx, caught)
    _section_provenance(ctx, command or "imrsurv " + " ".join(sys.argv[1:]))
    return doc.save(out)


def _load_data(sp: ReportSpec) -> tuple[History, pd.DataFrame | None]:
    files = sp.input_files()
    hist = read_history(files["events"], files.get("covariates"), files.get("sites"),
                        time_unit=sp.time_unit, recent_window=sp.recent_window)
    panel = None
    if "panel" in files:
        from ..panel import read_panel

        panel = read_panel(files["panel"])
    return hist, panel


# -- pages -----------------------------------------------------------------------------
def _title_page(ctx: _Context) -> None:
    d, sp = ctx.doc, ctx.spec
    d.spacer(4 * 28.35)
    d.paragraph(sp.title, "title")
    if sp.subtitle:
        d.paragraph(sp.subtitle, "subtitle")
    d.spacer(28.35)
    if sp.authors:
        d.paragraph(sp.authors, "subtitle")
    d.paragraph(f"Data as of {sp.data_date}" if sp.data_date else "Data date not given", "subtitle")
    source = f"shipped dataset '{sp.dataset}'" if sp.dataset else ", ".join(
        p.name for p in sp.input_files().values())
    d.paragraph(f"Data: {source}. {ctx.hist.n_sites} sites.", "subtitle")
    d.paragraph(f"Produced by imrsurv {__version__}", "subtitle")
    if sp.description:
        d.spacer(28.35)
        d.paragraph(sp.description)
    d.page_break()
    d.heading("Contents")
    d.contents()
    d.page_break()


def _section_summary(ctx: _Context) -> None:
    d, h = ctx.doc, ctx.hist
    d.heading("Data and validation")
    d.paragraph(f"{h.n_sites} sites followed for up to {h.sites['exit'].max():g} years. Every input "
                "row was checked (event order, times, covariates); the table says what was read, "
                "used and set aside.")
    d.table(h.accounting.table, caption="Rows read, used and set aside, per input.")
    if len(h.accounting.set_aside):
        d.table(h.accounting.set_aside, caption="Rows set aside and why.")
    s = h.summary(by=ctx.group).reset_index().rename(columns={"index": ctx.group or "group"})
    d.table(s, caption="Sites, person-years active and discontinued, discontinuations and "
                       "restarts.", fmt="{:.1f}")
    if h.covariate_names:
        d.paragraph("Covariates: " + ", ".join(h.covariate_names) + ". Derived: leader_changes "
                    f"(cumulative), recent_leader_change (1 for {h.recent_window:g} year(s) after a "
                    "change).")


def _section_bond(ctx: _Context) -> None:
    from ..models.multistate import bond_status

    d, sp = ctx.doc, ctx.spec
    res = bond_status(ctx.hist, horizon=sp.horizon, by=ctx.group)
    d.heading(f"Programme status at {sp.horizon:g} years")
    d.paragraph("Sustained: never discontinued; restarted: discontinued and active again at the "
                "horizon; discontinued: not active at the horizon. Crude counts are among sites "
                "followed to the horizon; the Aalen-Johansen estimates use every site, including "
                "those censored earlier.")
    d.table(_bond_wide(res.table), caption=f"Status at {sp.horizon:g} years: crude counts (% of "
            "sites followed to the horizon) and Aalen-Johansen probabilities (95% CI).")
    if res.notes:
        d.bullets(list(res.notes))
    sites = ctx.hist.sites
    status = ctx.hist.status_at(sp.horizon)
    per_site = pd.DataFrame({"site": sites["site"]})
    if ctx.group:
        per_site[ctx.group] = sites[ctx.group].to_numpy()
    per_site["follow-up"] = (sites["exit"] - sites["entry"]).to_numpy()
    per_site["discontinuations"] = sites["discontinuations"].to_numpy()
    per_site["restarts"] = sites["restarts"].to_numpy()
    per_site[f"status at {sp.horizon:g}"] = status.reindex(sites["site"]).astype(str).to_numpy()
    widths = [0.34, 0.14, 0.12, 0.14, 0.1, 0.16] if ctx.group else [0.4, 0.15, 0.15, 0.12, 0.18]
    d.table(per_site, caption="Each site's history and status.", fmt="{:.2f}",
            col_widths=[w * TEXT_WIDTH for w in widths])
    ctx.methods.append(f"Status at {sp.horizon:g} years was classified as in Bond et al. (2014): "
                       "sustained, discontinued and restarted, or discontinued. Besides crude "
                       "proportions, state occupation probabilities were estimated with the "
                       "Aalen-Johansen estimator of a three-state model (sustained, discontinued, "
                       "restarted), which is consistent under censoring and staggered entry.")
    ctx.cite("BOND", "AJ")


def _section_km(ctx: _Context) -> None:
    from ..models.km import km_first

    d = ctx.doc
    res = km_first(ctx.hist, by=ctx.group, times=_yearly(ctx))
    d.heading("Time to first discontinuation")
    ax = res.plot(at_risk_rows=("At risk",))
    d.figure(figures.drawing(ax.figure), "Kaplan-Meier estimate of the probability of not yet "
             "having discontinued, with the number of sites at risk.")
    d.table(_wide(res.table, "survival"), caption="Kaplan-Meier probability of not yet having "
            "discontinued at yearly times (95% CI).")
    lr = getattr(res, "logrank", None)
    if lr is not None:
        d.paragraph(f"Log-rank test across groups: chi-square = {lr['statistic']:.2f} on "
                    f"{int(lr['df'])} df, p = {lr['p']:.3g}.")
    ctx.methods.append("Time to first discontinuation was estimated with the Kaplan-Meier "
                       "estimator (lifelines) and compared across groups with the log-rank test.")
    ctx.cite("KM")


def _section_mcf(ctx: _Context) -> None:
    from ..models.mcf import mcf, mcf_at
    from ..plots import plot_mcf

    d = ctx.doc
    curve = mcf(ctx.hist, by=ctx.group)
    fig, ax = plt.subplots(figsize=(7, 3.6))
    plot_mcf(curve, ax=ax)
    d.heading("Repeated discontinuations: mean cumulative function")
    d.figure(figures.drawing(fig), "Expected number of discontinuations per site by time "
             "(Nelson-Aalen mean cumulative function, 95% CI from Lawless-Nadeau robust errors).")
    groups = [None] if ctx.group is None else sorted(curve["group"].unique())
    table = pd.concat([mcf_at(curve, _yearly(ctx), group=g).assign(group="all" if g is None else g)
                       for g in groups], ignore_index=True)
    d.table(_wide(table, "mcf"), caption="Mean cumulative number of discontinuations per site at "
            "yearly times (95% CI).")
    ctx.methods.append("The mean cumulative number of discontinuations per site was estimated "
                       "with the Nelson-Aalen estimator for recurrent events (every site in the "
                       "denominator over its whole follow-up) with Lawless-Nadeau robust standard "
                       "errors and log-transformed confidence intervals.")
    ctx.cite("LN")


def _section_states(ctx: _Context) -> None:
    from ..models.multistate import restricted_mean_time_in_state, state_probabilities
    from ..plots import plot_state_probabilities

    d = ctx.doc
    probs = state_probabilities(ctx.hist, None)
    ax = plot_state_probabilities(probs)
    d.heading("Sustained, discontinued, restarted over time")
    d.figure(figures.drawing(ax.figure), "Aalen-Johansen state occupation probabilities "
             "(stacked), all sites.")
    at = state_probabilities(ctx.hist, _yearly(ctx))
    wide = at.pivot_table(index="time", columns="state", values="probability", observed=False)
    d.table(wide.reset_index(), caption="State occupation probabilities at yearly times.",
            fmt="{:.3f}")
    rm = restricted_mean_time_in_state(ctx.hist, ctx.spec.horizon)
    d.table(rm, caption=f"Expected years in each state over the first {ctx.spec.horizon:g} years "
                        "(restricted mean time in state).", fmt="{:.3f}")
    ctx.cite("AJ")


def _formula(ctx: _Context) -> str:
    cols = ctx.hist.counting_process("ag").columns
    terms = [c for c in ctx.spec.model_covariates if c in cols]
    if not terms:
        raise DataError([f"none of the model covariates {list(ctx.spec.model_covariates)} is in "
                         "the data"], "invalid report spec")
    return " + ".join(terms)


def _section_recurrent(ctx: _Context) -> None:
    from ..models.cox import fit_recurrent

    d = ctx.doc
    formula = _formula(ctx)
    fits = {s: fit_recurrent(ctx.hist, formula, scheme=s, ties=ctx.spec.ties)
            for s in ctx.spec.schemes}
    rows = []
    for s, f in fits.items():
        sm = f.summary
        for term in sm.index:
            rows.append({"model": s.upper(), "term": term, "HR": sm.loc[term, "exp(coef)"],
                         "lower": sm.loc[term, "exp(lower 95%)"],
                         "upper": sm.loc[term, "exp(upper 95%)"], "p": sm.loc[term, "p"],
                         "events": f.n_events, "sites": f.n_clusters})
    table = pd.DataFrame(rows)
    d.heading("Recurrent discontinuations: Cox models")
    d.paragraph(f"Hazard of discontinuation ~ {formula}. AG: Andersen-Gill, common baseline, at "
                "risk while active. PWP-TT / PWP-GT: Prentice-Williams-Peterson, stratified by "
                "episode, total / gap time. WLW: Wei-Lin-Weissfeld marginal model, every episode "
                "at risk from entry. Robust (Lin-Wei) standard errors clustered by site.")
    ax = figures.forest(table)
    d.figure(figures.drawing(ax.figure), "Hazard ratios (95% robust CI) by model.")
    d.table(table, caption="Hazard ratios with robust 95% confidence intervals.", fmt="{:.3f}")
    ctx.methods.append(f"Recurrent discontinuations were modelled with Cox models on counting-"
                       f"process data ({', '.join(s.upper() for s in fits)}), Efron ties unless "
                       f"stated ({ctx.spec.ties}), with cluster-robust sandwich standard errors by "
                       "site. Intervals were split at every covariate change.")
    ctx.cite("AG", "PWP", "WLW", "LW")
    ctx.__dict__["_fits"] = fits


def _section_ph(ctx: _Context) -> None:
    from ..models.cox import fit_recurrent

    d = ctx.doc
    fits = ctx.__dict__.get("_fits") or {"ag": fit_recurrent(ctx.hist, _formula(ctx), scheme="ag",
                                                            ties=ctx.spec.ties)}
    d.heading("Proportional hazards diagnostics")
    for s, f in fits.items():
        z = f.check_proportional_hazards(transform="km")
        d.table(z.reset_index().rename(columns={"index": "term"}),
                caption=f"{s.upper()}: scaled Schoenfeld residual tests (Grambsch-Therneau, KM "
                        "transform; as R cox.zph).", fmt="{:.4g}")
    ctx.methods.append("Proportional hazards were checked with the Grambsch-Therneau score test "
                       "on scaled Schoenfeld residuals (Kaplan-Meier time transform), per term and "
                       "globally.")
    ctx.cite("GT")


def _section_discrete(ctx: _Context) -> None:
    from ..models.discrete import fit_discrete_time

    d = ctx.doc
    if ctx.panel is None:
        d.heading("Discrete-time hazards")
        d.paragraph("No annual panel was given, so no discrete-time model was fitted.")
        return
    panel_cols = set(ctx.panel.columns)
    terms = [c for c in ctx.spec.model_covariates if c in panel_cols]
    formula = ctx.spec.discrete_formula or " + ".join(["C(year)", *terms])
    res = fit_discrete_time(ctx.panel, formula, link=ctx.spec.link, cluster="site")
    d.heading("Discrete-time hazards (annual interviews)")
    d.paragraph(f"Annual hazard of discontinuation among sites active at the previous interview, "
                f"{ctx.spec.link} link: {formula}.")
    sm = res.summary
    hr = next(c for c in sm.columns if c.startswith("exp(coef)"))
    table = pd.DataFrame({"term": sm.index, "coef": sm["coef"], "robust se": sm["se"],
                          "hazard ratio": sm[hr], "95% CI": _ci_text(sm["exp(lower 95%)"],
                                                                     sm["exp(upper 95%)"]),
                          "p": sm["p"]})
    d.table(table, caption="Discrete-time hazard model, cluster-robust standard errors by site.",
            fmt="{:.3f}")
    d.bullets(list(res.notes))
    ctx.methods.append(f"Annual panels were analysed with a discrete-time hazard model (binomial "
                       f"GLM, {ctx.spec.link} link, statsmodels) with cluster-robust errors by site.")
    ctx.cite("DT")


def _section_frailty(ctx: _Context) -> None:
    from ..models.cox import fit_cox

    d = ctx.doc
    ag = ctx.hist.counting_process("ag")
    res = fit_cox(ag, _formula(ctx), start="start", stop="stop", event="event", frailty="site")
    d.heading("Site heterogeneity: shared gamma frailty")
    lrt = res.lrt_theta_zero
    d.paragraph(f"Estimated frailty variance (theta): {res.frailty_variance:.4g}. "
                f"Likelihood-ratio test of theta = 0: {_lrt_text(lrt)}.")
    d.table(res.summary.reset_index().rename(columns={"index": "term"}), fmt="{:.3f}",
            caption="AG model with a shared gamma frailty by site.")
    ctx.methods.append("Site heterogeneity was modelled with a shared gamma frailty (penalised "
                       "partial likelihood, as R coxph frailty()).")


def _section_methods(ctx: _Context, caught: list) -> None:
    d = ctx.doc
    d.heading("Methods")
    for m in ctx.methods:
        d.paragraph(m)
    d.paragraph("Numbers are produced by imrsurv, whose estimators are tested against R survival "
                "on shared fixtures.")
    msgs = sorted({str(w.message) for w in caught})
    if msgs:
        d.heading("Warnings raised during the analysis", 2)
        d.bullets(msgs)
    d.heading("References", 2)
    for k in ctx.refs:
        d.paragraph(REFERENCES[k], "small")


def _section_provenance(ctx: _Context, command: str) -> None:
    d, sp = ctx.doc, ctx.spec
    d.heading("Provenance")
    d.paragraph(f"Command: {command}", "mono")
    d.paragraph(f"Random seed: {sp.seed} (no analysis in this report draws random numbers).")
    d.table(input_table(sp.input_files(), sp.source_name, sp.sha256),
            col_widths=[0.12 * TEXT_WIDTH, 0.25 * TEXT_WIDTH, 0.63 * TEXT_WIDTH],
            caption="SHA-256 of every input file and of the spec.")
    d.table(versions(), col_widths=[0.4 * TEXT_WIDTH, 0.6 * TEXT_WIDTH],
            caption="Software versions.")


# -- helpers -------------------------------------------------------------------------------
def _yearly(ctx: _Context) -> list[float]:
    if ctx.spec.times:
        return list(ctx.spec.times)
    last = min(ctx.spec.horizon, float(ctx.hist.sites["exit"].max()))
    return [float(t) for t in np.arange(1, np.floor(last) + 1)]


def _lrt_text(lrt: dict[str, float]) -> str:
    return f"chi-square = {lrt['statistic']:.2f}, p = {lrt['p']:.3g} (50:50 chi-square mixture)"


def _ci_text(lower: pd.Series, upper: pd.Series, fmt: str = "{:.2f}") -> list[str]:
    return [("–" if np.isnan(lo) else f"{fmt.format(lo)}–{fmt.format(hi)}")
            for lo, hi in zip(lower, upper, strict=True)]


def _bond_wide(table: pd.DataFrame) -> pd.DataFrame:
    """One row per group: crude n (%) and AJ probability (CI) for each status."""
    t = table.copy()
    if "group" not in t:
        t["group"] = "all"
    rows = []
    for g, sub in t.groupby("group", sort=False):
        row: dict[str, object] = {"group": g}
        sub = sub.set_index("status")
        for status in ("sustained", "restarted", "discontinued"):
            r = sub.loc[status]
            pct = "–" if np.isnan(r["percent"]) else f"{r['percent']:.0f}%"
            row[f"{status} n (%)"] = f"{int(r['n'])} ({pct})"
            ci = _ci_text(pd.Series([r["lower"]]), pd.Series([r["upper"]]))[0]
            row[f"{status} AJ (95% CI)"] = (f"{r['probability']:.3f} ({ci})"
                                            if not np.isnan(r["probability"]) else "–")
        rows.append(row)
    return pd.DataFrame(rows)


def _wide(table: pd.DataFrame, value: str) -> pd.DataFrame:
    """Groups by yearly times, each cell 'value (lower–upper)'."""
    t = table.copy()
    if "group" not in t:
        t["group"] = "all"
    t["cell"] = [f"{v:.2f} ({lo:.2f}–{hi:.2f})" if not np.isnan(lo) else
                 ("–" if np.isnan(v) else f"{v:.2f}")
                 for v, lo, hi in zip(t[value], t["lower"], t["upper"], strict=True)]
    wide = t.pivot(index="group", columns="time", values="cell")
    wide.columns = [f"year {c:g}" for c in wide.columns]
    return wide.reset_index()

"""Run the analyses a spec asks for and lay them out as a PDF.

Each ``_section_*`` function adds pages to the document and records the
methods sentences and references for what it actually ran; the methods
section is assembled from those, so it never describes an analysis that was
not done.

Graceful degradation: a section that cannot be estimated on the data (a
:class:`DataError` from a model, or a known numerical failure: singular
information matrix, floating-point error) is replaced by its heading and a
paragraph saying why, the failure is listed under Methods, and the rest of
the report is still written. Anything else is a bug and propagates.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .. import __version__
from ..errors import DataError
from ..history import History, read_history
from ..labels import label
from . import figures, lanes, panel_markov_section, section_causes, section_predictions
from .bondcheck import PUBLISHED, compare
from .pdf import TEXT_WIDTH, Document
from .provenance import input_table, versions
from .references import REFERENCES
from .spec import ReportSpec, load_spec

# failures a section may meet on small or degenerate data; they are reported in the PDF
NUMERICAL_FAILURES = (np.linalg.LinAlgError, FloatingPointError)
# |coef| beyond this is treated as diverging when the fit does not say (monotone likelihood)
DIVERGING_COEF = 15.0


@dataclass
class _Context:
    spec: ReportSpec
    hist: History
    panel: pd.DataFrame | None
    doc: Document
    methods: list[str] = field(default_factory=list)
    refs: list[str] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    fit_warnings: list[str] = field(default_factory=list)
    fits: dict = field(default_factory=dict)

    def cite(self, *keys: str) -> None:
        for k in keys:
            if k not in self.refs:
                self.refs.append(k)

    @property
    def group(self) -> str | None:
        g = self.spec.group
        return g if g and g in self.hist.sites.columns else None

    def label(self, name: object) -> str:
        return label(name, self.hist.recent_window)


SECTION_TITLES = {
    "summary": "Data and validation",
    "bond": "Programme status at the horizon",
    "km": "Time to first discontinuation",
    "mcf": "Repeated discontinuations: mean cumulative function",
    "states": "Sustained, discontinued, restarted over time",
    "recurrent": "Recurrent discontinuations: Cox models",
    "ph": "Proportional hazards diagnostics",
    "discrete": "Discrete-time hazards (annual interviews)",
    "frailty": "Site heterogeneity: shared gamma frailty",
    "panel_markov": panel_markov_section.TITLE,
    "causes": section_causes.TITLE,
    "predictions": section_predictions.TITLE,
}


# Which section reads another's results (the PH diagnostics reuse the recurrent Cox fits):
# they share a parallel lane (:func:`.lanes.plan`).
SECTION_AFTER = {"ph": "recurrent"}
# Seconds each section takes in a first build of a Bond-sized report (imports included),
# to balance the lanes (serial first builds of reports/*.toml, jobs=1).
SECTION_COST = {"summary": 0.01, "bond": 0.06, "km": 0.43, "mcf": 0.13, "states": 0.16,
                "recurrent": 0.52, "ph": 0.37, "discrete": 0.04, "frailty": 0.02,
                "panel_markov": 0.4, "causes": 0.56, "predictions": 1.5}


def report(spec: str | Path | dict, out: str | Path, *, command: str | None = None,
           progress: bool | None = None, jobs: int | None = None) -> Path:
    """Build the PDF report a spec describes and write it atomically to ``out``.

    Invalid data stops with :class:`DataError` before any page is written; a
    section that cannot be estimated says why in the PDF (see the module notes).
    ``progress``: a tqdm bar over the sections on stderr (default: when stderr
    is a terminal). ``jobs``: processes the sections run in (default: 2 on a
    Linux machine with 2 or more CPUs, else 1; see :mod:`.lanes`); the PDF is
    the same byte for byte whatever ``jobs``.
    """
    out = Path(out)
    if out.is_dir():
        raise DataError([f"output {out} is a directory; give a file name such as "
                         f"{out / 'report.pdf'}"], "cannot write report")
    if not out.parent.exists():
        raise DataError([f"output directory {out.parent} does not exist"], "cannot write report")
    sp = load_spec(spec)
    hist, panel = _load_data(sp)
    figures.style()
    doc = Document(sp.title)
    ctx = _Context(sp, hist, panel, doc)
    _title_page(ctx)
    sections: dict[str, Callable[[_Context], None]] = {
        "summary": _section_summary, "bond": _section_bond, "km": _section_km,
        "mcf": _section_mcf, "states": _section_states, "recurrent": _section_recurrent,
        "ph": _section_ph, "discrete": _section_discrete, "frailty": _section_frailty,
        "panel_markov": panel_markov_section.section,
        "causes": section_causes.section_causes,
        "predictions": section_predictions.section}
    from tqdm.auto import tqdm

    show = sys.stderr.isatty() if progress is None else progress
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with tqdm(total=len(sp.sections), desc=f"report {out.name}", unit="section",
                  disable=not show, leave=False) as bar:
            def step(name: str) -> _Delta:
                delta = _capture(ctx, name, sections[name])
                if lanes.is_parent():
                    bar.update()
                return delta

            deltas = lanes.run(sp.sections, step, cost=SECTION_COST, after=SECTION_AFTER,
                               jobs=lanes.default_jobs() if jobs is None else jobs)
    for delta in deltas:
        delta.apply(ctx)
    _section_methods(ctx, caught)
    _section_provenance(ctx, command or "imrsurv " + " ".join(sys.argv[1:]))
    return doc.save(out)


@dataclass
class _Delta:
    """What one section added to the context: pages, methods, references, failures, warnings.

    Sections run in parallel lanes (:mod:`.lanes`) each return their delta;
    applying the deltas in section order gives the serial build's context.
    """

    story: list
    methods: list[str]
    refs: list[str]
    failures: list[tuple[str, str]]
    warnings: list[str]

    def apply(self, ctx: _Context) -> None:
        ctx.doc.story.extend(self.story)
        ctx.methods.extend(self.methods)
        ctx.cite(*self.refs)
        ctx.failures.extend(self.failures)
        ctx.fit_warnings.extend(self.warnings)


def _capture(ctx: _Context, name: str, fn: Callable[[_Context], None]) -> _Delta:
    """Run one section and take what it added back out of ``ctx`` as a :class:`_Delta`.

    ``ctx.fits`` stays: a later section of the same lane reads it (``SECTION_AFTER``).
    """
    d = ctx.doc
    marks = len(d.story), len(ctx.methods), len(ctx.refs), len(ctx.failures)
    n_warn = len(ctx.fit_warnings)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _run_section(ctx, name, fn)
    if d._headings:  # a section ends with content; a lone heading would float to the next
        raise RuntimeError(f"report section {name!r} ended with a heading and no content")
    delta = _Delta(d.story[marks[0]:], ctx.methods[marks[1]:], ctx.refs[marks[2]:],
                   ctx.failures[marks[3]:],
                   ctx.fit_warnings[n_warn:] + [str(w.message) for w in caught])
    del d.story[marks[0]:], ctx.methods[marks[1]:], ctx.refs[marks[2]:]
    del ctx.failures[marks[3]:], ctx.fit_warnings[n_warn:]
    return delta


def _run_section(ctx: _Context, name: str, fn: Callable[[_Context], None]) -> None:
    """Run one section; on a known failure drop its partial pages and say why instead."""
    d = ctx.doc
    mark, heads, n_methods = len(d.story), list(d._headings), len(ctx.methods)
    try:
        fn(ctx)
    except (DataError, *NUMERICAL_FAILURES) as exc:
        plt.close("all")
        del d.story[mark:]
        d._headings[:] = heads
        del ctx.methods[n_methods:]
        reason = _reason(exc)
        title = SECTION_TITLES[name]
        if name == "bond":
            title = f"Programme status at {ctx.spec.horizon:g} years"
        d.heading(title)
        d.paragraph(f"This section could not be estimated on these data: {reason}")
        ctx.failures.append((title, f"{type(exc).__name__}: {reason}"))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, np.linalg.LinAlgError):
        return (f"the information matrix is singular ({exc}); typically too few events, a "
                "covariate that does not vary, or a term whose likelihood is monotone.")
    if isinstance(exc, FloatingPointError):
        return f"a floating-point failure ({exc}); typically too few events or sites."
    text = str(exc).strip().replace("\n", "; ")
    return text if text.endswith(".") else text + "."


def _load_data(sp: ReportSpec) -> tuple[History, pd.DataFrame | None]:
    files = sp.input_files()
    hist = read_history(files["events"], files.get("covariates"), files.get("sites"),
                        time_unit=sp.time_unit, recent_window=sp.recent_window)
    panel = None
    if "panel" in files:
        from ..panel import read_panel

        panel = read_panel(files["panel"])
    panel_markov_section.check_waves(files)   # invalid waves stop before any page
    return hist, panel


# -- pages -----------------------------------------------------------------------------
def describe_data(ctx: _Context) -> str:
    """One sentence about the data the report reads, computed from the History."""
    h, sites = ctx.hist, ctx.hist.sites
    follow = (sites["exit"] - sites["entry"]).to_numpy(float)
    parts = [f"{h.n_sites} sites"]
    if ctx.group:
        levels = sorted(map(str, pd.unique(sites[ctx.group])))
        parts.append(f"{len(levels)} {ctx.label(ctx.group).lower()} group(s) "
                     f"({', '.join(levels[:8])}{', ...' if len(levels) > 8 else ''})")
    if np.isclose(follow.min(), follow.max()):
        parts.append(f"each followed {follow.max():.2f} years")
    else:
        parts.append(f"followed {follow.min():.2f} to {follow.max():.2f} years "
                     f"(median {np.median(follow):.2f})")
    n_disc = int(sites["discontinuations"].sum())
    n_rest = int(sites["restarts"].sum())
    parts.append(f"{n_disc} discontinuation(s) and {n_rest} restart(s)")
    if h.covariate_names:
        parts.append("covariates " + ", ".join(ctx.label(c) for c in h.covariate_names))
    return "; ".join(parts) + "."


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
    d.paragraph(f"Data: {source}.", "subtitle")
    d.paragraph(f"Produced by imrsurv {__version__}", "subtitle")
    d.spacer(28.35)
    d.paragraph("The data read: " + describe_data(ctx))
    if sp.description:
        d.paragraph("From the spec: " + sp.description, "small")
    d.page_break()
    d.heading("Contents", toc=False)
    d.contents()
    d.page_break()


def _section_summary(ctx: _Context) -> None:
    d, h = ctx.doc, ctx.hist
    d.heading("Data and validation")
    d.paragraph(f"{h.n_sites} sites followed for up to {h.sites['exit'].max():.2f} years. Every "
                "input row was checked (event order, times, covariates); the table says what was "
                "read, used and set aside.")
    d.table(_labelled(ctx, h.accounting.table), caption="Rows read, used and set aside, per input.")
    if len(h.accounting.set_aside):
        d.table(_labelled(ctx, h.accounting.set_aside), caption="Rows set aside and why.")
    s = h.summary(by=ctx.group).reset_index().rename(columns={"index": ctx.group or "group"})
    d.table(_labelled(ctx, s), caption="Sites, person-years active and discontinued, "
            "discontinuations and restarts.", fmt="{:.1f}")
    if h.covariate_names:
        d.paragraph("Covariates: " + ", ".join(ctx.label(c) for c in h.covariate_names) + ". "
                    f"Derived: {ctx.label('leader_changes')} (cumulative count) and "
                    f"{ctx.label('recent_leader_change')} (1 for {h.recent_window:g} year(s) "
                    "after a change).")


def _section_bond(ctx: _Context) -> None:
    from ..models.multistate import bond_status

    d, sp = ctx.doc, ctx.spec
    res = bond_status(ctx.hist, horizon=sp.horizon, by=ctx.group)
    d.heading(f"Programme status at {sp.horizon:g} years")
    d.paragraph("Sustained: never discontinued; restarted: discontinued and active again at the "
                "horizon; discontinued: not active at the horizon. Crude counts are among sites "
                "followed to the horizon; the Aalen-Johansen estimates use every site, including "
                "those censored earlier.")
    d.table(_bond_wide(res.table, ctx), caption=f"Status at {sp.horizon:g} years: crude counts "
            "(% of sites followed to the horizon) and Aalen-Johansen probabilities (95% CI).")
    if res.notes:
        d.bullets(list(res.notes))
    status = ctx.hist.status_at(sp.horizon)
    _bond_published(ctx, status)
    sites = ctx.hist.sites
    per_site = pd.DataFrame({"Site": sites["site"]})
    if ctx.group:
        per_site[ctx.label(ctx.group)] = sites[ctx.group].to_numpy()
    per_site["Follow-up (years)"] = (sites["exit"] - sites["entry"]).to_numpy()
    per_site["Discontinuations"] = sites["discontinuations"].to_numpy()
    per_site["Restarts"] = sites["restarts"].to_numpy()
    per_site[f"Status at {sp.horizon:g} years"] = (status.reindex(sites["site"]).astype(str)
                                                   .to_numpy())
    d.table(per_site, caption="Each site's history and status.", fmt="{:.2f}")
    ctx.methods.append(f"Status at {sp.horizon:g} years was classified as in Bond et al. (2014): "
                       "sustained, discontinued and restarted, or discontinued. Besides crude "
                       "proportions, state occupation probabilities were estimated with the "
                       "Aalen-Johansen estimator of a three-state model (sustained, discontinued, "
                       "restarted), which is consistent under censoring and staggered entry. The "
                       "crude split was compared with the published 47/16/37% by the exact "
                       "multinomial test and Pearson's chi-square (Clopper-Pearson 95% intervals).")
    ctx.cite("BOND", "AJ")


def _bond_published(ctx: _Context, status: pd.Series) -> None:
    d = ctx.doc
    cmp = compare(status)
    if cmp.n == 0:
        d.paragraph("No site was followed to the horizon, so the split cannot be compared with "
                    "the published one.")
        return
    t = cmp.table.copy()
    t["status"] = [ctx.label(s) for s in t["status"]]
    t = t.rename(columns={"status": "Status", "published %": "Bond et al. 2014 (%)",
                          "n": "This cohort (n)", "cohort %": "This cohort (%)",
                          "95% CI": "Cohort 95% CI (exact)"})
    d.table(t, caption=f"The {cmp.n} sites followed to {ctx.spec.horizon:g} years beside the "
            "published split of Bond et al. (2014), 49 sites at 6 years.",
            fmt={"Bond et al. 2014 (%)": "{:.0f}", "This cohort (%)": "{:.1f}"})
    text = (f"Goodness of fit to the published {'/'.join(f'{100 * p:.0f}' for p in PUBLISHED.values())}"
            f"% split: exact multinomial p = {_p_text(cmp.exact_p)}; Pearson chi-square = "
            f"{cmp.chisq:.2f} on 2 df, p = {_p_text(cmp.chisq_p)}.")
    if cmp.caveat:
        text += f" Note: {cmp.caveat}."
    if ctx.spec.horizon != 6:
        text += (f" Bond et al. classified status at 6 years; this report's horizon is "
                 f"{ctx.spec.horizon:g} years.")
    d.paragraph(text)


def _section_km(ctx: _Context) -> None:
    from ..models.km import km_first

    d = ctx.doc
    times = _yearly(ctx)
    res = km_first(ctx.hist, by=ctx.group, times=times)
    d.heading("Time to first discontinuation")
    ax = res.plot(times=[0.0, *times])
    bands = len(res.fitters) <= 2
    d.figure(figures.drawing(ax.figure), "Kaplan-Meier estimate of the probability of not yet "
             "having discontinued, with the number of sites at risk at each year (the same "
             "numbers as the table's at-risk column). "
             + ("Shaded: 95% CI." if bands else "95% CIs are in the table (bands for more than "
                                               "two groups would overlap)."))
    d.table(_wide(res.table, "survival", ctx), caption="Kaplan-Meier probability of not yet having "
            "discontinued at yearly times (95% CI).")
    counts = res.table.copy()
    if "group" not in counts:
        counts["group"] = "all"
    at = counts.pivot(index="group", columns="time", values="n_risk")
    ev = counts.pivot(index="group", columns="time", values="n_events")
    cells = at.astype(int).astype(str) + " / " + ev.astype(int).astype(str)
    cells.columns = [f"Year {c:g}" for c in cells.columns]
    cells.index.name = ctx.label(ctx.group) if ctx.group else "Group"
    d.table(cells.reset_index(), caption="Sites at risk at each year / first discontinuations in "
            "the year before it (as R summary(survfit, times=)).")
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
    fig, ax = plt.subplots(figsize=(7.5, 4.0))
    plot_mcf(curve, ax=ax)
    groups = [None] if ctx.group is None else sorted(curve["group"].unique())
    d.heading("Repeated discontinuations: mean cumulative function")
    d.figure(figures.drawing(fig), "Expected number of discontinuations per site by time "
             "(Nelson-Aalen mean cumulative function"
             + (", shaded: 95% CI from Lawless-Nadeau robust errors)." if len(groups) <= 2
                else "; 95% CIs from Lawless-Nadeau robust errors are in the table)."))
    table = pd.concat([mcf_at(curve, _yearly(ctx), group=g).assign(group="all" if g is None else g)
                       for g in groups], ignore_index=True)
    d.table(_wide(table, "mcf", ctx), caption="Mean cumulative number of discontinuations per "
            "site at yearly times (95% CI).")
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
    d.table(_labelled(ctx, wide.reset_index()), caption="State occupation probabilities at "
            "yearly times.", fmt={"Years": "{:g}", **dict.fromkeys(
                [ctx.label(c) for c in wide.columns], "{:.3f}")})
    rm = restricted_mean_time_in_state(ctx.hist, ctx.spec.horizon)
    if "state" in rm:
        rm = rm.assign(state=[ctx.label(s) for s in rm["state"]])
    rm = rm.rename(columns={"horizon": "Horizon (years)", "years": "Expected years",
                            "se": "se"})
    d.table(_labelled(ctx, rm), caption=f"Expected years in each state over the first "
            f"{ctx.spec.horizon:g} years (restricted mean time in state).",
            fmt={"Horizon (years)": "{:g}", "Expected years": "{:.3f}", "se": "{:.3f}"})
    ctx.cite("AJ")


def _formula(ctx: _Context) -> str:
    cols = ctx.hist.counting_process("ag").columns
    terms = [c for c in ctx.spec.model_covariates if c in cols]
    if not terms:
        raise DataError([f"none of the model covariates {list(ctx.spec.model_covariates)} is in "
                         "the data"], "nothing to model")
    constant = [c for c in terms if ctx.hist.counting_process("ag")[c].nunique() < 2]
    if constant:
        raise DataError([f"covariate {c!r} is constant in these data" for c in constant],
                        "cannot estimate its effect")
    return " + ".join(terms)


def _fit(ctx: _Context, fn: Callable[[], object]):
    """Run a fit, keeping its warnings (listed under Methods) and whether it converged."""
    from ..models.cox import CoxConvergenceWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = fn()
    bad = any(issubclass(w.category, CoxConvergenceWarning) for w in caught)
    ctx.fit_warnings += [str(w.message) for w in caught]
    return res, bad


def diverging(fit, warned: bool = False) -> pd.Series:
    """Per term: True where the coefficient runs to infinity (monotone likelihood).

    Uses the fit's own ``diverging`` flags when it has them; otherwise a term
    is flagged when |coef| > ``DIVERGING_COEF``, or every large term of a fit
    that warned it did not converge.
    """
    flags = getattr(fit, "diverging", None)
    coef = fit.params.abs()
    with np.errstate(over="ignore"):
        sm = fit.summary
    if "note" in sm:  # the result protocol: a row with a note is not an estimate
        noted = (sm["note"].reindex(coef.index).fillna("") != "")
        flags = noted if flags is None else (pd.Series(flags, index=coef.index) | noted)
    if flags is not None:
        return pd.Series(flags, index=coef.index).astype(bool) | (coef > DIVERGING_COEF)
    out = coef > DIVERGING_COEF
    if warned:
        out |= coef > 5.0
    return out


def _cox_rows(ctx: _Context, formula: str, penalty: str | None,
              schemes: Sequence[str]) -> tuple[dict[str, object], pd.DataFrame]:
    """Fit every scheme (ordinary or Firth-penalised); one table row per model and term."""
    from ..models.cox import fit_recurrent

    rows, fits = [], {}
    kind = "Firth-penalised " if penalty else ""
    for s in schemes:
        try:
            f, warned = _fit(ctx, lambda s=s: fit_recurrent(ctx.hist, formula, scheme=s,
                                                            ties=ctx.spec.ties,
                                                            penalty=penalty))
        except (DataError, *NUMERICAL_FAILURES) as exc:
            ctx.failures.append((f"{kind}Cox model {s.upper()}", f"{type(exc).__name__}: "
                                 f"{_reason(exc)}"))
            continue
        fits[s] = f
        sm = f.summary
        div = diverging(f, warned)
        for term in sm.index:
            ok = not bool(div.get(term, False))
            rows.append({"model": s.upper(), "term": term,
                         "HR": sm.loc[term, "exp(coef)"] if ok else np.nan,
                         "lower": sm.loc[term, "exp(lower 95%)"] if ok else np.nan,
                         "upper": sm.loc[term, "exp(upper 95%)"] if ok else np.nan,
                         "p": sm.loc[term, "p"] if ok else np.nan, "estimable": ok,
                         "events": f.n_events, "sites": f.n_clusters})
    return fits, pd.DataFrame(rows)


def _hr_table(ctx: _Context, table: pd.DataFrame, ci: str, p: str) -> pd.DataFrame:
    ok = table["estimable"]
    return pd.DataFrame({
        "Model": table["model"], "Term": [ctx.label(t) for t in table["term"]],
        "Hazard ratio": [f"{h:.2f}" if k else "not estimable"
                         for h, k in zip(table["HR"], ok, strict=True)],
        ci: [c if k else "diverges (monotone likelihood)" for c, k in
             zip(_ci_text(table["lower"], table["upper"]), ok, strict=True)],
        p: [_p_text(v) if k else "–" for v, k in zip(table["p"], ok, strict=True)],
        "Events": table["events"], "Sites": table["sites"]})


def _section_recurrent(ctx: _Context) -> None:
    d = ctx.doc
    formula = _formula(ctx)
    fits, table = _cox_rows(ctx, formula, None, ctx.spec.schemes)
    if not fits:
        raise DataError(["no Cox model could be fitted (see Methods)"], "no model")
    firth_first = ctx.spec.test == "firth-lrt"
    firth_fits, ftable = (_cox_rows(ctx, formula, "firth", list(fits)) if firth_first
                          else ({}, pd.DataFrame()))
    d.heading("Recurrent discontinuations: Cox models")
    main = ftable if firth_first and len(ftable) else table
    ax = figures.forest(main, ci="95% profile penalised-likelihood CI" if main is ftable
                        else "95% robust CI")
    d.figure(figures.drawing(ax.figure), "Hazard ratios (95% CI) by model: "
             + ("Firth-penalised fits, profile penalised-likelihood limits." if main is ftable
                else "ordinary fits, robust (Lin-Wei) Wald limits."))
    d.paragraph(f"Hazard of discontinuation ~ {' + '.join(ctx.label(t) for t in formula.split(' + '))}. "
                "AG: Andersen-Gill, common baseline, at risk while active. PWP-TT / PWP-GT: "
                "Prentice-Williams-Peterson, stratified by episode, total / gap time. WLW: "
                "Wei-Lin-Weissfeld marginal model, every episode at risk from entry.")
    robust_caption = ("Ordinary Cox fits (as R coxph): hazard ratios with robust (Lin-Wei, "
                      "clustered by site) 95% Wald limits and Wald p-values.")
    if main is ftable:
        d.table(_hr_table(ctx, ftable, "95% CI (profile)", "p (penalised LRT)"),
                caption="Firth-penalised partial likelihood (Heinze & Schemper 2001, as R "
                "coxphf): hazard ratios with profile penalised-likelihood 95% limits and "
                "penalised likelihood-ratio p-values, the test that holds its size with 12-49 "
                "sites (benchmarks/RESULTS.md). These treat the rows of a site as independent.")
        d.table(_hr_table(ctx, table, "95% CI (robust)", "p (Wald)"),
                caption=robust_caption + " For comparison: with few sites the Wald test "
                "rejects too often, and a diverging coefficient has no Wald interval.")
        ctx.methods.append("Hazard ratios are reported from Firth's penalised partial "
                           "likelihood with profile penalised-likelihood intervals and penalised "
                           "likelihood-ratio tests (Heinze & Schemper 2001); ordinary fits with "
                           "robust Wald intervals are shown beside them.")
        ctx.cite("FIRTH")
    else:
        d.table(_hr_table(ctx, table, "95% CI (robust)", "p (Wald)"), caption=robust_caption)
    if not table["estimable"].all():
        bad = sorted({ctx.label(t) for t in table.loc[~table["estimable"], "term"]})
        d.paragraph("Not estimable in the ordinary fit: " + ", ".join(bad) + ". The partial "
                    "likelihood keeps rising as the coefficient runs to infinity (monotone "
                    "likelihood: e.g. no discontinuation ever while the covariate was 1), so no "
                    "finite hazard ratio or Wald interval exists. The Firth-penalised fits give "
                    "finite estimates.")
        if not firth_first:
            _firth_table(ctx, formula, sorted(set(table.loc[~table["estimable"], "model"]),
                                              key=list(table["model"]).index))
    ties = {"efron": "Efron", "breslow": "Breslow"}.get(ctx.spec.ties, ctx.spec.ties)
    ctx.methods.append(f"Recurrent discontinuations were modelled with Cox models on counting-"
                       f"process data ({', '.join(s.upper() for s in fits)}); tied event times "
                       f"were handled by the {ties} method, with cluster-robust sandwich standard "
                       "errors by site. Intervals were split at every covariate change.")
    ctx.cite("AG", "PWP", "WLW", "LW")
    ctx.fits = fits


def _firth_table(ctx: _Context, formula: str, models: list[str]) -> None:
    """Firth-penalised refits (Heinze & Schemper 2001) of the models with a diverging term."""
    from ..models.cox import fit_recurrent

    rows = []
    for m in models:
        try:
            f, _ = _fit(ctx, lambda m=m: fit_recurrent(ctx.hist, formula, scheme=m.lower(),
                                                       ties=ctx.spec.ties, penalty="firth"))
        except (DataError, *NUMERICAL_FAILURES) as exc:
            ctx.failures.append((f"Firth-penalised {m}", f"{type(exc).__name__}: "
                                 f"{_reason(exc)}"))
            continue
        sm = f.summary
        for term in sm.index:
            ok = not sm.loc[term, "note"] if "note" in sm else True
            rows.append({"Model": m, "Term": ctx.label(term),
                         "Hazard ratio": f"{sm.loc[term, 'exp(coef)']:.2f}" if ok else "–",
                         "95% CI (profile)": _ci_text([sm.loc[term, "exp(lower 95%)"]],
                                                      [sm.loc[term, "exp(upper 95%)"]])[0]
                         if ok else "–",
                         "p (penalised LRT)": _p_text(sm.loc[term, "p"]) if ok else "–"})
    if rows:
        ctx.doc.table(pd.DataFrame(rows), caption="Firth-penalised partial likelihood (as R "
                      "coxphf): hazard ratios with profile penalised-likelihood 95% limits and "
                      "penalised likelihood-ratio p-values, for the models with a diverging "
                      "term. These treat the rows of a site as independent.")
        ctx.methods.append("Where a coefficient diverged (monotone likelihood), the model was "
                           "refitted with Firth's penalised partial likelihood (Heinze & Schemper "
                           "2001).")
        ctx.cite("FIRTH")


def _section_ph(ctx: _Context) -> None:
    from ..models.cox import fit_recurrent
    from ..models.zph import plot_zph

    d = ctx.doc
    fits = ctx.fits
    if not fits:
        f, _ = _fit(ctx, lambda: fit_recurrent(ctx.hist, _formula(ctx), scheme="ag",
                                               ties=ctx.spec.ties))
        fits = {"ag": f}
    d.heading("Proportional hazards diagnostics")
    for s, f in fits.items():
        z = f.check_proportional_hazards(transform="km")
        # rounding can leave a chi-square of -1e-9 for a term with no information
        chisq = z["chisq"].clip(lower=0.0)
        div = diverging(f).reindex(z.index, fill_value=False)
        table = pd.DataFrame({"Term": [ctx.label(t) for t in z.index],
                              "Chi-square": [f"{c:.3f}" if not v else "–"
                                             for c, v in zip(chisq, div, strict=True)],
                              "df": z["df"].astype(int),
                              "p": [_p_text(p) if not v else "not estimable"
                                    for p, v in zip(z["p"], div, strict=True)]})
        d.table(table, caption=f"{s.upper()}: scaled Schoenfeld residual tests (Grambsch-"
                               "Therneau, KM transform; as R cox.zph)."
                + (" A diverging coefficient has no meaningful test; the global test "
                   "includes it." if div.any() else ""))
    first = next(iter(fits))
    keep = [t for t in fits[first].params.index if not diverging(fits[first]).get(t, False)]
    if not keep:
        return
    fig = plot_zph(fits[first], terms=keep, labeller=ctx.label)
    d.figure(figures.drawing(fig), f"{first.upper()}: scaled Schoenfeld residuals against time "
             "with a lowess smooth (as R plot(cox.zph)); a smooth that stays near the dashed "
             "coefficient is consistent with proportional hazards.")
    ctx.methods.append("Proportional hazards were checked with the Grambsch-Therneau score test "
                       "on scaled Schoenfeld residuals (Kaplan-Meier time transform), per term and "
                       "globally, and by plotting the scaled residuals against time.")
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
    shown = " + ".join(ctx.label(t.strip()) for t in formula.split("+"))
    d.paragraph(f"Annual hazard of discontinuation among sites active at the previous interview, "
                f"{ctx.spec.link} link: {shown}.")
    sm = res.summary
    ratio = "hazard ratio" if ctx.spec.link == "cloglog" else "odds ratio"
    hr = next(c for c in sm.columns if c.startswith("exp(coef)"))
    intercept = np.array([str(t) in ("Intercept", "(Intercept)") for t in sm.index])
    table = pd.DataFrame({
        "Term": [ctx.label(t) + (" (baseline)" if i else "")
                 for t, i in zip(sm.index, intercept, strict=True)],
        "coef": [f"{v:.3f}" for v in sm["coef"]],
        "Robust se": [f"{v:.3f}" for v in sm["se"]],
        ratio.capitalize(): ["–" if i else f"{v:.3f}" for v, i in zip(sm[hr], intercept,
                                                                       strict=True)],
        "95% CI": ["–" if i else c for c, i in zip(_ci_text(sm["exp(lower 95%)"],
                                                             sm["exp(upper 95%)"]),
                                                    intercept, strict=True)],
        "p": [_p_text(p) for p in sm["p"]]})
    d.table(table, caption=f"Discrete-time hazard model, cluster-robust standard errors by site. "
            f"The intercept is the baseline on the {ctx.spec.link} scale, not a {ratio}.")
    d.bullets(list(res.notes))
    ctx.methods.append(f"Annual panels were analysed with a discrete-time hazard model (binomial "
                       f"GLM, {ctx.spec.link} link, statsmodels) with cluster-robust errors by site.")
    ctx.cite("DT")


def _section_frailty(ctx: _Context) -> None:
    from ..models.cox import fit_cox

    d = ctx.doc
    ag = ctx.hist.counting_process("ag")
    res, _ = _fit(ctx, lambda: fit_cox(ag, _formula(ctx), start="start", stop="stop",
                                       event="event", frailty="site"))
    d.heading("Site heterogeneity: shared gamma frailty")
    lrt = res.lrt_theta_zero
    d.paragraph(f"Estimated frailty variance (theta): {res.frailty_variance:.3f}. "
                f"Likelihood-ratio test of theta = 0: {_lrt_text(lrt)}.")
    with np.errstate(over="ignore"):  # exp() of a diverging coefficient: shown as such below
        sm = res.summary
    se = (sm["se(coef)"] if "se(coef)" in sm else sm["se"]).to_numpy(float)
    coef = sm["coef"].to_numpy(float)
    ok = ~diverging(res).reindex(sm.index, fill_value=False).to_numpy(bool) & np.isfinite(se)
    z = 1.959963984540054
    with np.errstate(over="ignore"):
        hr, lo, hi = np.exp(coef), np.exp(coef - z * se), np.exp(coef + z * se)
    table = pd.DataFrame({
        "Term": [ctx.label(t) for t in sm.index],
        "coef": [f"{v:.3f}" if k else "diverges" for v, k in zip(coef, ok, strict=True)],
        "se": [f"{v:.3f}" if k else "–" for v, k in zip(se, ok, strict=True)],
        "Hazard ratio": [f"{v:.2f}" if k else "not estimable" for v, k in zip(hr, ok,
                                                                               strict=True)],
        "95% CI": [c if k else "–" for c, k in zip(_ci_text(lo, hi), ok, strict=True)],
        "p": [_p_text(v) if k else "–" for v, k in zip(sm["p"], ok, strict=True)]})
    d.table(table, caption="AG model with a shared gamma frailty by site. se: from the inverse "
            "of the penalised information (R coxph's se(coef)); R's second variance (se2, "
            "the sandwich of penalised and unpenalised information) is not shown.")
    ctx.methods.append("Site heterogeneity was modelled with a shared gamma frailty (penalised "
                       "partial likelihood, as R coxph frailty()).")


def _section_methods(ctx: _Context, caught: list) -> None:
    d = ctx.doc
    d.heading("Methods")
    for m in ctx.methods:
        d.paragraph(m)
    d.paragraph("Numbers are produced by imrsurv, whose estimators are tested against R survival "
                "on shared fixtures.")
    if ctx.failures:
        d.heading("Sections and models not estimated", 2)
        d.bullets([f"{title}: {why}" for title, why in ctx.failures])
    msgs = sorted({str(w.message) for w in caught} | set(ctx.fit_warnings))
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
            col_widths=[0.12 * TEXT_WIDTH, 0.24 * TEXT_WIDTH, 0.64 * TEXT_WIDTH],
            caption="SHA-256 of every input file and of the spec.", mono=("SHA-256",))
    d.table(versions(), col_widths=[0.4 * TEXT_WIDTH, 0.6 * TEXT_WIDTH],
            caption="Software versions.")


# -- helpers -------------------------------------------------------------------------------
def _yearly(ctx: _Context) -> list[float]:
    if ctx.spec.times:
        return list(ctx.spec.times)
    last = min(ctx.spec.horizon, float(ctx.hist.sites["exit"].max()))
    return [float(t) for t in np.arange(1, np.floor(last) + 1)] or [last]


def _p_text(p: float) -> str:
    if p != p:
        return "–"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _lrt_text(lrt: dict[str, float]) -> str:
    return (f"chi-square = {lrt['statistic']:.2f}, p = {_p_text(lrt['p'])} (50:50 chi-square "
            "mixture)")


def _ci_text(lower, upper, fmt: str = "{:.2f}") -> list[str]:
    return [("–" if np.isnan(lo) or np.isnan(hi) else f"{fmt.format(lo)}–{fmt.format(hi)}")
            for lo, hi in zip(np.asarray(lower, float), np.asarray(upper, float), strict=True)]


def _labelled(ctx: _Context, frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out.columns = [ctx.label(c) for c in out.columns]
    return out


def _bond_wide(table: pd.DataFrame, ctx: _Context) -> pd.DataFrame:
    """One row per group: crude n (%) and AJ probability (CI) for each status."""
    t = table.copy()
    if "group" not in t:
        t["group"] = "all"
    rows = []
    for g, sub in t.groupby("group", sort=False):
        row: dict[str, object] = {ctx.label(ctx.group) if ctx.group else "Group": g}
        sub = sub.set_index("status")
        for status in ("sustained", "restarted", "discontinued"):
            r = sub.loc[status]
            pct = "–" if np.isnan(r["percent"]) else f"{r['percent']:.0f}%"
            row[f"{ctx.label(status)} n (%)"] = f"{int(r['n'])} ({pct})"
            ci = _ci_text(pd.Series([r["lower"]]), pd.Series([r["upper"]]))[0]
            row[f"{ctx.label(status)} AJ (95% CI)"] = (f"{r['probability']:.3f} ({ci})"
                                                      if not np.isnan(r["probability"]) else "–")
        rows.append(row)
    return pd.DataFrame(rows)


def _wide(table: pd.DataFrame, value: str, ctx: _Context) -> pd.DataFrame:
    """Groups by yearly times, each cell 'value (lower–upper)'."""
    t = table.copy()
    if "group" not in t:
        t["group"] = "all"
    t["cell"] = [f"{v:.2f} ({lo:.2f}–{hi:.2f})" if not (np.isnan(lo) or np.isnan(hi)) else
                 ("–" if np.isnan(v) else f"{v:.2f}")
                 for v, lo, hi in zip(t[value], t["lower"], t["upper"], strict=True)]
    wide = t.pivot(index="group", columns="time", values="cell")
    wide.columns = [f"Year {c:g}" for c in wide.columns]
    wide.index.name = ctx.label(ctx.group) if ctx.group else "Group"
    return wide.reset_index()

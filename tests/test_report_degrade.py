"""Issue 9.5: every section runs on tiny or degenerate cohorts; what cannot be estimated says
why in the PDF, and the PDF is always written. Unknown errors are not hidden."""

from __future__ import annotations

import re
import subprocess

import numpy as np
import pandas as pd
import pytest

import imrsurv as ims
from imrsurv.report import build
from imrsurv.report.build import report
from imrsurv.simulate.cohort import simulate_cohort, write_cohort

ALL = ["summary", "bond", "km", "mcf", "states", "recurrent", "ph", "discrete", "frailty"]
HEADINGS = ["Data and validation", "Programme status at 6 years",
            "Time to first discontinuation", "mean cumulative function",
            "Sustained, discontinued, restarted over time", "Cox models",
            "Proportional hazards diagnostics", "Discrete-time hazards",
            "Site heterogeneity: shared gamma frailty", "Methods", "Provenance"]


def cohort_files(tmp_path, n_sites, seed, effects=None, edit=None) -> dict:
    c = simulate_cohort(n_sites, 6, seed=seed, entry="common", effects=effects)
    if edit is not None:
        edit(c)
    write_cohort(c, tmp_path)
    return {"events": str(tmp_path / "events.csv"),
            "covariates": str(tmp_path / "covariates.csv"), "sites": str(tmp_path / "sites.csv")}


def spec(files: dict, sections=ALL) -> dict:
    return {"study": {"title": "small"}, "data": files,
            "analysis": {"sections": list(sections)}}


def text(path, layout: bool = True) -> str:
    out = subprocess.run(["pdftotext", *(["-layout"] if layout else []), str(path), "-"],
                         capture_output=True, text=True, check=True).stdout
    return out


def flat(path) -> str:
    return " ".join(text(path, layout=False).split())


def test_nine_sites_three_discontinuations_every_section(tmp_path):
    files = cohort_files(tmp_path, 9, seed=1)
    hist = ims.read_history(files["events"], files["covariates"], files["sites"])
    assert hist.n_sites == 9 and int(hist.sites["discontinuations"].sum()) == 3
    out = report(spec(files), tmp_path / "nine.pdf", progress=False)
    body = flat(out)
    for h in HEADINGS:
        assert h in body, h
    assert "No annual panel was given" in body
    assert "The data read: 9 sites" in body


def monotone(tmp_path):
    """No discontinuation ever while recent_leader_change is 1: its Cox likelihood is monotone."""
    files = cohort_files(tmp_path, 12, seed=3,
                         effects={"discontinue": {"recent_leader_change": -40.0}})
    hist = ims.read_history(files["events"], files["covariates"], files["sites"])
    ag = hist.counting_process("ag")
    assert ag.loc[ag["recent_leader_change"] == 1, "event"].sum() == 0
    assert (ag["recent_leader_change"] == 1).any()
    return files


def test_term_not_estimable_is_said_not_printed_as_a_number(tmp_path):
    out = report(spec(monotone(tmp_path)), tmp_path / "mono.pdf", progress=False)
    body = text(out)
    rows = [line for line in body.splitlines()
            if re.match(r"\s*(AG|PWP-TT|PWP-GT|WLW)\s+Recent leadership change", line)]
    assert len(rows) == 8  # the Firth table (the default test) and the ordinary table
    assert all("not estimable" in r and "diverges (monotone" in r for r in rows[4:])
    # no hazard ratio of 1e6 or more is printed as an estimate anywhere before Provenance
    # (whose SHA-256 digests of the temporary spec and data files can hold long digit runs)
    results = body[:body.rindex("Provenance")]
    numbers = [float(x) for x in re.findall(r"(?<![\w.])\d+(?:\.\d+)?(?:e[+-]?\d+)?",
                                            results)]
    assert max(numbers) < 1e6
    assert "Not estimable in the ordinary fit: Recent leadership change (1 yr)" in " ".join(
        body.split())
    frailty = body.split("Site heterogeneity: shared gamma frailty")[2]  # [1]: contents
    assert ("diverges" in frailty.split("Methods")[0]
            or "This section could not be estimated on these data" in frailty)
    # the Firth-penalised refit gives a finite hazard ratio with a profile interval
    ag = rows[0]  # AG in the Firth table
    m = re.search(r"\(1 yr\)\s+(\S+)\s+(\S+)\s+(\S+)", ag)
    assert m, ag
    assert 0 < float(m.group(1)) < 1e3 and re.fullmatch(r"\d+\.\d\d–\d+\.\d\d", m.group(2))
    assert "Heinze G, Schemper M (2001)" in " ".join(body.split())


def test_constant_covariate_says_so(tmp_path):
    def constant(c):
        c.covariates["training_access"] = 1

    files = cohort_files(tmp_path, 10, seed=2, edit=constant)
    out = report(spec(files, ["summary", "recurrent", "ph"]), tmp_path / "const.pdf",
                 progress=False)
    body = flat(out)
    assert "This section could not be estimated on these data" in body
    assert "covariate 'training_access' is constant in these data" in body
    assert "Sections and models not estimated" in body


def test_singular_frailty_information_is_reported_and_the_pdf_written(tmp_path, monkeypatch):
    import imrsurv.models.cox as cox

    real = cox.fit_cox

    def singular(*args, **kw):
        if kw.get("frailty"):
            raise np.linalg.LinAlgError("Singular matrix")
        return real(*args, **kw)

    monkeypatch.setattr(cox, "fit_cox", singular)
    files = cohort_files(tmp_path, 9, seed=1)
    out = report(spec(files, ["summary", "km", "frailty"]), tmp_path / "f.pdf", progress=False)
    body = flat(out)
    sec = body.split("Site heterogeneity: shared gamma frailty")[2]  # [1]: contents
    assert sec.startswith(" This section could not be estimated on these data: the "
                          "information matrix is singular (Singular matrix)")
    assert "LinAlgError" in body.split("Sections and models not estimated")[-1]
    assert "Time to first discontinuation" in body  # the other sections are intact


def test_a_failing_section_leaves_no_partial_pages(tmp_path, monkeypatch):
    import imrsurv.models.mcf as mcf_mod

    def broken(*a, **k):
        raise ims.DataError(["no events in group x"], "cannot estimate")

    monkeypatch.setattr(mcf_mod, "mcf_at", broken)  # after the figure is drawn
    out = report(spec(cohort_files(tmp_path, 9, seed=1), ["mcf", "states"]),
                 tmp_path / "m.pdf", progress=False)
    body = flat(out)
    assert "no events in group x" in body
    assert "Expected number of discontinuations per site by time" not in body  # figure gone
    assert "Sustained, discontinued, restarted over time" in body


def test_unexpected_errors_are_not_hidden(tmp_path, monkeypatch):
    import imrsurv.models.mcf as mcf_mod

    def bug(*a, **k):
        raise KeyError("a bug")

    monkeypatch.setattr(mcf_mod, "mcf_at", bug)
    with pytest.raises(KeyError):
        report(spec(cohort_files(tmp_path, 9, seed=1), ["mcf"]), tmp_path / "k.pdf",
               progress=False)
    assert not (tmp_path / "k.pdf").exists()


def test_known_failures_are_a_short_explicit_list():
    assert build.NUMERICAL_FAILURES == (np.linalg.LinAlgError, FloatingPointError)


def test_replicate_on_a_tiny_cohort(tmp_path):
    from imrsurv.cli import main

    files = monotone(tmp_path)
    out = tmp_path / "rep.pdf"
    assert main(["replicate", "bond2014", "--data", files["events"], "--covariates",
                 files["covariates"], "--sites", files["sites"], "--out", str(out),
                 "--quiet"]) == 0
    body = flat(out)
    assert "Bond et al. 2014 (%)" in body and "not estimable" in body
    assert pd.notna(body)


def test_wald_spec_puts_the_ordinary_table_first(tmp_path):
    files = monotone(tmp_path)
    sp = spec(files, ["summary", "recurrent"])
    sp["analysis"]["test"] = "wald"
    out = report(sp, tmp_path / "wald.pdf", progress=False)
    body = text(out)
    rows = [line for line in body.splitlines()
            if re.match(r"\s*(AG|PWP-TT|PWP-GT|WLW)\s+Recent leadership change", line)]
    assert len(rows) == 8 and all("not estimable" in r for r in rows[:4])
    words = flat(out)
    assert words.index("ordinary fits, robust (Lin-Wei) Wald limits") < words.index(
        "for the models with a diverging term")

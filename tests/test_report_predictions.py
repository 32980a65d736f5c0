"""Report section "predictions": trajectories with uncertainty, honest at 9-49 sites."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

import imrsurv as ims
from imrsurv.report.build import report
from imrsurv.report.section_predictions import typical_profile
from tests.test_report_degrade import cohort_files, flat


def _spec(data: dict, **analysis) -> dict:
    return {"study": {"title": "predictions"}, "data": data,
            "analysis": {"sections": ["summary", "predictions"], **analysis}}


def test_bond_cohort_predictions_section(tmp_path):
    out = report(_spec({"dataset": "bond2014"}), tmp_path / "p.pdf", progress=False)
    body = flat(out)
    assert "Predicted trajectories with uncertainty" in body
    assert "Firth-penalised transition-specific Cox models" in body
    assert "new leader in year 2" in body
    assert "Expected years in each state over the first 6 years" in body
    assert "Discrete-time survival for the typical site" in body
    assert "Hunter SB" in body  # cited
    # the probability cells are "p (lo–hi)" with 0 <= lo <= p <= hi <= 1
    cells = re.findall(r"(\d\.\d\d) \((\d\.\d\d)–(\d\.\d\d)\)", body)
    assert len(cells) >= 36
    for p, lo, hi in cells:
        assert float(lo) <= float(p) <= float(hi)
    # the typical site's values are the sites' medians at their start
    hist = ims.read_history(*[ims.datasets.data_path("bond2014") / f for f in
                              ("events.csv", "covariates.csv", "sites.csv")])
    prof = typical_profile(hist.counting_process("ag"), ["team_size", "training_access"])
    first = hist.counting_process("ag").sort_values(["site", "start"]).groupby("site").head(1)
    assert prof["team_size"] == pytest.approx(float(first["team_size"].median()))
    assert f"Team size {prof['team_size']:g}" in body


def test_change_year_is_read_from_the_spec(tmp_path):
    out = report(_spec({"dataset": "bond2014"}, change_year=3.5), tmp_path / "p.pdf",
                 progress=False)
    assert "new leader in year 3.5" in flat(out)


def test_nine_sites_say_what_cannot_be_estimated(tmp_path):
    files = cohort_files(tmp_path, 9, seed=1)
    out = report(_spec(files), tmp_path / "nine.pdf", progress=False)
    body = flat(out)
    assert "Predicted trajectories with uncertainty" in body
    # nine sites, three discontinuations: no restart to re-discontinue from, so the
    # transition models cannot all be fitted; the PDF says so instead of printing numbers
    assert "State probabilities for a typical site could not be estimated" in body
    assert "restarted->discontinued: event column" in body and "has no events" in body
    assert "Expected years" not in body
    assert "No annual panel was given" in body
    assert not re.search(r"\d\.\d+e\+?\d{2,}", body.split("Provenance")[0])


def test_wald_reports_refuse_diverging_predictions(tmp_path):
    """test = "wald": a diverging coefficient stops the curves, with the reason; Firth
    (the default) gives finite curves on the same data. 20 sites, seed 34: the
    restarted->discontinued model has a monotone likelihood."""
    files = cohort_files(tmp_path, 20, seed=34)
    body = flat(report(_spec(files, test="wald"), tmp_path / "wald.pdf", progress=False))
    assert "State probabilities for a typical site could not be estimated" in body
    assert "diverges (monotone likelihood)" in body
    assert 'refit with penalty="firth"' in body
    assert "Expected years" not in body
    firth = flat(report(_spec(files), tmp_path / "firth.pdf", progress=False))
    assert "Expected years in each state" in firth


def test_typical_profile_rules():
    fr = pd.DataFrame({"site": ["a", "a", "b", "c"], "start": [0, 1, 0, 0],
                       "team_size": [3, 9, 5, 8], "training_access": [1, 0, 0, 1],
                       "recent_leader_change": [0, 1, 1, 0]})
    prof = typical_profile(fr, ["team_size", "training_access", "recent_leader_change"])
    assert prof == {"team_size": 5.0, "training_access": 1.0, "recent_leader_change": 0.0}
    with pytest.raises(ims.DataError, match="no numeric values"):
        typical_profile(fr.assign(team_size=np.nan), ["team_size"])

"""Annual panels: read_panel validation and person-period layout; discrete-time
hazard models against R glm(binomial(link=...)) and sandwich::vcovCL."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from imrsurv.errors import DataError
from imrsurv.models.discrete import fit_discrete_time
from imrsurv.panel import read_panel

HERE = Path(__file__).parent / "fixtures" / "states"
REF = json.loads((HERE / "glm.json").read_text())
MODELS = {
    "cloglog_year": ("C(year) + team_size + leader_change + training_access", "cloglog",
                     "discontinue"),
    "logit_year": ("C(year) + team_size + leader_change + training_access", "logit",
                   "discontinue"),
    "cloglog_bs": ("bs(year, df=3) + team_size + leader_change", "cloglog", "discontinue"),
    "logit_restart": ("team_size + year", "logit", "restart"),
}


@pytest.fixture(scope="module")
def panel():
    return read_panel(HERE / "panel.csv")


def test_person_period_counts_match_r(panel):
    pp = REF["person_period"]
    assert len(panel) == pp["n"]
    assert panel["at_risk"].sum() == pp["at_risk"]
    assert panel["event"].sum() == pp["events"]
    assert panel["restart_at_risk"].sum() == pp["restart_at_risk"]
    assert panel["restart_event"].sum() == pp["restart_events"]


@pytest.mark.parametrize("key", list(MODELS))
def test_glm_matches_r(panel, key):
    formula, link, outcome = MODELS[key]
    res = fit_discrete_time(panel, formula, link=link, outcome=outcome, vcov="CR1")
    ref = REF[key]
    assert len(res.params) == len(ref["terms"])
    assert res.nobs == ref["nobs"]
    np.testing.assert_allclose(res.params, ref["coef"], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(res.se_naive, ref["se"], rtol=1e-6)
    np.testing.assert_allclose(res.se, ref["robust_se"], rtol=1e-6)
    hc0 = fit_discrete_time(panel, formula, link=link, outcome=outcome, vcov="CR0")
    np.testing.assert_allclose(hc0.se, ref["robust_se_hc0"], rtol=1e-6)
    assert res.loglik == pytest.approx(ref["loglik"], rel=1e-9)


def test_summary_and_notes(panel):
    res = fit_discrete_time(panel, "C(year) + team_size", link="cloglog", vcov="CR1")
    s = res.summary
    assert list(s.columns) == ["coef", "exp(coef)", "se", "z", "p", "lower 95%", "upper 95%",
                               "exp(lower 95%)", "exp(upper 95%)"]
    np.testing.assert_allclose(s["z"], res.params / res.se)
    assert any("cluster-robust" in n for n in res.notes)
    text = str(res)
    assert "cloglog" in text and "site-years at risk" in text and "HR" in text
    lg = fit_discrete_time(panel, "team_size", link="logit")
    assert "t" in lg.summary.columns and "df" in lg.summary.columns
    assert "exp(coef) = OR" in str(lg)
    h = res.hazard(panel.head(3))
    assert ((h > 0) & (h < 1)).all()


def test_raw_panel_and_path_inputs(panel):
    a = fit_discrete_time(HERE / "panel.csv", "team_size + year")
    raw = pd.read_csv(HERE / "panel.csv")
    b = fit_discrete_time(raw, "team_size + year")
    c = fit_discrete_time(panel, "~ team_size + year")
    np.testing.assert_allclose(a.params, b.params)
    np.testing.assert_allclose(a.params, c.params)
    with pytest.raises(ValueError, match="right-hand side"):
        fit_discrete_time(panel, "active ~ team_size")
    with pytest.raises(ValueError, match="link"):
        fit_discrete_time(panel, "team_size", link="probit")


def test_missing_covariates_are_reported_not_silently_dropped(panel):
    p = panel.copy()
    idx = p.index[p["at_risk"] == 1][:3]
    p.loc[idx, "team_size"] = np.nan
    res = fit_discrete_time(p, "team_size + year")
    assert res.nobs == int(p["at_risk"].sum()) - 3
    assert len(res.dropped) == 3
    note = [n for n in res.notes if "left out 3" in n]
    assert note and "line" in note[0] and "P0" in note[0]


def test_read_panel_layout():
    raw = pd.DataFrame({
        "site": ["b", "a", "a", "a", "a", "b"],
        "year": [2, 1, 2, 3, 4, 1],
        "active": [1, 1, 0, 1, 0, 0],
        "x": [1, 2, 3, 4, 5, 6],
    })
    pp = read_panel(raw)
    assert pp["site"].tolist() == ["a"] * 4 + ["b"] * 2
    # a: 1 -> 0 (disc) -> 1 (restart) -> 0 (disc); b: first interview inactive = disc
    assert pp["at_risk"].tolist() == [1, 1, 0, 1, 1, 0]
    assert pp["event"].tolist() == [0, 1, 0, 1, 1, 0]
    assert pp["restart_at_risk"].tolist() == [0, 0, 1, 0, 0, 1]
    assert pp["restart_event"].tolist() == [0, 0, 1, 0, 0, 1]
    assert pp["where"].tolist()[0] == "row 1"


def test_read_panel_names_every_bad_row(tmp_path):
    text = ("site,year,active,team_size\n"
            "a,1,1,3\n"       # line 2
            "a,2,yes,3\n"     # line 3: active not 0/1
            "a,2,1,3\n"       # line 4: duplicate of line 3's year
            "b,1,1,3\n"       # line 5
            "b,4,0,3\n"       # line 6: gap (2, 3 missing)
            ",2,1,3\n"        # line 7: no site
            "c,1.5,1,3\n")    # line 8: year not whole
    path = tmp_path / "panel.csv"
    path.write_text(text)
    with pytest.raises(DataError) as e:
        read_panel(path)
    probs = e.value.problems
    where = {p.where: p for p in probs}
    assert set(where) == {"line 3", "line 4", "line 6", "line 7", "line 8"}
    assert where["line 3"].site == "a" and "0 or 1" in where["line 3"].message
    assert "duplicate" in where["line 4"].message and "line 3" in where["line 4"].message
    assert where["line 6"].site == "b" and "missing 2, 3" in where["line 6"].message
    assert "whole number" in where["line 8"].message
    assert "panel.csv" in str(e.value)
    with pytest.raises(DataError, match="active"):
        read_panel(pd.DataFrame({"site": ["a"], "year": [1]}))


def test_read_panel_custom_names():
    raw = pd.DataFrame({"clinic": ["a", "a"], "wave": [0, 1], "running": [1, 0]})
    pp = read_panel(raw, site="clinic", year="wave", active="running")
    assert pp["event"].tolist() == [0, 1]
    with pytest.raises(DataError, match="at least 2 clusters"):
        fit_discrete_time(pp, "1", cluster="clinic", link="logit")
    two = read_panel(pd.concat([raw, raw.assign(clinic="b")]), site="clinic", year="wave",
                     active="running")
    res = fit_discrete_time(two, "1", cluster="clinic", link="logit")
    assert res.params.iloc[0] == pytest.approx(0.0)  # 2 events in 4 at-risk rows

"""Per-term likelihood-ratio, score and robust score tests and profile limits, against R."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import imrsurv as ims

FIX = Path(__file__).parent / "fixtures"
REF = json.loads((FIX / "cox_terms" / "term_tests.json").read_text())
TERMS = {"recent_leader_change": "recent_leader_change", "team_size": "team_size",
         "training_access": "training_access", "practice": "C(practice)"}


@pytest.fixture(scope="module")
def recurrent():
    return pd.read_csv(FIX / "cox" / "recurrent.csv")


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_term_tests_match_r(recurrent, ties):
    res = ims.fit_cox(recurrent, " + ".join(TERMS.values()), start="start", stop="stop",
                      event="event", strata="episode", cluster="site", ties=ties)
    ref = REF[ties]
    np.testing.assert_allclose(res.params.to_numpy(), list(ref["coef"].values()), rtol=1e-8)
    tt = res.term_tests
    for rname, term in TERMS.items():
        r = ref["tests"][rname]
        assert tt.loc[term, "df"] == r["df"]
        for col, key in (("lrt", "lrt"), ("score", "score"), ("robust score", "robust_score")):
            assert tt.loc[term, col] == pytest.approx(r[key], rel=1e-7), (term, col)
    # p-values are chi-square on the term's df
    assert tt.loc["C(practice)", "p lrt"] == pytest.approx(np.exp(-tt.loc["C(practice)",
                                                                          "lrt"] / 2))
    prof = res.profile_ci()
    for term, (lo, hi) in ref["profile"].items():
        assert prof.loc[term, "lower"] == pytest.approx(lo, abs=1e-7)
        assert prof.loc[term, "upper"] == pytest.approx(hi, abs=1e-7)
    assert res.conf_int(method="profile").equals(prof)
    assert list(res.conf_int().columns) == ["lower", "upper"]


def test_monotone_profile_and_lrt_match_r():
    data = pd.read_csv(FIX / "firth" / "cohort10.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = ims.fit_cox(data, "recent_leader_change + team_size + training_access",
                          start="start", stop="stop", event="event", ties="breslow")
    ref = REF["cohort10"]
    lim = res.profile_ci()
    assert lim.loc["recent_leader_change", "lower"] == -np.inf
    assert lim.loc["recent_leader_change", "upper"] == pytest.approx(ref["upper"], abs=1e-6)
    # the LRT is well defined at the supremum of a monotone likelihood
    assert res.term_tests.loc["recent_leader_change", "lrt"] == pytest.approx(ref["lrt"],
                                                                               rel=1e-5)


def test_single_term_robust_score_equals_global(recurrent):
    res = ims.fit_cox(recurrent, "team_size", start="start", stop="stop", event="event",
                      cluster="site")
    tt = res.term_tests
    assert tt.loc["team_size", "robust score"] == pytest.approx(
        res.tests.loc["robust score", "statistic"], rel=1e-10)
    assert tt.loc["team_size", "score"] == pytest.approx(res.tests.loc["score", "statistic"],
                                                          rel=1e-10)


def test_cr2_variance(recurrent):
    """CR2: sum of cluster informations is I; bound 0 gives Lin-Wei; inflation grows as
    clusters get fewer; t reference on G - 1 df."""
    from imrsurv.models import cox_inference as inf

    formula = "recent_leader_change + team_size + training_access"
    kw = {"start": "start", "stop": "stop", "event": "event", "strata": "episode",
          "cluster": "site", "weights": "w"}
    lw = ims.fit_cox(recurrent, formula, **kw)
    cr2 = ims.fit_cox(recurrent, formula, small_sample="cr2", **kw)
    pb, st = lw._pb, lw._nr.state
    ig = inf.cluster_information(pb, st, lw._cluster_codes)
    np.testing.assert_allclose(ig.sum(0), st.info, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(inf.cr2_vcov(pb, st, lw._nr.var, lw._cluster_codes, bound=0.0),
                               lw.cov.to_numpy(), rtol=1e-10)
    assert (cr2.se > lw.se).all() and ((cr2.se / lw.se) < 1.1).all()
    np.testing.assert_allclose(cr2.params, lw.params)
    sm = cr2.summary
    assert "t" in sm.columns and (sm["df"] == 79).all()
    from scipy import stats
    np.testing.assert_allclose(sm["p"], 2 * stats.t.sf(np.abs(cr2.params / cr2.se), 79))
    assert any("CR2" in n for n in cr2.notes)
    # 12 sites: the leverage of each cluster is large, and so is the correction
    few = recurrent[recurrent["site"].isin(sorted(recurrent["site"].unique())[:12])]
    lw12 = ims.fit_cox(few, formula, **kw)
    cr12 = ims.fit_cox(few, formula, small_sample="cr2", **kw)
    assert ((cr12.se / lw12.se).min() > (cr2.se / lw.se).max())
    with pytest.raises(ims.DataError, match="pass cluster= too"):
        ims.fit_cox(recurrent, formula, start="start", stop="stop", event="event",
                    small_sample="cr2")
    with pytest.raises(ims.DataError, match='small_sample must be None or "cr2"'):
        ims.fit_cox(recurrent, formula, small_sample="CR3", **kw)

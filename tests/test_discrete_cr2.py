"""Small-sample cluster-robust inference for the discrete-time GLM against R clubSandwich:
vcovCR(type = "CR2"/"CR1"), coef_test (Satterthwaite, naive-t, z) and conf_int.
Fixtures: tests/fixtures/discrete_cr2/make_fixtures.R -> cr2.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from imrsurv.errors import DataError
from imrsurv.models._cr2 import glm_cluster_robust
from imrsurv.models.discrete import fit_discrete_time
from imrsurv.panel import read_panel

ROOT = Path(__file__).parent.parent
REF = json.loads((Path(__file__).parent / "fixtures" / "discrete_cr2" / "cr2.json").read_text())
CASES = [k for k, v in REF.items() if isinstance(v, dict) and "cr2" in v]
RTOL = 1e-6


@pytest.fixture(scope="module")
def panels():
    bond = read_panel(ROOT / "datasets" / "bond2014" / "panel.csv")
    first12 = sorted(bond["site"].unique())[:12]
    return {"bond": bond, "norway": read_panel(ROOT / "datasets" / "norway_imr" / "panel.csv"),
            "bond12": bond[bond["site"].isin(first12)]}


def _fit(panels, key, **kw):
    ref = REF[key]
    rhs = ref["rhs"].replace("factor(year)", "C(year)")
    res = fit_discrete_time(panels[key.split("_")[0]], rhs, link=ref["link"],
                            outcome=ref["outcome"], **kw)
    assert res.nobs == ref["nobs"] and res.n_sites == ref["n_clusters"]
    assert len(res.params) == len(ref["terms"])
    return res, ref


def _close_matrix(got, want):
    """Entries relative to sqrt(V_ii V_jj), so near-zero covariances are not over-weighted."""
    got, want = np.asarray(got), np.asarray(want)
    scale = np.sqrt(np.outer(np.diag(want), np.diag(want)))
    assert np.max(np.abs(got - want) / scale) < RTOL
    np.testing.assert_allclose(np.diag(got), np.diag(want), rtol=RTOL)


def test_cases_cover_few_and_many_sites():
    assert sorted({REF[k]["n_clusters"] for k in CASES}) == [9, 12, 19, 49]
    assert {REF[k]["link"] for k in CASES} == {"cloglog", "logit"}


@pytest.mark.parametrize("key", CASES)
def test_cr2_satterthwaite_matches_clubsandwich(panels, key):
    res, ref = _fit(panels, key)  # the defaults: CR2, Satterthwaite
    assert res.vcov_type == "CR2" and res.test == "Satterthwaite"
    c = ref["cr2"]
    np.testing.assert_allclose(res.params, c["beta"], rtol=RTOL)
    _close_matrix(res.cov, ref["vcov_cr2"])
    sm = res.summary
    np.testing.assert_allclose(sm["se"], c["SE"], rtol=RTOL)
    np.testing.assert_allclose(sm["t"], c["tstat"], rtol=RTOL)
    np.testing.assert_allclose(sm["df"], c["df_Satt"], rtol=RTOL)
    np.testing.assert_allclose(sm["p"], c["p_Satt"], rtol=RTOL)
    np.testing.assert_allclose(sm["lower 95%"], c["lower_Satt"], rtol=RTOL)
    np.testing.assert_allclose(sm["upper 95%"], c["upper_Satt"], rtol=RTOL)
    np.testing.assert_allclose(sm["exp(upper 95%)"], np.exp(c["upper_Satt"]), rtol=RTOL)
    # the Satterthwaite df are below G-1: the t reference is wider than naive-t
    assert (sm["df"] < res.n_sites - 1).all()


@pytest.mark.parametrize("key", CASES)
def test_cr2_naive_t_and_z(panels, key):
    res, ref = _fit(panels, key, test="naive-t")
    c = ref["cr2"]
    sm = res.summary
    assert (sm["df"] == ref["n_clusters"] - 1).all()
    np.testing.assert_allclose(sm["p"], c["p_t"], rtol=RTOL)
    np.testing.assert_allclose(sm["lower 95%"], c["lower_t"], rtol=RTOL)
    np.testing.assert_allclose(sm["upper 95%"], c["upper_t"], rtol=RTOL)
    z, _ = _fit(panels, key, test="z")
    assert "z" in z.summary.columns and "df" not in z.summary.columns
    np.testing.assert_allclose(z.summary["p"], c["p_z"], rtol=RTOL)
    np.testing.assert_allclose(z.se, c["SE"], rtol=RTOL)


@pytest.mark.parametrize("key", CASES)
def test_cr1_is_vcovcl_and_has_satterthwaite_df(panels, key):
    res, ref = _fit(panels, key, vcov="CR1", test="Satterthwaite")
    _close_matrix(res.cov, ref["vcov_cr1"])
    _close_matrix(res.cov, ref["vcov_cl"])  # clubSandwich CR1 == sandwich::vcovCL
    np.testing.assert_allclose(res.se, ref["cr1"]["SE"], rtol=RTOL)
    np.testing.assert_allclose(res.summary["df"], ref["cr1"]["df_Satt"], rtol=RTOL)
    np.testing.assert_allclose(res.summary["p"], ref["cr1"]["p_Satt"], rtol=RTOL)
    cl, _ = _fit(panels, key, vcov="cl")  # alias, old default reference (z)
    assert cl.test == "z"
    np.testing.assert_allclose(cl.cov, res.cov, rtol=0, atol=0)


def test_cr2_larger_than_cr1_with_few_sites(panels):
    a, _ = _fit(panels, "norway_cloglog")
    b, _ = _fit(panels, "norway_cloglog", vcov="CR1")
    assert (a.se > b.se).all()  # bias reduction inflates the errors at 9 sites
    assert (a.summary["p"] > b.summary["p"]).all()


def test_cr2_of_a_linear_model_is_bell_mccaffrey():
    """Identity link, unit variance: A_j = (I - H_jj)^{-1/2}, the OLS CR2 of Bell & McCaffrey,
    computed here directly from its definition."""
    rng = np.random.default_rng(7)
    n, G = 60, 8
    groups = np.sort(rng.integers(0, G, n))
    X = np.column_stack([np.ones(n), rng.normal(size=n), rng.integers(0, 2, n)])
    y = X @ [1.0, 0.5, -0.3] + rng.normal(size=n)
    beta = np.linalg.lstsq(X, y, rcond=None)[0]
    got = glm_cluster_robust(X, y, X @ beta, np.ones(n), np.ones(n), groups, "CR2")
    M = np.linalg.inv(X.T @ X)
    meat = np.zeros((3, 3))
    for j in range(G):
        k = groups == j
        vals, vecs = np.linalg.eigh(np.eye(k.sum()) - X[k] @ M @ X[k].T)
        A = vecs @ np.diag(vals ** -0.5) @ vecs.T
        u = X[k].T @ A @ (y - X @ beta)[k]
        meat += np.outer(u, u)
    np.testing.assert_allclose(got.cov, M @ meat @ M, rtol=1e-10)
    # Satterthwaite df lie between 1 and G - 1 here
    assert ((got.df_satterthwaite > 1) & (got.df_satterthwaite < G)).all()


def test_notes_say_what_errors_and_tests_account_for(panels):
    res, _ = _fit(panels, "norway_cloglog")
    text = " ".join(res.notes)
    assert "CR2" in text and "clubSandwich" in text and "Satterthwaite" in text
    assert "9 clusters" in text
    low = [n for n in res.notes if "df below 4" in n]
    small = res.df_satterthwaite[res.df_satterthwaite < 4]
    assert bool(low) == (len(small) > 0)
    for term in small.index:
        assert term in low[0]
    z, _ = _fit(panels, "norway_cloglog", vcov="CR1", test="z")
    zt = " ".join(z.notes)
    assert "anti-conservative" in zt and "only 9 clusters" in zt
    assert "t" not in z.summary.columns


def test_str_shows_t_and_df(panels):
    res, _ = _fit(panels, "bond12_logit")
    text = str(res)
    assert "CR2" in text and "Satterthwaite" in text and " df " in text


def test_misspelt_arguments_raise_dataerror_naming_allowed(panels):
    with pytest.raises(DataError) as e:
        fit_discrete_time(panels["bond"], "team_size", vcov="CR3", test="satt", link="probit")
    msg = str(e.value)
    assert len(e.value.problems) == 3
    assert "'CR3'" in msg and "'CR2'" in msg and "'CL'" in msg
    assert "'satt'" in msg and "'Satterthwaite'" in msg and "'naive-t'" in msg
    assert "'probit'" in msg and "'cloglog'" in msg
    with pytest.raises(DataError, match="conf_level"):
        fit_discrete_time(panels["bond"], "team_size", conf_level=95)


def test_single_cluster_is_a_clear_error(panels):
    one = panels["bond"][panels["bond"]["site"] == "S01"]
    with pytest.raises(DataError, match="at least 2 clusters") as e:
        fit_discrete_time(one, "year")
    assert e.value.problems[0].site == "S01"


def test_collinear_design_names_the_aliased_column(panels):
    p = panels["bond"].copy()
    p["team_twice"] = 2 * p["team_size"]
    with pytest.raises(DataError, match="team_twice|team_size") as e:
        fit_discrete_time(p, "team_size + team_twice")
    assert "linear combinations" in str(e.value)


def test_conf_level_uses_t_quantile(panels):
    res, _ = _fit(panels, "bond12_cloglog")
    r90 = fit_discrete_time(panels["bond12"], REF["bond12_cloglog"]["rhs"], conf_level=0.9)
    q = stats.t.ppf(0.95, res.df_satterthwaite)
    np.testing.assert_allclose(r90.summary["upper 90%"], res.params + q * res.se, rtol=1e-12)
    assert isinstance(r90.summary, pd.DataFrame)


def test_separated_year_does_not_crash_and_is_flagged():
    """No events in the reference year: the intercept runs away; CR2 still returns, and the
    notes say the robust errors of the separated terms are not meaningful."""
    rng = np.random.default_rng(3)
    G = 40
    stop = rng.integers(2, 8, G)  # every site discontinues in year 2-7, never in year 1
    rows = [{"site": f"s{s:02d}", "year": y, "active": int(y < stop[s]),
             "team_size": int(rng.integers(1, 9))}
            for s in range(G) for y in range(1, min(stop[s], 6) + 1)]
    res = fit_discrete_time(pd.DataFrame(rows), "C(year) + team_size")
    sep = [n for n in res.notes if "separation" in n]
    assert sep and "Intercept" in sep[0] and "not meaningful" in sep[0]
    assert np.isfinite(res.se["team_size"]) and res.se["team_size"] > 0
    assert np.isfinite(res.summary.loc["team_size", "df"])


def test_result_protocol():
    """DiscreteTimeResult speaks the shared protocol (conf_int at its own level, pvalues,
    print_summary, HTML, plot)."""
    import matplotlib

    matplotlib.use("Agg")
    import imrsurv as ims

    panel = ims.read_panel("datasets/bond2014/panel.csv")
    res = ims.fit_discrete_time(panel, "C(year) + team_size", conf_level=0.9)
    sm = res.summary
    ci = res.conf_int(0.9)
    assert list(ci.columns) == ["lower", "upper"]
    np.testing.assert_allclose(ci["lower"], sm["lower 90%"])
    np.testing.assert_allclose(res.pvalues, sm["p"])
    assert "team_size" in res._repr_html_() and "Satterthwaite" in res._repr_html_()
    ax = res.plot()
    assert len(ax.get_yticklabels()) == len(sm)

"""Survival curves from the discrete-time model (DiscreteTimeResult.predict_survival,
restricted_mean, plot_survival): the delta method against finite differences, against R
(glm + vcov / sandwich::vcovCL; tests/fixtures/discrete_predict/make_fixtures.R ->
survival.json), against a seeded cluster bootstrap, covariate paths and bad input."""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

from imrsurv.errors import DataError
from imrsurv.models.discrete import fit_discrete_time
from imrsurv.panel import read_panel

matplotlib.use("Agg")

HERE = Path(__file__).parent / "fixtures" / "discrete_predict"
REF = json.loads((HERE / "survival.json").read_text())
YEAR_RHS = "C(year) + team_size + leadership_change"
FIXED = {"team_size": 4, "leadership_change": 0}


@pytest.fixture(scope="module")
def panel():
    return read_panel(HERE / "panel.csv")


@pytest.fixture(scope="module")
def fit(panel):
    return fit_discrete_time(panel, YEAR_RHS)  # CR2, the default


def _path(leader_year: int = 2) -> pd.DataFrame:
    return pd.DataFrame({"year": range(1, 7), "team_size": 4,
                         "leadership_change": [int(y == leader_year) for y in range(1, 7)]})


def _profile_frame(profile, years=range(1, 7)) -> pd.DataFrame:
    if isinstance(profile, pd.DataFrame):
        return profile
    return pd.DataFrame({**{k: [v] * len(years) for k, v in profile.items()},
                         "year": list(years)})


def _brute_survival(res, profile, beta) -> np.ndarray:
    """S(t) by the model's own hazard() at coefficients beta: prod (1 - h_k)."""
    r = dataclasses.replace(res, params=pd.Series(beta, index=res.params.index))
    h = r.hazard(_profile_frame(profile)).to_numpy()
    return np.cumprod(1 - h)


def _fd_jacobian(f, beta: np.ndarray, step: float = 1e-6) -> np.ndarray:
    cols = []
    for j in range(len(beta)):
        e = np.zeros_like(beta)
        e[j] = step * max(1.0, abs(beta[j]))
        cols.append((f(beta + e) - f(beta - e)) / (2 * e[j]))
    return np.column_stack(cols)


# -- (a) the delta method equals a brute-force finite-difference delta method --------------

@pytest.mark.parametrize("link,rhs", [("cloglog", YEAR_RHS),
                                      ("logit", "bs(year, df=3) + team_size + training")])
@pytest.mark.parametrize("profile", ["fixed", "path"])
def test_delta_method_equals_finite_differences(panel, link, rhs, profile):
    res = fit_discrete_time(panel, rhs, link=link)
    prof = ({"team_size": 4, "leadership_change": 0, "training": 1} if profile == "fixed"
            else _path().assign(training=[1, 1, 0, 0, 1, 1]))
    beta = res.params.to_numpy()
    V = res.cov.to_numpy()
    J = _fd_jacobian(lambda b: _brute_survival(res, prof, b), beta)
    se_fd = np.sqrt(np.einsum("ij,jk,ik->i", J, V, J))
    pred = res.predict_survival(prof)
    np.testing.assert_allclose(pred["survival"], _brute_survival(res, prof, beta), rtol=1e-12)
    np.testing.assert_allclose(pred["se"], se_fd, rtol=1e-6)
    assert (pred["se"] > 0).all() and pred["se"].is_unique
    # restricted mean sum_k S(k) and its se
    rm = res.restricted_mean(prof, 6)
    g = J.sum(axis=0)
    assert rm["restricted_mean"].iloc[0] == pytest.approx(pred["survival"].sum(), rel=1e-12)
    assert rm["se"].iloc[0] == pytest.approx(np.sqrt(g @ V @ g), rel=1e-6)


# -- (b) against R: glm(binomial), vcov(glm) and sandwich::vcovCL(cluster = ~site) -------

R_MODELS = {"cloglog_year": YEAR_RHS, "logit_linear": "year + team_size + training"}


@pytest.mark.parametrize("key", list(R_MODELS))
@pytest.mark.parametrize("which", ["fixed", "path"])
@pytest.mark.parametrize("v", ["naive", "CL"])
def test_survival_and_se_match_r(panel, key, which, v):
    ref = REF[key]
    res = fit_discrete_time(panel, R_MODELS[key], link=ref["link"], vcov="CR1", tol=1e-14)
    assert res.nobs == REF["nobs"] and res.n_sites == REF["n_sites"]
    np.testing.assert_allclose(res.params, ref["coef"], rtol=1e-9)
    prof = REF["fixed"] if which == "fixed" else pd.DataFrame(REF["path"])
    vc = "naive" if v == "naive" else None  # the fit's own covariance is CR1 = vcovCL
    r = ref[f"{which}_{v}"]
    pred = res.predict_survival(prof, vcov=vc)
    assert pred["period"].tolist() == r["period"]
    for col, rcol in [("hazard", "hazard"), ("survival", "survival"), ("se", "se"),
                      ("lower 95%", "lower_loglog"), ("upper 95%", "upper_loglog")]:
        np.testing.assert_allclose(pred[col], r[rcol], rtol=1e-8, err_msg=col)
    log = res.predict_survival(prof, vcov=vc, conf_type="log")
    np.testing.assert_allclose(log["lower 95%"], r["lower_log"], rtol=1e-8)
    np.testing.assert_allclose(log["upper 95%"], r["upper_log"], rtol=1e-8)
    rm = res.restricted_mean(prof, 6, vcov=vc)
    assert rm["restricted_mean"].iloc[0] == pytest.approx(r["rm"], rel=1e-8)
    assert rm["se"].iloc[0] == pytest.approx(r["rm_se"], rel=1e-8)


def test_naive_and_robust_se_differ_and_notes_say_which(panel):
    res = fit_discrete_time(panel, YEAR_RHS, vcov="CR1")
    robust = res.predict_survival(FIXED)
    naive = res.predict_survival(FIXED, vcov="naive")
    np.testing.assert_allclose(robust["survival"], naive["survival"])
    assert np.abs(robust["se"] / naive["se"] - 1).max() > 0.01
    assert any("CR1 cluster-robust" in n for n in robust.attrs["notes"])
    assert any("model-based" in n for n in naive.attrs["notes"])
    cr2 = fit_discrete_time(panel, YEAR_RHS).predict_survival(FIXED)
    assert any("CR2 cluster-robust" in n for n in cr2.attrs["notes"])
    assert any("normal quantile" in n for n in cr2.attrs["notes"])


# -- (c) analytic se against a seeded cluster bootstrap ------------------------------------

def test_se_agrees_with_cluster_bootstrap(panel, fit):
    """Resample the 49 sites with replacement (B = 400, seeded), refit, SD of S(t).

    Resamples whose fit is flagged as separated (a year or level without events: runaway
    coefficients, S(t) at 0 or 1; the analytic se is NaN for such fits too) are left out
    and counted; they must be under 5%. The bootstrap SD's own Monte Carlo relative error
    is sqrt((kappa - 1) / (4 B')) (kappa the kurtosis of the B' kept replicates;
    1/sqrt(2 B') ~ 3.6% for normal replicates); it is computed and required below 5%, so
    the band 0.75-1.33 is at least 5 Monte Carlo SDs wide on each side, with the rest left
    for the CR2-vs-bootstrap difference at G = 49 (seen: 0.97-1.10). The check can fail:
    the same delta method with the covariances between terms dropped is 2-3.4 times the
    bootstrap SD."""
    rng = np.random.default_rng(12)
    B = 400
    risk = panel[panel["at_risk"] == 1]
    rows = {s: np.flatnonzero(risk["site"].to_numpy() == s) for s in risk["site"].unique()}
    sites = list(rows)
    est = fit.predict_survival(FIXED)
    reps, separated = [], 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # statsmodels warns of separation in a few resamples
        for _ in range(B):
            draw = rng.integers(0, len(sites), len(sites))
            idx = np.concatenate([rows[sites[d]] for d in draw])
            labels = np.concatenate([[f"b{i}"] * len(rows[sites[d]])
                                     for i, d in enumerate(draw)])
            boot = risk.iloc[idx].assign(site=labels).reset_index(drop=True)
            r = fit_discrete_time(boot, YEAR_RHS, vcov="CR0")
            if r.separated_terms:
                separated += 1
                continue
            reps.append(r.predict_survival(FIXED)["survival"].to_numpy())
    assert separated < 0.05 * B
    reps = np.array(reps)
    sd = reps.std(axis=0, ddof=1)
    z = (reps - reps.mean(axis=0)) / sd
    mc = np.sqrt(((z ** 4).mean(axis=0) - 1) / (4 * len(reps)))
    assert (mc < 0.05).all(), mc
    ratio = est["se"].to_numpy() / sd
    assert ((ratio > 0.75) & (ratio < 1.33)).all(), ratio
    # the band discriminates: ignoring the covariances between terms is far outside it
    V = np.diag(np.diag(fit.cov.to_numpy()))
    b = fit.params.to_numpy()
    J = _fd_jacobian(lambda beta: _brute_survival(fit, FIXED, beta), b)
    wrong = np.sqrt(np.einsum("ij,jk,ik->i", J, V, J)) / sd
    assert (wrong > 1.5).all(), wrong


# -- (d) bad input ----------------------------------------------------------------------

def test_profile_missing_a_column(fit):
    with pytest.raises(DataError, match="leadership_change"):
        fit.predict_survival({"team_size": 4})
    with pytest.raises(DataError, match="period column 'year'"):
        fit.predict_survival(_path().drop(columns="year"))
    with pytest.raises(DataError, match="filled in per period"):
        fit.predict_survival({**FIXED, "year": 3})
    with pytest.raises(DataError, match="missing value of 'team_size'"):
        fit.predict_survival(_path().assign(team_size=[4, 4, np.nan, 4, 4, 4]))
    with pytest.raises(DataError, match="no row for year 3"):
        fit.predict_survival(_path()[_path()["year"] != 3])


@pytest.mark.parametrize("bad", [7, 0, 2.5, "3", True, np.nan])
def test_period_outside_the_fitted_range(fit, bad):
    with pytest.raises(DataError, match="not a fitted period") as e:
        fit.predict_survival(FIXED, [1, bad])
    assert "1-6" in str(e.value)
    with pytest.raises(DataError, match="not a fitted period"):
        fit.restricted_mean(FIXED, bad)


def test_path_with_an_unfitted_or_duplicate_year(fit):
    with pytest.raises(DataError) as e:
        fit.predict_survival(pd.concat([_path(), _path().iloc[[1]],
                                        _path().iloc[[5]].assign(year=7)]))
    msg = str(e.value)
    assert "appears twice" in msg and "year 7 is not a fitted period" in msg


def test_bad_arguments(fit):
    with pytest.raises(DataError, match="conf_type"):
        fit.predict_survival(FIXED, conf_type="logit")
    with pytest.raises(DataError, match="reference"):
        fit.predict_survival(FIXED, reference="z")
    with pytest.raises(DataError, match="vcov"):
        fit.predict_survival(FIXED, vcov="CR3")
    with pytest.raises(DataError, match="conf_level"):
        fit.predict_survival(FIXED, conf_level=95)


def test_separated_term_gives_nan_and_a_note(panel):
    pp = panel.copy()
    no_event = pp.index[(pp["at_risk"] == 1) & (pp["event"] == 0)][::4]
    pp["flag"] = 0
    pp.loc[no_event, "flag"] = 1  # no events where flag == 1: separation
    res = fit_discrete_time(pp, YEAR_RHS + " + flag")
    assert res.separated_terms == ["flag"]
    bad = res.predict_survival({**FIXED, "flag": 1})
    assert bad[["se", "lower 95%", "upper 95%"]].isna().all().all()
    assert bad["survival"].between(0, 1).all()
    assert any("separated" in n and "flag" in n for n in bad.attrs["notes"])
    rm = res.restricted_mean({**FIXED, "flag": 1}, 6)
    assert np.isnan(rm["se"].iloc[0]) and np.isnan(rm["lower 95%"].iloc[0])
    ok = res.predict_survival({**FIXED, "flag": 0})  # the separated column is 0 there
    assert ok[["se", "lower 95%", "upper 95%"]].notna().all().all()
    assert not any("separated" in n for n in ok.attrs["notes"])
    # a path that switches flag on in year 4: finite before, NaN from year 4 on
    path = _path().assign(flag=[0, 0, 0, 1, 1, 1])
    mixed = res.predict_survival(path)
    assert mixed["se"].iloc[:3].notna().all() and mixed["se"].iloc[3:].isna().all()
    assert any("from year 4 on" in n for n in mixed.attrs["notes"])


def test_unseen_level_is_refused_not_coded_as_reference(panel):
    res = fit_discrete_time(panel, "C(year) + C(training) + team_size")
    with pytest.raises(DataError, match="categories outside"):
        res.predict_survival({"training": 5, "team_size": 4})
    with pytest.raises(DataError, match="categories outside"):
        res.hazard(pd.DataFrame({"year": [1], "training": [5], "team_size": [4]}))
    assert res.predict_survival({"training": 1, "team_size": 4})["se"].notna().all()


def test_survival_of_exactly_one_has_no_limits(fit):
    """A hazard that underflows to 0 (S = 1 exactly): no log-log interval; NaN + note."""
    b = fit.params.copy()
    b["Intercept"] = -800.0  # exp(-800) = 0 in double precision; se_naive keeps it unflagged
    flat = dataclasses.replace(fit, params=b)
    assert flat.separated_terms == []
    pred = flat.predict_survival(FIXED, periods=[1])
    assert pred["survival"].iloc[0] == 1.0
    assert pred[["lower 95%", "upper 95%"]].isna().all().all()
    assert any("exactly 1 or 0" in n for n in pred.attrs["notes"])


# -- (e) a covariate path ----------------------------------------------------------------

def test_covariate_path_differs_and_equals_hand_product(fit):
    fixed = fit.predict_survival(FIXED)
    path = fit.predict_survival(_path(2))
    assert path["survival"].iloc[0] == pytest.approx(fixed["survival"].iloc[0], rel=1e-14)
    assert (path["survival"].iloc[1:] < fixed["survival"].iloc[1:] - 1e-3).all()
    # by hand: h_k from the coefficients, S(t) = prod (1 - h_k)
    b = fit.params
    eta = b["Intercept"] + 4 * b["team_size"] + np.array(
        [0, b["C(year)[T.2]"] + b["leadership_change"], b["C(year)[T.3]"],
         b["C(year)[T.4]"], b["C(year)[T.5]"], b["C(year)[T.6]"]])
    h = 1 - np.exp(-np.exp(eta))
    np.testing.assert_allclose(path["hazard"], h, rtol=1e-12)
    np.testing.assert_allclose(path["survival"], np.cumprod(1 - h), rtol=1e-12)
    # a subset of periods reports the same numbers; the path's later rows are not needed
    sub = fit.predict_survival(_path(2).iloc[:4], periods=[2, 4])
    pd.testing.assert_frame_equal(sub, path.iloc[[1, 3]].reset_index(drop=True))


def test_limits_scales_levels_and_reference(fit):
    ll = fit.predict_survival(FIXED)
    s, lo, hi = ll["survival"], ll["lower 95%"], ll["upper 95%"]
    assert ((lo < s) & (s < hi) & (lo > 0) & (hi < 1)).all()
    # log-log limits are symmetric on log(-log S)
    u = np.log(-np.log(s))
    np.testing.assert_allclose(np.log(-np.log(lo)) - u, u - np.log(-np.log(hi)), rtol=1e-10)
    plain = fit.predict_survival(FIXED, conf_type="plain", conf_level=0.9)
    np.testing.assert_allclose(plain["upper 90%"] - s, 1.6448536269514722 * ll["se"],
                               rtol=1e-10)
    t = fit.predict_survival(FIXED, reference="t")
    assert ((t["upper 95%"] - t["lower 95%"]) > (hi - lo)).all()
    assert any("G-1 = 48 df" in n for n in t.attrs["notes"])
    assert fit.restricted_mean(FIXED, 3)["periods"].iloc[0] == 3


def test_plot_survival(fit):
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection

    pred = fit.predict_survival(FIXED)
    ax = fit.plot_survival(pred, label="fixed profile")
    fit.plot_survival(fit.predict_survival(_path(2)), ax=ax, label="leader change year 2",
                      linestyle="--")
    step = ax.get_lines()[0]
    np.testing.assert_allclose(step.get_ydata()[1:], pred["survival"])
    assert step.get_xdata()[0] == 0 and step.get_ydata()[0] == 1
    assert sum(isinstance(c, PolyCollection) for c in ax.collections) == 2
    assert ax.get_xlabel() == "year"
    plt.close(ax.figure)
    with pytest.raises(DataError, match="predict_survival"):
        fit.plot_survival(pd.DataFrame({"x": [1]}))

"""Predictions with errors from transition Cox models (issue 12, "Predictions with uncertainty").

The analytic errors are the infinitesimal jackknife by site.  They are checked
three ways: (1) the pieces reproduce the fit (baseline increments, robust
covariance of the coefficients); (2) every site's influence value equals the
derivative of the prediction in that site's case weight, by central finite
differences of weighted refits (to ~1e-8); (3) the standard errors agree with a
seeded site bootstrap on a 49-site cohort, within its Monte Carlo error.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import imrsurv as ims
from imrsurv.errors import DataError, NotEstimable
from imrsurv.models import transition_predict as tp
from imrsurv.models.predictions import _expected, _units, bootstrap_transitions
from imrsurv.models.transitions import STATES, TransitionsResult, _transition_matrices

PROFILE = {"team_size": 4, "training_access": 1}
FORMULA = "team_size + training_access"


@pytest.fixture(scope="module")
def cohort():
    return ims.simulate(80, 6, seed=11)


@pytest.fixture(scope="module", params=["efron", "breslow"])
def fitted(request, cohort):
    return ims.fit_transitions(cohort, FORMULA, ties=request.param)


def _influence(res, times, horizon, method="aalen-johansen", profile=PROFILE):
    """The (sites x functionals) influence matrix the prediction's errors come from."""
    captured = []
    orig = tp.summarise

    def keep(total):
        captured.append(total.copy())
        return orig(total)

    tp.summarise = keep
    try:
        pred = res.predict(profile, times, horizon=horizon, method=method)
    finally:
        tp.summarise = orig
    return pred, captured


def _weighted_predictions(res, site, eps, times, horizon, method, profile=PROFILE):
    fits = {}
    for name, fit in res.fits.items():
        fr = res.frames[name].copy()
        fr["w"] = np.where(fr["site"].astype(str) == site, 1 + eps, 1.0)
        fits[name] = ims.fit_cox(fr, res.formulas[name], start="start", stop="stop",
                                 event="event", weights="w", ties=res.ties,
                                 penalty=fit.penalty, tol=1e-12, max_iter=60)
    b = TransitionsResult(fits=fits, formulas=res.formulas, frames=res.frames, ties=res.ties,
                          cluster=None)
    p = b.predict_state_probabilities(profile, times, method=method)["probability"].to_numpy()
    base = b._baseline_increments()
    da = base.dh * np.exp(b._profile_lp(profile, base.times))
    e = _expected(base.times, horizon, np.eye(3)[0],
                  _transition_matrices(da, b.pairs, method))
    cum = b.predict_cumulative_hazards(profile, times).to_numpy().T.ravel()
    return np.r_[p, e], cum


def test_pieces_reproduce_the_fit(fitted):
    codes, n_units, _ = _units(fitted)
    assert n_units == len(set(np.concatenate(
        [fitted.frames[n]["site"].astype(str) for n in fitted.fits])))
    for j, fit in enumerate(fitted.fits.values()):
        fi = tp.fit_influence(fit, codes[j], n_units)
        bh = fit.baseline_cumulative_hazard
        dh = np.diff(bh["cumhaz"].to_numpy(), prepend=0.0)
        keep = dh > 0
        np.testing.assert_allclose(fi.times, bh["time"].to_numpy()[keep], rtol=0, atol=0)
        np.testing.assert_allclose(fi.dlam * np.exp(fi.lp(np.zeros(fi.beta.size))), dh[keep],
                                   rtol=1e-12)
        # the IF of the coefficients gives their Lin-Wei robust covariance
        np.testing.assert_allclose(fi.if_beta.T @ fi.if_beta, fit.cov.to_numpy(), rtol=1e-12,
                                   atol=1e-15)


@pytest.mark.parametrize("method", ["aalen-johansen", "exp"])
def test_influence_is_the_derivative_in_a_site_weight(fitted, method):
    times, horizon = [1.0, 2.5, 4.0], 4.0
    pred, captured = _influence(fitted, times, horizon, method)
    if_p = captured[0]  # probabilities then expected years
    sites = np.unique(np.concatenate([fitted.frames[n]["site"].astype(str)
                                      for n in fitted.fits]))
    eps = 1e-5
    for g in (0, 7, 40):
        up, cum_up = _weighted_predictions(fitted, sites[g], eps, times, horizon, method)
        dn, cum_dn = _weighted_predictions(fitted, sites[g], -eps, times, horizon, method)
        np.testing.assert_allclose(if_p[g], (up - dn) / (2 * eps), rtol=0, atol=1e-8)
        cum_if = np.concatenate([c[g] for c in captured[1:]])
        np.testing.assert_allclose(cum_if, (cum_up - cum_dn) / (2 * eps), rtol=0, atol=1e-8)
    # and the influence values are not trivially zero
    assert np.abs(if_p).max() > 1e-3


def test_firth_influence_is_the_derivative_in_a_site_weight():
    """Bond-sized (49 sites): re-discontinuation has few events, so the penalty's share of
    the influence matters; the IF still equals the weight derivative of refits."""
    h = ims.simulate(49, 6, seed=20140228)
    res = ims.fit_transitions(h, "team_size", penalty="firth")
    prof = {"team_size": 4}
    times, horizon = [1.0, 3.0, 5.0], 5.0
    _, captured = _influence(res, times, horizon, profile=prof)
    sites = np.unique(np.concatenate([res.frames[n]["site"].astype(str) for n in res.fits]))
    restarted = set(res.frames["restarted->discontinued"]["site"].astype(str))
    picks = [0] + [i for i, s in enumerate(sites) if s in restarted][:2]
    for g in picks:
        up, _ = _weighted_predictions(res, sites[g], 1e-4, times, horizon, "aalen-johansen",
                                      prof)
        dn, _ = _weighted_predictions(res, sites[g], -1e-4, times, horizon, "aalen-johansen",
                                      prof)
        np.testing.assert_allclose(captured[0][g], (up - dn) / 2e-4, rtol=0, atol=2e-6)


def test_tables_are_consistent(fitted):
    with pytest.warns(UserWarning, match="not extrapolated"):
        pred = fitted.predict(PROFILE, [0.5, 2, 4, 99], horizon=5)
    p = pred.probabilities
    with pytest.warns(UserWarning, match="not extrapolated"):
        base = fitted.predict_state_probabilities(PROFILE, [0.5, 2, 4, 99], method="exp")
    np.testing.assert_array_equal(p["probability"], base["probability"])
    late = p["time"] == 99
    assert p.loc[late, ["probability", "se", "lower", "upper"]].isna().all().all()
    ok = p[~late]
    assert (ok["se"] > 0).all() and (ok["lower"] <= ok["probability"]).all()
    assert (ok["upper"] >= ok["probability"]).all()
    ey = pred.expected_years
    assert list(ey["state"]) == list(STATES)
    assert ey["years"].sum() == pytest.approx(5.0, abs=1e-12)
    # the survival curve is the sustained state's probability
    sv = pred.survival
    np.testing.assert_array_equal(sv["survival"], p.loc[p["state"] == "sustained",
                                                        "probability"])
    # cumulative hazards equal predict_cumulative_hazards
    ch = fitted.predict_cumulative_hazards(PROFILE, [0.5, 2, 4])
    got = pred.cumulative_hazards.pivot(index="time", columns="transition", values="cumhaz")
    np.testing.assert_allclose(got.loc[[0.5, 2, 4], list(ch.columns)].to_numpy(),
                               ch.to_numpy(), rtol=1e-12)
    assert "infinitesimal jackknife by site" in " ".join(pred.notes)
    assert "sustained" in str(pred)


def test_covariate_path(cohort):
    res = ims.fit_transitions(cohort, {"sustained->discontinued": "recent_leader_change + team_size",
                                       "discontinued->restarted": "team_size",
                                       "restarted->discontinued": "team_size"})
    fixed = res.predict({"recent_leader_change": 0, "team_size": 4}, [1, 3, 5])
    path = pd.DataFrame({"time": [0.0, 2.0, 3.0], "recent_leader_change": [0, 1, 0],
                         "team_size": [4, 4, 4]})
    moved = res.predict(path, [1, 3, 5])
    f, m = fixed.probabilities, moved.probabilities
    # identical before the change, different after it
    np.testing.assert_allclose(m.loc[m["time"] == 1, "probability"],
                               f.loc[f["time"] == 1, "probability"], rtol=1e-13)
    np.testing.assert_allclose(m.loc[m["time"] == 1, "se"], f.loc[f["time"] == 1, "se"],
                               rtol=1e-10)
    assert not np.allclose(m.loc[m["time"] == 5, "probability"],
                           f.loc[f["time"] == 5, "probability"])


def test_bootstrap_agrees_with_the_analytic_errors():
    """120 sites, 8 years: IJ errors against 300 site-bootstrap replicates.

    The bootstrap SD from B replicates has relative Monte Carlo error about
    1/sqrt(2(B-1)) = 4% at B = 300, and the IJ and bootstrap estimate the same
    variance only to O(1/G), so ratios within 0.75-1.33 are required at each
    checked time and state, and within 0.85-1.18 on average.  (At 49 sites and 6
    years the re-discontinuation transition has 1 event: see the next test.)
    """
    h = ims.simulate(120, 8, seed=1)
    res = ims.fit_transitions(h, "team_size")
    times = [1.0, 2.0, 4.0, 6.0]
    prof = {"team_size": 4}
    pred = res.predict(prof, times, horizon=6.0)
    boot = bootstrap_transitions(res, prof, times, horizon=6.0, n_boot=300, seed=1)
    assert boot["failed"] <= 15
    bse = np.std(boot["probabilities"], axis=0, ddof=1)  # (T, S)
    ase = pred.probabilities["se"].to_numpy().reshape(len(times), 3)
    ratio = ase / bse
    assert np.all((ratio > 0.75) & (ratio < 1.33)), ratio
    assert 0.85 < ratio.mean() < 1.18
    ey = pred.expected_years["se"].to_numpy()
    eb = np.std(boot["expected_years"], axis=0, ddof=1)
    assert np.all((ey / eb > 0.75) & (ey / eb < 1.33)), ey / eb


def test_bond_sized_cohort_says_what_cannot_be_estimated():
    """49 sites, 6 years: one re-discontinuation, so its Cox fit does not converge."""
    h = ims.simulate(49, 6, seed=20140228)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = ims.fit_transitions(h, "team_size")
    with pytest.raises(NotEstimable, match="restarted->discontinued: the fit did not converge"):
        res.predict({"team_size": 4}, [1, 2])
    firth = ims.fit_transitions(h, "team_size", penalty="firth")
    pred = firth.predict({"team_size": 4}, [1, 2, 4], horizon=4)
    p = pred.probabilities
    assert np.isfinite(p["se"]).all() and (p["se"] > 0).all()
    assert (p["upper"] <= 1).all() and (p["lower"] >= 0).all()
    assert pred.expected_years["years"].sum() == pytest.approx(4.0, abs=1e-12)


def test_firth_errors_agree_with_the_bootstrap_at_49_sites():
    """Bond-sized: 49 sites, one re-discontinuation. Firth fits; 300 site-bootstrap draws,
    of which the ~55% that have no re-discontinuation (or no variation in team size in a
    transition) cannot be refitted and are left out, so the bootstrap is conditional on an
    estimable sample and ~130 replicates remain (Monte Carlo error of an SD ~6%): ratios
    within 0.7-1.43 at each time and state."""
    h = ims.simulate(49, 6, seed=20140228)
    res = ims.fit_transitions(h, "team_size", penalty="firth")
    prof, times = {"team_size": 4}, [1.0, 2.0, 4.0, 5.5]
    pred = res.predict(prof, times, horizon=5.5)
    boot = bootstrap_transitions(res, prof, times, horizon=5.5, n_boot=300, seed=1)
    assert len(boot["probabilities"]) + boot["failed"] == 300
    assert len(boot["probabilities"]) >= 100
    bse = np.std(boot["probabilities"], axis=0, ddof=1)
    ratio = pred.probabilities["se"].to_numpy().reshape(len(times), 3) / bse
    assert np.all((ratio > 0.7) & (ratio < 1.43)), ratio
    ey = pred.expected_years["se"].to_numpy() / np.std(boot["expected_years"], axis=0, ddof=1)
    assert np.all((ey > 0.7) & (ey < 1.43)), ey


def test_bootstrap_is_seeded():
    h = ims.simulate(120, 8, seed=1)
    res = ims.fit_transitions(h, "team_size")
    a = bootstrap_transitions(res, {"team_size": 3}, [2.0], n_boot=5, seed=9)
    b = bootstrap_transitions(res, {"team_size": 3}, [2.0], n_boot=5, seed=9)
    np.testing.assert_array_equal(a["probabilities"], b["probabilities"])


def test_diverging_coefficient_is_refused_and_firth_predicts():
    h = ims.simulate(12, 6, seed=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = None
        for seed in range(4, 60):
            h = ims.simulate(12, 6, seed=seed)
            try:
                r = ims.fit_transitions(h, "training_access")
            except DataError:
                continue
            if any(bool(f.diverging.any()) for f in r.fits.values()):
                res = r
                break
    assert res is not None, "no diverging 12-site cohort found"
    with pytest.raises(NotEstimable, match="diverges"):
        res.predict({"training_access": 1}, [1, 2])
    firth = ims.fit_transitions(h, "training_access", penalty="firth")
    pred = firth.predict({"training_access": 1}, [1, 2])
    assert np.isfinite(pred.probabilities["se"]).all()
    assert any("Firth" in n for n in pred.notes)


def test_bad_arguments(fitted):
    with pytest.raises(DataError, match="horizon"):
        fitted.predict(PROFILE, [1], horizon=100)
    with pytest.raises(DataError, match="conf_level"):
        fitted.predict(PROFILE, [1], conf_level=95)
    with pytest.raises(DataError, match="conf_type"):
        fitted.predict(PROFILE, [1], conf_type="arcsin")
    with pytest.raises(DataError, match="profile lacks"):
        fitted.predict({"team_size": 3}, [1])


def test_plot(fitted):
    import matplotlib

    matplotlib.use("Agg")
    ax = fitted.predict(PROFILE, None).plot(title="profile")
    assert len(ax.get_lines()) == 3 and ax.get_title() == "profile"
    ax.figure.clf()


def test_readme_prediction_example_is_what_the_code_prints():
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = readme.split("### Predictions with uncertainty", 1)[1].split("```\n", 2)[2]
    block = block.split("```", 1)[0]
    hist = ims.datasets.load_bond2014()
    res = ims.fit_transitions(hist, "recent_leader_change + team_size + training_access",
                              penalty="firth")
    path = pd.DataFrame({"time": [0, 2], "leadership_change": [0, 1],
                         "team_size": 5, "training_access": 0})
    printed = [line.rstrip() for line in str(res.predict(path, [2, 4, 6], horizon=6))
               .splitlines()]
    shown = [line.rstrip() for line in block.strip().splitlines()]
    assert len(shown) >= 12
    for line in shown:
        assert line in printed, line


def test_errors_shrink_as_one_over_root_sites():
    """500 and 5,000 sites of one design: the errors scale as 1/sqrt(sites) (0.316)."""
    se = {}
    for n in (500, 5000):
        res = ims.fit_transitions(ims.simulate(n, 6, seed=n), FORMULA)
        pred = res.predict(PROFILE, [1.0, 3.0, 5.0], horizon=5.0)
        p = pred.probabilities
        assert np.allclose(p.groupby("time")["probability"].sum(), 1.0, atol=1e-12)
        se[n] = np.r_[p["se"].to_numpy(), pred.expected_years["se"].to_numpy()]
    ratio = se[5000] / se[500]
    assert np.all((ratio > 0.22) & (ratio < 0.45)), ratio
    assert 0.27 < np.median(ratio) < 0.37

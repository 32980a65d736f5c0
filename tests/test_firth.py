"""Firth-penalised Cox model: R coxphf parity, a brute-force check and large-sample limit."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import optimize

import imrsurv as ims
from imrsurv.errors import DataError
from imrsurv.models.cox import CoxConvergenceWarning

HERE = Path(__file__).parent / "fixtures" / "firth"
REF = json.loads((HERE / "coxphf_reference.json").read_text())


def _fit_ref(name: str, **kw):
    ref = REF[name]
    data = pd.read_csv(HERE / ref["data"])
    if name == "breast":
        args = {"stop": "TIME", "event": "CENS"}
    else:
        args = {"start": "start", "stop": "stop", "event": "event"}
    return ref, ims.fit_cox(data, ref["formula"], ties="breslow", penalty="firth", **args, **kw)


@pytest.mark.parametrize("name", ["breast", "test2", "cohort10"])
def test_matches_coxphf(name):
    """Heinze & Schemper's (2001) breast cancer example, coxphf's own (start, stop] example,
    and a 10-site cohort with a monotone likelihood, against R coxphf 1.13.1."""
    ref, res = _fit_ref(name)
    terms = list(ref["coef"])
    np.testing.assert_allclose(res.params[terms], [ref["coef"][t] for t in terms], rtol=1e-6,
                               atol=1e-8)
    np.testing.assert_allclose(res.cov_naive.to_numpy(), np.array(ref["var"]).reshape(
        len(terms), len(terms)), rtol=1e-6, atol=1e-10)
    # coxphf standardises the covariates, so its Jeffreys term is that of the standardised
    # coefficients: its log-likelihoods are ours minus sum(log sd(x_j)), a constant
    data = pd.read_csv(HERE / ref["data"])
    shift = np.log(data[terms].std()).sum()
    np.testing.assert_allclose([res.loglik_null - shift, res.loglik - shift], ref["loglik"],
                               rtol=1e-8)
    sm = res.summary
    np.testing.assert_allclose(sm.loc[terms, "lower 95%"], [ref["ci_lower"][t] for t in terms],
                               rtol=1e-6)
    np.testing.assert_allclose(sm.loc[terms, "upper 95%"], [ref["ci_upper"][t] for t in terms],
                               rtol=1e-6)
    np.testing.assert_allclose(res.term_tests.loc[terms, "lrt"], [ref["chisq"][t] for t in terms],
                               rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(sm.loc[terms, "p"], [ref["prob"][t] for t in terms], rtol=1e-5)
    assert res.converged and not res.diverging.any()
    assert any("Firth" in n for n in res.notes)


def test_cohort10_ordinary_fit_diverges_and_is_marked():
    ref = REF["cohort10"]
    data = pd.read_csv(HERE / ref["data"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = ims.fit_cox(data, ref["formula"], start="start", stop="stop", event="event",
                          ties="breslow", cluster="site")
    assert any(issubclass(w.category, CoxConvergenceWarning) and "firth" in str(w.message)
               for w in caught)
    assert res.diverging.to_dict() == {"recent_leader_change": True, "team_size": False,
                                       "training_access": False}
    # found before iterating: no event while the exposure was 1
    assert "no event happened while it was 1" in res.separated["recent_leader_change"]
    sm = res.summary
    row = sm.loc["recent_leader_change"]
    assert row["note"].startswith("diverges (monotone likelihood)")
    assert np.isnan(row[["exp(coef)", "se", "z", "p", "exp(lower 95%)"]].astype(float)).all()
    assert sm.loc["team_size", "note"] == "" and np.isfinite(sm.loc["team_size", "p"])
    text = repr(res) + res.summary_text() + res._repr_html_()
    assert "diverges (monotone likelihood)" in text
    assert "e+" not in text.split("Wald test")[0]          # no 1e17 hazard ratio anywhere
    # the profile limit is honest: half-infinite on the side the likelihood runs to
    lim = res.profile_ci()
    assert lim.loc["recent_leader_change", "lower"] == -np.inf
    assert np.isfinite(lim.loc["recent_leader_change", "upper"])
    # and the ordinary estimate R reaches is as far out as ours (both meaningless)
    assert res.params["recent_leader_change"] < -10 and ref["ordinary_coef"][
        "recent_leader_change"] < -10


# ---------------------------------------------------------------------------
# brute force: the exact partial likelihood and information by loops, a generic optimiser


def _brute_loglik_info(beta, x, start, stop, event, w, strata, efron):
    """Log partial likelihood and information, one event time at a time (Efron or Breslow)."""
    ll, p = 0.0, x.shape[1]
    info = np.zeros((p, p))
    eta = x @ beta
    r = w * np.exp(eta)
    for s in np.unique(strata):
        ins = strata == s
        for t in np.unique(stop[ins & event]):
            risk = ins & (start < t) & (stop >= t)
            dead = ins & event & (stop == t)
            d = int(dead.sum())
            wd = w[dead].sum()
            ll += (w[dead] * eta[dead]).sum()
            s0, s1 = r[risk].sum(), r[risk] @ x[risk]
            s2 = (x[risk].T * r[risk]) @ x[risk]
            e0, e1 = r[dead].sum(), r[dead] @ x[dead]
            e2 = (x[dead].T * r[dead]) @ x[dead]
            for j in range(d):
                f = j / d if efron else 0.0
                den = s0 - f * e0
                a = (s1 - f * e1) / den
                ll -= wd / d * np.log(den)
                info += wd / d * ((s2 - f * e2) / den - np.outer(a, a))
    return ll, info


def _brute_firth(x, start, stop, event, w, strata, efron):
    def neg(beta):
        ll, info = _brute_loglik_info(beta, x, start, stop, event, w, strata, efron)
        sign, logdet = np.linalg.slogdet(info)
        return -(ll + 0.5 * logdet) if sign > 0 else np.inf

    opt = optimize.minimize(neg, np.zeros(x.shape[1]), method="Nelder-Mead",
                            options={"xatol": 1e-11, "fatol": 1e-14, "maxiter": 20000,
                                     "maxfev": 40000})
    return opt.x, -opt.fun


def _tied_cohort():
    """bond2014 PWP-TT rows on a yearly grid (many tied events), fractional weights."""
    cp = ims.datasets.load_bond2014().counting_process("pwp-tt")
    cp = cp.assign(start=np.floor(cp["start"]), stop=np.ceil(cp["stop"]))
    cp = cp[cp["stop"] > cp["start"]].reset_index(drop=True)
    cp["w"] = 0.5 + (np.arange(len(cp)) % 5) / 4
    return cp


@pytest.mark.parametrize("ties", ["efron", "breslow"])
@pytest.mark.parametrize("weighted", [False, True])
def test_brute_force_strata_weights_ties(ties, weighted):
    cp = _tied_cohort()
    formula = "recent_leader_change + team_size + training_access"
    res = ims.fit_cox(cp, formula, start="start", stop="stop", event="event", strata="episode",
                      ties=ties, weights="w" if weighted else None, cluster="site",
                      penalty="firth")
    assert res.ties == ties and res.converged
    x = cp[formula.split(" + ")].to_numpy(float)
    w = cp["w"].to_numpy(float) if weighted else np.ones(len(cp))
    beta, lstar = _brute_firth(x, cp["start"].to_numpy(float), cp["stop"].to_numpy(float),
                               cp["event"].to_numpy(bool), w, cp["episode"].to_numpy(),
                               ties == "efron")
    np.testing.assert_allclose(res.params.to_numpy(), beta, atol=1e-6)
    assert res.loglik == pytest.approx(lstar, rel=1e-10)
    # the ordinary fit maximises l, the penalised one l + 0.5 log det I: each wins its own
    ordinary = ims.fit_cox(cp, formula, start="start", stop="stop", event="event",
                           strata="episode", ties=ties, weights="w" if weighted else None)
    assert ordinary.loglik > res.loglik_unpenalised
    assert res.loglik > ordinary.loglik + 0.5 * np.linalg.slogdet(
        np.linalg.inv(ordinary.cov_naive.to_numpy()))[1] - 1e-9
    # robust errors by site are a sandwich around the penalised fit
    assert res.n_clusters == 49 and (res.se != res.se_naive).all()


def test_brute_force_monotone_cohort():
    ref = REF["cohort10"]
    data = pd.read_csv(HERE / ref["data"])
    formula = ref["formula"]
    res = ims.fit_cox(data, formula, start="start", stop="stop", event="event", penalty="firth")
    x = data[formula.split(" + ")].to_numpy(float)
    beta, _ = _brute_firth(x, data["start"].to_numpy(float), data["stop"].to_numpy(float),
                           data["event"].to_numpy(bool), np.ones(len(data)),
                           np.zeros(len(data)), True)
    np.testing.assert_allclose(res.params.to_numpy(), beta, atol=1e-6)


def test_large_sample_firth_equals_ordinary():
    """Without separation the penalty's effect is O(1/events): small beside the se at 3,000
    sites, and shrinking as sites are added."""
    formula = "recent_leader_change + team_size + training_access"
    rel = {}
    for n in (300, 3000):
        hist = ims.simulate(n, 6, seed=7)
        ordinary = ims.fit_recurrent(hist, formula, scheme="ag")
        firth = ims.fit_recurrent(hist, formula, scheme="ag", penalty="firth")
        assert not ordinary.diverging.any() and firth.converged
        diff = (firth.params - ordinary.params).abs()
        assert (diff > 0).all()          # not identical: the penalty is there
        rel[n] = diff / ordinary.se
    assert (rel[3000] < 0.05).all(), rel[3000]
    assert rel[3000].max() < rel[300].max()
    assert firth.notes[0].startswith("Andersen-Gill")


def test_penalty_argument_errors():
    ref = REF["test2"]
    data = pd.read_csv(HERE / ref["data"])
    kw = {"start": "start", "stop": "stop", "event": "event"}
    with pytest.raises(DataError, match="penalty must be one of 'none', 'firth'"):
        ims.fit_cox(data, "x", penalty="frith", **kw)
    data["g"] = [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    with pytest.raises(DataError, match="cannot be combined with frailty"):
        ims.fit_cox(data, "x", penalty="firth", frailty="g", **kw)
    assert ims.fit_cox(data, "x", penalty="none", **kw).penalty is None


@pytest.mark.parametrize("n_sites", [9, 12, 49, 5000])
def test_honest_output_at_every_size(n_sites):
    """At 9, 12, 49 and 5,000 sites every printed row is a finite, readable estimate or says
    why it is not; the Firth fit is always finite; every p-value is a probability."""
    formula = "recent_leader_change + team_size + training_access"
    seen_divergence = False
    for seed in range(4 if n_sites < 100 else 1):
        hist = ims.simulate(n_sites, 6, seed=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CoxConvergenceWarning)
            try:
                res = ims.fit_recurrent(hist, formula)
            except DataError as exc:          # e.g. a covariate constant in the risk sets
                assert "cannot be estimated" in str(exc)
                continue
        sm = res.summary
        noted = sm["note"] != ""
        seen_divergence |= bool(noted.any())
        ok = sm.loc[~noted]
        assert (ok["exp(coef)"] < 1e6).all() and ok["p"].between(0, 1).all()
        assert sm.loc[noted, ["exp(coef)", "p"]].isna().all().all()
        text = repr(res)
        assert "e+1" not in text.split("Likelihood ratio")[0]
        firth = ims.fit_recurrent(hist, formula, penalty="firth")
        assert firth.converged and np.isfinite(firth.params).all()
        assert (firth.params.abs() < 15).all()
        tt = res.term_tests
        assert tt[["p lrt", "p robust score"]].stack().between(0, 1).all()
        if n_sites == 5000:
            assert not noted.any()
            np.testing.assert_allclose(firth.params, res.params, atol=0.05 * res.se.max())
    if n_sites <= 12:
        assert seen_divergence      # the case this package exists for does occur


def test_no_information_is_an_error_not_a_divergence():
    """A 0/1 column that is 1 only on rows never at risk at an event time has no
    information: neither fit can estimate it, and both say so by name."""
    ref = REF["cohort10"]
    data = pd.read_csv(HERE / ref["data"])
    data["rare"] = 0
    # 1 only on a row whose interval (start, stop] holds no event time
    times = data.loc[data["event"] == 1, "stop"].to_numpy()
    idle = [i for i, (a, b) in enumerate(zip(data["start"], data["stop"], strict=True))
            if not ((times > a) & (times <= b)).any()]
    data.loc[idle[:1], "rare"] = 1
    assert data["rare"].sum() == 1
    for penalty in (None, "firth"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pytest.raises(DataError, match='"rare" does not vary within the risk sets'):
                ims.fit_cox(data, "rare + team_size", start="start", stop="stop",
                            event="event", penalty=penalty)

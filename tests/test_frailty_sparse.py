"""Frailty at scale: R's sparse gamma and Gaussian frailty, strata, weights, dense, bad input.

tests/fixtures/frailty/make_fixtures_sparse.R produced frailty_sparse_reference.json
from the committed many_clusters.csv (300 clusters, 3000 rows; written by the
seeded make_data.py beside it).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from imrsurv.errors import DataError, NotEstimable
from imrsurv.models import _coxcore as core
from imrsurv.models import _frailty_newton as fn
from imrsurv.models import frailty as fr
from imrsurv.models.frailty import FrailtyResult, fit_cox_frailty

FIX = Path(__file__).parent / "fixtures" / "frailty"
REF = json.loads((FIX / "frailty_sparse_reference.json").read_text())["cases"]
RTOL = 1e-8     # the issue asks for 1e-5; the fits follow R's iterations and agree to ~1e-12
CASES = [k for k, v in REF.items() if isinstance(v, dict) and k != "gamma_weights_efron"]


@cache
def _data() -> pd.DataFrame:
    return pd.read_csv(FIX / "many_clusters.csv")


def _args(ref: dict) -> dict:
    rhs = ref["rhs"]
    terms = [t.strip() for t in rhs.split("+") if not t.strip().startswith(("frailty", "strata"))]
    return {"formula": " + ".join(terms), "frailty": ref["group"],
            "strata": "stratum" if "strata(" in rhs else None,
            "weights": ref["weights"] or None, "ties": ref["ties"],
            "distribution": "gaussian" if "gaussian" in rhs else "gamma"}


@cache
def _fit(name: str) -> FrailtyResult:
    a = _args(REF[name])
    return fit_cox_frailty(_data(), a.pop("formula"), start="start", stop="stop", event="event",
                           **a)


def close(actual, expected, rtol: float = RTOL, atol: float = 0.0) -> None:
    np.testing.assert_allclose(np.asarray(actual, float), np.asarray(expected, float),
                               rtol=rtol, atol=atol)


@pytest.mark.parametrize("name", CASES)
def test_matches_r(name):
    ref, res = REF[name], _fit(name)
    assert res.sparse == ref["sparse"] and res.n_groups == ref["n_groups"]
    assert res.distribution == _args(ref)["distribution"]
    assert list(res.params.index) == list(np.atleast_1d(ref["coef_names"]))
    close(res.params, ref["coef"])
    close(res.frailty_variance, ref["theta"])
    close(res.loglik, ref["loglik"][1])            # fit$loglik[2]
    close(res.loglik_null, ref["loglik"][0])       # fit$loglik[1]
    close(res.loglik - res.loglik_penalised, ref["penalty"][1], atol=1e-8)
    close(res.se, ref["se"])
    close(res.se2, ref["se2"])
    close(res.frailties, ref["frail"], rtol=0, atol=1e-8)
    close(res.frailties_var, ref["fvar"], rtol=1e-7)
    hist = np.array(ref["history"])
    assert res.theta_history.shape == hist.shape
    close(res.theta_history.to_numpy(), hist, rtol=1e-7, atol=1e-9)
    assert list(res.iterations) == ref["iter"]     # same outer and Newton-Raphson counts
    if "c_loglik" in ref:
        close(res.loglik_integrated, ref["c_loglik"])
    if ref["sparse"]:
        close(res.df_frailty, ref["df"][-1], rtol=1e-7)


def test_sparse_gamma_summary_lrt_and_notes():
    res = _fit("gamma_efron")
    assert res.converged
    close(res.loglik_nofrailty, REF["no_frailty_loglik"][1], rtol=1e-10)
    lrt = res.lrt_theta_zero
    assert lrt["statistic"] == pytest.approx(2 * (res.loglik_integrated - res.loglik_nofrailty))
    assert 0 <= lrt["p"] <= 0.5
    tab = res.summary
    assert list(tab.columns) == ["coef", "exp(coef)", "se", "se2", "z", "p", "lower 95%",
                                 "upper 95%", "exp(lower 95%)", "exp(upper 95%)", "note"]
    assert (tab["note"] == "").all()
    close(res.conf_int()["upper"], tab["upper 95%"], rtol=1e-12)
    html = res._repr_html_()
    assert "se2" in html and "sparse" in html and "<li>" in html
    assert "Notes:" in res.summary_text()
    close(tab["z"], res.params / res.se, rtol=1e-12)
    close(tab["lower 95%"], res.params - 1.959963984540054 * res.se, rtol=1e-12)
    assert (res.se2 <= res.se).all()
    assert res.se_naive is res.se
    text = " ".join(res.notes)
    assert "sparse" in text and "se2" in text and "theta" in text
    assert "300 groups" in text


def test_gaussian_has_no_marginal_lrt():
    res = _fit("gauss_efron")
    assert np.isnan(res.loglik_integrated) and np.isnan(res.lrt_theta_zero["p"])
    assert list(res.theta_history.columns) == ["theta", "resid", "fsum", "trH"]
    assert any(n.startswith("Shared Gaussian (log-normal) frailty") for n in res.notes)
    # REML stopping rule: the last residual is below sqrt(tol)
    assert abs(res.theta_history["resid"].iloc[-1]) < 1e-9 ** 0.5
    close(np.mean(res.frailties), 0.0, atol=1e-10)


def test_repr_is_short():
    res = _fit("gamma_efron")
    text = repr(res)
    assert len(text.splitlines()) < 12
    assert "300 groups" in text and "x1" in text
    assert str(res.frailties.index[17]) not in text.split("\n\n")[0].split()  # no frailty dump


def test_weighted_efron_follows_textbook_efron_not_r_agfit5():
    # R's sparse frailty code weights Efron's tied-death term by r * w: its theta = 0 fit is not
    # its own weighted coxph fit, and its inner loop never converges (20 steps per trial).
    ref, res = REF["gamma_weights_efron"], _fit("gamma_weights_efron")
    plain = REF["weighted_efron_cox_loglik"][1]
    assert ref["iter"][1] == 20 * ref["iter"][0]
    assert abs(ref["history"][0][1] - plain) > 1.0
    close(res.theta_history["loglik_penalised"].iloc[0], plain, rtol=1e-10)
    assert res.converged and res.iterations[1] < ref["iter"][1]
    # still close to R's answer
    close(res.frailty_variance, ref["theta"], rtol=0.05)
    close(res.params, ref["coef"], rtol=0.05)
    assert any("weights" in n for n in res.notes)


def test_fit_cox_dispatches_to_the_sparse_fit():
    import imrsurv as ims

    res = ims.fit_cox(_data(), "x1 + x2", start="start", stop="stop", event="event",
                      frailty="cluster")
    assert isinstance(res, FrailtyResult) and res.sparse
    close(res.params, REF["gamma_efron"]["coef"])


# ---------------------------------------------------------------------------
# The O(n) sparse terms against the full information of the dense evaluator


def _small(seed: int = 3, q: int = 25) -> pd.DataFrame:
    from importlib.util import module_from_spec, spec_from_file_location

    spec = spec_from_file_location("make_data", FIX / "make_data.py")
    mod = module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.simulate(q, 12, seed=seed)


def _problem(d: pd.DataFrame, efron: bool, strata: bool, weights: bool) -> core.CoxProblem:
    x = d[["x1", "x2"]].to_numpy(float)
    w = d["wt"].to_numpy(float) if weights else np.ones(len(d))
    s = (d["stratum"].to_numpy() - 1) if strata else np.zeros(len(d), np.int64)
    return core.make_problem(x, d["start"].to_numpy(float), d["stop"].to_numpy(float),
                             d["event"].to_numpy(), w, np.zeros(len(d)), s.astype(np.int64),
                             efron)


@pytest.mark.parametrize("efron", [True, False])
@pytest.mark.parametrize("strata", [True, False])
@pytest.mark.parametrize("weights", [True, False])
def test_sparse_terms_equal_the_full_information(efron, strata, weights):
    d = _small()
    g = d["cluster"].to_numpy() - 1
    q = int(g.max()) + 1
    pb = _problem(d, efron, strata, weights)
    assert efron is False or not pb.index.identity      # the data have tied event times
    rng = np.random.default_rng(1)
    beta, f = rng.normal(size=2) * 0.3, rng.normal(size=q) * 0.5
    pen = fn.Penalty("gamma", 0.7)
    f = pen.recenter(f)
    sp = fn.SparseFrailty(pb, g, q).evaluate(beta, f, pen)
    de = fn.DenseFrailty(pb, g, q).evaluate(beta, f, pen)
    close(sp.loglik, de.loglik, rtol=1e-12)
    close(sp.penalty, de.penalty, rtol=1e-12)
    close(sp.u_beta, de.u_beta, rtol=1e-9, atol=1e-10)
    close(sp.u_f, de.u_f, rtol=1e-9, atol=1e-10)
    close(sp.a, de.a, rtol=1e-9, atol=1e-10)
    close(sp.b, de.b, rtol=1e-9, atol=1e-10)
    if not weights:
        close(sp.d, np.diag(de.d), rtol=1e-9)
    else:
        # R's fdiag: one term per death, not weighted by the mean death weight
        close(sp.d, _r_fdiag(pb, g, q, beta, f) + sp.second, rtol=1e-9)


def _r_fdiag(pb: core.CoxProblem, g, q, beta, f) -> np.ndarray:
    """Brute force over event times and deaths, as R agfit5b's loop."""
    ix = pb.index
    eta = pb.x @ beta + f[g]
    r = pb.weights * np.exp(eta)
    out = np.zeros(q)
    for k in range(ix.n_times):
        at_risk = (ix.a <= k) & (k < ix.b)
        deaths = ix.death_rows[ix.death_k == k]
        dk = deaths.size
        for j in range(dk):
            frac = j / dk if pb.efron else 0.0
            den = r[at_risk].sum() - frac * r[deaths].sum()
            s = np.bincount(g[at_risk], r[at_risk], minlength=q) \
                - frac * np.bincount(g[deaths], r[deaths], minlength=q)
            out += s / den - (s / den) ** 2
    return out


def test_sparse_and_dense_reach_the_same_optimum():
    d = _small(q=30)
    pb = _problem(d, True, False, False)
    g = d["cluster"].to_numpy() - 1
    q = int(g.max()) + 1
    pen = fn.Penalty("gamma", 0.5)
    sp = fn.newton_agfit5(fn.SparseFrailty(pb, g, q), pen, np.zeros(2), np.zeros(q), 100, 1e-12)
    de = fn.newton_agfit5(fn.DenseFrailty(pb, g, q), pen, np.zeros(2), np.zeros(q), 100, 1e-12)
    assert sp.converged and de.converged
    close(sp.state.beta, de.state.beta, rtol=1e-5)
    close(sp.state.f, de.state.f, atol=1e-5)


def test_sparse_option_overrides_r_rule():
    d = _data()
    dense = fit_cox_frailty(d, "x1 + x2", start="start", stop="stop", event="event",
                            frailty="cluster", sparse=False)
    sparse = _fit("gamma_efron")
    assert not dense.sparse
    # same penalised optimum at each theta; R's se uses the diagonal frailty block
    close(dense.params, sparse.params, rtol=1e-3)
    close(dense.frailty_variance, sparse.frailty_variance, rtol=1e-2)


# ---------------------------------------------------------------------------
# Bad input


def _fit_on(d: pd.DataFrame, **kw):
    return fit_cox_frailty(d, kw.pop("formula", "x1"), start="start", stop="stop",
                           event="event", **{"frailty": "cluster", **kw})


def test_single_cluster_is_refused():
    d = _data().assign(cluster=7)
    with pytest.raises(DataError, match='"cluster" has a single group') as exc:
        _fit_on(d)
    assert 'cluster = "7"' in str(exc.value)


def test_one_row_per_cluster_is_refused():
    d = _data().assign(cluster=np.arange(len(_data())))
    with pytest.raises(DataError, match="one row per group"):
        _fit_on(d)


def test_bad_arguments_are_named():
    with pytest.raises(DataError) as exc:
        _fit_on(_data(), distribution="weibull", sparse="yes")
    text = str(exc.value)
    assert "distribution='weibull'" in text and "sparse='yes'" in text
    assert '"gamma", "gaussian"' in text


def test_missing_frailty_values_are_refused():
    d = _data().copy()
    d.loc[[3, 8], "cluster"] = np.nan
    with pytest.raises(DataError):
        _fit_on(d)


def test_memory_is_checked_before_fitting(monkeypatch):
    monkeypatch.setattr(fr, "_available_memory", lambda: 100_000)
    with pytest.raises(DataError, match=r"needs about [0-9.]+ MB of memory and 0\.1 MB are available"):
        _fit_on(_data())
    # the estimate grows linearly in rows for the sparse fit, quadratically in groups if dense
    assert fr.memory_estimate(10**6, 2, 7000, True) < 1.2e9
    assert fr.memory_estimate(10**5, 2, 7000, False) > 10 * fr.memory_estimate(10**5, 2, 7000,
                                                                                True)


def test_singular_information_is_not_estimable():
    # x4 is non-zero only on rows at risk at no event time: no information about it
    d = _data().copy()
    first = d.loc[d.event == 1, "stop"].min()
    extra = d.groupby("cluster").head(1).assign(start=0.0, stop=first / 2, event=0, x1=0.0)
    d = pd.concat([d.assign(x4=0.0), extra.assign(x4=1.0)], ignore_index=True)
    with pytest.raises(NotEstimable) as exc:
        _fit_on(d, formula="x1 + x4")
    msg = exc.value.reason
    assert "x4" in msg and "cannot be estimated" in msg and "singular" in msg
    assert not isinstance(exc.value, np.linalg.LinAlgError)


def test_frailty_spec_reaches_the_gaussian_fit_through_fit_cox():
    import imrsurv as ims
    from imrsurv.models.frailty import Frailty

    res = ims.fit_cox(_data(), "x1 + x2", start="start", stop="stop", event="event",
                      frailty=Frailty("cluster", "gaussian"))
    assert res.distribution == "gaussian"
    close(res.params, REF["gauss_efron"]["coef"])
    with pytest.raises(DataError, match="contradicts"):
        _fit_on(_data(), frailty=Frailty("cluster", "gaussian"), sparse=False)


def test_dense_fit_of_many_groups_is_refused_where_the_sparse_one_fits(monkeypatch):
    monkeypatch.setattr(fr, "_available_memory", lambda: 20_000_000)
    with pytest.raises(DataError, match="dense.*or sparse=True"):
        _fit_on(_data(), sparse=False)
    assert _fit_on(_data()).sparse      # about 1 MB


def test_singular_information_in_the_dense_fit_names_the_coefficient():
    d = _data().copy()
    first = d.loc[d.event == 1, "stop"].min()
    extra = d.groupby("region").head(1).assign(start=0.0, stop=first / 2, event=0, x1=0.0)
    d = pd.concat([d.assign(x4=0.0), extra.assign(x4=1.0)], ignore_index=True)
    with pytest.raises(NotEstimable, match="x4"):
        _fit_on(d, formula="x1 + x4", frailty="region")

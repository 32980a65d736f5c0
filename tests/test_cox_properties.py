"""Property tests of fit_cox: invariances any correct Cox fit must have."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from imrsurv.errors import DataError
from imrsurv.models.cox import CoxResult, fit_cox

SETTINGS = settings(max_examples=25, deadline=None)


def counting_data(seed: int, n_sites: int, ties: bool) -> pd.DataFrame:
    """Recurrent (start, stop] rows of ``n_sites`` sites, integer or continuous times."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_sites):
        t, z = float(rng.integers(0, 3)), rng.normal()
        for _ in range(int(rng.integers(1, 5))):
            x = rng.normal()
            gap = rng.exponential(4.0 * np.exp(-0.5 * x - 0.3 * z))
            gap = float(np.ceil(gap)) if ties else round(gap + 1e-3, 6)
            rows.append({"site": f"s{s}", "start": t, "stop": t + gap,
                         "event": int(rng.random() < 0.75), "x": x, "z": z,
                         "g": "ab"[int(rng.integers(0, 2))]})
            t += gap
    return pd.DataFrame(rows)


def fit(d: pd.DataFrame, **kw) -> CoxResult:
    kw.setdefault("start", "start")
    kw.setdefault("stop", "stop")
    kw.setdefault("event", "event")
    kw.setdefault("cluster", "site")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            res = fit_cox(d, "x + z + C(g)", **kw)
    except (DataError, Warning):
        assume(False)
    assume(res.converged and np.all(np.abs(res.params) < 5))
    return res


def same(a: CoxResult, b: CoxResult, rtol: float = 1e-6) -> None:
    """Equal up to the Newton convergence tolerance (roundoff can change the step count)."""
    np.testing.assert_allclose(a.params, b.params, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(a.se, b.se, rtol=rtol, atol=1e-12)
    np.testing.assert_allclose(a.se_naive, b.se_naive, rtol=rtol, atol=1e-12)
    np.testing.assert_allclose(a.loglik, b.loglik, rtol=1e-9)


@SETTINGS
@given(seed=st.integers(0, 2**31), n_sites=st.integers(8, 30), ties=st.booleans(),
       method=st.sampled_from(["efron", "breslow"]), perm_seed=st.integers(0, 2**31))
def test_row_order_does_not_matter(seed, n_sites, ties, method, perm_seed):
    d = counting_data(seed, n_sites, ties)
    a = fit(d, ties=method)
    shuffled = d.sample(frac=1.0, random_state=perm_seed % 2**32)
    b = fit(shuffled, ties=method)
    same(a, b)
    np.testing.assert_allclose(a.residuals("martingale"),
                               b.residuals("martingale").loc[d.index], atol=1e-10)
    assert abs(a.concordance - b.concordance) < 1e-12


@SETTINGS
@given(seed=st.integers(0, 2**31), n_sites=st.integers(8, 30), ties=st.booleans(),
       method=st.sampled_from(["efron", "breslow"]),
       scale=st.sampled_from([1 / 12, 0.37, 3.0, 365.25]))
def test_rescaling_time_keeps_coefficients(seed, n_sites, ties, method, scale):
    d = counting_data(seed, n_sites, ties)
    a = fit(d, ties=method)
    b = fit(d.assign(start=d.start * scale, stop=d.stop * scale), ties=method)
    same(a, b, rtol=1e-6)
    za, zb = a.check_proportional_hazards("km"), b.check_proportional_hazards("km")
    np.testing.assert_allclose(za["chisq"], zb["chisq"], rtol=1e-6, atol=1e-10)


@SETTINGS
@given(seed=st.integers(0, 2**31), n_sites=st.integers(8, 30), ties=st.booleans())
def test_duplicating_clusters_halves_variance(seed, n_sites, ties):
    d = counting_data(seed, n_sites, ties)
    a = fit(d, ties="breslow")
    twin = pd.concat([d, d.assign(site=d.site + "_copy")], ignore_index=True)
    b = fit(twin, ties="breslow")
    # both fits stop at |1 - loglik_old/loglik_new| <= 1e-9, possibly after a
    # different number of steps: agreement to ~1e-7 of the scale, not to roundoff
    np.testing.assert_allclose(b.params, a.params, rtol=1e-6, atol=1e-8)
    for vb, va in ((b.cov_naive, a.cov_naive), (b.cov, a.cov)):
        scale = np.abs(va.to_numpy()).max()
        np.testing.assert_allclose(vb, va / 2, rtol=1e-6, atol=1e-7 * scale)
    assert b.n_clusters == 2 * a.n_clusters


@SETTINGS
@given(seed=st.integers(0, 2**31), n_sites=st.integers(8, 30))
def test_splitting_intervals_changes_nothing(seed, n_sites):
    """Cutting a (start, stop] row at an interior time leaves the fit unchanged."""
    d = counting_data(seed, n_sites, ties=True)
    a = fit(d)
    long = d[d.stop - d.start >= 2]
    assume(len(long) > 0)
    cut = long.start + 1
    first = long.assign(stop=cut, event=0)
    second = long.assign(start=cut)
    split = pd.concat([d.drop(long.index), first, second], ignore_index=True)
    b = fit(split)
    same(a, b, rtol=1e-6)


@SETTINGS
@given(seed=st.integers(0, 2**31), n_sites=st.integers(8, 30), shift=st.floats(-3, 3))
def test_shifting_covariates_keeps_coefficients(seed, n_sites, shift):
    d = counting_data(seed, n_sites, ties=True)
    a = fit(d)
    b = fit(d.assign(x=d.x + shift))
    same(a, b, rtol=1e-6)


@pytest.mark.parametrize("strata", [None, "s"])
def test_separation_check_finds_indicator_columns_only(strata):
    """0/1 columns with every event on one side are named before iterating, with or
    without strata; a 0/1 column with events on both sides and a continuous column are
    not (the extremes pre-filter must not change which columns are checked)."""
    rng = np.random.default_rng(3)
    n = 400
    d = pd.DataFrame({"t": rng.exponential(size=n), "e": rng.integers(0, 2, n),
                      "z": rng.normal(size=n), "s": rng.integers(0, 2, n),
                      "mix": rng.integers(0, 2, n)})
    d["never"] = np.where(d["e"] == 1, 0, rng.integers(0, 2, n))    # no event while 1
    d["always"] = np.where(d["e"] == 1, 1, rng.integers(0, 2, n))   # every event while 1
    d["shifted"] = d["never"] + 0.5                                  # not a 0/1 column
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = fit_cox(d, "z + mix + never + always", stop="t", event="e", strata=strata)
        res2 = fit_cox(d, "z + shifted", stop="t", event="e", strata=strata)
    assert set(res.separated) == {"never", "always"}
    assert "no event happened while it was 1" in res.separated["never"]
    assert "every event happened while it was 1" in res.separated["always"]
    assert res2.separated == {}

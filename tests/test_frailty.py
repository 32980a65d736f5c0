"""Shared gamma frailty (fit_cox_frailty, i.e. fit_cox(..., frailty=)) against R coxph(... + frailty(site)).

tests/fixtures/frailty/make_fixtures.R produced frailty_reference.json from the
committed tests/fixtures/cox/recurrent.csv (Andersen-Gill, Efron and Breslow).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from imrsurv.errors import DataError
from imrsurv.models.frailty import FrailtyResult, _parabola_step, fit_cox_frailty, gamma_correction

FIX = Path(__file__).parent / "fixtures"
REF = json.loads((FIX / "frailty" / "frailty_reference.json").read_text())["cases"]
RTOL = 1e-8   # the fit follows R's sparse iterations (49 sites > 5) and agrees to ~1e-12


@cache
def _data() -> pd.DataFrame:
    return pd.read_csv(FIX / "cox" / "recurrent.csv")


@cache
def _fit(ties: str) -> FrailtyResult:
    rhs = REF[ties]["rhs"].replace("practice", "C(practice)")
    return fit_cox_frailty(_data(), rhs, start="start", stop="stop", event="event", ties=ties,
                           frailty="site")


def close(actual, expected, rtol: float = RTOL, atol: float = 0.0) -> None:
    np.testing.assert_allclose(np.asarray(actual, float), np.asarray(expected, float),
                               rtol=rtol, atol=atol)


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_coefficients_and_theta_match_r(ties):
    ref, res = REF[ties], _fit(ties)
    assert isinstance(res, FrailtyResult)
    assert len(res.params) == len(ref["coef_names"])
    close(res.params, ref["coef"])
    close(res.frailty_variance, ref["theta"])
    # the same sequence of trial thetas as R's frailty.controlgam
    close(res.theta_history["theta"], ref["theta_history"], atol=1e-9)
    assert list(res.iterations) == ref["iter"]   # R's outer and Newton-Raphson counts
    close(res.theta_history["loglik_integrated"], ref["c_loglik_history"], rtol=1e-8)
    close(res.loglik_integrated, ref["c_loglik"], rtol=1e-8)


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_frailties_match_r(ties):
    ref, res = REF[ties], _fit(ties)
    assert list(res.frailties.index) == ref["frail_sites"]
    assert res.frailties.index.name == "site"
    close(res.frailties, ref["frail"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(np.mean(np.exp(res.frailties)), 1.0, atol=1e-8)


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_standard_errors_and_loglik_match_r(ties):
    ref, res = REF[ties], _fit(ties)
    close(res.se, ref["se"], rtol=1e-5)      # R's se(coef)
    close(res.se2, ref["se2"], rtol=1e-5)    # R's se2
    close(res.loglik, ref["loglik"][1], rtol=1e-7)   # R's fit$loglik[2]
    close(res.loglik - res.loglik_penalised, ref["penalty"][1], rtol=1e-5)  # fit$penalty
    close(res.loglik_nofrailty, ref["loglik_nofrailty"], rtol=1e-9)
    np.testing.assert_allclose(np.diag(res.cov), res.se ** 2)


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_lrt_and_summary(ties):
    res = _fit(ties)
    lrt = res.lrt_theta_zero
    stat = 2 * (res.loglik_integrated - res.loglik_nofrailty)
    assert lrt["statistic"] == pytest.approx(stat) and stat > 0
    assert lrt["p"] == pytest.approx(0.5 * stats.chi2.sf(stat, 1))
    assert 0 < lrt["p"] < 0.05
    tab = res.summary
    assert list(tab.columns[:5]) == ["coef", "exp(coef)", "se", "se2", "z"]
    close(tab["z"], res.params / res.se, rtol=1e-12)
    assert res.n == len(_data()) and res.n_events == int(_data().event.sum())
    assert res.converged


def test_gamma_correction_matches_r_table_form():
    # R frailty.gammacon builds term2 from a table of event counts
    d = np.array([0, 1, 3, 3, 2, 5.0])
    nu = 2.5
    term1 = np.sum(d + nu * np.log(nu / (nu + d)))
    term2 = sum(np.log(nu + m - 1) - np.log(nu + dj) for dj in d for m in range(1, int(dj) + 1))
    assert gamma_correction(d, nu) == pytest.approx(term1 + term2, rel=1e-12)
    assert abs(gamma_correction(d, 1e12)) < 1e-9


def test_parabola_step():
    x = np.array([0.0, 1.0, 0.5])
    y = -(x - 0.3) ** 2
    assert _parabola_step(x, y) == pytest.approx(0.3)
    # best at the lower end: step down, but not below the bound
    assert _parabola_step(np.array([0.1, 0.5, 1.0]), np.array([0.0, -1.0, -2.0])) == \
        pytest.approx(0.01)


def test_missing_frailty_column():
    with pytest.raises(DataError):
        fit_cox_frailty(_data(), "team_size", start="start", stop="stop", event="event",
                        frailty="nope")

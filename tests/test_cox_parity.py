"""fit_cox against R survival::coxph on the committed fixtures (no R needed).

tests/fixtures/cox/make_fixtures.R produced coxph_reference.json from the CSVs
that make_data.py writes; every case is refitted here and compared.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from imrsurv.models.cox import CoxResult, fit_cox

HERE = Path(__file__).parent / "fixtures" / "cox"
REF = json.loads((HERE / "coxph_reference.json").read_text())
CASES = REF["cases"]
RTOL = 1e-6


@cache
def _data(name: str) -> pd.DataFrame:
    if name == "first":
        rec = _data("recurrent")
        return rec[rec.episode == 1]
    return pd.read_csv(HERE / f"{name}.csv")


@cache
def _fit(name: str) -> CoxResult:
    s = CASES[name]["spec"]
    rhs = s["rhs"].replace("practice", "C(practice)")
    strata = s["strata"]
    return fit_cox(_data(s["data"]), rhs, start=s["start"], stop=s["stop"], event=s["event"],
                   strata=strata, cluster=s["cluster"], weights=s["weights"],
                   offset=s["offset"], ties=s["ties"])


def close(actual, expected, rtol: float = RTOL, atol: float = 0.0) -> None:
    np.testing.assert_allclose(np.asarray(actual, float), np.asarray(expected, float),
                               rtol=rtol, atol=atol)


def test_fixture_provenance():
    assert REF["survival_version"].startswith("3.")
    assert len(CASES) >= 25


@pytest.mark.parametrize("name", sorted(CASES))
def test_coefficients_variances_loglik(name):
    c, res = CASES[name], _fit(name)
    close(res.params, c["coef"])
    close(res.cov_naive, c["naive_var"])
    close(res.se_naive, np.sqrt(np.diag(c["naive_var"])))
    close(res.cov, c["var"])
    close(res.se, np.sqrt(np.diag(c["var"])))
    close([res.loglik_null, res.loglik], c["loglik"])
    assert res.iterations == c["iter"]
    assert res.converged
    assert res.n == c["n"] and res.n_events == c["nevent"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_global_tests(name):
    c, t = CASES[name], _fit(name).tests
    close(t.loc["score", "statistic"], c["score_test"])
    close(t.loc["wald", "statistic"], c["wald_test"])
    lr = 2 * (c["loglik"][1] - c["loglik"][0])
    close(t.loc["likelihood ratio", "statistic"], lr)
    if c["robust_score_test"] is not None:
        # with an offset, R (and so imrsurv) evaluates it at lp = 0, dropping the offset
        close(t.loc["robust score", "statistic"], c["robust_score_test"])


@pytest.mark.parametrize("name", sorted(CASES))
def test_cox_zph_km(name):
    c, z = CASES[name], _fit(name).check_proportional_hazards("km")
    assert list(z.index[-1:]) == ["GLOBAL"]
    assert len(z) == len(c["zph"]["terms"])
    close(z["chisq"], c["zph"]["chisq"])
    close(z["df"], c["zph"]["df"])
    close(z["p"], c["zph"]["p"])


@pytest.mark.parametrize("name", sorted(CASES))
def test_concordance(name):
    c, cc = CASES[name]["concordance"], _fit(name).concordance_counts
    for key in ("concordant", "discordant", "tied.x", "tied.y", "tied.xy", "concordance",
                "std"):
        close(cc[key], c[key], atol=1e-9)


WITHOUT_R_BASEHAZ = sorted(n for n in CASES if CASES[n]["basehaz"] is None)


def test_only_the_interaction_case_lacks_an_r_baseline_and_ours_is_finite():
    # R's survfit refuses a curve for a factor-by-numeric interaction without the main effect
    assert len(WITHOUT_R_BASEHAZ) == 1
    bh = _fit(WITHOUT_R_BASEHAZ[0]).baseline_cumulative_hazard
    assert len(bh) and np.isfinite(bh["cumhaz"]).all() and (np.diff(bh["cumhaz"]) >= 0).any()


@pytest.mark.parametrize("name", sorted(n for n in CASES if CASES[n]["basehaz"] is not None))
def test_baseline_hazard(name):
    c, res = CASES[name], _fit(name)
    bh = res.baseline_cumulative_hazard
    close(bh["time"], c["basehaz"]["time"])
    # with an offset both are at covariates 0 and the case-weighted mean offset
    close(bh["cumhaz"], c["basehaz"]["hazard"])
    if c["basehaz"]["strata"] is not None:
        # R labels numeric strata "episode=1" but character ones just "A"
        ours = [lab.split("=", 1)[1] for lab in bh["strata"].astype(str)]
        assert ours == [lab.split("=", 1)[-1] for lab in c["basehaz"]["strata"]]


RESID = sorted(n for n, c in CASES.items() if "resid" in c)


@pytest.mark.parametrize("name", RESID)
def test_residuals(name):
    c, res = CASES[name]["resid"], _fit(name)
    close(res.residuals("martingale"), c["martingale"], atol=1e-10)
    close(res.residuals("score"), c["score"], atol=1e-10)
    close(res.residuals("dfbeta"), c["dfbeta"], atol=1e-12)
    sch = res.residuals("schoenfeld")
    close(sch, c["schoenfeld"], atol=1e-10)
    close(sch.index.get_level_values("time"), c["schoenfeld_time"])


def test_resid_cases_cover_schemes():
    assert {"ag_efron_w", "pwpgt_breslow", "wlw_efron", "first_breslow_w",
            "right_cont_efron", "right_month_efron_strata_cluster_w"} <= set(RESID)

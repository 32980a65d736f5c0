"""fit_cox with an offset against R survival on bladder2 (no R needed).

tests/fixtures/cox_offset/make_fixtures.R wrote bladder2.csv (R survival's bladder2 plus an
offset ``off``, fractional weights ``w`` and gap times) and coxph_offset.json. Covered:
coefficients and variances, R's robust score test (taken at linear predictor 0, without
the offset), basehaz(centered = FALSE) (covariates 0, offset at its weighted mean) and
survfit(fit, newdata) cumulative hazards, with and without strata and weights.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from imrsurv.errors import DataError
from imrsurv.models.cox import CoxResult, fit_cox

HERE = Path(__file__).parent / "fixtures" / "cox_offset"
REF = json.loads((HERE / "coxph_offset.json").read_text())
CASES = REF["cases"]
DATA = pd.read_csv(HERE / "bladder2.csv")
PROFILES = pd.DataFrame(REF["profiles"])
RTOL = 1e-8


@cache
def _fit(name: str, offset: str | None = "off") -> CoxResult:
    s = CASES[name]["spec"]
    return fit_cox(DATA, s["rhs"], start=s["start"], stop=s["stop"], event="event",
                   strata=s["strata"], cluster=s["cluster"], weights=s["weights"],
                   offset=offset, ties=s["ties"])


def close(actual, expected, rtol: float = RTOL, atol: float = 0.0) -> None:
    np.testing.assert_allclose(np.asarray(actual, float), np.asarray(expected, float),
                               rtol=rtol, atol=atol)


def test_fixture_covers_strata_weights_and_gap_time():
    specs = [c["spec"] for c in CASES.values()]
    assert any(s["strata"] for s in specs) and any(not s["strata"] for s in specs)
    assert any(s["weights"] for s in specs) and any(s["start"] is None for s in specs)
    assert sorted(set(DATA["w"])) == [0.5, 0.75, 1.0, 1.25, 1.5]
    # a clearly non-zero offset mean, so an offset-0 baseline would differ from R's
    assert all(c["offset_mean"] > 0.8 for c in CASES.values())


@pytest.mark.parametrize("name", sorted(CASES))
def test_coefficients_and_variances(name):
    c, res = CASES[name], _fit(name)
    close(res.params, c["coef"], rtol=1e-7)
    close(res.cov_naive, c["naive_var"], rtol=1e-7)
    close(res.cov, c["var"], rtol=1e-7)
    close([res.loglik_null, res.loglik], c["loglik"])
    close(res.tests.loc["score", "statistic"], c["score_test"])
    assert res.n == c["n"] and res.n_events == c["nevent"]


@pytest.mark.parametrize("name", sorted(n for n in CASES if CASES[n]["spec"]["cluster"]))
def test_robust_score_test_matches_r(name):
    res = _fit(name)
    close(res.tests.loc["robust score", "statistic"], CASES[name]["robust_score_test"])
    # R drops the offset here, so the statistic is that of the same fit without the offset
    no_off = _fit(name, offset=None)
    close(res.tests.loc["robust score", "statistic"],
          no_off.tests.loc["robust score", "statistic"], rtol=1e-12)
    # ... and not the offset-respecting version, which differs on these data
    kept = res._robust_score_test(keep_offset=True)
    assert abs(kept / CASES[name]["robust_score_test"] - 1) > 0.01


def _brute_robust_score(d: pd.DataFrame, cols: list[str], eta: np.ndarray,
                        w: np.ndarray) -> float:
    """Breslow robust score statistic at beta = 0 by its definition, one event time at a
    time: u_i = w_i [delta_i (x_i - xbar(t_i)) - sum_{k: start_i < t_k <= stop_i}
    exp(eta_i) (x_i - xbar(t_k)) dLambda_k], summed by cluster (id)."""
    x = d[cols].to_numpy(float)
    r = w * np.exp(eta)
    ev = d["event"].to_numpy() == 1
    u = np.zeros_like(x)
    for t in np.unique(d.loc[ev, "stop"]):
        at = ((d["start"] < t) & (d["stop"] >= t)).to_numpy()
        dead = ev & (d["stop"] == t).to_numpy()
        s0 = r[at].sum()
        xbar = r[at] @ x[at] / s0
        dlam = w[dead].sum() / s0
        u[dead] += x[dead] - xbar
        u[at] -= (np.exp(eta[at]) * dlam)[:, None] * (x[at] - xbar)
    u *= w[:, None]
    t0 = pd.DataFrame(u).groupby(d["id"].to_numpy()).sum().to_numpy()
    tot = t0.sum(0)
    return float(tot @ np.linalg.solve(t0.T @ t0, tot))


@pytest.mark.parametrize("name", ["ag_breslow", "ag_breslow_w"])
def test_robust_score_by_brute_force(name):
    s, res = CASES[name]["spec"], _fit(name)
    w = DATA[s["weights"]].to_numpy(float) if s["weights"] else np.ones(len(DATA))
    cols = s["rhs"].split(" + ")
    at_zero = _brute_robust_score(DATA, cols, np.zeros(len(DATA)), w)
    close(at_zero, CASES[name]["robust_score_test"])  # R's: lp = 0, offset dropped
    kept = _brute_robust_score(DATA, cols, DATA["off"].to_numpy(float), w)
    close(res._robust_score_test(keep_offset=True), kept)


@pytest.mark.parametrize("name", sorted(CASES))
def test_baseline_cumulative_hazard_matches_basehaz(name):
    c, bh = CASES[name], _fit(name).baseline_cumulative_hazard
    close(bh["time"], c["basehaz"]["time"], rtol=0)
    close(bh["cumhaz"], c["basehaz"]["hazard"])
    if c["spec"]["strata"]:
        ours = [lab.split("=", 1)[1] for lab in bh["strata"].astype(str)]
        assert ours == [lab.split("=", 1)[1] for lab in c["basehaz"]["strata"]]
    else:
        assert "strata" not in bh.columns


@pytest.mark.parametrize("name", sorted(CASES))
def test_predicted_cumulative_hazard_matches_survfit_newdata(name):
    c, res = CASES[name], _fit(name)
    pred = res.predict_cumulative_hazard(PROFILES, c["predict"]["times"])
    expected = np.asarray(c["predict"]["cumhaz"], float)
    assert pred.shape == expected.shape
    close(pred.to_numpy(), expected, atol=1e-15)
    # the offset acts as a log-multiplier on the profile's hazard
    shifted = PROFILES.assign(off=PROFILES["off"] + 0.5)
    close(res.predict_cumulative_hazard(shifted, c["predict"]["times"]).to_numpy(),
          np.exp(0.5) * expected, atol=1e-15)


def test_baseline_is_the_profile_at_zero_covariates_and_mean_offset():
    name = "ag_efron_w"
    res = _fit(name)
    bh = res.baseline_cumulative_hazard
    zero = pd.DataFrame({"rx": [0.0], "size": [0.0], "number": [0.0],
                         "off": [CASES[name]["offset_mean"]]})
    got = res.predict_cumulative_hazard(zero, bh["time"]).to_numpy()[:, 0]
    close(got, bh["cumhaz"], rtol=1e-12)


def test_profile_without_the_offset_column_is_an_error():
    res = _fit("ag_efron")
    with pytest.raises(DataError, match='"off"'):
        res.predict_cumulative_hazard(PROFILES.drop(columns="off"), [5.0])

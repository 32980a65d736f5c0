"""Transition Cox models for user-defined states against R multi-state coxph / survfit.

Fixtures: tests/fixtures/state_transitions/make_fixtures.R (high / low fidelity /
discontinued with recovery low -> high, 60 sites).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import imrsurv as ims
from imrsurv.errors import DataError

HERE = Path(__file__).parent / "fixtures" / "state_transitions"
STATES = ("high", "low", "discontinued")
ALLOWED = [("high", "low"), ("low", "high"), ("high", "discontinued"),
           ("low", "discontinued")]


@pytest.fixture(scope="module")
def data():
    return pd.read_csv(HERE / "fidelity_covariates.csv")


@pytest.fixture(scope="module")
def ref():
    return json.loads((HERE / "state_cox.json").read_text())


def _name(code: str) -> str:
    a, b = (int(v) - 1 for v in code.split(":"))
    return f"{STATES[a]}->{STATES[b]}"


@pytest.mark.parametrize("ties", ["breslow", "efron"])
def test_coefficients_and_robust_errors_match_r(data, ref, ties):
    res = ims.fit_state_transitions(data, STATES, ALLOWED, "imr + size", ties=ties)
    assert set(res.fits) == {_name(c) for c in ref["transition_names"]}
    for code, r in ref[ties]["transitions"].items():
        fit = res.fits[_name(code)]
        np.testing.assert_allclose(fit.params.to_numpy(), r["coef"], rtol=1e-9)
        np.testing.assert_allclose(fit.se.to_numpy(), r["se"], rtol=1e-9)
        np.testing.assert_allclose(fit.se_naive.to_numpy(), r["se_naive"], rtol=1e-9)


@pytest.mark.parametrize(("method", "key"), [("aalen-johansen", "pstate_aj"),
                                           ("exp", "pstate_exp")])
def test_state_probabilities_match_r_survfit(data, ref, method, key):
    """R survfit(fit, newdata, p0) with stype = 1 (I + dA) and its default stype = 2."""
    res = ims.fit_state_transitions(data, STATES, ALLOWED, "imr + size", ties="breslow")
    r = ref["breslow"]
    with warnings.catch_warnings():
        # at 7.66 (after the compared times) one increment exceeds 1 for this profile
        warnings.filterwarnings("ignore", "1 event time", UserWarning)
        got = res.predict_state_probabilities({"imr": 1, "size": 4}, r["times"], method=method)
    p = got["probability"].to_numpy().reshape(len(r["times"]), 3)
    want = np.array(r[key]).reshape(len(r["times"]), 3)
    np.testing.assert_allclose(p, want, rtol=1e-9, atol=1e-12)
    assert list(got["state"].cat.categories) == list(STATES)


def test_predict_with_errors_and_summary(data):
    res = ims.fit_state_transitions(data, STATES, ALLOWED, "imr + size")
    # an increment above 1 at 7.66 for this profile: predict's default exp(dA) stays a
    # probability matrix, so there is no warning (the Aalen-Johansen form warns)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pred = res.predict({"imr": 1, "size": 4}, [1, 2, 4], horizon=4)
    with pytest.warns(UserWarning, match="increment above 1"):
        res.predict({"imr": 1, "size": 4}, [1, 2], method="aalen-johansen")
    assert (pred.probabilities["se"] > 0).all()
    assert pred.expected_years["years"].sum() == pytest.approx(4.0, abs=1e-12)
    # "high" can be re-entered (low -> high), so it has no survival curve
    with pytest.raises(DataError, match="re-entered"):
        _ = pred.survival
    text = str(res)
    assert "high / low / discontinued" in text and "low -> high" in text
    import matplotlib

    matplotlib.use("Agg")
    ax = res.plot()
    assert len(ax.get_legend().get_texts()) == 4
    ax.figure.clf()


def test_dict_formula_and_bad_input(data):
    f = {"high->low": "imr", "low->high": "imr", "high->discontinued": "size",
         "low -> discontinued": "size"}
    res = ims.fit_state_transitions(data, STATES, ALLOWED, f)
    assert list(res.fits["high->discontinued"].params.index) == ["size"]
    with pytest.raises(DataError, match='no formula for the declared transition "low->high"'):
        ims.fit_state_transitions(data, STATES, ALLOWED, {k: v for k, v in f.items()
                                                          if k != "low->high"})
    with pytest.raises(DataError, match="not a declared transition"):
        ims.fit_state_transitions(data, STATES, ALLOWED, {**f, "discontinued->high": "imr"})
    # an undeclared transition observed in the data names the row, site and time
    with pytest.raises(DataError, match=r"transition low -> high at .* is not among the "
                                        "declared"):
        ims.fit_state_transitions(data, STATES, ALLOWED[:1] + ALLOWED[2:], "imr")
    bad = data.copy()
    bad.loc[3, "to"] = "medium"
    with pytest.raises(DataError, match='"medium" is not a declared state'):
        ims.fit_state_transitions(bad, STATES, ALLOWED, "imr")
    with pytest.raises(DataError, match='column "team"'):
        ims.fit_state_transitions(data, STATES, ALLOWED, "team")
    # a declared transition with no events in the data is named
    extra = STATES + ("merged",)
    with pytest.raises(DataError, match="high->merged"):
        ims.fit_state_transitions(data, extra, ALLOWED + [("high", "merged")], "imr")

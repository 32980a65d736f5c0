"""Aalen-Johansen for user-defined states and transitions, against R survfit
(tests/fixtures/custom_states), and the checks on such data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import imrsurv as ims
from imrsurv.errors import ArgumentError, DataError
from imrsurv.models.custom_states import state_occupation
from imrsurv.models.multistate import state_probabilities

HERE = Path(__file__).parent / "fixtures" / "custom_states"
R = json.loads((HERE / "aj_states.json").read_text())
DATA = pd.read_csv(HERE / "fidelity_states.csv")
STATES = ("high", "low", "discontinued")
MOVES = ["high -> low", "low -> high", "high -> discontinued", "low -> discontinued"]


def _wide(res: pd.DataFrame, col: str) -> np.ndarray:
    return res.pivot_table(index="time", columns="state", values=col,
                           observed=False)[list(STATES)].to_numpy()


@pytest.mark.parametrize("key", ["all", "ACT", "IMR"])
def test_matches_survfit_istate(key):
    ref = R[key]
    assert ref["states"] == list(STATES)
    sub = DATA if key == "all" else DATA[DATA["practice"] == key]
    res = state_occupation(sub, STATES, MOVES, times=ref["time"])
    np.testing.assert_allclose(_wide(res, "probability"), ref["pstate"], rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(_wide(res, "se"), ref["std_err_influence"], rtol=1e-6,
                               atol=1e-12)
    r_default = state_occupation(sub, STATES, MOVES, times=ref["time"], p0_se=False)
    np.testing.assert_allclose(_wide(r_default, "se"), ref["std_err"], rtol=1e-6, atol=1e-12)
    assert 0 < ref["p0"][1] < 1  # sites start in two states: the p0 term matters
    assert not np.allclose(ref["std_err"], ref["std_err_influence"])


def test_by_group_equals_subsets_and_rows_sum_to_one():
    res = state_occupation(DATA, STATES, MOVES, times=[1, 3, 5], by="practice")
    for g in ("ACT", "IMR"):
        sub = state_occupation(DATA[DATA["practice"] == g], STATES, MOVES, times=[1, 3, 5])
        mine = res[res["group"] == g].drop(columns="group").reset_index(drop=True)
        pd.testing.assert_frame_equal(mine, sub)
    total = res.groupby(["group", "time"])["probability"].sum()
    np.testing.assert_allclose(total, 1.0, rtol=1e-12)


def test_default_model_as_custom_states_equals_state_probabilities():
    hist = ims.datasets.load_bond2014()
    sp = hist.spells()
    rows = pd.DataFrame({"site": sp["site"], "tstart": sp["start"], "tstop": sp["stop"],
                         "from": sp["state"], "to": sp["next"]})
    states = ("sustained", "discontinued", "restarted")
    mine = state_occupation(rows, states, [("sustained", "discontinued"),
                                           ("discontinued", "restarted"),
                                           ("restarted", "discontinued")], times=[1, 3, 6])
    ref = state_probabilities(hist, [1, 3, 6])
    np.testing.assert_allclose(mine["probability"], ref["probability"], rtol=1e-12)
    np.testing.assert_allclose(mine["se"], ref["se"], rtol=1e-12)


def test_undeclared_transition_names_site_and_times():
    with pytest.raises(DataError) as err:
        state_occupation(DATA, STATES, ["high -> low", "high -> discontinued",
                                        "low -> discontinued"])
    text = str(err.value)
    assert "transition low -> high at 1.47 (row (0, 1.47]) is not among the declared" in text
    assert 'row 0, site "F01"' in text
    n_low_high = int(((DATA["from"] == "low") & (DATA["to"] == "high")).sum())
    assert len(err.value.problems) == n_low_high


def test_states_outside_the_declared_set_and_broken_paths():
    bad = DATA.copy()
    bad.loc[0, "from"] = "medium"
    bad.loc[1, "to"] = "gone"
    with pytest.raises(DataError) as err:
        state_occupation(bad, STATES, MOVES)
    text = str(err.value)
    assert 'from "medium" is not a declared state (states: high, low, discontinued)' in text
    assert 'to "gone" is not a declared state or "censored"' in text
    jump = DATA.copy()
    jump.loc[1, ["from", "to"]] = ["low", "high"]  # F01 entered high at 1.47
    with pytest.raises(DataError, match='starts in "low" at 1.47 but the previous row '
                                        "entered high at 1.47"):
        state_occupation(jump, STATES, MOVES)
    over = DATA.copy()
    over.loc[1, "tstart"] = 1.0
    with pytest.raises(DataError, match="overlaps"):
        state_occupation(over, STATES, MOVES)


def test_bad_arguments():
    with pytest.raises(ArgumentError):
        state_occupation(DATA, "high", MOVES)
    with pytest.raises(ArgumentError, match="not among the declared states"):
        state_occupation(DATA, STATES, ["high -> gone"])
    with pytest.raises(ArgumentError, match="censored"):
        state_occupation(DATA, ("high", "censored"), ["high -> censored"])
    with pytest.raises(ArgumentError):
        state_occupation(DATA, STATES, MOVES, times=["later"])


def test_beyond_follow_up_is_nan():
    res = state_occupation(DATA, STATES, MOVES, times=[2, 99])
    assert res.loc[res["time"] == 99, "probability"].isna().all()
    assert any("beyond the last follow-up" in n for n in res.attrs["notes"])


def test_plot_any_states():
    import matplotlib

    matplotlib.use("Agg")
    from imrsurv.models.causes import cause_state_probabilities
    from imrsurv.models.custom_states import plot_state_occupation

    res = state_occupation(DATA, STATES, MOVES)
    ax = plot_state_occupation(res)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == list(STATES)
    by_cause = cause_state_probabilities(ims.datasets.load_bond_causes(), np.linspace(0, 6, 13))
    ax = plot_state_occupation(by_cause)
    assert len(ax.get_legend().get_texts()) == 6
    with pytest.raises(ArgumentError, match="several groups"):
        plot_state_occupation(state_occupation(DATA, STATES, MOVES, by="practice"))

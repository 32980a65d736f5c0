"""The trusted History of a simulated cohort equals the validated one, frame for frame."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from imrsurv.simulate.cohort import simulate_cohort
from imrsurv.simulate.trusted import SimulatedHistory

DESIGNS = [
    {"n_sites": 49, "years": 6, "entry": "common"},
    {"n_sites": 12, "years": 6},
    {"n_sites": 30, "years": 8, "censoring": 0.2, "frailty_var": 0.5},
    {"n_sites": 20, "years": 5, "covariates": None},
    {"n_sites": 25, "years": 6, "decimals": 1, "hazards": {"discontinue": 0.8, "restart": 0.9}},
    {"n_sites": 1000, "years": 6, "entry": "staggered", "accrual": 2.0},
]


def assert_same_history(a, b) -> None:
    pd.testing.assert_frame_equal(a._events, b._events, check_exact=True)
    pd.testing.assert_frame_equal(a._sites, b._sites, check_exact=True)
    if a._covariates is None:
        assert b._covariates is None
    else:
        pd.testing.assert_frame_equal(a._covariates, b._covariates, check_exact=True)
    pd.testing.assert_frame_equal(a.accounting.table, b.accounting.table, check_exact=True)
    pd.testing.assert_frame_equal(a.accounting.set_aside, b.accounting.set_aside,
                                  check_exact=True, check_index_type=False)
    for attr in ("time_unit", "recent_window", "covariate_names", "site_columns",
                 "from_dates", "n_sites"):
        assert getattr(a, attr) == getattr(b, attr), attr
    assert repr(a) == repr(b)


@pytest.mark.parametrize("design", DESIGNS, ids=lambda d: f"{d['n_sites']}sites")
def test_trusted_history_equals_validated(design: dict) -> None:
    d = dict(design)
    n, years = d.pop("n_sites"), d.pop("years")
    n_seeds = 3 if n >= 1000 else 25
    for seed in range(n_seeds):
        cohort = simulate_cohort(n, years, seed=seed, **d)
        fast, slow = cohort.history(), cohort.history(validate=True)
        assert isinstance(fast, SimulatedHistory) and not isinstance(slow, SimulatedHistory)
        assert_same_history(fast, slow)
        for scheme in ("ag", "pwp-tt", "pwp-gt", "first", "wlw"):
            for outcome in ("discontinue", "restart"):
                pd.testing.assert_frame_equal(fast.counting_process(scheme, outcome),
                                              slow.counting_process(scheme, outcome),
                                              check_exact=True)


def test_trusted_history_is_not_used_for_user_data() -> None:
    """A broken simulated log given to read_history is still refused."""
    import imrsurv as ims

    cohort = simulate_cohort(5, 6, seed=1)
    ev = cohort.events.copy()
    ev.loc[ev.index[1], "event"] = "restart"  # restart while active
    with pytest.raises(ims.DataError, match="restart"):
        ims.read_history(ev, cohort.covariates, cohort.sites)
    assert np.all(cohort.history().events["line"].str.startswith("row "))


def _pandas_rows(site, time, lead, team, train) -> dict[str, np.ndarray]:
    """The pandas formulation the simulator used before (groupby last + ffill)."""
    df = pd.DataFrame({"site": site, "time": time, "leadership_change": lead, "team_size": team,
                       "training_access": train})
    df = df.sort_values(["site", "time"], kind="stable")
    g = df.groupby(["site", "time"], sort=False)
    rows = pd.DataFrame({"leadership_change": g["leadership_change"].max(),
                         "team_size": g["team_size"].last(),
                         "training_access": g["training_access"].last()}).reset_index()
    rows[["team_size", "training_access"]] = rows.groupby("site")[
        ["team_size", "training_access"]].ffill()
    same_site = np.r_[False, rows["site"].to_numpy()[1:] == rows["site"].to_numpy()[:-1]]
    unchanged = (same_site & (rows["leadership_change"].to_numpy() == 0)
                 & (rows["team_size"].diff().to_numpy() == 0)
                 & (rows["training_access"].diff().to_numpy() == 0))
    rows = rows[~unchanged]
    return {"site": rows["site"].to_numpy(), "time": rows["time"].to_numpy(),
            "leadership_change": rows["leadership_change"].to_numpy().astype(int),
            "team_size": rows["team_size"].to_numpy().astype(int),
            "training_access": rows["training_access"].to_numpy().astype(int)}


def test_covariate_rows_equal_pandas_formulation(monkeypatch: pytest.MonkeyPatch) -> None:
    from imrsurv.simulate import cohort as mod

    fast = mod._one_row_per_time
    calls = []

    def checked(*args):
        got, want = fast(*args), _pandas_rows(*args)
        assert got.keys() == want.keys()
        for k in want:
            assert got[k].dtype == want[k].dtype, k
            np.testing.assert_array_equal(got[k], want[k], err_msg=k)
        calls.append(len(want["site"]))
        return got

    monkeypatch.setattr(mod, "_one_row_per_time", checked)
    for seed in range(40):
        simulate_cohort(49, 6, seed=seed, entry="common")
        simulate_cohort(30, 8, seed=seed, censoring=0.3, decimals=2,
                        covariates={"turnover_rate": 3.0, "team_initial": (1, 2)})
    assert len(calls) == 80 and min(calls) >= 30


def test_simulated_history_copy_falls_back_to_the_general_path() -> None:
    import dataclasses

    cohort = simulate_cohort(20, 6, seed=4)
    fast = cohort.history()
    bare = dataclasses.replace(fast, _cache={})
    pd.testing.assert_frame_equal(bare.counting_process("ag"), fast.counting_process("ag"),
                                  check_exact=True)

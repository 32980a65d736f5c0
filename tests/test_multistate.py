"""Aalen-Johansen state probabilities, restricted mean time in state, expected
restarts and the Bond status table; numbers from R survival (fixtures/states)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from imrsurv.errors import DataError
from imrsurv.models.multistate import (
    STATES,
    _aalen_johansen,
    bond_status,
    check_spells,
    expected_restarts,
    restricted_mean_time_in_state,
    state_probabilities,
    status_from_spells,
)

HERE = Path(__file__).parent / "fixtures" / "states"
SPELLS = pd.read_csv(HERE / "ms_spells.csv")
AJ = json.loads((HERE / "aj.json").read_text())


def _subset(key):
    return SPELLS if key == "all" else SPELLS[SPELLS["group"] == key]


def _wide(res, col):
    return res.pivot_table(index="time", columns="state", values=col, observed=False,
                           dropna=False)[list(STATES)].to_numpy()


# ---------------------------------------------------------------- R parity
@pytest.mark.parametrize("key", ["all", "A", "B"])
def test_pstate_and_std_err_match_r(key):
    ref = AJ[key]
    t = np.asarray(ref["time"])
    # R's default (influence=FALSE) leaves the variance of p0 out
    res = state_probabilities(_subset(key), t, p0_se=False)
    np.testing.assert_allclose(_wide(res, "probability"), ref["pstate"], rtol=0, atol=1e-8)
    np.testing.assert_allclose(_wide(res, "se"), ref["std_err"], rtol=0, atol=1e-6)
    # full IJ, as R with influence=TRUE
    res = state_probabilities(_subset(key), t)
    np.testing.assert_allclose(_wide(res, "se"), ref["std_err_influence"], rtol=0, atol=1e-6)
    # log CI as R (upper capped at 1)
    res = state_probabilities(_subset(key), t, p0_se=False)
    lo, hi = _wide(res, "lower"), _wide(res, "upper")
    ok = np.isfinite(np.asarray(ref["lower"], float))
    np.testing.assert_allclose(lo[ok], np.asarray(ref["lower"], float)[ok], atol=1e-6)
    np.testing.assert_allclose(hi[ok], np.asarray(ref["upper"], float)[ok], atol=1e-6)


@pytest.mark.parametrize("key", ["all", "A", "B"])
def test_summary_times_match_r(key):
    ref = AJ[key]
    res = state_probabilities(_subset(key), ref["eval_times"])
    np.testing.assert_allclose(_wide(res, "probability"), ref["eval_pstate"], atol=1e-8)
    np.testing.assert_allclose(_wide(res, "se"), ref["eval_std_err"], atol=1e-6)


@pytest.mark.parametrize("key", ["all", "A", "B"])
def test_rmean_and_expected_restarts_match_r(key):
    ref = AJ[key]
    for h in ref["horizons"]:
        rm = restricted_mean_time_in_state(_subset(key), h).set_index("state")
        np.testing.assert_allclose(rm.loc[list(STATES), "years"], ref["rmean"][f"{h:g}"],
                                   rtol=1e-10)
        np.testing.assert_allclose(rm.loc[list(STATES), "se"], ref["rmean_se"][f"{h:g}"],
                                   rtol=1e-8)
        assert rm.loc["active", "years"] == pytest.approx(
            rm.loc["sustained", "years"] + rm.loc["restarted", "years"])
        er = expected_restarts(_subset(key), h).set_index("transition")
        assert er.loc["restarts", "expected"] == pytest.approx(
            ref["expected_restarts"][f"{h:g}"], rel=1e-10)


def test_p0_matches_r():
    df, _ = check_spells(SPELLS)
    res = state_probabilities(df, [0.0])
    np.testing.assert_allclose(res["probability"], AJ["all"]["p0"], atol=1e-12)


# ---------------------------------------------------------------- IJ = derivative
def _coded(spells):
    code = {s: i for i, s in enumerate(STATES)}
    df, _ = check_spells(spells)
    cl = pd.factorize(df["site"], sort=True)[0]
    return (df["start"].to_numpy(), df["stop"].to_numpy(), df["state"].map(code).to_numpy(),
            df["next"].map(code).fillna(-1).to_numpy(int), cl)


def test_influence_is_derivative_of_estimates():
    """IJ influences (p, rmst, expected transitions) equal finite differences in site weights."""
    start, stop, fr, to, cl = _coded(SPELLS)
    kw = dict(eval_times=[2.0, 5.5], horizons=[4.0, 6.0], states=STATES, keep_influence=True)
    base = _aalen_johansen(start, stop, fr, to, cl, 3, **kw)
    eps = 1e-6
    for c in (0, 7, 33, int(cl.max())):
        w = np.ones(len(start))
        w[cl == c] += eps
        pert = _aalen_johansen(start, stop, fr, to, cl, 3, weights=w, **kw)
        np.testing.assert_allclose((pert.eval_p - base.eval_p) / eps, base.eval_infl[c],
                                   atol=1e-5)
        np.testing.assert_allclose((pert.rmst - base.rmst) / eps, base.rmst_infl[c], atol=1e-5)
        np.testing.assert_allclose((pert.trans - base.trans) / eps, base.trans_infl[c],
                                   atol=1e-5)


# ---------------------------------------------------------------- no censoring
def _complete_spells():
    # every site followed from 0 to 10, no censoring before: AJ = crude proportions
    rows = [
        ("a", 0, 2, "sustained", "discontinued"), ("a", 2, 3, "discontinued", "restarted"),
        ("a", 3, 5, "restarted", "discontinued"), ("a", 5, 6, "discontinued", "restarted"),
        ("a", 6, 10, "restarted", "censored"),
        ("b", 0, 10, "sustained", "censored"),
        ("c", 0, 4, "sustained", "discontinued"), ("c", 4, 10, "discontinued", "censored"),
        ("d", 0, 1, "sustained", "discontinued"), ("d", 1, 8, "discontinued", "restarted"),
        ("d", 8, 10, "restarted", "censored"),
    ]
    return pd.DataFrame(rows, columns=["site", "start", "stop", "state", "next"])


def test_without_censoring_aj_equals_crude_and_counts():
    sp = _complete_spells()
    for h in (1.0, 2.5, 5.0, 6.0, 9.0):
        st = status_from_spells(sp, h).astype(str)
        res = state_probabilities(sp, [h]).set_index("state")["probability"]
        for s in STATES:
            assert res[s] == pytest.approx((st == s).mean())
        er = expected_restarts(sp, h).set_index("transition")["expected"]
        n_restarts = ((sp["next"] == "restarted") & (sp["stop"] <= h)).sum() / 4
        n_disc = ((sp["next"] == "discontinued") & (sp["stop"] <= h)).sum() / 4
        assert er["restarts"] == pytest.approx(n_restarts)
        assert er["discontinuations"] == pytest.approx(n_disc)
    rm = restricted_mean_time_in_state(sp, 10.0).set_index("state")["years"]
    active = sp[sp["state"] != "discontinued"]
    assert rm["active"] == pytest.approx((active["stop"] - active["start"]).sum() / 4)


# ---------------------------------------------------------------- edge cases
def test_single_site_restarting_several_times():
    sp = pd.DataFrame([
        ("s", 0, 1, "sustained", "discontinued"), ("s", 1, 2, "discontinued", "restarted"),
        ("s", 2, 3, "restarted", "discontinued"), ("s", 3, 4, "discontinued", "restarted"),
        ("s", 4, 5, "restarted", "discontinued"), ("s", 5, 6, "discontinued", "restarted"),
        ("s", 6, 7, "restarted", "censored"),
    ], columns=["site", "start", "stop", "state", "next"])
    res = state_probabilities(sp, [0.5, 1.5, 2.5, 5.5, 6.5, 7.0])
    got = res.pivot_table(index="time", columns="state", values="probability",
                          observed=False)[list(STATES)]
    path = ["sustained", "discontinued", "restarted", "discontinued", "restarted", "restarted"]
    expect = np.array([[float(s == p) for s in STATES] for p in path])
    np.testing.assert_allclose(got.to_numpy(), expect)
    np.testing.assert_allclose(res["se"], 0.0, atol=1e-12)
    er = expected_restarts(sp, 6.5).set_index("transition")
    assert er.loc["restarts", "expected"] == pytest.approx(3.0)
    assert er.loc["discontinuations", "expected"] == pytest.approx(3.0)


def test_group_with_no_events():
    sp = _complete_spells()
    sp["grp"] = np.where(sp["site"] == "b", "quiet", "busy")
    extra = pd.DataFrame([("e", 0.0, 7.0, "sustained", "censored", "quiet")],
                         columns=list(sp.columns))
    sp = pd.concat([sp, extra], ignore_index=True)
    res = state_probabilities(sp, [1.0, 5.0, 7.0], by="grp")
    q = res[res["group"] == "quiet"]
    np.testing.assert_allclose(q["probability"], np.tile([1.0, 0.0, 0.0], 3))
    np.testing.assert_allclose(q["se"], 0.0)
    b = bond_status(sp, 5.0, by="grp")
    row = b.table.set_index(["group", "status"])
    assert row.loc[("quiet", "sustained"), "n"] == 2
    assert row.loc[("quiet", "sustained"), "probability"] == 1.0
    assert "quiet" in str(b)


def test_discontinuation_at_end_of_follow_up():
    # site x discontinues at 5.0, its last contact: counted as discontinued at 5
    sp = pd.DataFrame([
        ("x", 0, 5, "sustained", "discontinued"),
        ("x", 5, 5, "discontinued", "censored"),  # zero-length: left out, with a note
        ("y", 0, 8, "sustained", "censored"),
    ], columns=["site", "start", "stop", "state", "next"])
    res = state_probabilities(sp, [4.99, 5.0])
    p = res.pivot_table(index="time", columns="state", values="probability", observed=False)
    assert p.loc[4.99, "sustained"] == 1.0
    assert p.loc[5.0, "discontinued"] == pytest.approx(0.5)
    assert any("zero-length" in n for n in res.attrs["notes"])
    st = status_from_spells(sp, 5.0).astype(str)
    assert st["x"] == "discontinued" and st["y"] == "sustained"
    b = bond_status(sp, 5.0)
    t = b.table.set_index("status")
    assert t.loc["discontinued", "n"] == 1 and t.loc["discontinued", "probability"] == 0.5


def test_horizon_beyond_follow_up_is_nan_with_warning():
    sp = _complete_spells()
    with pytest.warns(UserWarning, match="beyond the last follow-up"):
        res = state_probabilities(sp, [5.0, 12.0])
    assert res[res["time"] == 12.0]["probability"].isna().all()
    assert res[res["time"] == 5.0]["probability"].notna().all()
    with pytest.warns(UserWarning, match="beyond the last follow-up"):
        b = bond_status(sp, 12.0)
    assert b.table["probability"].isna().all()
    assert (b.table["n"] == 0).all()
    assert b.sites.iloc[-1]["censored"] == 4
    assert any("beyond" in n for n in b.notes)
    with pytest.warns(UserWarning):
        rm = restricted_mean_time_in_state(sp, 11.0)
    assert rm["years"].isna().all()


def test_late_entry_changes_risk_sets():
    # b enters at 3 (after a's discontinuation at 2): at 2 only a is at risk
    sp = pd.DataFrame([
        ("a", 0, 2, "sustained", "discontinued"), ("a", 2, 9, "discontinued", "censored"),
        ("b", 3, 4, "sustained", "discontinued"), ("b", 4, 9, "discontinued", "censored"),
        ("c", 0, 9, "sustained", "censored"),
    ], columns=["site", "start", "stop", "state", "next"])
    res = state_probabilities(sp, [2.0, 4.0]).set_index(["time", "state"])["probability"]
    assert res[(2.0, "sustained")] == pytest.approx(0.5)
    # at 4: b and c at risk in sustained, one leaves
    assert res[(4.0, "sustained")] == pytest.approx(0.25)


# ---------------------------------------------------------------- validation
def test_invalid_spells_name_every_bad_row():
    sp = pd.DataFrame([
        ("a", 0, 2, "sustained", "restarted"),  # not a transition of the model
        ("b", 0, 2, "sustained", "discontinued"),
        ("b", 1, 3, "discontinued", "censored"),  # overlaps
        ("c", 0, 2, "active", "censored"),  # unknown state
        ("d", 3, 1, "sustained", "censored"),  # stop before start
    ], columns=["site", "start", "stop", "state", "next"])
    with pytest.raises(DataError) as e:
        state_probabilities(sp, [1.0])
    sites = {p.site for p in e.value.problems}
    assert {"a", "c", "d"} <= sites
    sp2 = pd.DataFrame([
        ("b", 0, 2, "sustained", "discontinued"),
        ("b", 1, 3, "discontinued", "censored"),
        ("e", 0, 2, "sustained", "discontinued"),
        ("e", 2, 3, "restarted", "censored"),  # should start discontinued
    ], columns=["site", "start", "stop", "state", "next"])
    with pytest.raises(DataError) as e:
        state_probabilities(sp2, [1.0])
    assert {p.site for p in e.value.problems} == {"b", "e"}
    with pytest.raises(DataError, match="missing column"):
        state_probabilities(sp2.drop(columns="next"), [1.0])


# ---------------------------------------------------------------- via History
EVENTS = """site,time,event,practice
a,0,start,IMR
a,2,discontinue,IMR
a,3,restart,IMR
a,5,discontinue,IMR
a,5.5,restart,IMR
a,7,end,IMR
b,0,start,ACT
b,6.5,end,ACT
c,1,start,IMR
c,4,discontinue,IMR
c,4,end,IMR
d,0,start,ACT
d,1.5,discontinue,ACT
d,6,end,ACT
e,0,start,IMR
e,3,end,IMR
"""


@pytest.fixture
def hist():
    import io

    import imrsurv

    if not hasattr(imrsurv, "read_history"):
        pytest.skip("read_history not available")
    return imrsurv.read_history(pd.read_csv(io.StringIO(EVENTS)))


def test_history_input(hist):
    a = state_probabilities(hist, [1, 3, 6], by="practice")
    b = state_probabilities(hist.spells().merge(hist.sites[["site", "practice"]]), [1, 3, 6],
                            by="practice")
    pd.testing.assert_frame_equal(a, b)
    st = status_from_spells(hist.spells(), 6.0).astype(str)
    pd.testing.assert_series_equal(st.sort_index(), hist.status_at(6.0).astype(str).sort_index(),
                                   check_names=False, check_categorical=False)
    res = bond_status(hist, 6.0, by="practice")
    t = res.table.set_index(["group", "status"])
    assert t.loc[("all", "restarted"), "n"] == 1  # a
    assert t.loc[("all", "sustained"), "n"] == 1  # b
    assert t.loc[("all", "discontinued"), "n"] == 1  # d (c exits at 4, e at 3: censored)
    assert res.sites.set_index("group").loc["all", "censored"] == 2
    assert any("censored before" in n for n in res.notes)
    text = str(res)
    assert "Aalen-Johansen" in text and "IMR" in text and "ACT" in text


def test_history_discontinuation_at_last_contact(hist):
    # c discontinues at 4.0, its last contact; d discontinues at 1.5
    res = bond_status(hist, 4.0)
    t = res.table.set_index("status")
    st = hist.status_at(4.0).astype(str)
    assert st["c"] == "discontinued"
    assert t.loc["discontinued", "n"] == (st == "discontinued").sum() == 2
    assert t.loc["restarted", "n"] == 1  # a: stopped at 2, restarted at 3
    # nobody censored before 4 except e (exit 3): AJ at 4 uses e's follow-up to 3
    assert res.sites.iloc[-1]["censored"] == 1
    p = state_probabilities(hist, [4.0]).set_index("state")["probability"]
    assert p["discontinued"] == pytest.approx(t.loc["discontinued", "probability"])
    assert p.sum() == pytest.approx(1.0)


def test_plot_state_probabilities(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from imrsurv.plots import plot_state_probabilities

    ax = plot_state_probabilities(state_probabilities(SPELLS), horizon=6)
    ax.figure.savefig(tmp_path / "s.png")
    fig = plot_state_probabilities(state_probabilities(SPELLS, by="group"))
    fig.savefig(tmp_path / "g.png")
    plt.close("all")
    assert (tmp_path / "s.png").stat().st_size > 0

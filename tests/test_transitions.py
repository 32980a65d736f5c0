"""Transition-specific Cox models and predicted state probabilities (fit_transitions).

Reference numbers: tests/fixtures/transitions (make_data.py, then
make_fixtures.R with R survival 3.5-3).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from imrsurv import read_history
from imrsurv.errors import DataError
from imrsurv.models.cox import fit_cox
from imrsurv.models.transitions import (
    STATES,
    TRANSITIONS,
    _expm,
    _prefix_products,
    fit_transitions,
)

HERE = Path(__file__).parent / "fixtures" / "transitions"
REF = json.loads((HERE / "transitions.json").read_text())
HIST = read_history(HERE / "events.csv", HERE / "covariates.csv")
TIMES = REF["eval_times"]
PROFILES = REF["profiles"]


@pytest.fixture(scope="module")
def fits():
    return {ties: fit_transitions(HIST, "x1 + x2", ties=ties) for ties in ("efron", "breslow")}


def _wide(pred: pd.DataFrame) -> np.ndarray:
    return pred["probability"].to_numpy().reshape(-1, 3)


# ---------------------------------------------------------------- R parity
@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_coefficients_and_robust_se_match_r(fits, ties):
    ref = REF[ties]
    assert ref["method"] == ties
    res = fits[ties]
    assert res.transitions == TRANSITIONS
    for name in TRANSITIONS:
        fit = res.fits[name]
        assert list(fit.params.index) == ref["terms"]
        np.testing.assert_allclose(fit.params, ref["coef"][name], rtol=1e-6)
        np.testing.assert_allclose(fit.se, ref["robust_se"][name], rtol=1e-6)
        np.testing.assert_allclose(fit.se_naive, ref["naive_se"][name], rtol=1e-6)
        np.testing.assert_allclose([fit.loglik_null, fit.loglik], ref["loglik"][name],
                                   rtol=1e-9)
    sm = res.summary
    for name in TRANSITIONS:
        np.testing.assert_allclose(sm.loc[name, "se"], ref["robust_se"][name], rtol=1e-6)


@pytest.mark.parametrize("ties", ["efron", "breslow"])
@pytest.mark.parametrize("j", range(3))
def test_state_probabilities_match_r(fits, ties, j):
    ref, res, prof = REF[ties], fits[ties], PROFILES[j]
    p = res.predict_state_probabilities(prof, TIMES)
    assert list(p.columns) == ["time", "state", "probability"]
    assert list(p["state"].cat.categories) == list(STATES)
    np.testing.assert_allclose(_wide(p), ref["pstate_aj"][j], atol=1e-8, rtol=0)
    p = res.predict_state_probabilities(prof, TIMES, method="exp")
    np.testing.assert_allclose(_wide(p), ref["pstate_exp"][j], atol=1e-8, rtol=0)
    ch = res.predict_cumulative_hazards(prof, TIMES)
    assert list(ch.columns) == list(TRANSITIONS)
    np.testing.assert_allclose(ch.to_numpy(), ref["cumhaz"][j], atol=1e-8, rtol=1e-8)


@pytest.mark.parametrize("j", range(3))
def test_breslow_equals_r_multistate_survfit(fits, j):
    """With Breslow ties R's survfit(<multi-state coxph>, newdata) gives the same numbers."""
    ms, res = REF["breslow"]["ms_survfit"], fits["breslow"]
    p = res.predict_state_probabilities(PROFILES[j], TIMES)
    np.testing.assert_allclose(_wide(p), ms["pstate_aj"][j], atol=1e-8, rtol=0)
    p = res.predict_state_probabilities(PROFILES[j], TIMES, method="exp")
    np.testing.assert_allclose(_wide(p), ms["pstate_exp"][j], atol=1e-8, rtol=0)


def test_efron_differs_from_r_multistate_survfit_as_documented(fits):
    """R's survfit.coxphms (survival 3.5-3) uses d / mean_k(S - k S_d / d^2) for Efron ties.

    Rebuilding that increment from our risk sets reproduces R's multi-state
    cumulative hazards; imrsurv uses survfit.coxph's Efron estimator
    sum_k 1 / (S - k/d S_d), which differs visibly.
    """
    res = fits["efron"]
    ms = np.asarray(REF["efron"]["ms_survfit"]["cumhaz"][1])
    x_prof = np.array([PROFILES[1]["x1"], PROFILES[1]["x2"]])
    for col, name in enumerate(TRANSITIONS):
        fr, b = res.frames[name], res.fits[name].params.to_numpy()
        risk = np.exp(fr[["x1", "x2"]].to_numpy() @ b)
        start, stop, ev = fr["start"].to_numpy(), fr["stop"].to_numpy(), fr["event"] == 1
        times = np.unique(stop[ev])
        inc = np.empty(times.size)
        for i, t in enumerate(times):
            at, dead = (start < t) & (stop >= t), (stop == t) & ev
            s, d, sd = risk[at].sum(), dead.sum(), risk[dead].sum()
            inc[i] = d / np.mean(s - np.arange(d) * sd / d**2)
        cum = np.cumsum(inc) * np.exp(x_prof @ b)
        idx = np.searchsorted(times, TIMES, side="right") - 1
        rebuilt = np.where(idx >= 0, cum[np.maximum(idx, 0)], 0.0)
        np.testing.assert_allclose(rebuilt, ms[:, col], rtol=1e-7, atol=1e-10)
    ours = res.predict_cumulative_hazards(PROFILES[1], TIMES).to_numpy()
    assert np.abs(ours - ms).max() > 1e-3


# ---------------------------------------------------------------- the fits
def test_fits_are_fit_cox_on_the_transition_rows(fits):
    res = fits["efron"]
    sp = HIST.spells()
    expect = {name: int(((sp["state"] == name.split("->")[0])
                         & (sp["next"] == name.split("->")[1])).sum()) for name in TRANSITIONS}
    for name in TRANSITIONS:
        fr = res.frames[name]
        assert int(fr["event"].sum()) == res.fits[name].n_events == expect[name]
        direct = fit_cox(fr, "x1 + x2", start="start", stop="stop", event="event",
                         cluster="site")
        pd.testing.assert_series_equal(res.fits[name].params, direct.params)
        pd.testing.assert_series_equal(res.fits[name].se, direct.se)
    # rows at risk: sustained spells; discontinued spells; restarted spells
    first = HIST.counting_process("first")
    pd.testing.assert_frame_equal(res.frames[TRANSITIONS[0]], first)
    assert (res.frames[TRANSITIONS[2]]["episode"] >= 2).all()


def test_formula_per_transition_and_subset():
    res = fit_transitions(HIST, {"restarted -> discontinued": "x1",
                                 ("sustained", "discontinued"): "x1 + x2"})
    assert res.transitions == ("sustained->discontinued", "restarted->discontinued")
    assert list(res.fits["restarted->discontinued"].params.index) == ["x1"]
    direct = fit_cox(HIST.counting_process("ag").query("episode >= 2"), "x1", start="start",
                     stop="stop", event="event", cluster="site")
    np.testing.assert_allclose(res.fits["restarted->discontinued"].params, direct.params,
                               rtol=1e-12)
    sm = res.summary
    assert list(sm.index.get_level_values("transition")) == ["sustained->discontinued"] * 2 + \
        ["restarted->discontinued"]
    with pytest.raises(DataError, match="need all three transitions"):
        res.predict_state_probabilities({"x1": 0, "x2": 0}, [1.0])
    sub = fit_transitions(HIST, "x1", transitions=["discontinued->restarted"])
    assert sub.transitions == ("discontinued->restarted",)
    naive = fit_transitions(HIST, "x1", cluster=None)
    np.testing.assert_allclose(naive.summary["se"].to_numpy(),
                               np.concatenate([f.se_naive for f in naive.fits.values()]))


def test_summary_table(fits):
    from imrsurv.models._result import SUMMARY_COLUMNS

    res = fits["efron"]
    sm = res.summary
    assert sm.index.names == ["transition", "term"]
    assert [c for c in sm.columns if c in SUMMARY_COLUMNS] == list(SUMMARY_COLUMNS)
    assert sm.columns[-1] == "note" and "events" in sm.columns
    np.testing.assert_allclose(sm["exp(coef)"], np.exp(sm["coef"]))
    np.testing.assert_allclose(sm["upper 95%"] - sm["coef"], 1.959963984540054 * sm["se"])
    np.testing.assert_allclose(res.conf_int()["lower"], sm["lower 95%"])
    np.testing.assert_allclose(res.pvalues, sm["p"])
    np.testing.assert_allclose(res.params, sm["coef"])
    assert "restarted -> discontinued" in repr(res)
    assert "<table" in res._repr_html_()


def test_diverging_coefficients_are_said_not_printed():
    """Bond data: restarted->discontinued has a monotone likelihood in recent_leader_change
    (issue 9); training_access is dragged along by R's step check but its profile is stable
    (-0.4927 with recent_leader_change held at 10, 20 or 30), so it stays an estimate."""
    import warnings

    import imrsurv as ims

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = fit_transitions(ims.datasets.load_bond2014(),
                              "recent_leader_change + team_size + training_access")
    sm = res.summary.loc["restarted->discontinued"]
    bad = sm.loc[["recent_leader_change"]]
    assert bad["note"].str.startswith("diverges (monotone likelihood)").all()
    assert bad[["exp(coef)", "se", "z", "p", "exp(upper 95%)"]].isna().all().all()
    ok = sm.loc["training_access"]
    assert ok["note"] == "" and 0 < ok["p"] < 1 and ok["exp(coef)"] == pytest.approx(
        np.exp(-0.4927), rel=1e-3)
    text = repr(res)
    assert "7.045e+11" not in text and "e+11" not in text and "e-206" not in text
    assert "diverges (monotone likelihood)" in text
    assert res.conf_int().loc[("restarted->discontinued", "recent_leader_change")].isna().all()
    # the Firth fit gives finite estimates for the same terms
    firth = fit_transitions(ims.datasets.load_bond2014(),
                            "recent_leader_change + team_size + training_access",
                            penalty="firth")
    f = firth.summary.loc["restarted->discontinued"]
    assert np.isfinite(f["exp(coef)"]).all() and (f["note"] == "").all()
    assert f.loc["recent_leader_change", "exp(coef)"] < 1e3


def test_plot_marks_not_estimable_terms():
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import imrsurv as ims

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = fit_transitions(ims.datasets.load_bond2014(),
                              "recent_leader_change + team_size + training_access")
    ax = res.plot()
    assert [t.get_text() for t in ax.texts].count("not estimable") == 1
    lo, hi = ax.get_xlim()
    assert hi < 100 and lo > 0.01


# ---------------------------------------------------------------- prediction
def test_probabilities_sum_to_one_at_every_time(fits):
    res = fits["efron"]
    path = pd.DataFrame({"time": [0.0, 2.0, 5.0], "x1": [0.0, -0.5, 1.0], "x2": [0, 1, 1]})
    for prof in (PROFILES[1], path):
        for method in ("aalen-johansen", "exp"):
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                p = res.predict_state_probabilities(prof, method=method)  # every event time
            w = _wide(p)
            t = p["time"].to_numpy()[::3]
            assert t[0] == 0 and t[-1] == res.last_time and t.size > 50
            np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-12)
            assert (w >= -1e-15).all() and (w <= 1 + 1e-15).all()
            np.testing.assert_array_equal(w[0], [1, 0, 0])
            assert np.all(np.diff(w[:, 0]) <= 1e-15)  # nobody returns to sustained


def test_increment_above_one_warns_and_keeps_the_sum(fits):
    """x1 = -1, x2 = 1 makes the last discontinued->restarted increment exceed 1."""
    res, prof = fits["efron"], {"x1": -1.0, "x2": 1}
    with pytest.warns(UserWarning, match="increment above 1"):
        w = _wide(res.predict_state_probabilities(prof))
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-12)
    assert w[:, 1].min() < 0  # the price of I + dA there
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        w = _wide(res.predict_state_probabilities(prof, method="exp"))
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-12)
    assert (w >= 0).all()


def test_time_varying_profile_without_change_equals_fixed(fits):
    res = fits["efron"]
    fixed = res.predict_state_probabilities({"x1": 0.7, "x2": 1}, TIMES)
    for path in (pd.DataFrame({"time": [0.0], "x1": [0.7], "x2": [1]}),
                 pd.DataFrame({"time": [0.0, 2.0, 4.5], "x1": [0.7] * 3, "x2": [1] * 3})):
        tv = res.predict_state_probabilities(path, TIMES)
        np.testing.assert_allclose(_wide(tv), _wide(fixed), atol=1e-15, rtol=0)


def test_cumulative_hazard_of_a_path_switches_at_the_change(fits):
    res = fits["breslow"]
    t = np.array([0.5, 1.0, 2.0, 2.05, 3.0, 6.0, 8.0])
    a = res.predict_cumulative_hazards({"x1": 0.0, "x2": 0}, np.r_[t, 2.0]).to_numpy()
    b = res.predict_cumulative_hazards({"x1": 1.0, "x2": 1}, np.r_[t, 2.0]).to_numpy()
    path = pd.DataFrame({"time": [0.0, 2.0], "x1": [0.0, 1.0], "x2": [0, 1]})
    got = res.predict_cumulative_hazards(path, t).to_numpy()
    after = (t > 2.0)[:, None]
    expect = np.where(after, a[-1] + b[:-1] - b[-1], a[:-1])
    np.testing.assert_allclose(got, expect, rtol=1e-12, atol=1e-14)


def test_times_beyond_follow_up_are_nan(fits):
    res = fits["efron"]
    with pytest.warns(UserWarning, match="not extrapolated"):
        p = res.predict_state_probabilities(PROFILES[0], [1.0, res.last_time, 50.0])
    w = _wide(p)
    assert np.isfinite(w[:2]).all() and np.isnan(w[2]).all()
    before = res.predict_state_probabilities(PROFILES[0], [-1.0, 0.0])
    np.testing.assert_array_equal(_wide(before), [[1, 0, 0], [1, 0, 0]])


def test_prefix_scan_equals_sequential_product():
    rng = np.random.default_rng(3)
    for k in (1, 2, 3, 7, 64, 100):
        m = rng.uniform(0, 1, (k, 3, 3))
        m /= m.sum(axis=2, keepdims=True)
        seq = np.empty_like(m)
        acc = np.eye(3)
        for i in range(k):
            acc = acc @ m[i]
            seq[i] = acc
        np.testing.assert_allclose(_prefix_products(m), seq, rtol=1e-13, atol=1e-15)


def test_batched_expm_equals_scipy():
    from scipy.linalg import expm

    rng = np.random.default_rng(5)
    rates = np.r_[rng.exponential(0.05, 40), rng.exponential(2.0, 20), [0.0, 1e-12, 30.0]]
    q = np.zeros((rates.size, 3, 3))
    q[:, 0, 1] = rates
    q[:, 1, 2] = rng.permutation(rates)
    q[:, 2, 1] = rng.permutation(rates)
    q[:, np.arange(3), np.arange(3)] = -q.sum(axis=2)
    got = _expm(q)
    np.testing.assert_allclose(got, [expm(m) for m in q], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got.sum(axis=2), 1.0, atol=1e-13)


# ---------------------------------------------------------------- leadership change
def _leadership_history(seed: int = 11, n: int = 300):
    """Sites whose discontinuation hazard triples after a change of leader."""
    rng = np.random.default_rng(seed)
    events, covs = [], []
    base = {"sustained": 0.02, "discontinued": 0.05, "restarted": 0.03}
    nxt = {"sustained": "discontinued", "discontinued": "restarted",
           "restarted": "discontinued"}
    word = {"discontinued": "discontinue", "restarted": "restart"}
    for i in range(n):
        site = f"L{i:03d}"
        change = int(rng.integers(5, 60)) if rng.random() < 0.5 else None
        end = int(rng.integers(40, 81))
        events.append((site, 0.0, "start"))
        covs.append((site, 0.0, 0))
        if change is not None and change < end:
            covs.append((site, round(change * 0.1, 1), 1))
        state = "sustained"
        for k in range(1, end + 1):
            h = base[state] * (3.0 if state != "discontinued" and change is not None
                               and k > change else 1.0)
            if rng.random() < h:
                state = nxt[state]
                events.append((site, round(k * 0.1, 1), word[state]))
        events.append((site, round(end * 0.1, 1), "end"))
    return read_history(pd.DataFrame(events, columns=["site", "time", "event"]),
                        pd.DataFrame(covs, columns=["site", "time", "leadership_change"]))


def test_leadership_change_lowers_p_sustained_after_the_change():
    hist = _leadership_history()
    res = fit_transitions(hist, {"sustained->discontinued": "leader_changes",
                                 "discontinued->restarted": "leader_changes",
                                 "restarted->discontinued": "leader_changes"})
    assert res.fits["sustained->discontinued"].params["leader_changes"] > 0.5
    none = pd.DataFrame({"time": [0.0], "leadership_change": [0]})
    at2 = pd.DataFrame({"time": [0.0, 2.0], "leadership_change": [0, 1]})
    t = np.round(np.arange(0.1, 7.95, 0.1), 1)
    p0 = _wide(res.predict_state_probabilities(none, t))
    p1 = _wide(res.predict_state_probabilities(at2, t))
    before = t <= 2.0  # an event exactly at the change still has the old covariates
    np.testing.assert_allclose(p1[before], p0[before], atol=1e-15)
    assert np.all(p1[~before, 0] < p0[~before, 0])
    ratio = p1[~before, 0] / p0[~before, 0]
    assert np.all(np.diff(ratio) <= 1e-12) and ratio[-1] < 0.8
    # the derived covariate equals giving leader_changes directly
    explicit = pd.DataFrame({"time": [0.0, 2.0], "leader_changes": [0, 1]})
    np.testing.assert_allclose(_wide(res.predict_state_probabilities(explicit, t)), p1,
                               atol=1e-15)
    # the same in recent_leader_change: the effect lasts the History's window (1 year)
    rec = fit_transitions(hist, "recent_leader_change")
    q0 = _wide(rec.predict_state_probabilities(none, t))
    q1 = _wide(rec.predict_state_probabilities(at2, t))
    ch0 = rec.predict_cumulative_hazards(none, t).to_numpy()
    ch1 = rec.predict_cumulative_hazards(at2, t).to_numpy()
    gap = ch1 - ch0
    np.testing.assert_allclose(gap[t <= 2.0], 0, atol=1e-15)
    np.testing.assert_allclose(gap[t >= 3.0] - gap[t >= 3.0][0], 0, atol=1e-12)  # flat after
    assert np.all(q1[t > 2.0, 0] <= q0[t > 2.0, 0])


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("formula, kw, match", [
    ({"sustained->stopped": "x1", "restarted->sustained": "x1"}, {}, "sustained->stopped"),
    ("x1", {"transitions": ["discontinued->sustained"]}, "not a transition"),
    ("x1", {"transitions": ["sustained->discontinued"] * 2}, "listed twice"),
    ("x1", {"transitions": []}, "empty"),
    ({"sustained->discontinued": "x1"}, {"transitions": ["discontinued->restarted"]},
     "no entry for transition"),
    ({"sustained->discontinued": ""}, {}, "non-empty string"),
    (42, {}, "must be a string"),
    ({}, {}, "empty mapping"),
    ("x1 + nosuch", {}, 'column "nosuch"'),
    ("x1 +* x2", {}, "cannot parse formula"),
    ("y ~ x1", {}, "left-hand side"),
    ("x1", {"ties": "exact"}, "ties"),
    ("x1", {"cluster": "region"}, 'cluster="region"'),
])
def test_bad_transition_names_and_formulas_raise(formula, kw, match):
    with pytest.raises(DataError, match=match):
        fit_transitions(HIST, formula, **kw)


def test_every_problem_is_listed():
    with pytest.raises(DataError) as err:
        fit_transitions(HIST, {"a->b": "x1", "c->d": "x1", "sustained->discontinued": 3},
                        ties="exact")
    text = [str(p) for p in err.value.problems]
    assert len(text) == 4
    assert any("'a->b'" in s for s in text) and any("'c->d'" in s for s in text)
    with pytest.raises(DataError) as err:
        fit_transitions(HIST, "x1 + nosuch")
    assert sum("nosuch" in str(p) for p in err.value.problems) == 3  # one per transition
    with pytest.raises(DataError, match="History"):
        fit_transitions(HIST.counting_process("ag"), "x1")


def test_bad_profiles_raise(fits):
    res = fits["efron"]
    with pytest.raises(DataError, match='lacks column "x2"'):
        res.predict_state_probabilities({"x1": 0}, TIMES)
    with pytest.raises(DataError, match="time"):
        res.predict_state_probabilities(pd.DataFrame({"x1": [0.0], "x2": [0]}), TIMES)
    with pytest.raises(DataError, match="first event time"):
        res.predict_state_probabilities(pd.DataFrame({"time": [1.0], "x1": [0.0], "x2": [0]}),
                                        TIMES)
    with pytest.raises(DataError, match="increasing"):
        res.predict_state_probabilities(
            pd.DataFrame({"time": [0.0, 0.0], "x1": [0.0, 1.0], "x2": [0, 0]}), TIMES)
    with pytest.raises(DataError, match="missing"):
        res.predict_state_probabilities({"x1": np.nan, "x2": 0}, TIMES)
    with pytest.raises(DataError, match="method"):
        res.predict_state_probabilities(PROFILES[0], TIMES, method="kaplan-meier")
    with pytest.raises(DataError, match="p0"):
        res.predict_state_probabilities(PROFILES[0], TIMES, p0=[0.5, 0.2, 0.2])


def test_p0_starting_discontinued(fits):
    res = fits["efron"]
    p = _wide(res.predict_state_probabilities(PROFILES[0], TIMES, p0=[0, 1, 0]))
    np.testing.assert_allclose(p[:, 0], 0, atol=0)
    np.testing.assert_allclose(p.sum(axis=1), 1, atol=1e-12)


# ---------------------------------------------------------------- plot
def test_forest_plot_reads_in_grayscale(fits, tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.colors as mcolors
    import matplotlib.pyplot as plt

    ax = fits["efron"].plot(title="Transition hazard ratios")
    lines = [ln for ln in ax.get_lines() if ln.get_marker() in ("o", "s", "^", "D")]
    markers = {ln.get_marker() for ln in lines}
    assert markers == {"o", "s", "^"} and len(lines) == 3
    for ln in lines:  # gray levels only
        for c in (ln.get_color(), ln.get_markerfacecolor(), ln.get_markeredgecolor()):
            r, g, b, _ = mcolors.to_rgba(c)
            assert r == g == b
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert len(labels) == 3 and all("\u2192" in s for s in labels)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["x1", "x2"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ax.figure.savefig(tmp_path / "forest.png", dpi=80)
    plt.close(ax.figure)

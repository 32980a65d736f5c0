"""fit_cox / fit_recurrent: API, result object, and bad input (DataError messages)."""

from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

from imrsurv.errors import DataError
from imrsurv.models.cox import CoxConvergenceWarning, CoxResult, fit_cox, fit_recurrent

matplotlib.use("Agg")

FIX = Path(__file__).parent / "fixtures" / "cox"
RHS = ("team_size + training_access + recent_leader_change + C(practice)"
       " + training_access:recent_leader_change")


@pytest.fixture(scope="module")
def rec() -> pd.DataFrame:
    return pd.read_csv(FIX / "recurrent.csv")


@pytest.fixture(scope="module")
def fit(rec) -> CoxResult:
    return fit_cox(rec, RHS, start="start", stop="stop", event="event", cluster="site")


def small(n: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    t = np.round(rng.exponential(np.exp(-0.5 * x)), 3) + 0.001
    return pd.DataFrame({"x": x, "g": rng.choice(["a", "b"], n), "time": t,
                         "status": (rng.random(n) < 0.7).astype(int),
                         "site": rng.integers(0, 8, n), "w": rng.choice([1.0, 2.0], n)})


# -- result object ------------------------------------------------------------


def test_result_fields(fit):
    names = ["team_size", "training_access", "recent_leader_change", "C(practice)[T.IMR]",
             "C(practice)[T.SE]", "training_access:recent_leader_change"]
    assert list(fit.params.index) == names
    assert list(fit.se.index) == names and list(fit.cov.columns) == names
    assert (fit.se != fit.se_naive).all()
    assert fit.n_clusters == 80 and fit.n == 562 and fit.n_events == 148
    assert fit.n_dropped == 0 and fit.converged and fit.iterations == 5
    assert fit.loglik > fit.loglik_null
    assert fit.terms["C(practice)"] == [3, 4]


def test_summary_columns(fit):
    sm = fit.summary
    assert list(sm.columns) == ["coef", "exp(coef)", "se", "se_naive", "z", "p",
                                "lower 95%", "upper 95%", "exp(lower 95%)", "exp(upper 95%)",
                                "note"]
    assert (sm["note"] == "").all()
    np.testing.assert_allclose(sm["se"], fit.se)
    np.testing.assert_allclose(sm["se_naive"], fit.se_naive)
    np.testing.assert_allclose(sm["z"], fit.params / fit.se)
    np.testing.assert_allclose(sm["exp(upper 95%)"], np.exp(fit.params + 1.959963984540054
                                                            * fit.se))
    no_cluster = fit_cox(small(), "x", stop="time", event="status")
    assert "se_naive" not in no_cluster.summary.columns


def test_notes_and_tests(fit):
    assert any("Robust (Lin-Wei sandwich) standard errors clustered by site: 80 clusters" in n
               for n in fit.notes)
    assert any("Efron" in n for n in fit.notes)
    assert list(fit.tests.index) == ["likelihood ratio", "wald", "score", "robust score"]
    assert (fit.tests["df"] == 6).all()


def test_repr_and_print(fit, capsys):
    text = repr(fit)
    assert "se_naive" in text and "Likelihood ratio test" in text and "80 clusters" in text
    fit.print_summary()
    out = capsys.readouterr().out
    assert "Concordance = 0.6877" in out and "Notes:" in out


def test_plot_returns_axes(fit):
    ax = fit.plot()
    assert len(ax.get_yticklabels()) == 6
    assert ax.get_xscale() == "log"


def test_residual_shapes(fit, rec):
    assert fit.residuals("martingale").index.equals(rec.index)
    assert fit.residuals("score").shape == (562, 6)
    sch = fit.residuals("schoenfeld")
    assert sch.shape == (148, 6) and sch.index.names == ["row", "time"]
    assert (np.diff(sch.index.get_level_values("time")) >= 0).all()
    # score residuals sum to the score at the MLE (~0); dfbeta = score @ var
    assert np.abs(fit.residuals("score").sum()).max() < 1e-8
    np.testing.assert_allclose(fit.residuals("dfbeta"),
                               fit.residuals("score") @ fit.cov_naive.to_numpy(), atol=1e-14)
    with pytest.raises(ValueError, match="kind must be one of"):
        fit.residuals("deviance")


def test_martingale_sum_zero_breslow(rec):
    res = fit_cox(rec, "team_size", start="start", stop="stop", event="event",
                  ties="breslow")
    assert abs(res.residuals("martingale").sum()) < 1e-9


def test_predict_cumulative_hazard(fit):
    bh = fit.baseline_cumulative_hazard
    pred = fit.predict_cumulative_hazard({"team_size": 0, "training_access": 0,
                                          "recent_leader_change": 0, "practice": "ACT"},
                                         times=[0.5, 12, 71, 100])
    np.testing.assert_allclose(pred.iloc[:, 0], [0.0, bh.set_index("time").cumhaz[12],
                                                 bh.cumhaz.iloc[-1], bh.cumhaz.iloc[-1]])
    prof = pd.DataFrame({"team_size": [4, 6], "training_access": [1, 0],
                         "recent_leader_change": [1, 0], "practice": ["SE", "IMR"]})
    p2 = fit.predict_cumulative_hazard(prof, times=[24])
    x0 = np.array([4, 1, 1, 0, 1, 1])
    np.testing.assert_allclose(p2.iloc[0, 0],
                               bh.set_index("time").cumhaz[24] * np.exp(x0 @ fit.params))
    with pytest.raises(DataError, match="practice"):
        fit.predict_cumulative_hazard({"team_size": 1}, times=[1])


def test_predict_stratified(rec):
    res = fit_cox(rec, "team_size", start="start", stop="stop", event="event",
                  strata="episode")
    bh = res.baseline_cumulative_hazard
    assert bh.columns.tolist() == ["strata", "time", "cumhaz"]
    h = res.predict_cumulative_hazard({"team_size": 0, "episode": 2}, times=[30])
    b2 = bh[bh.strata == "episode=2"]
    expected = b2.cumhaz[b2.time <= 30].iloc[-1]
    np.testing.assert_allclose(h.iloc[0, 0], expected)
    with pytest.raises(DataError, match="not a stratum"):
        res.predict_cumulative_hazard({"team_size": 0, "episode": 99}, times=[30])
    assert any("Strata without events" in n and "episode=10" in n for n in res.notes)


def test_zph_transforms(fit):
    for tr in ("km", "identity", "log", "rank"):
        z = fit.check_proportional_hazards(tr)
        assert z.index[-1] == "GLOBAL" and (z["chisq"] >= 0).all()
        assert z.loc["C(practice)", "df"] == 2
    with pytest.raises(ValueError):
        fit.check_proportional_hazards("spline")


def test_right_censored_and_formula_variants():
    d = small()
    a = fit_cox(d, "x + C(g)", stop="time", event="status")
    b = fit_cox(d, "~ x + C(g)", stop="time", event="status")
    c = fit_cox(d, "x + C(g) - 1", stop="time", event="status")
    np.testing.assert_allclose(a.params, b.params)
    np.testing.assert_allclose(a.params, c.params)
    assert list(a.params.index) == ["x", "C(g)[T.b]"]
    assert not a.counting_process and a.n_clusters is None


def test_bool_event_and_weights():
    d = small()
    a = fit_cox(d.assign(status=d.status.astype(bool)), "x", stop="time", event="status")
    b = fit_cox(d, "x", stop="time", event="status")
    np.testing.assert_allclose(a.params, b.params)
    # integer case weights equal replicated rows (Breslow: exact)
    rep = d.loc[d.index.repeat(d.w.astype(int))].reset_index(drop=True)
    w = fit_cox(d, "x", stop="time", event="status", weights="w", ties="breslow")
    r = fit_cox(rep, "x", stop="time", event="status", ties="breslow")
    np.testing.assert_allclose(w.params, r.params, rtol=1e-10)
    np.testing.assert_allclose(w.se_naive, r.se_naive, rtol=1e-10)


# -- missing values -----------------------------------------------------------


def test_missing_raise_names_rows():
    d = small(60)
    d.loc[[3, 7], "x"] = np.nan
    d.loc[list(range(30, 55)), "time"] = np.nan
    with pytest.raises(DataError) as ei:
        fit_cox(d, "x", stop="time", event="status")
    msg = str(ei.value)
    assert 'column "x": missing value in 2 rows (3, 7)' in msg
    assert 'column "time": missing value in 25 rows (30, 31' in msg and "and 5 more" in msg
    assert 'missing="drop"' in msg


def test_missing_drop_counts():
    d = small(60)
    d.loc[[3, 7], "x"] = np.nan
    d.loc[[9], "site"] = np.nan
    res = fit_cox(d, "x", stop="time", event="status", cluster="site", missing="drop")
    assert res.n_dropped == 3 and res.n == 57
    assert any("3 of 60 rows left out" in n and "x (2)" in n and "site (1)" in n
               for n in res.notes)
    assert res.residuals("martingale").index.equals(d.dropna(subset=["x", "site"]).index)


# -- bad input ----------------------------------------------------------------


def _raises(match: str, data: pd.DataFrame, formula: str = "x", **kw) -> DataError:
    kw.setdefault("stop", "time")
    kw.setdefault("event", "status")
    with pytest.raises(DataError, match=match) as ei:
        fit_cox(data, formula, **kw)
    return ei.value


def test_stop_before_start():
    d = small().assign(start=0.0)
    d.loc[[2, 5], "start"] = d.loc[[2, 5], "time"] + 1
    err = _raises(r"stop \(\"time\"\) <= start \(\"start\"\) in rows 2, 5", d, start="start")
    assert len(err.problems) == 1


def test_events_not_binary():
    d = small()
    d.loc[4, "status"] = 2
    _raises(r'event column "status" must be 0/1 .* found 2 in rows 4', d)


def test_no_events():
    _raises("has no events", small().assign(status=0))


def test_missing_columns_listed():
    err = _raises("columns not found", small(), "x + nosuch + C(other)", cluster="clinic")
    text = str(err)
    assert 'formula names column "nosuch"' in text and 'formula names column "other"' in text
    assert 'cluster="clinic" is not a column' in text


def test_negative_weights():
    d = small()
    d.loc[[1, 2], "w"] = -1.0
    _raises(r'weights column "w" must be > 0 .* rows 1, 2', d, weights="w")


def test_constant_and_collinear_columns():
    d = small().assign(one=1.0)
    d["x2"] = 2 * d.x + 1
    err = _raises("cannot all be estimated", d, "x + one + x2")
    text = str(err)
    assert 'column "one" is constant' in text
    assert "column \"x2\" is a linear combination of 'x'" in text


def test_constant_within_strata():
    d = small()
    d["gnum"] = (d.g == "b").astype(float)
    _raises('column "gnum" does not vary within every stratum', d, "x + gnum", strata="g")


def test_formula_with_lhs_and_bad_args():
    _raises("left-hand side", small(), "Surv(time, status) ~ x")
    _raises('ties must be "efron" or "breslow"', small(), ties="exact")
    _raises('missing must be "raise" or "drop"', small(), missing="omit")
    with pytest.raises(DataError, match="DataFrame"):
        fit_cox(small().to_dict(), "x", stop="time", event="status")


def test_non_numeric_time():
    d = small().assign(time=lambda f: f.time.astype(str))
    _raises('stop column "time" must be numeric', d)


def test_frailty_goes_to_the_gamma_frailty_fit_and_refuses_cluster():
    import imrsurv as ims
    from imrsurv.models.frailty import FrailtyResult

    cp = ims.datasets.load_bond2014().counting_process("ag")
    res = fit_cox(cp, "team_size + training_access", start="start", stop="stop", event="event",
                  frailty="site")
    assert isinstance(res, FrailtyResult)
    assert res.frailty_variance >= 0 and len(res.frailties) == 49
    with pytest.raises(DataError, match="cannot be combined"):
        fit_cox(cp, "team_size", start="start", stop="stop", event="event", frailty="site",
                cluster="site")


def test_monotone_likelihood_warns():
    d = small(60)
    d["grp"] = (np.arange(60) % 2).astype(float)
    d.loc[d.grp == 1, "status"] = 0        # no events in group 1: beta -> -inf
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        res = fit_cox(d, "x + grp", stop="time", event="status")
    msgs = [str(w.message) for w in rec if issubclass(w.category, CoxConvergenceWarning)]
    assert any('Loglik converged before variable "grp"' in m for m in msgs)
    assert res.params["grp"] < -10


# -- recurrent ------------------------------------------------------------------


class FakeHistory:
    """Stands in for History: serves the fixture rows per scheme."""

    def __init__(self, rec: pd.DataFrame, wlw: pd.DataFrame):
        self.rec, self.wlw, self.calls = rec, wlw, []

    def counting_process(self, scheme: str, outcome: str = "discontinue") -> pd.DataFrame:
        self.calls.append((scheme, outcome))
        if scheme == "wlw":
            return self.wlw
        if scheme == "first":
            return self.rec[self.rec.episode == 1]
        return self.rec


@pytest.mark.parametrize("scheme,start,stop,strata", [
    ("ag", "start", "stop", None), ("pwp-tt", "start", "stop", "episode"),
    ("pwp-gt", "gap_start", "gap_stop", "episode"), ("wlw", "start", "stop", "episode"),
    ("first", "start", "stop", None)])
def test_fit_recurrent_schemes(rec, scheme, start, stop, strata):
    wlw = pd.read_csv(FIX / "wlw.csv")
    hist = FakeHistory(rec, wlw)
    res = fit_recurrent(hist, "team_size + training_access", scheme=scheme, ties="breslow")
    data = {"wlw": wlw, "first": rec[rec.episode == 1]}.get(scheme, rec)
    ref = fit_cox(data, "team_size + training_access", start=start, stop=stop, event="event",
                  strata=strata, cluster="site", ties="breslow")
    np.testing.assert_allclose(res.params, ref.params)
    np.testing.assert_allclose(res.se, ref.se)
    assert hist.calls == [(scheme, "discontinue")]
    assert res.cluster == "site" and res.notes[0].split()[0] in (
        "Andersen-Gill", "Prentice-Williams-Peterson", "Wei-Lin-Weissfeld", "Time")


def test_fit_recurrent_rejects(rec):
    hist = FakeHistory(rec, rec)
    with pytest.raises(DataError, match="scheme must be one of"):
        fit_recurrent(hist, "team_size", scheme="pwp")
    with pytest.raises(TypeError, match="strata"):
        fit_recurrent(hist, "team_size", strata="episode")
    res = fit_recurrent(hist, "team_size", weights="w", outcome="restart")
    assert hist.calls[-1] == ("ag", "restart") and res.weights == "w"


# -- timefix (R's aeqSurv) ------------------------------------------------------


def test_timefix_ties_roundoff(rec):
    kw = dict(start="gap_start_y", stop="gap_stop_y", event="event", strata="episode",
              cluster="site")
    fixed = fit_cox(rec, RHS, **kw)
    exact = fit_cox(rec.assign(gap_start_y=rec.gap_start / 12, gap_stop_y=rec.gap_stop / 12),
                    RHS, **kw)
    raw = fit_cox(rec, RHS, timefix=False, **kw)
    np.testing.assert_allclose(fixed.params, exact.params, rtol=1e-10)
    assert np.abs(raw.params - exact.params).max() > 1e-4
    assert any("treated as tied (R's timefix)" in n for n in fixed.notes)


def test_timefix_zero_length_interval():
    d = small().assign(start=0.0)
    d.loc[3, "start"] = d.loc[3, "time"] * (1 - 1e-12)
    _raises(r"start and stop are equal to within 1.5e-8 .* rows 3", d, start="start")
    res = fit_cox(d, "x", start="start", stop="time", event="status", timefix=False)
    assert res.n == len(d)

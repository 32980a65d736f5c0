"""Panel-observed Markov model against R msm (tests/fixtures/msm), and its input checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.linalg import expm

import imrsurv as ims
from imrsurv.errors import ArgumentError, DataError
from imrsurv.models.panel_markov import expm_stack
from imrsurv.waves import read_waves

FIX = Path(__file__).resolve().parent / "fixtures" / "msm"
CAV_STATES = ["well", "mild", "severe", "death"]
CAV_Q = [[0, 1, 0, 1], [1, 0, 1, 1], [0, 1, 0, 1], [0, 0, 0, 0]]


def fixture(name: str) -> dict:
    return json.loads((FIX / f"{name}.json").read_text())


def cav_waves() -> ims.Waves:
    cav = pd.read_csv(FIX / "cav.csv").rename(columns={"PTNUM": "site", "years": "time"})
    cav["state"] = [CAV_STATES[i - 1] for i in cav["state"]]
    return read_waves(cav, states=CAV_STATES, transitions=CAV_Q, deathexact=["death"])


@pytest.fixture(scope="module")
def cav() -> ims.PanelMarkovResult:
    return ims.fit_panel_markov(cav_waves())


@pytest.fixture(scope="module")
def cav_sex() -> ims.PanelMarkovResult:
    return ims.fit_panel_markov(cav_waves(), "sex")


@pytest.fixture(scope="module")
def panel_cov() -> ims.PanelMarkovResult:
    return ims.fit_panel_markov(FIX / "panel.csv", "turnover + training0")


def check_fit(res: ims.PanelMarkovResult, fx: dict, skip: tuple[int, ...] = ()) -> None:
    keep = [i for i in range(len(fx["estimates"])) if i not in skip]
    est = np.asarray(fx["estimates"])[keep]
    np.testing.assert_allclose(res.params.to_numpy()[keep], est, rtol=1e-5, atol=1e-6)
    se = np.sqrt(np.diag(np.asarray(fx["covmat"])))[keep]
    np.testing.assert_allclose(res.se.to_numpy()[keep], se, rtol=1e-5)
    np.testing.assert_allclose(res.minus2loglik, fx["minus2loglik"], rtol=1e-9)


# --------------------------------------------------------------------------- parity with msm


def test_cav_matches_msm(cav: ims.PanelMarkovResult) -> None:
    fx = fixture("cav")
    assert cav.converged and (cav.note == "").all()
    check_fit(cav, fx)
    np.testing.assert_allclose(cav.cov.to_numpy(), np.asarray(fx["covmat"]), rtol=1e-4,
                               atol=1e-8)
    q = cav.qmatrix()
    allowed = np.asarray(CAV_Q) > 0
    for col, key in (("estimate", "q_estimate"), ("se", "q_se"), ("lower", "q_lower"),
                     ("upper", "q_upper")):
        np.testing.assert_allclose(q[col].to_numpy(), np.asarray(fx[key])[allowed], rtol=1e-5)
    soj = cav.sojourn()
    assert list(soj.index) == ["well", "mild", "severe"]
    for col, key in (("estimate", "sojourn"), ("se", "sojourn_se"), ("lower", "sojourn_lower"),
                     ("upper", "sojourn_upper")):
        np.testing.assert_allclose(soj[col].to_numpy(), fx[key], rtol=1e-5)
    for t, pm in zip(fx["times"], fx["pmatrix"], strict=True):
        np.testing.assert_allclose(cav.pmatrix(t, ci="none").estimate.to_numpy(), pm,
                                   atol=1e-7)


def test_cav_pmatrix_normal_ci_agrees_with_msm_within_simulation_error(cav) -> None:
    fx = fixture("cav")["pmatrix_normal"]
    pm = cav.pmatrix(1.0, ci="normal", n_sim=2000, seed=1)
    np.testing.assert_allclose(pm.lower.to_numpy(), fx["lower"], atol=0.01)
    np.testing.assert_allclose(pm.upper.to_numpy(), fx["upper"], atol=0.01)
    again = cav.pmatrix(1.0, ci="normal", n_sim=2000, seed=1)
    pd.testing.assert_frame_equal(pm.lower, again.lower)   # seeded: reproducible
    delta = cav.pmatrix(1.0, ci="delta")
    # the delta-method se and the spread of the simulation agree on the transient rows
    # (to 35%: mild -> death, log se 0.65, is skewed on the probability scale)
    np.testing.assert_allclose(delta.se.to_numpy()[:3], pm.se.to_numpy()[:3], rtol=0.35,
                               atol=2e-3)
    with pytest.raises(ArgumentError, match="seed"):
        cav.pmatrix(1.0, ci="normal")


def test_cav_sex_matches_msm_and_flags_the_diverging_effect(cav_sex) -> None:
    fx = fixture("cav_sex")
    names = [f"{a}: {b}" for a, b in cav_sex.params.index]
    bad = names.index("mild -> death: sex")
    # msm stops at a finite value with a huge se and prints it as an estimate
    assert np.sqrt(fx["covmat"][bad][bad]) > 100
    check_fit(cav_sex, fx, skip=(bad,))
    sm = cav_sex.summary
    row = sm.iloc[bad]
    assert row["note"].startswith("diverges")
    assert np.isnan(row["exp(coef)"]) and np.isnan(row["p"]) and np.isnan(row["se"])
    assert (sm["note"] == "").sum() == len(sm) - 1
    text = cav_sex.summary_text()
    assert "mild -> death: sex" in text and "diverges" in text
    hz = [[float(v) for v in r] for r in fx["hazard"]["sex"]]   # R writes "Inf" as text
    ok = [i for i in range(7) if i != bad - 7]
    hr = sm.xs("sex", level="term")[["exp(coef)", "exp(lower 95%)", "exp(upper 95%)"]]
    np.testing.assert_allclose(hr.to_numpy()[ok], np.asarray(hz)[ok], rtol=1e-5)


def test_panel_without_covariates_matches_msm() -> None:
    fx = fixture("panel")
    res = ims.fit_panel_markov(FIX / "panel.csv")
    check_fit(res, fx)
    for t, pm in zip(fx["times"], fx["pmatrix"], strict=True):
        np.testing.assert_allclose(res.pmatrix(t, ci="none").estimate.to_numpy(), pm, atol=1e-7)
    np.testing.assert_allclose(res.sojourn()["estimate"], fx["sojourn"], rtol=1e-5)


def test_panel_with_time_varying_and_fixed_covariates_matches_msm(panel_cov) -> None:
    fx = fixture("panel_cov")
    check_fit(panel_cov, fx)
    sm = panel_cov.summary
    for term in ("turnover", "training0"):
        hr = sm.xs(term, level="term")[["exp(coef)", "exp(lower 95%)", "exp(upper 95%)"]]
        np.testing.assert_allclose(hr.to_numpy(), fx["hazard"][term], rtol=1e-5)
    base = {"turnover": 0, "training0": 0}
    np.testing.assert_allclose(panel_cov.pmatrix(8, covariates=base).estimate.to_numpy(),
                               fx["pmatrix"][1], atol=1e-7)


def test_panel_piecewise_baseline_matches_msm_pci() -> None:
    fx = fixture("panel_pci")
    res = ims.fit_panel_markov(FIX / "panel.csv", "turnover", pci=[4])
    check_fit(res, fx)
    period = res.summary.xs("period [4,inf)", level="term")["exp(coef)"]
    np.testing.assert_allclose(period.to_numpy(), np.asarray(fx["hazard"]["timeperiod[4,Inf)"])
                               [:, 0], rtol=1e-5)
    # P(0, 8) across the cut at 4 (msm pmatrix.piecewise.msm)
    np.testing.assert_allclose(res.pmatrix(8).estimate.to_numpy(), fx["pmatrix_0_8"],
                               atol=1e-7)
    # and it is the product of the two periods' matrices
    p1 = res.pmatrix(4).estimate.to_numpy()
    p2 = res.pmatrix(4, t0=4).estimate.to_numpy()
    np.testing.assert_allclose(p1 @ p2, fx["pmatrix_0_8"], atol=1e-7)


def test_exact_transition_times_match_msm_exacttimes() -> None:
    fx = fixture("panel_exact")
    res = ims.fit_panel_markov(FIX / "exact.csv", exacttimes=True)
    check_fit(res, fx)
    # with exact times the MLE is transitions / time at risk
    w = read_waves(FIX / "exact.csv", exacttimes=True)
    f = w.frame
    same = f["site"].to_numpy()[1:] == f["site"].to_numpy()[:-1]
    a, b = f["state"].to_numpy()[:-1][same], f["state"].to_numpy()[1:][same]
    dt = np.diff(f["time"].to_numpy())[same]
    n = ((a == "sustained") & (b == "discontinued")).sum()
    np.testing.assert_allclose(res.intensities["estimate"].iloc[0],
                               n / dt[a == "sustained"].sum(), rtol=1e-8)


# --------------------------------------------------------------------------- predictions


def test_pmatrix_rows_sum_to_one_and_occupation_is_a_row(panel_cov) -> None:
    cov = {"turnover": 1, "training0": 0}
    pm = panel_cov.pmatrix(3.0, covariates=cov)
    np.testing.assert_allclose(pm.estimate.sum(axis=1), 1.0, atol=1e-12)
    est, lo, hi = (x.to_numpy() for x in (pm.estimate, pm.lower, pm.upper))
    assert ((lo <= est) & (est <= hi)).all() and ((lo >= 0) & (hi <= 1)).all()
    inner = (est > 0) & (est < 1)
    assert ((lo[inner] > 0) & (hi[inner] < 1)).all()          # logit-scale limits
    assert lo[1, 0] == hi[1, 0] == 0.0                         # never sustained again
    occ = panel_cov.occupation([3.0], initial="sustained", covariates=cov)
    np.testing.assert_allclose(occ["probability"], pm.estimate.loc["sustained"], atol=1e-12)
    np.testing.assert_allclose(occ["probability"].sum(), 1.0, atol=1e-12)
    assert "0." in repr(pm)
    # a turnover raises the intensity of discontinuing (truth: while recent, x2)
    hr = panel_cov.summary.loc[("sustained -> discontinued", "turnover"), "exp(coef)"]
    p0 = panel_cov.pmatrix(3.0, covariates={"turnover": 0, "training0": 0}).estimate
    assert (hr > 1) == (pm.estimate.loc["sustained", "sustained"] <
                        p0.loc["sustained", "sustained"])


def test_expm_stack_matches_scipy() -> None:
    rng = np.random.default_rng(3)
    a = rng.normal(size=(20, 4, 4)) * rng.uniform(0.01, 30, (20, 1, 1))
    np.testing.assert_allclose(expm_stack(a), np.stack([expm(x) for x in a]), rtol=1e-10,
                               atol=1e-12)


def test_peterson_waves_analysis_and_plots() -> None:
    import matplotlib

    matplotlib.use("Agg")
    waves = ims.datasets.load_peterson_waves()
    res = ims.fit_panel_markov(waves, "supervisor_turnover",
                               covariate_transitions=["sustained -> discontinued"])
    assert res.converged
    assert len(res.params) == 4           # three intensities and one hazard ratio
    row = res.summary.loc[("sustained -> discontinued", "supervisor_turnover")]
    assert row["exp(lower 95%)"] < 2.5 < row["exp(upper 95%)"]   # the simulated truth
    occ = res.occupation(8, initial="sustained", covariates={"supervisor_turnover": 1})
    assert occ["state"].tolist() == ["sustained", "discontinued", "restarted"]
    assert (occ["lower"] <= occ["probability"]).all()
    assert res.plot() is not None and res.plot_occupation(8) is not None
    full = ims.fit_panel_markov(waves, "supervisor_turnover")
    assert full.loglik >= res.loglik - 1e-8


def test_history_front_door_samples_waves() -> None:
    hist = ims.simulate(40, 8, seed=5, entry="common")
    res = ims.fit_panel_markov(hist, times=[0, 2, 4, 8])
    assert res.n_sites == 40 and res.n_intervals == 120
    with pytest.raises(ArgumentError, match="times"):
        ims.fit_panel_markov(hist)


def test_an_intensity_without_evidence_is_not_printed_as_an_estimate() -> None:
    w = pd.DataFrame({"site": ["a", "a", "b", "b", "c", "c"], "time": [0, 2, 0, 2, 0, 3],
                      "state": ["sustained", "discontinued", "sustained", "sustained",
                                "sustained", "discontinued"]})
    res = ims.fit_panel_markov(w)
    sm = res.summary
    assert sm.loc[("sustained -> discontinued", "baseline"), "note"] == ""
    for tr in ("discontinued -> restarted", "restarted -> discontinued"):
        assert sm.loc[(tr, "baseline"), "note"] != ""
        assert np.isnan(sm.loc[(tr, "baseline"), "exp(coef)"])
    assert res.intensities.loc["discontinued -> restarted", "note"] != ""
    assert any("not estimates" in n or "do not determine" in n for n in res.notes)


# --------------------------------------------------------------------------- bad input


def test_read_panel_still_refuses_waves_and_points_to_read_waves() -> None:
    panel = pd.DataFrame({"site": ["a"] * 4, "year": [0, 2, 4, 8], "active": [1, 1, 0, 0]})
    with pytest.raises(DataError, match="gap in years: 4 follows 2.*read_waves"):
        ims.read_panel(panel)
    waves = ims.read_waves(panel.rename(columns={"year": "time"}).assign(
        state=["sustained", "sustained", "discontinued", "discontinued"]).drop(columns="active"))
    assert waves.frame["time"].tolist() == [0, 2, 4, 8]


def test_bad_waves_name_every_row() -> None:
    w = pd.DataFrame({"site": ["a", "a", "b", "c", "c", "d", "d", "d"],
                      "time": [0, 2, 0, 0, 1, 0, 2, 2],
                      "state": ["sustained", "paused", "sustained", "discontinued", "sustained",
                                "sustained", "restarted", "sustained"]})
    with pytest.raises(DataError) as exc:
        ims.read_waves(w)
    msgs = [str(p) for p in exc.value.problems]
    assert any('row 1, site "a"' in m and "'paused' is not one of the declared states" in m
               for m in msgs)
    assert any('site "b"' in m and "seen at one time only (time 0)" in m for m in msgs)
    assert any('site "c"' in m and "sustained at time 1 after discontinued at time 0" in m
               and "declared impossible" in m for m in msgs)
    assert any('row 7, site "d"' in m and "two interviews at time 2" in m for m in msgs)


def test_declared_impossible_transition_names_site_and_times() -> None:
    w = pd.DataFrame({"site": ["s1"] * 3, "time": [0.0, 1.5, 4.0],
                      "state": ["high", "low", "high"]})
    with pytest.raises(DataError, match=r's1.*high at time 4 after low at time 1\.5'):
        ims.read_waves(w, states=["high", "low", "closed"],
                       transitions=[("high", "low"), ("low", "closed"), ("high", "closed")])
    ok = ims.read_waves(w, states=["high", "low", "closed"],
                        transitions=["high -> low", "low -> high", "low -> closed"])
    assert ok.transitions == [("high", "low"), ("low", "high"), ("low", "closed")]
    assert ok.absorbing == ("closed",)


def test_bad_arguments_are_argument_errors() -> None:
    w = pd.DataFrame({"site": ["a", "a"], "time": [0, 1], "state": ["sustained"] * 2})
    with pytest.raises(ArgumentError, match="deathexact"):
        ims.read_waves(w, deathexact=["sustained"])
    with pytest.raises(ArgumentError, match="not among the declared states"):
        ims.read_waves(w, transitions=[("sustained", "gone")])
    with pytest.raises(ArgumentError, match="transitions"):
        ims.read_waves(w, states=["x", "y"])
    with pytest.raises(ArgumentError, match="covariate_transitions"):
        ims.fit_panel_markov(FIX / "panel.csv", "turnover", covariate_transitions=["a -> b"])
    with pytest.raises(ArgumentError, match="pci"):
        ims.fit_panel_markov(FIX / "panel.csv", pci=[20])


def test_obstype_column_and_missing_covariates() -> None:
    w = pd.DataFrame({"site": ["a", "a", "b", "b"], "time": [0, 1, 0, 2],
                      "state": ["sustained", "discontinued"] * 2, "obstype": [1, 5, 1, 2],
                      "x": [np.nan, 1.0, 0.0, 1.0]})
    with pytest.raises(DataError, match="obstype must be 1 .* got '5'"):
        ims.read_waves(w, obstype="obstype")
    w["obstype"] = [1, 1, 1, 2]
    waves = ims.read_waves(w, obstype="obstype")
    assert waves.frame["obstype"].tolist() == [1, 1, 1, 2]
    with pytest.raises(DataError, match=r'site "a": x is missing at the start of an interval'):
        ims.fit_panel_markov(waves, "x")


def test_chunked_likelihood_equals_one_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    import imrsurv.models.panel_markov as pm

    res = ims.fit_panel_markov(FIX / "panel.csv", "turnover", pci=[4])
    whole = res._problem.value_grad(res._phi)
    monkeypatch.setattr(pm, "_CHUNK", 50)
    parts = res._problem.value_grad(res._phi)
    np.testing.assert_allclose(parts[0], whole[0], rtol=1e-13)
    np.testing.assert_allclose(parts[1], whole[1], rtol=1e-9, atol=1e-9)


def test_two_state_model_matches_its_closed_form_likelihood() -> None:
    from scipy.optimize import minimize

    rng = np.random.default_rng(11)
    rows = []
    for i in range(60):
        t = np.cumsum(np.r_[0.0, rng.uniform(0.5, 3.0, 3)])
        rows += [{"site": f"s{i}", "time": tt, "state": st}
                 for tt, st in zip(t, rng.choice(["on", "off"], 4), strict=True)]
    w = pd.DataFrame(rows)
    res = ims.fit_panel_markov(w, states=["on", "off"], transitions=["on -> off", "off -> on"])

    def nll(logr: np.ndarray) -> float:   # P_on,on(t) = (mu + lam e^{-(lam+mu) t}) / (lam + mu)
        lam, mu = np.exp(logr)
        total = 0.0
        for _, g in w.groupby("site"):
            s, dt = g["state"].to_numpy(), np.diff(g["time"].to_numpy())
            e = np.exp(-(lam + mu) * dt)
            p = {("on", "on"): (mu + lam * e), ("on", "off"): lam * (1 - e),
                 ("off", "on"): mu * (1 - e), ("off", "off"): (lam + mu * e)}
            total -= sum(np.log(p[(a, b)][k] / (lam + mu))
                         for k, (a, b) in enumerate(zip(s[:-1], s[1:], strict=True)))
        return total

    opt = minimize(nll, np.zeros(2), method="Nelder-Mead",
                   options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 5000})
    np.testing.assert_allclose(res.params.to_numpy(), opt.x, atol=1e-6)
    np.testing.assert_allclose(res.loglik, -opt.fun, rtol=1e-10)


def test_prediction_arguments_are_checked(panel_cov) -> None:
    part = panel_cov.pmatrix(2, covariates={"turnover": 1}).estimate
    full = panel_cov.pmatrix(2, covariates={"turnover": 1, "training0": 0}).estimate
    pd.testing.assert_frame_equal(part, full)            # an omitted covariate is 0
    with pytest.raises(ArgumentError, match="bogus not in the model"):
        panel_cov.pmatrix(2, covariates={"bogus": 1})
    with pytest.raises(ArgumentError, match="period"):
        panel_cov.qmatrix(period=1)
    with pytest.raises(ArgumentError, match="seed"):
        panel_cov.occupation(2, ci="normal")
    with pytest.raises(ArgumentError, match="initial"):
        panel_cov.occupation(2, initial="gone")
    a = panel_cov.occupation(2, ci="normal", seed=4, n_sim=300)
    b = panel_cov.occupation(2, ci="normal", seed=4, n_sim=300)
    pd.testing.assert_frame_equal(a, b)


def test_q_pattern_forms_agree() -> None:
    cav = pd.read_csv(FIX / "cav.csv").rename(columns={"PTNUM": "site", "years": "time"})
    cav["state"] = [CAV_STATES[i - 1] for i in cav["state"]]
    pattern = pd.DataFrame(CAV_Q, index=CAV_STATES, columns=CAV_STATES)
    a = read_waves(cav, states=CAV_STATES, transitions=pattern)
    b = read_waves(cav, states=CAV_STATES, transitions=np.asarray(CAV_Q) * 0.25)
    c = read_waves(cav, states=CAV_STATES, transitions=[
        "well -> mild", "well -> death", "mild -> well", "mild -> severe", "mild -> death",
        "severe -> mild", "severe -> death"])
    assert a.transitions == b.transitions == c.transitions
    assert a.absorbing == ("death",)
    assert (a.frame["obstype"] == 1).all()
    with pytest.raises(ArgumentError, match="4 x 4"):
        read_waves(cav, states=CAV_STATES, transitions=np.ones((3, 3)))


# --------------------------------------------------------------------------- report section


def _pdf_text(path: Path) -> str:
    import subprocess

    out = subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True,
                         check=True)
    return " ".join(out.stdout.split())


def test_report_section_with_and_without_waves(tmp_path: Path) -> None:
    from imrsurv.report.build import report

    waves = Path(ims.datasets.data_path("peterson_waves")) / "waves.csv"
    spec = {"study": {"title": "waves"}, "data": {"dataset": "bond2014", "waves": str(waves)},
            "analysis": {"horizon": 8.0, "sections": ["summary", "panel_markov"],
                         "covariates": ["supervisor_turnover"]}}
    text = _pdf_text(report(spec, tmp_path / "w.pdf"))
    assert "Status seen at interviews" in text
    assert "49 sites, 196 interviews at times 0, 2, 4, 8" in text
    assert "Hazard ratios of the transition intensities" in text
    assert "state occupation at 8 years" in text
    assert "Kalbfleisch JD, Lawless JF (1985)" in text
    spec["data"] = {"dataset": "bond2014"}
    text = _pdf_text(report(spec, tmp_path / "none.pdf"))
    assert "No interview waves were given" in text
    from imrsurv.report.spec import DEFAULT_SECTIONS, load_spec

    assert "panel_markov" not in DEFAULT_SECTIONS        # only when a spec asks for it
    assert load_spec(spec).sections == ("summary", "panel_markov")


def test_report_refuses_invalid_waves_before_writing(tmp_path: Path) -> None:
    from imrsurv.report.build import report

    bad = tmp_path / "waves.csv"
    bad.write_text("site,time,state\nA,0,sustained\nA,2,closed\nB,0,sustained\n")
    spec = {"study": {"title": "bad"}, "data": {"dataset": "bond2014", "waves": str(bad)},
            "analysis": {"sections": ["panel_markov"]}}
    with pytest.raises(DataError) as exc:
        report(spec, tmp_path / "out.pdf")
    text = str(exc.value)
    assert "line 3" in text and "'closed' is not one of the declared states" in text
    assert 'site "B"' in text and "seen at one time only" in text
    assert not (tmp_path / "out.pdf").exists()


def test_wave_dates_are_calendar_years_since_the_first_interview() -> None:
    """Peterson's 0/2/4/8 as dates on each site's anniversary: the same fit, to the bit."""
    raw = pd.read_csv(ims.datasets.data_path("peterson_waves") / "waves.csv")
    base = pd.Timestamp("2004-03-15")
    start = {s: base + pd.DateOffset(days=37 * k) for k, s in enumerate(raw["site"].unique())}
    dated = raw.assign(time=[(start[s] + pd.DateOffset(years=int(t))).strftime("%Y-%m-%d")
                             for s, t in zip(raw["site"], raw["time"], strict=True)])
    w_num, w_date = read_waves(raw), read_waves(dated)
    assert w_date.dates and not w_num.dates
    assert "calendar years since each site's first interview" in repr(w_date)
    np.testing.assert_array_equal(w_date.frame["time"], w_num.frame["time"])
    assert w_date.frame["date"].iloc[0] == dated["time"].iloc[0]
    f_num = ims.fit_panel_markov(w_num, "supervisor_turnover")
    f_date = ims.fit_panel_markov(w_date, "supervisor_turnover")
    np.testing.assert_array_equal(f_date.params, f_num.params)
    # a 1.5-year gap in days: 2021-01-01 -> 2022-07-02 is 1 + 182/365 years
    two = pd.DataFrame({"site": ["A", "A"], "time": ["2021-01-01", "2022-07-02"],
                        "state": ["sustained", "sustained"]})
    assert read_waves(two).frame["time"].tolist() == [0.0, 1 + 182 / 365]


def test_wave_times_never_mix_numbers_and_dates() -> None:
    bad = pd.DataFrame({"site": ["A", "A", "B", "B"],
                        "time": ["2020-01-01", "2", "2020-03-01", "2021-02-30"],
                        "state": ["sustained"] * 4})
    with pytest.raises(DataError) as err:
        read_waves(bad)
    text = str(err.value)
    assert "row 1" in text and "numbers and dates are never mixed" in text
    assert "row 3" in text and "not an ISO date" in text
    with pytest.raises(DataError, match="finite number \\(years\\) or an ISO date"):
        read_waves(bad.assign(time=["0", "x", "0", "1"]))

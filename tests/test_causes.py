"""Causes of discontinuation: the event log's cause column, cumulative incidence by
cause, Gray's test and Fine-Gray models, against R survival / cmprsk (fixtures/causes)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

import imrsurv as ims
from imrsurv.errors import ArgumentError, DataError
from imrsurv.models.causes import cumulative_incidence, gray_test
from imrsurv.models.finegray import crr_variance, finegray_frame, fit_fine_gray

matplotlib.use("Agg")

HERE = Path(__file__).parent / "fixtures" / "causes"
R = json.loads((HERE / "causes.json").read_text())
CR = pd.read_csv(HERE / "cr_data.csv")
TV = pd.read_csv(HERE / "fg_tv_data.csv")
FX = pd.read_csv(HERE / "fg_fixed_data.csv")
CAUSES = ["financing", "priorities", "workforce"]
RTOL = 1e-6


def _wide(tab: pd.DataFrame, col: str, causes=CAUSES) -> np.ndarray:
    return tab.pivot(index="time", columns="cause", values=col)[causes].to_numpy()


# ------------------------------------------------------------------ the cause column
EVENTS = """site,time,event,cause
A,0,start,
A,1.5,discontinue,financing
A,2.5,restart,
A,6,end,
B,0,start,
B,2,discontinue,
B,3,end,
C,0,start,
C,6,end,
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "events.csv"
    path.write_text(text)
    return path


def test_cause_column_is_read_and_empty_means_unknown(tmp_path):
    hist = ims.read_history(_write(tmp_path, EVENTS))
    assert hist.has_causes
    assert hist.causes == ("financing", "unknown")
    ev = hist.events
    assert ev.loc[ev["event"] == "discontinue", "cause"].tolist() == ["financing", "unknown"]
    assert (ev.loc[ev["event"] != "discontinue", "cause"] == "").all()
    sp = hist.spells()
    assert sp.loc[sp["next"] == "discontinued", "cause"].tolist() == ["financing", "unknown"]
    assert (sp.loc[sp["next"] != "discontinued", "cause"] == "").all()


def test_unknown_written_out_is_the_empty_category(tmp_path):
    hist = ims.read_history(_write(tmp_path, EVENTS.replace("B,2,discontinue,",
                                                            "B,2,discontinue, Unknown")))
    assert hist.causes == ("financing", "unknown")


def test_cause_on_other_events_names_line_and_site(tmp_path):
    text = EVENTS.replace("A,2.5,restart,", "A,2.5,restart,workforce").replace(
        "C,6,end,", "C,6,end,priorities")
    with pytest.raises(DataError) as err:
        ims.read_history(_write(tmp_path, text))
    msgs = [str(p) for p in err.value.problems]
    assert len(msgs) == 2
    assert 'line 4, site "A": cause "workforce" on a restart event' in msgs[0]
    assert 'line 10, site "C": cause "priorities" on a end event' in msgs[1]
    assert "allowed only on discontinue rows" in msgs[0]


def test_reserved_cause_is_refused_and_strict_false_sets_site_aside(tmp_path):
    text = EVENTS.replace("B,2,discontinue,", "B,2,discontinue,censored")
    with pytest.raises(DataError, match='site "B": cause "censored" is a reserved word'):
        ims.read_history(_write(tmp_path, text))
    hist = ims.read_history(_write(tmp_path, text), strict=False)
    assert sorted(hist.sites["site"]) == ["A", "C"]
    aside = hist.accounting.set_aside
    assert set(aside["site"]) == {"B"} and aside["reason"].str.contains("reserved").any()


def test_event_log_without_causes_has_one_cause():
    hist = ims.datasets.load_bond2014()
    assert not hist.has_causes and hist.causes == ()
    res = cumulative_incidence(hist)
    assert res.causes == ("discontinued",)
    assert any("no cause column" in n for n in res.notes)
    km = ims.km_first(hist).table  # lifelines' Kaplan-Meier, an independent computation
    at = res.at(km["time"].to_numpy())
    np.testing.assert_allclose(at["cif"], 1 - km["survival"], rtol=1e-12)
    assert at["cif"].iloc[-1] == pytest.approx(26 / 49)  # all followed 6 years: 26 stopped


# ------------------------------------------------------------------ R survfit, cuminc
@pytest.mark.parametrize("key", ["all", "A", "B"])
def test_cif_and_ij_se_match_survfit(key):
    ref = R[f"survfit_{key}"]
    sub = CR if key == "all" else CR[CR["group"] == key]
    t = np.asarray(ref["time"])
    res = cumulative_incidence(sub, times=t)
    pstate, std = np.asarray(ref["pstate"]), np.asarray(ref["std_err"])
    np.testing.assert_allclose(_wide(res.summary, "cif"), pstate[:, 1:], rtol=RTOL, atol=1e-12)
    np.testing.assert_allclose(_wide(res.summary, "se"), std[:, 1:], rtol=RTOL, atol=1e-12)
    n_risk = res.summary.groupby("time")["n_risk"].first().to_numpy()
    np.testing.assert_array_equal(n_risk, ref["n_risk"])


def test_cif_with_late_entry_matches_survfit():
    late = pd.read_csv(HERE / "cr_late_data.csv")
    ref = R["survfit_late"]
    t = np.asarray(ref["time"])
    res = cumulative_incidence(late, times=t, entry="entry")
    pstate, std = np.asarray(ref["pstate"]), np.asarray(ref["std_err"])
    np.testing.assert_allclose(_wide(res.summary, "cif"), pstate[:, 1:], rtol=RTOL, atol=1e-12)
    np.testing.assert_allclose(_wide(res.summary, "se"), std[:, 1:], rtol=RTOL, atol=1e-12)
    assert res.summary["se_cuminc"].isna().all()
    assert any("late entry" in n for n in res.notes)


def _cuminc_points(ref):
    """cuminc's corners: keep the right-continuous value at each time."""
    t = np.asarray(ref["time"])
    keep = np.r_[t[1:] != t[:-1], True]
    return t[keep], np.asarray(ref["est"])[keep], np.asarray(ref["var"])[keep]


@pytest.mark.parametrize("name", sorted(R["cuminc"]))
def test_cif_and_variance_match_cuminc(name):
    group, cause = name.split()
    t, est, var = _cuminc_points(R["cuminc"][name])
    res = cumulative_incidence(CR, by="group")
    at = res.at(t)
    at = at[(at["group"] == group) & (at["cause"] == cause)]
    np.testing.assert_allclose(at["cif"], est, rtol=RTOL, atol=1e-12)
    np.testing.assert_allclose(at["se_cuminc"] ** 2, var, rtol=RTOL, atol=1e-14)


@pytest.mark.parametrize("name", sorted(R["cuminc_all"]))
def test_cif_without_groups_matches_cuminc(name):
    cause = name.split()[-1]
    t, est, var = _cuminc_points(R["cuminc_all"][name])
    at = cumulative_incidence(CR).at(t)
    at = at[at["cause"] == cause]
    np.testing.assert_allclose(at["cif"], est, rtol=RTOL, atol=1e-12)
    np.testing.assert_allclose(at["se_cuminc"] ** 2, var, rtol=RTOL, atol=1e-14)


def test_gray_test_matches_cuminc():
    res = cumulative_incidence(CR, by="group")
    tab = res.gray.table.set_index("cause").loc[R["gray"]["cause"]]
    np.testing.assert_allclose(tab["statistic"], R["gray"]["stat"], rtol=RTOL)
    np.testing.assert_allclose(tab["p"], R["gray"]["p"], rtol=RTOL)
    assert (tab["df"] == 1).all()


def test_gray_test_rho_and_strata_match_cuminc():
    ref = R["gray_rho1_strata"]
    tab = gray_test(CR, "group", rho=1, strata="region").table.set_index("cause")
    np.testing.assert_allclose(tab.loc[ref["cause"], "statistic"], ref["stat"], rtol=RTOL)
    np.testing.assert_allclose(tab.loc[ref["cause"], "p"], ref["p"], rtol=RTOL)
    plain = gray_test(CR, "group").table.set_index("cause")
    assert not np.allclose(plain["statistic"], tab["statistic"])  # the options matter


# ------------------------------------------------------------------ properties
def _km_all_cause(time, event):
    out = {}
    s = 1.0
    for t in np.unique(time[event]):
        n = (time >= t).sum()
        d = ((time == t) & event).sum()
        s *= 1 - d / n
        out[t] = s
    return out


def test_cifs_add_up_to_one_minus_all_cause_km():
    res = cumulative_incidence(CR)
    km = _km_all_cause(CR["time"].to_numpy(), (CR["status"] != "censored").to_numpy())
    t = np.array(sorted(km))
    total = res.at(t).groupby("time")["cif"].sum().to_numpy()
    np.testing.assert_allclose(total, 1 - np.array([km[v] for v in t]), rtol=1e-12)


def test_event_counts_at_event_times_and_between_summary_times():
    res = cumulative_incidence(CR, times=[2.0, 4.0, 6.0])
    for cause in CAUSES:
        t = CR.loc[CR["status"] == cause, "time"].to_numpy()
        got = res.summary.loc[res.summary["cause"] == cause, "n_event"].to_numpy()
        want = [((t > a) & (t <= b)).sum() for a, b in [(-1, 2), (2, 4), (4, 6)]]
        np.testing.assert_array_equal(got, want)
        cv = res.curves[res.curves["cause"] == cause]
        assert cv["n_event"].sum() == len(t)


def test_beyond_follow_up_is_nan_and_said():
    res = cumulative_incidence(CR, times=[1.0, 50.0])
    late = res.summary[res.summary["time"] == 50.0]
    assert late["cif"].isna().all() and late["se"].isna().all()
    assert any("beyond" in n for n in res.notes)


def test_history_front_door_equals_plain_frame():
    hist = ims.datasets.load_bond_causes()
    res = cumulative_incidence(hist, by="financing")
    sp = hist.spells()
    first = sp[sp["state"] == "sustained"]
    frame = pd.DataFrame({
        "site": first["site"], "time": first["stop"],
        "status": np.where(first["next"] == "discontinued", first["cause"], "censored"),
    }).merge(hist.sites[["site", "financing"]], on="site")
    plain = cumulative_incidence(frame, by="financing")
    pd.testing.assert_frame_equal(res.curves, plain.curves)
    pd.testing.assert_frame_equal(res.gray.table, plain.gray.table)
    assert res.causes[-1] == "unknown"
    assert any("'unknown'" in n for n in res.notes)


def test_result_display_and_plot():
    res = cumulative_incidence(ims.datasets.load_bond_causes(), by="financing")
    text = res.summary_text()
    assert "Gray's test" in text and "workforce" in text and "Notes:" in text
    assert "<table" in res._repr_html_()
    ax = res.plot()
    assert len(ax.get_lines()) == len(res.causes) * 3
    ax = res.plot(causes="workforce", ci=False)
    assert len(ax.get_lines()) == 3
    with pytest.raises(ArgumentError, match="causes"):
        res.plot(causes="weather")


# ------------------------------------------------------------------ bad input
def test_plain_frame_bad_rows_are_named():
    bad = CR.head(4).copy()
    bad.loc[0, "time"] = -1.0
    bad.loc[1, "status"] = None
    bad.loc[2, "site"] = bad.loc[3, "site"]
    with pytest.raises(DataError) as err:
        cumulative_incidence(bad)
    text = str(err.value)
    assert 'row 0, site "S01": time must be after' in text
    assert 'row 1, site "S02": status is missing' in text
    assert "row 3" in text and "more than one row" in text


def test_gray_test_needs_groups_and_common_entry():
    with pytest.raises(DataError, match="two or more groups"):
        gray_test(CR.assign(one="x"), "one")
    late = pd.read_csv(HERE / "cr_late_data.csv")
    with pytest.raises(DataError, match="same time"):
        gray_test(late, "group", entry="entry")
    res = cumulative_incidence(late, entry="entry", by="group")
    assert res.gray is None and any("Gray's test not computed" in n for n in res.notes)
    with pytest.raises(ArgumentError):
        gray_test(CR, "group", rho="one")
    with pytest.raises(ArgumentError, match="strata"):
        gray_test(CR, "group", strata="nope")


def test_bad_arguments():
    with pytest.raises(ArgumentError):
        cumulative_incidence(CR, conf_type="weird")
    with pytest.raises(ArgumentError):
        cumulative_incidence(CR, times=["soon"])
    with pytest.raises(ArgumentError):
        cumulative_incidence([1, 2, 3])
    with pytest.raises(ArgumentError, match="site column"):
        cumulative_incidence(ims.datasets.load_bond_causes(), by="nope")


# ------------------------------------------------------------------ Fine-Gray
def test_finegray_layout_matches_r():
    fg = finegray_frame(TV, "financing")
    ref = R["finegray_layout"]
    assert fg["site"].tolist() == ref["site"]
    for col in ("fgstart", "fgstop", "fgwt", "x1"):
        np.testing.assert_allclose(fg[col], ref[col], rtol=1e-12, err_msg=col)
    np.testing.assert_array_equal(fg["fgstatus"], ref["fgstatus"])
    assert (fg["fgwt"] < 1).any()  # competing events are carried with decaying weights


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_fine_gray_time_varying_matches_coxph(ties):
    ref = R[f"finegray_{ties}"]
    res = fit_fine_gray(TV, "x1 + x2", cause="financing", ties=ties)
    np.testing.assert_allclose(res.params, ref["coef"], rtol=RTOL)
    np.testing.assert_allclose(res.se, ref["se"], rtol=RTOL)
    np.testing.assert_allclose(res.se_naive, ref["se_naive"], rtol=RTOL)
    np.testing.assert_allclose(res.loglik, ref["loglik"][1], rtol=RTOL)
    assert list(res.summary.columns[:4]) == ["coef", "exp(coef)", "se", "se_naive"]
    assert "Fine-Gray" in res._header() and "financing" in res.notes[0]
    assert "subdistribution" in res.plot().get_xlabel()


def test_fine_gray_late_entry_matches_r():
    late = pd.read_csv(HERE / "fg_late_data.csv")
    ref = R["finegray_late"]
    first = late.groupby("site")["start"].min()
    assert (first > late["stop"].min()).any()  # some sites enter late: R's delay weights
    fg = finegray_frame(late, "financing")
    assert fg["site"].tolist() == ref["site"]
    for col in ("fgstart", "fgstop", "fgwt"):
        np.testing.assert_allclose(fg[col], ref[col], rtol=1e-12, err_msg=col)
    np.testing.assert_array_equal(fg["fgstatus"], ref["fgstatus"])
    res = fit_fine_gray(late, "x1 + x2", cause="financing")
    np.testing.assert_allclose(res.params, ref["coef"], rtol=RTOL)
    np.testing.assert_allclose(res.se, ref["se"], rtol=RTOL)
    np.testing.assert_allclose(res.se_naive, ref["se_naive"], rtol=RTOL)


def test_fine_gray_stratified_matches_r():
    data = pd.read_csv(HERE / "fg_strata_data.csv")
    ref = R["finegray_strata"]
    fg = finegray_frame(data, "financing", strata="region")
    assert fg["site"].tolist() == ref["site"]
    for col in ("fgstart", "fgstop", "fgwt"):
        np.testing.assert_allclose(fg[col], ref[col], rtol=1e-12, err_msg=col)
    # the layout differs from the unstratified one: G is estimated per region
    plain = finegray_frame(data, "financing")
    assert len(plain) != len(fg) or not np.allclose(plain["fgwt"], fg["fgwt"])
    res = fit_fine_gray(data, "x1 + x2", cause="financing", strata="region")
    np.testing.assert_allclose(res.params, ref["coef"], rtol=RTOL)
    np.testing.assert_allclose(res.se, ref["se"], rtol=RTOL)
    np.testing.assert_allclose(res.se_naive, ref["se_naive"], rtol=RTOL)
    assert res.strata == ["region"]


def test_fine_gray_strata_checks():
    data = pd.read_csv(HERE / "fg_strata_data.csv")
    with pytest.raises(ArgumentError, match="strata"):
        finegray_frame(data, "financing", strata="nope")
    mixed = data.copy()
    mixed.loc[0, "region"] = "east"  # T01's rows disagree
    with pytest.raises(DataError, match='site "T01": has more than one value'):
        finegray_frame(mixed, "financing", strata="region")
    only = data.assign(region=np.where(data["site"] == "T01", "alone", data["region"]))
    only.loc[only["site"] == "T01", "status"] = "censored"
    res = fit_fine_gray(only, "x1 + x2", cause="financing", strata="region")
    assert any("alone" in n for n in res.notes)  # a stratum without the cause is named
    with pytest.raises(ArgumentError, match="unstratified"):
        fit_fine_gray(FX, "z1", cause="financing", start=None, stop="time", ties="breslow",
                      variance="crr", strata="z2")


def test_fine_gray_fixed_covariates_matches_crr():
    res = fit_fine_gray(FX, "z1 + z2", cause="financing", start=None, stop="time",
                        ties="breslow")
    np.testing.assert_allclose(res.params, R["crr"]["coef"], rtol=RTOL)
    np.testing.assert_allclose(res.se, R["crr_finegray"]["se"], rtol=RTOL)
    crr = fit_fine_gray(FX, "z1 + z2", cause="financing", start=None, stop="time",
                        ties="breslow", variance="crr")
    np.testing.assert_allclose(crr.params, R["crr"]["coef"], rtol=RTOL)
    np.testing.assert_allclose(crr.se, R["crr"]["se"], rtol=RTOL)
    assert not np.allclose(crr.se, res.se, rtol=1e-6)  # the G term is counted
    assert any("cmprsk::crr" in n for n in crr.notes)


def test_crr_variance_function_directly():
    e = np.where(FX["status"] == "financing", 1, np.where(FX["status"] == "censored", 0, 2))
    v = crr_variance(FX["time"].to_numpy(), e, FX[["z1", "z2"]].to_numpy(),
                     np.asarray(R["crr"]["coef"]))
    np.testing.assert_allclose(np.sqrt(np.diag(v)), R["crr"]["se"], rtol=RTOL)


def test_fine_gray_history_front_door():
    hist = ims.datasets.load_bond_causes()
    res = fit_fine_gray(hist, "recent_leader_change + team_size", cause="workforce")
    cp = hist.counting_process("first")
    first = hist.spells().query("state == 'sustained'").set_index("site")["cause"]
    cp["status"] = np.where(cp["event"] == 1, cp["site"].map(first), "censored")
    plain = fit_fine_gray(cp, "recent_leader_change + team_size", cause="workforce")
    np.testing.assert_allclose(res.params, plain.params, rtol=1e-12)
    np.testing.assert_allclose(res.se, plain.se, rtol=1e-12)
    assert res.n_clusters == 49 and res.n_events == 10


def test_fine_gray_bad_input():
    with pytest.raises(ArgumentError, match="financing, priorities, workforce"):
        fit_fine_gray(TV, "x1", cause="weather")
    early = TV.copy()
    early.loc[0, "status"] = "financing"  # a discontinuation before the site's last row
    with pytest.raises(DataError, match="before the site's last row"):
        fit_fine_gray(early, "x1", cause="financing")
    gap = TV.copy()
    gap.loc[1, "start"] = gap.loc[1, "start"] + 0.1
    with pytest.raises(DataError, match="contiguous"):
        fit_fine_gray(gap, "x1", cause="financing")
    with pytest.raises(ArgumentError, match="weights"):
        fit_fine_gray(TV, "x1", cause="financing", weights="x2")
    with pytest.raises(ArgumentError, match="breslow"):
        fit_fine_gray(TV, "x1", cause="financing", variance="crr")
    with pytest.raises(DataError, match="one row per site"):
        fit_fine_gray(TV, "x1", cause="financing", variance="crr", ties="breslow")
    with pytest.raises(ArgumentError, match="variance"):
        fit_fine_gray(TV, "x1", cause="financing", variance="bootstrap")


def test_public_exports():
    assert ims.cumulative_incidence is cumulative_incidence
    assert ims.fit_fine_gray is fit_fine_gray
    assert ims.gray_test is gray_test


# ------------------------------------------------------------------ restarts by cause
def test_cause_state_probabilities_match_survfit():
    from imrsurv.models.causes import cause_spells, cause_state_probabilities

    hist = ims.datasets.load_bond_causes()
    ref = R["cause_states"]
    spells, states = cause_spells(hist)
    assert list(states) == ref["states"]
    # the fixture's input is these spells (see make_fixtures.R)
    committed = pd.read_csv(HERE / "bond_causes_spells.csv", keep_default_na=False)
    pd.testing.assert_frame_equal(spells.reset_index(drop=True), committed, check_dtype=False)
    res = cause_state_probabilities(hist, ref["time"])
    wide = res.pivot_table(index="time", columns="state", values="probability",
                           observed=False)[list(states)]
    se = res.pivot_table(index="time", columns="state", values="se",
                         observed=False)[list(states)]
    np.testing.assert_allclose(wide.to_numpy(), ref["pstate"], rtol=RTOL, atol=1e-12)
    np.testing.assert_allclose(se.to_numpy(), ref["std_err"], rtol=RTOL, atol=1e-12)
    # collapsing the causes gives the restarts model's discontinued state
    plain = ims.state_probabilities(hist, ref["time"])
    disc = plain[plain["state"] == "discontinued"]["probability"].to_numpy()
    np.testing.assert_allclose(wide[[s for s in states if s.startswith("disc")]].sum(1), disc,
                               rtol=1e-12)


def test_missing_group_value_is_named():
    hist = ims.datasets.load_bond_causes()
    events = hist.events.drop(columns="line")
    sites = hist.sites[["site", "financing"]].copy()
    sites.loc[sites["site"] == "S03", "financing"] = None
    h2 = ims.read_history(events, sites=sites)
    with pytest.raises(DataError, match='site "S03": no value of \'financing\''):
        cumulative_incidence(h2, by="financing")


def test_fine_gray_without_competing_events_is_the_cause_specific_cox():
    only = TV.assign(status=TV["status"].where(TV["status"].isin(["financing", "censored"]),
                                               "censored"))
    fg = finegray_frame(only, "financing")
    assert len(fg) == len(only) and (fg["fgwt"] == 1).all()
    res = fit_fine_gray(only, "x1 + x2", cause="financing")
    cox = ims.fit_cox(only.assign(event=(only["status"] == "financing").astype(int)), "x1 + x2",
                      start="start", stop="stop", event="event", cluster="site")
    np.testing.assert_allclose(res.params, cox.params, rtol=1e-10)
    np.testing.assert_allclose(res.se, cox.se, rtol=1e-10)


def test_fine_gray_without_censoring_keeps_competing_sites_to_the_end():
    # no censoring: G = 1, so a site that stopped for another cause stays at risk (weight 1)
    # until the last event of the cause, as in Fine & Gray's complete-data case
    d = FX[FX["status"] != "censored"].reset_index(drop=True)
    fg = finegray_frame(d.assign(start=0.0), "financing", stop="time")
    assert np.allclose(fg["fgwt"], 1.0)
    t_last = d.loc[d["status"] == "financing", "time"].max()
    other = fg[fg["status"] != "financing"]
    assert (other.groupby("site")["fgstop"].max() >= t_last).all()
    res = fit_fine_gray(d, "z1 + z2", cause="financing", start=None, stop="time",
                        ties="breslow")
    ext = d.assign(stop=np.where(d["status"] == "financing", d["time"], d["time"].max()),
                   event=(d["status"] == "financing").astype(int))
    cox = ims.fit_cox(ext, "z1 + z2", stop="stop", event="event", ties="breslow")
    np.testing.assert_allclose(res.params, cox.params, rtol=1e-8)


def _g_before(t: float, time: np.ndarray, status: np.ndarray) -> float:
    """Censoring Kaplan-Meier just before t; a discontinuation at a censoring time comes first."""
    g = 1.0
    for c in np.unique(time[status == "censored"]):
        if c >= t:
            break
        at_risk = (time > c).sum() + ((time == c) & (status == "censored")).sum()
        g *= 1 - ((time == c) & (status == "censored")).sum() / at_risk
    return g


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_finegray_weights_are_censoring_ratios(seed):
    # Fine & Gray (1999): at an event time t a site that stopped for another cause at s < t
    # is at risk with weight G(t-)/G(s-); every other site is at risk while it is followed
    rng = np.random.default_rng(seed)
    n = 40
    time = rng.integers(1, 12, n) / 2.0  # many ties
    status = rng.choice(["censored", "a", "b"], n, p=[0.4, 0.3, 0.3])
    d = pd.DataFrame({"site": [f"s{i}" for i in range(n)], "start": 0.0, "stop": time,
                      "status": status})
    fg = finegray_frame(d, "a")
    for t in np.unique(time[status == "a"]):
        at = fg[(fg["fgstart"] < t) & (fg["fgstop"] >= t)]
        assert not at["site"].duplicated().any()
        w = at.set_index("site")["fgwt"]
        for i in range(n):
            site, s, st = f"s{i}", time[i], status[i]
            if s >= t:
                assert w[site] == 1.0
            elif st == "b":
                want = _g_before(t, time, status) / _g_before(s, time, status)
                assert w[site] == pytest.approx(want, rel=1e-12)
            else:
                assert site not in w.index


@pytest.mark.parametrize("cause", ["workforce", "financing"])
def test_fine_gray_on_shipped_history_matches_r(cause):
    # end to end: History -> first-discontinuation layout -> Fine-Gray, against R on that layout
    hist = ims.datasets.load_bond_causes()
    from imrsurv.models.finegray import _history_rows

    committed = pd.read_csv(HERE / "bond_causes_first.csv", dtype={"site": str})
    rows = _history_rows(hist)[committed.columns].reset_index(drop=True)
    pd.testing.assert_frame_equal(rows, committed, check_dtype=False)
    ref = R[f"bond_causes_{cause}"]
    res = fit_fine_gray(hist, "recent_leader_change + team_size + training_access", cause=cause)
    assert len(res.layout) == ref["n"]
    np.testing.assert_allclose(res.params, ref["coef"], rtol=RTOL)
    np.testing.assert_allclose(res.se, ref["se"], rtol=RTOL)
    np.testing.assert_allclose(res.se_naive, ref["se_naive"], rtol=RTOL)


def test_cif_and_gray_on_shipped_history_match_r():
    from imrsurv.models.causes import competing_risks_frame

    hist = ims.datasets.load_bond_causes()
    committed = pd.read_csv(HERE / "bond_causes_cr.csv", dtype={"site": str})
    pd.testing.assert_frame_equal(competing_risks_frame(hist, by="financing"), committed,
                                  check_dtype=False)
    res = cumulative_incidence(hist, by="financing")
    ref = R["bond_causes_gray"]
    tab = res.gray.table.set_index("cause").loc[ref["cause"]]
    np.testing.assert_allclose(tab["statistic"], ref["stat"], rtol=RTOL)
    np.testing.assert_allclose(tab["p"], ref["p"], rtol=RTOL)
    sf = R["bond_causes_survfit"]
    at = cumulative_incidence(hist, times=sf["time"]).summary
    order = ["financing", "priorities", "workforce", "unknown"]
    np.testing.assert_allclose(_wide(at, "cif", order), np.asarray(sf["pstate"])[:, 1:],
                               rtol=RTOL, atol=1e-12)
    np.testing.assert_allclose(_wide(at, "se", order), np.asarray(sf["std_err"])[:, 1:],
                               rtol=RTOL, atol=1e-12)


# ------------------------------------------------------------------ report section
def _report_text(tmp_path: Path, dataset: str, sections: list[str], **analysis) -> str:
    from pypdf import PdfReader

    from imrsurv.report.build import report

    spec = {"study": {"title": "Causes"}, "data": {"dataset": dataset},
            "analysis": {"group": "financing", "sections": sections, **analysis}}
    out = report(spec, tmp_path / "r.pdf", command="test", progress=False)
    return "\n".join(page.extract_text() for page in PdfReader(out).pages)


def test_report_causes_section(tmp_path):
    text = _report_text(tmp_path, "bond_causes", ["summary", "causes"])
    assert "Causes of discontinuation" in text
    assert "First discontinuations by cause: financing 6, priorities 5, workforce 10, unknown 5" \
        in text.replace("\n", " ")
    gray = cumulative_incidence(ims.datasets.load_bond_causes(), by="financing").gray.table
    assert f"{gray.set_index('cause').loc['financing', 'statistic']:.2f}" in text  # 18.94
    assert "Fine-Gray subdistribution hazard ratios" in text
    assert "Gray RJ (1988)" in text and "Fine JP, Gray RJ (1999)" in text
    # the default test is firth-lrt: Firth-penalised Fine-Gray fits with profile limits
    flat = " ".join(text.split())
    assert "95% CI (profile)" in flat and "Firth-penalised fits" in flat
    fit = ims.fit_fine_gray(ims.datasets.load_bond_causes(), "recent_leader_change + team_size "
                            "+ training_access", cause="workforce", penalty="firth")
    row = fit.summary.loc["team_size"]
    assert f"{row['exp(lower 95%)']:.2f}–{row['exp(upper 95%)']:.2f}" in flat
    wald = " ".join(_report_text(tmp_path, "bond_causes", ["causes"], test="wald").split())
    assert "95% CI (robust)" in wald and "Lin-Wei robust errors by site, Wald" in wald


def test_report_causes_section_without_causes_says_so(tmp_path):
    text = _report_text(tmp_path, "bond2014", ["summary", "causes"])
    flat = " ".join(text.split())
    assert "Causes of discontinuation" in flat
    assert "could not be estimated on these data" in flat and "no cause column" in flat
    assert "Data and validation" in flat  # the rest of the report is still written

"""History: reading, layouts, status, summaries, accounting."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import imrsurv as ims

EVENTS = """
    site,time,event,practice
    A,0,start,IMR
    A,1.5,discontinue,IMR
    A,2.5,restart,IMR
    A,4,discontinue,IMR
    A,6,end,IMR
    B,0,start,ACT
    B,6,end,ACT
    C,0,start,IMR
    C,2,discontinue,IMR
    C,3,restart,IMR
    C,5,end,IMR
"""
COVARIATES = """
    site,time,leadership_change,team_size,training_access
    A,0,0,4,1
    A,1,1,3,1
    A,3,0,2,0
    B,0,0,5,1
    B,2.5,1,5,1
    C,0,0,3,0
"""


@pytest.fixture
def hist(write_csv):
    return ims.read_history(write_csv("events.csv", EVENTS), write_csv("cov.csv", COVARIATES))


def rows(frame: pd.DataFrame, cols: list[str]) -> list[tuple]:
    return [tuple(r) for r in frame[cols].itertuples(index=False)]


def test_sites_table(hist):
    s = hist.sites.set_index("site")
    assert list(s.index) == ["A", "B", "C"]
    assert s.loc["A", ["entry", "exit", "discontinuations", "restarts"]].tolist() == [0, 6, 2, 1]
    assert s.loc["C", "exit"] == 5
    assert s.loc["B", "practice"] == "ACT"


def test_spells(hist):
    sp = hist.spells()
    assert rows(sp[sp.site == "A"], ["start", "stop", "state", "next", "episode"]) == [
        (0.0, 1.5, "sustained", "discontinued", 1),
        (1.5, 2.5, "discontinued", "restarted", 1),
        (2.5, 4.0, "restarted", "discontinued", 2),
        (4.0, 6.0, "discontinued", "censored", 2),
    ]


def test_ag_layout_splits_at_covariate_changes(hist):
    ag = hist.counting_process("ag")
    a = ag[ag.site == "A"]
    assert rows(a, ["start", "stop", "event", "episode", "team_size", "training_access",
                    "leader_changes", "recent_leader_change"]) == [
        (0.0, 1.0, 0, 1, 4, 1, 0, 0),
        (1.0, 1.5, 1, 1, 3, 1, 1, 1),
        (2.5, 3.0, 0, 2, 3, 1, 1, 0),  # the leader change at 1 is no longer recent after 2
        (3.0, 4.0, 1, 2, 2, 0, 1, 0),
    ]
    b = ag[ag.site == "B"]
    # the recent-change window [2.5, 3.5) adds a split at 3.5
    assert rows(b, ["start", "stop", "event", "recent_leader_change"]) == [
        (0.0, 2.5, 0, 0), (2.5, 3.5, 0, 1), (3.5, 6.0, 0, 0)]
    assert "leadership_change" not in ag.columns
    assert (ag["practice"] == ag["site"].map({"A": "IMR", "B": "ACT", "C": "IMR"})).all()


def test_pwp_gap_time(hist):
    gt = hist.counting_process("pwp-gt")
    a = gt[(gt.site == "A") & (gt.episode == 2)]
    assert rows(a, ["gap_start", "gap_stop"]) == [(0.0, 0.5), (0.5, 1.5)]
    assert (gt["gap_stop"] - gt["gap_start"]).round(12).equals((gt["stop"] - gt["start"]).round(12))


def test_wlw_every_episode_from_entry(hist):
    w = hist.counting_process("wlw")
    assert sorted(w["episode"].unique()) == [1, 2]
    # each site has both episodes starting at entry
    firsts = w.groupby(["site", "episode"])["start"].min()
    assert (firsts == 0).all()
    stops = w.groupby(["site", "episode"])["stop"].max()
    assert stops[("A", 2)] == 4.0 and stops[("C", 2)] == 5.0 and stops[("B", 1)] == 6.0
    assert w.groupby(["site", "episode"])["event"].sum().to_dict() == {
        ("A", 1): 1, ("A", 2): 1, ("B", 1): 0, ("B", 2): 0, ("C", 1): 1, ("C", 2): 0}


def test_first_and_restart_outcome(hist):
    first = hist.counting_process("first")
    assert first.groupby("site")["stop"].max().to_dict() == {"A": 1.5, "B": 6.0, "C": 2.0}
    assert first["event"].sum() == 2
    rs = hist.counting_process("ag", outcome="restart")
    assert rs.groupby(["site", "episode"])["event"].sum().to_dict() == {
        ("A", 1): 1, ("A", 2): 0, ("C", 1): 1}
    assert (rs.stop - rs.start).groupby(rs.site).sum().round(9).to_dict() == {
        "A": 3.0, "C": 1.0}


def test_unknown_scheme(hist):
    with pytest.raises(ValueError, match="scheme must be one of"):
        hist.counting_process("andersen")


@pytest.mark.parametrize("horizon,expected", [
    (6.0, {"A": "discontinued", "B": "sustained", "C": "censored"}),
    (4.5, {"A": "discontinued", "B": "sustained", "C": "restarted"}),
    (2.0, {"A": "discontinued", "B": "sustained", "C": "discontinued"}),  # event at horizon counts
    (1.0, {"A": "sustained", "B": "sustained", "C": "sustained"}),
])
def test_status_at(hist, horizon, expected):
    assert hist.status_at(horizon).astype(str).to_dict() == expected


def test_summary_person_years(hist):
    s = hist.summary()
    assert s.loc["all"].tolist() == [3, 13.0, 4.0, 3, 2]
    assert s.loc["IMR", "sites"] == 2


def test_history_is_immutable(hist):
    ev = hist.events
    ev.loc[0, "time"] = 99.0
    assert hist.events.loc[0, "time"] == 0.0
    with pytest.raises(AttributeError):
        hist.recent_window = 2.0  # type: ignore[misc]


def test_dates_become_years_since_site_start():
    ev = pd.DataFrame({"site": ["A", "A", "A", "B", "B"],
                       "time": ["2015-03-01", "2016-03-01", "2021-03-01", "2017-01-01", "2019-01-01"],
                       "event": ["start", "discontinue", "end", "start", "end"]})
    cov = pd.DataFrame({"site": ["A", "B"], "time": ["2015-03-01", "2017-01-01"], "team_size": [3, 4]})
    h = ims.read_history(ev, cov)
    t = h.events.set_index(["site", "event"])["time"]
    assert t[("A", "start")] == 0.0 and t[("B", "start")] == 0.0
    # calendar years: whole anniversaries are whole years (2016 is a leap year)
    assert t[("A", "discontinue")] == 1.0
    assert t[("A", "end")] == 6.0
    assert t[("B", "end")] == 2.0


def test_dates_are_calendar_years_so_six_anniversaries_are_six_years():
    ev = pd.DataFrame({"site": ["A"] * 3 + ["B"] * 2,
                       "time": ["2016-07-01", "2020-01-01", "2022-07-01", "2016-07-01", "2022-06-30"],
                       "event": ["start", "discontinue", "end", "start", "end"]})
    h = ims.read_history(ev)
    t = h.events.set_index(["site", "event"])["time"]
    assert t[("A", "end")] == 6.0
    # 2019-07-01 + 184 days of the 366-day year to 2020-07-01
    assert t[("A", "discontinue")] == pytest.approx(3 + 184 / 366, abs=1e-12)
    assert t[("B", "end")] == pytest.approx(5 + 364 / 365, abs=1e-12)
    status = h.status_at(6)
    assert status["A"] == "discontinued" and status["B"] == "censored"
    assert "calendar years" in repr(h)


def test_calendar_years_leap_day_anniversary():
    from imrsurv.validate import calendar_years
    # lubridate: the anniversary of 29 February in a common year is 1 March
    o = np.array(["2016-02-29"] * 3 + ["2016-07-01"], dtype="datetime64[ns]")
    d = np.array(["2017-02-28", "2020-02-29", "2017-03-01", "2016-06-30"], dtype="datetime64[ns]")
    np.testing.assert_allclose(calendar_years(o, d), [365 / 366, 4.0, 1.0, -1 / 366])


def test_calendar_years_match_lubridate():
    import json
    from pathlib import Path

    from imrsurv.validate import calendar_years
    fx = json.loads((Path(__file__).parent / "fixtures/dates/calendar_years.json").read_text())
    o = np.array([p["origin"] for p in fx["pairs"]], dtype="datetime64[ns]")
    d = np.array([p["date"] for p in fx["pairs"]], dtype="datetime64[ns]")
    ref = np.array([p["years"] for p in fx["pairs"]])
    assert len(ref) == 75
    np.testing.assert_allclose(calendar_years(o, d), ref, rtol=1e-13, atol=1e-13)


def test_time_unit_months():
    ev = pd.DataFrame({"site": ["A"] * 3, "time": [0, 18, 72], "event": ["start", "discontinue", "end"]})
    h = ims.read_history(ev, time_unit="months")
    assert h.events["time"].tolist() == [0.0, 1.5, 6.0]


def test_parquet_input(tmp_path):
    ev = pd.DataFrame({"site": ["A"] * 3, "time": [0.0, 2.0, 6.0], "event": ["start", "discontinue", "end"]})
    ev.to_parquet(tmp_path / "ev.parquet")
    assert ims.read_history(tmp_path / "ev.parquet").n_sites == 1


def test_site_table_columns_reach_frames(write_csv):
    h = ims.read_history(write_csv("e.csv", EVENTS), sites=write_csv("s.csv", """
        site,region,financing,fidelity
        A,north,grant,4.5
        B,south,medicaid,3.9
        C,north,grant,4.1
    """))
    ag = h.counting_process("ag")
    assert {"region", "financing", "fidelity"} <= set(ag.columns)
    assert ag.loc[ag.site == "B", "fidelity"].iloc[0] == 3.9
    assert h.site_columns == ("practice", "region", "financing", "fidelity")


def test_accounting_counts_rows(hist):
    acc = hist.accounting.table.set_index("input")
    assert acc.loc["events"].tolist() == [11, 11, 0]
    assert acc.loc["covariates"].tolist() == [6, 6, 0]
    assert hist.accounting.set_aside.empty


def test_lenient_mode_sets_aside_bad_sites_and_says_why(write_csv):
    ev = write_csv("e.csv", EVENTS + "    D,0,start,IMR\n    D,1,restart,IMR\n    D,3,end,IMR\n")
    h = ims.read_history(ev, strict=False)
    assert list(h.sites["site"]) == ["A", "B", "C"]
    aside = h.accounting.set_aside
    assert set(aside["site"]) == {"D"} and len(aside) == 3
    assert aside["reason"].str.contains("restart while active").any()
    assert h.accounting.table.set_index("input").loc["events"].tolist() == [14, 11, 3]


def test_user_covariates_carried_through(write_csv):
    cov = COVARIATES.replace("training_access\n", "training_access,funding\n")
    cov = "\n".join(line + (",grant" if i else "") for i, line in
                    enumerate(cov.strip().splitlines()))
    h = ims.read_history(write_csv("e.csv", EVENTS), write_csv("c.csv", cov))
    ag = h.counting_process("ag")
    assert (ag["funding"] == "grant").all()
    assert np.issubdtype(ag["team_size"].dtype, np.number)

"""Hypothesis properties of the counting-process layouts."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import imrsurv as ims

QUARTERS = st.integers(min_value=1, max_value=8).map(lambda q: q / 4)


@st.composite
def cohorts(draw):
    """Random valid event logs (times on a quarter-year grid, so ties happen) and covariates."""
    events, cov = [], []
    for i in range(draw(st.integers(1, 6))):
        site = f"S{i}"
        t = draw(st.sampled_from([0.0, 0.5, 1.0]))  # staggered entry
        events.append((site, t, "start"))
        cov.append((site, t, 0, draw(st.integers(0, 8)), draw(st.integers(0, 1))))
        active = True
        for _ in range(draw(st.integers(0, 5))):
            t += draw(QUARTERS)
            events.append((site, t, "discontinue" if active else "restart"))
            active = not active
        end = t + draw(QUARTERS) if (active or draw(st.booleans())) else t
        events.append((site, end, "end"))
        for _ in range(draw(st.integers(0, 4))):
            ct = draw(st.integers(0, int(end * 4) + 2)) / 4 + cov[-1][1] * 0
            if ct > cov[0][1] and all(c[1] != ct for c in cov if c[0] == site):
                cov.append((site, ct, draw(st.integers(0, 1)), draw(st.integers(0, 8)),
                            draw(st.integers(0, 1))))
    ev = pd.DataFrame(events, columns=["site", "time", "event"])
    cv = pd.DataFrame(cov, columns=["site", "time", "leadership_change", "team_size", "training_access"])
    cv = cv[cv.groupby("site")["time"].transform("min").le(cv["time"])]
    return ev, cv.sort_values(["site", "time"]).reset_index(drop=True)


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def active_time(ev: pd.DataFrame) -> pd.Series:
    out = {}
    for site, d in ev.groupby("site"):
        total, since = 0.0, None
        for t, e in zip(d["time"], d["event"], strict=True):
            if e in ("start", "restart"):
                since = t
            elif since is not None:
                total += t - since
                since = None
        out[site] = total
    return pd.Series(out)


@SETTINGS
@given(cohorts())
def test_ag_at_risk_time_equals_active_time(data):
    ev, cv = data
    h = ims.read_history(ev, cv)
    ag = h.counting_process("ag")
    at_risk = (ag["stop"] - ag["start"]).groupby(ag["site"]).sum()
    expected = active_time(ev)
    expected = expected[expected > 0]
    pd.testing.assert_series_equal(at_risk.sort_index(), expected.sort_index(), check_names=False)


@SETTINGS
@given(cohorts())
def test_each_discontinuation_is_exactly_one_event_row(data):
    ev, cv = data
    ag = ims.read_history(ev, cv).counting_process("ag")
    got = sorted(zip(ag.loc[ag.event == 1, "site"], ag.loc[ag.event == 1, "stop"], strict=True))
    want = sorted(zip(ev.loc[ev.event == "discontinue", "site"], ev.loc[ev.event == "discontinue", "time"],
                      strict=True))
    assert got == want


@SETTINGS
@given(cohorts())
def test_event_log_round_trips_through_the_layouts(data):
    ev, cv = data
    h = ims.read_history(ev, cv)
    rebuilt = []
    for outcome, name in (("discontinue", "discontinue"), ("restart", "restart")):
        cp = h.counting_process("ag", outcome=outcome)
        spell = cp.groupby(["site", "episode"]).agg(start=("start", "min"), stop=("stop", "max"),
                                                    event=("event", "sum"))
        rebuilt += [(s, row.stop, name) for (s, _), row in spell.iterrows() if row.event == 1]
    sites = h.sites
    rebuilt += [(s, t, "start") for s, t in zip(sites.site, sites.entry, strict=True)]
    rebuilt += [(s, t, "end") for s, t in zip(sites.site, sites.exit, strict=True)]
    assert sorted(rebuilt) == sorted(map(tuple, ev[["site", "time", "event"]].itertuples(index=False)))


@SETTINGS
@given(cohorts(), st.sampled_from(["ag", "pwp-gt", "wlw", "first"]),
       st.sampled_from(["discontinue", "restart"]))
def test_covariates_are_carried_forward_at_every_split(data, scheme, outcome):
    ev, cv = data
    cp = ims.read_history(ev, cv, recent_window=0.5).counting_process(scheme, outcome=outcome)
    for row in cp.itertuples(index=False):
        rows = cv[(cv.site == row.site)]
        before = rows[rows.time <= row.start].iloc[-1]
        assert row.team_size == before.team_size and row.training_access == before.training_access
        changes = rows.loc[rows.leadership_change == 1, "time"].to_numpy()
        assert row.leader_changes == int((changes <= row.start).sum())
        recent = bool(((changes <= row.start) & (row.start < changes + 0.5)).any())
        assert row.recent_leader_change == int(recent)
        cuts = np.r_[rows.time.to_numpy(), changes + 0.5]
        assert not ((cuts > row.start) & (cuts < row.stop)).any(), "a change inside an interval"
        assert row.stop > row.start

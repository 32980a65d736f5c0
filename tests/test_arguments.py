"""Every bad argument is a clear error naming the argument, the value and what is
allowed (issue 11, items 2 and 3); nothing wrong is accepted silently."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import imrsurv as ims
from imrsurv.errors import ArgumentError, DataError

HIST = ims.datasets.load_bond2014()
EV = pd.DataFrame({"site": ["A", "A", "B", "B"], "time": [0, 2, 0, 3],
                   "event": ["start", "end", "start", "end"]})
COV = pd.DataFrame({"site": ["A", "B"], "time": [0, 0], "team_size": [3, 4]})


def test_argument_error_is_a_data_error_and_a_value_error():
    assert issubclass(ArgumentError, DataError) and issubclass(ArgumentError, ValueError)
    assert ims.ArgumentError is ArgumentError


@pytest.mark.parametrize("call, names", [
    (lambda: ims.read_history(None), ["events=None", "path", "DataFrame"]),
    (lambda: ims.read_history([1, 2]), ["events", "list", "DataFrame"]),
    (lambda: ims.read_history(3.5), ["events", "float"]),
    (lambda: ims.read_history(EV, recent_window="1"), ["recent_window='1'", "number > 0"]),
    (lambda: ims.read_history(EV, recent_window=float("nan")), ["recent_window=nan"]),
    (lambda: ims.read_history(EV, recent_window=0), ["recent_window=0", "> 0"]),
    (lambda: ims.read_history(EV, time_unit="fortnights"), ["time_unit='fortnights'", "months"]),
    (lambda: ims.read_history(EV, strict="no"), ["strict='no'", "True or False"]),
    (lambda: ims.read_history(EV, COV, binary=[1]), ["binary=[1]", "column names"]),
    (lambda: HIST.counting_process("foo"), ["scheme='foo'", '"pwp-tt"']),
    (lambda: HIST.counting_process(3), ["scheme=3", '"ag"']),
    (lambda: HIST.counting_process("ag", outcome="foo"), ["outcome='foo'", '"restart"']),
    (lambda: HIST.status_at("x"), ["horizon='x'", "finite number"]),
    (lambda: HIST.status_at(float("nan")), ["horizon=nan"]),
    (lambda: HIST.status_at(-1), ["horizon=-1", ">= 0"]),
    (lambda: HIST.summary(by="nosuch"), ["by='nosuch'", "practice"]),
    (lambda: ims.state_probabilities(HIST, times=["a"]), ["times=['a']", "finite numbers"]),
    (lambda: ims.state_probabilities(HIST, times=[1, float("inf")]), ["times", "inf"]),
    (lambda: ims.state_probabilities(HIST, times=[]), ["times is empty"]),
    (lambda: ims.state_probabilities(HIST, times=[1], conf_type="x"), ["conf_type='x'"]),
    (lambda: ims.state_probabilities(HIST, times=[1], conf_level=95), ["conf_level=95"]),
    (lambda: ims.state_probabilities(HIST, times=[1], by=3), ["by=3"]),
    (lambda: ims.bond_status(HIST, horizon=float("nan")), ["horizon=nan", "> 0"]),
    (lambda: ims.bond_status(HIST, horizon="6"), ["horizon='6'"]),
    (lambda: ims.restricted_mean_time_in_state(HIST, -5), ["horizon=-5", "> 0"]),
    (lambda: ims.restricted_mean_time_in_state(HIST, float("nan")), ["horizon=nan"]),
    (lambda: ims.expected_restarts(HIST, "x"), ["horizon='x'"]),
    (lambda: ims.state_probabilities([1, 2], times=[1]), ["History", "list"]),
])
def test_bad_arguments_are_argument_errors(call, names):
    with pytest.raises(ArgumentError) as err:
        call()
    text = str(err.value)
    for piece in names:
        assert piece in text, (piece, text)


def test_fit_discrete_time_missing_column_and_bad_link():
    panel = ims.read_panel(pd.DataFrame({
        "site": np.repeat(list("abcd"), 3), "year": np.tile([1, 2, 3], 4),
        "active": [1, 0, 0, 1, 1, 1, 1, 1, 0, 1, 0, 1], "team_size": np.arange(12) % 4}))
    with pytest.raises(DataError, match='names column "nosuch", which is not in the data'):
        ims.fit_discrete_time(panel, "year + nosuch")
    with pytest.raises(DataError, match="link='foo'"):
        ims.fit_discrete_time(panel, "year", link="foo")
    with pytest.raises(DataError, match="outcome='foo'"):
        ims.fit_discrete_time(panel, "year", outcome="foo")


@pytest.mark.parametrize("columns, piece", [
    (["site", "time", "event", "time"], 'column "time" appears more than once'),
    (["site", "time", "event", " time "], 'column "time" appears more than once'),
    (["site", "time", "event", ""], "column 4 has no name"),
])
def test_duplicate_or_colliding_column_names(columns, piece):
    df = pd.DataFrame([["A", 0, "start", 1], ["A", 2, "end", 1]], columns=columns)
    with pytest.raises(DataError, match=piece):
        ims.read_history(df)


def test_duplicate_header_in_a_csv(write_csv):
    path = write_csv("e.csv", "site,time,event,time\nA,0,start,1\nA,2,end,1")
    with pytest.raises(DataError, match=r'e.csv: column "time" appears more than once'):
        ims.read_history(path)


def test_header_only_event_log_is_an_error(write_csv):
    with pytest.raises(DataError, match="no rows"):
        ims.read_history(write_csv("e.csv", "site,time,event"))
    with pytest.raises(DataError, match="no rows"):
        ims.read_history(EV.iloc[:0])
    with pytest.raises(DataError, match="empty file"):
        ims.read_history(write_csv("empty.csv", ""))


def test_all_sites_set_aside_is_an_error_not_an_empty_history():
    bad = pd.DataFrame({"site": ["A", "A"], "time": [0, 1], "event": ["start", "restart"]})
    with pytest.raises(DataError, match="no site is left"):
        ims.read_history(bad, strict=False)


def test_infinite_covariate_values_are_reported():
    cov = COV.assign(team_size=[3.0, np.inf], other=[1.0, -np.inf])
    with pytest.raises(DataError) as err:
        ims.read_history(EV, cov)
    text = str(err.value)
    assert 'row 1, site "B": team_size inf is not finite' in text
    assert 'row 1, site "B": other -inf is not finite' in text


def test_duplicate_covariate_times_spelled_differently(write_csv):
    ev = write_csv("e.csv", "site,time,event\nA,0,start\nA,3,end")
    cov = write_csv("c.csv", "site,time,team_size\nA,0,3\nA,0.0,4\nA,1,4\nA,1.00,5")
    with pytest.raises(DataError) as err:
        ims.read_history(ev, cov)
    text = str(err.value)
    assert 'line 3, site "A": two covariate rows for the same time (see line 2)' in text
    assert 'line 5, site "A": two covariate rows for the same time (see line 4)' in text


def test_binary_naming_a_missing_column():
    with pytest.raises(DataError, match="binary= names 'nosuch', not a column"):
        ims.read_history(EV, COV, binary=("nosuch",))
    with pytest.raises(DataError, match="no covariate log"):
        ims.read_history(EV, binary=("team_size",))
    # the default names training_access, which a covariate log need not have
    assert ims.read_history(EV, COV).n_sites == 2


def test_sites_named_na_and_none_are_sites(write_csv):
    path = write_csv("e.csv", "site,time,event\nNA,0,start\nNA,2,end\nNone,0,start\nNone,3,end\n"
                              "null,0,start\nnull,1,end")
    h = ims.read_history(path)
    assert sorted(h.sites["site"]) == ["NA", "None", "null"]
    with pytest.raises(DataError, match="line 3: missing site"):
        ims.read_history(write_csv("e2.csv", "site,time,event\nA,0,start\n,1,end\nA,2,end"))


def test_read_panel_arguments_and_silent_cases(write_csv):
    with pytest.raises(ArgumentError, match="panel must be a path"):
        ims.read_panel(None)
    with pytest.raises(ArgumentError, match="site=3 is not allowed"):
        ims.read_panel(pd.DataFrame({"site": ["a"], "year": [1], "active": [1]}), site=3)
    with pytest.raises(DataError, match="no rows"):
        ims.read_panel(write_csv("p.csv", "site,year,active"))
    with pytest.raises(DataError, match='line 3, site "a": team_size inf is not finite'):
        ims.read_panel(write_csv("p2.csv", "site,year,active,team_size\na,1,1,3\na,2,1,inf"))
    pp = ims.read_panel(write_csv("p3.csv", "site,year,active\nNA,1,1\nNA,2,0\nNone,1,1"))
    assert sorted(set(pp["site"])) == ["NA", "None"]


def test_time_unit_with_dates_is_refused():
    ev = pd.DataFrame({"site": ["A", "A"], "time": ["2016-01-01", "2017-01-01"],
                       "event": ["start", "end"]})
    with pytest.raises(ArgumentError, match="time_unit='months'.*ISO dates"):
        ims.read_history(ev, time_unit="months")
    assert ims.read_history(ev).sites["exit"].tolist() == [1.0]

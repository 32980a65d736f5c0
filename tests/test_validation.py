"""Validation: every problem is reported, with line and site; golden messages."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

import imrsurv as ims

GOLDEN = Path(__file__).parent / "golden"

BAD_EVENTS = """
    site,time,event
    A,0,start
    A,1,restart
    A,2,discontinue
    A,2,discontinue
    A,3,discontinue
    A,6,end
    B,0,start
    B,0.5,start
    B,1,stop
    B,6,end
    C,2020-01-01,start
    C,2026-01-01,end
    D,0,start
    D,1,discontinue
    D,1,restart
    D,5,end
    D,6,restart
    ,3,end
    E,1,discontinue
    E,5,end
    F,2,start
    F,1,discontinue
    F,4,end
    G,0,start
    G,,discontinue
    G,4,end
    H,0,start
    H,3,discontinue
    I,0,start
    I,0,end
"""

BAD_COVARIATES = """
    site,time,leadership_change,team_size,training_access
    A,0,0,3,1
    B,0,0,-1,1
    C,0,0,2,1
    D,0.5,0,4,1
    F,2,0,3,2
    G,0,0,3,1
    G,0,1,3,1
    H,0,0,three,1
    I,0,0,3,1
    Z,0,0,3,1
"""


def _check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("IMRSURV_UPDATE_GOLDEN"):
        path.write_text(text)
    assert path.exists(), f"golden file {path} missing: run with IMRSURV_UPDATE_GOLDEN=1"
    assert text == path.read_text()


def test_every_event_problem_is_listed_golden(write_csv):
    with pytest.raises(ims.DataError) as info:
        ims.read_history(write_csv("events.csv", BAD_EVENTS))
    _check_golden("bad_events.txt", str(info.value) + "\n")


def test_event_problem_kinds(write_csv):
    with pytest.raises(ims.DataError) as info:
        ims.read_history(write_csv("events.csv", BAD_EVENTS))
    text = str(info.value)
    for expected in [
        'line 3, site "A": restart while active (last event: start at 0, line 2)',
        'line 5, site "A": duplicate row (same as line 4)',
        'site "A": discontinue while discontinued',
        'line 9, site "B": more than one start',
        'line 10, site "B": unknown event "stop"',
        'line 12, site "C": time "2020-01-01" is a date but other times are numbers',
        'line 16, site "D": zero-length episode',
        'line 18, site "D": restart after end of follow-up',
        "line 19: missing site",
        'line 20, site "E": no start event',
        'line 23, site "F": discontinue at 1 is before the site\'s start',
        'line 26, site "G": missing time',
        'site "H": no end event',
        'line 31, site "I": zero-length episode: end at 0',
    ]:
        assert expected in text, expected
    problems = info.value.problems
    assert all(p.source == "events.csv" for p in problems)
    assert {p.site for p in problems} >= set("ABCDEFGHI")


def test_every_covariate_problem_is_listed_golden(write_csv):
    events = "\n".join(
        f"    {s},0,start\n    {s},6,end" for s in "ABCDFGHI")
    with pytest.raises(ims.DataError) as info:
        ims.read_history(write_csv("events.csv", "site,time,event\n" + events),
                         write_csv("covariates.csv", BAD_COVARIATES))
    _check_golden("bad_covariates.txt", str(info.value) + "\n")
    text = str(info.value)
    for expected in [
        'line 3, site "B": negative team size -1',
        'line 5, site "D": covariates missing at the site\'s start: first row is at 0.5',
        'line 6, site "F": training_access must be 0 or 1, got 2',
        'line 8, site "G": two covariate rows for the same time (see line 7)',
        'line 9, site "H": team_size "three" is not a number',
        'line 11, site "Z": covariate row for a site not in the event log',
    ]:
        assert expected in text, expected


def test_missing_columns_reported_for_all_inputs():
    ev = pd.DataFrame({"site": ["A"], "when": [0], "event": ["start"]})
    cov = pd.DataFrame({"site": ["A"], "team_size": [3]})
    with pytest.raises(ims.DataError) as info:
        ims.read_history(ev, cov)
    assert len(info.value.problems) == 2
    assert "event log lacks required column(s) time" in str(info.value)
    assert "covariate log lacks required column(s) time" in str(info.value)


def test_dataframe_rows_are_labelled_by_index():
    ev = pd.DataFrame({"site": ["A", "A", "A"], "time": [0, 1, 2],
                       "event": ["start", "restart", "end"]}, index=[10, 11, 12])
    with pytest.raises(ims.DataError, match=r'events, row 11, site "A": restart while active'):
        ims.read_history(ev)


def test_mixed_times_between_files(write_csv):
    with pytest.raises(ims.DataError, match="covariate times are dates but event times are numbers"):
        ims.read_history(write_csv("e.csv", "site,time,event\nA,0,start\nA,3,end"),
                         write_csv("c.csv", "site,time,team_size\nA,2020-01-01,3"))


def test_binary_declaration_can_be_widened(write_csv):
    ev = write_csv("e.csv", "site,time,event\nA,0,start\nA,3,end")
    cov = write_csv("c.csv", "site,time,training_access\nA,0,2")
    with pytest.raises(ims.DataError):
        ims.read_history(ev, cov)
    h = ims.read_history(ev, cov, binary=())  # ordinal access levels
    assert h.counting_process("ag")["training_access"].tolist() == [2.0]


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(ims.DataError, match="file not found"):
        ims.read_history(tmp_path / "nope.csv")


def test_error_is_not_a_pandas_traceback(write_csv):
    path = write_csv("e.csv", "site,time,event\nA,0,start\nA,\"unterminated,end")
    with pytest.raises(ims.DataError):
        ims.read_history(path)


def test_line_numbers_are_physical_lines_with_blank_lines_and_quoted_newlines(write_csv):
    path = write_csv("e.csv", 'site,time,event\nA,0,start\n\nA,1,restart\n"B\nB",0,start\n'
                              "B,2,end\n\n\nC,0,start\nC,1,bogus\nC,2,end\nA,3,end")
    with pytest.raises(ims.DataError) as info:
        ims.read_history(path)
    text = str(info.value)
    assert 'e.csv, line 4, site "A": restart while active (last event: start at 0, line 2)' in text
    assert "e.csv, line 5" in text  # the quoted site spans lines 5-6: the row starts on 5
    assert 'e.csv, line 11, site "C": unknown event "bogus"' in text


def test_too_many_cells_names_the_line(write_csv):
    with pytest.raises(ims.DataError, match=r"line 3: 4 cells but the header \(line 1\) has 3"):
        ims.read_history(write_csv("e.csv", "site,time,event\nA,0,start\nA,1,end,extra"))


def test_problem_sites_covariate_rows_go_with_their_site(write_csv):
    ev = write_csv("e.csv", "site,time,event\nA,0,start\nA,1,restart\nA,3,end\nB,0,start\nB,3,end")
    cov = write_csv("c.csv", "site,time,team_size\nA,0,3\nB,0,4\nZ,0,1")
    with pytest.raises(ims.DataError) as info:
        ims.read_history(ev, cov)
    text = str(info.value)
    assert 'site "A": covariate row' not in text
    assert 'c.csv, line 4, site "Z": covariate row for a site not in the event log' in text
    h = ims.read_history(ev, cov, strict=False)
    aside = h.accounting.set_aside.set_index(["input", "where"])["reason"]
    assert aside[("covariates", "line 2")] == "set aside with its site, which has problems"
    assert aside[("covariates", "line 4")] == "covariate row for a site not in the event log"
    assert h.n_sites == 1


def test_covariate_times_shown_as_written(write_csv):
    ev = write_csv("e.csv", "site,time,event\nA,2016-07-01,start\nA,2022-07-01,end")
    cov = write_csv("c.csv", "site,time,team_size\nA,2016-07-02,3")
    with pytest.raises(ims.DataError) as info:
        ims.read_history(ev, cov)
    assert ("covariates missing at the site's start: first row is at 2016-07-02, start is at "
            "2016-07-01") in str(info.value)


def test_validate_command_shows_dates_and_calendar_years(write_csv, capsys):
    from imrsurv.cli import main
    ev = write_csv("e.csv", "site,time,event\nA,2016-07-01,start\nA,2022-07-01,end")
    cov = write_csv("c.csv", "site,time,team_size\nA,2016-07-01,3\nA,2017-01-01,4")
    assert main(["validate", str(ev), "--covariates", str(cov)]) == 0
    out = capsys.readouterr().out
    assert "follow-up up to 6.00 years (calendar years since each site's start date)" in out

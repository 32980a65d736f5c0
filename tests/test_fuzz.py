"""Fuzz suite (issue 11, item 5): hypothesis over small event and covariate logs and
formulas, bounded and deterministic (``derandomize=True``).

* the reader returns a History or raises DataError, never another exception;
* a valid log round-trips: one AG event row per discontinuation, and the AG
  at-risk time equals the time the site was active;
* no formula executes code.
"""

from __future__ import annotations

import csv
import io

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import imrsurv as ims
from imrsurv.errors import DataError

FUZZ = settings(max_examples=120, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

SITES = st.sampled_from(["A", "B", "NA", "None", "", " ", "c d", "A ", "1", "é"])
TIMES = st.one_of(
    st.sampled_from(["0", "0.0", "1", "2.5", "-1", "", "nan", "inf", "x", "1e400", "2016-07-01",
                     "2022-07-01", "2020-02-29", "2021-02-29", "1,5", " 3 ", "0x10"]),
    st.floats(min_value=-2, max_value=20).map(str),
)
EVENTS = st.sampled_from(["start", "discontinue", "restart", "end", "START", " end ", "stop",
                          "", "NA"])
ROW = st.tuples(SITES, TIMES, EVENTS)


def _csv_text(header: list[str], rows: list[tuple], blank_every: int, quote: bool) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, quoting=csv.QUOTE_ALL if quote else csv.QUOTE_MINIMAL,
                   lineterminator="\n")
    w.writerow(header)
    for i, r in enumerate(rows):
        if blank_every and i % blank_every == 0:
            buf.write("\n")
        w.writerow(r)
    return buf.getvalue()


def _read(*args, **kw):
    try:
        return ims.read_history(*args, **kw)
    except DataError as err:
        assert err.problems, "a DataError lists its problems"
        for p in err.problems:
            assert str(p)
        return None


@FUZZ
@given(rows=st.lists(ROW, max_size=12), blank=st.integers(0, 3), quote=st.booleans(),
       strict=st.booleans())
def test_random_event_logs_give_history_or_data_error(tmp_path, rows, blank, quote, strict):
    path = tmp_path / "events.csv"
    path.write_text(_csv_text(["site", "time", "event"], rows, blank, quote), encoding="utf-8")
    h = _read(path, strict=strict)
    if h is not None:
        assert h.n_sites >= 1
        assert set(h.status_at(1.0).cat.categories) >= {"sustained", "censored"}
        h.counting_process("ag")
    frame = pd.DataFrame(rows, columns=["site", "time", "event"]) if rows else \
        pd.DataFrame({"site": [], "time": [], "event": []})
    _read(frame, strict=strict)


COV_VALUES = st.sampled_from(["0", "1", "2", "-1", "3.5", "", "NA", "inf", "-inf", "nan",
                              "three", "1e308", "0.0"])


@FUZZ
@given(cov_rows=st.lists(st.tuples(st.sampled_from(["A", "B", "Z", ""]), TIMES, COV_VALUES,
                                   COV_VALUES, COV_VALUES), max_size=8),
       strict=st.booleans())
def test_random_covariate_logs_give_history_or_data_error(tmp_path, cov_rows, strict):
    ev = tmp_path / "e.csv"
    ev.write_text("site,time,event\nA,0,start\nA,1,discontinue\nA,4,end\nB,0,start\nB,5,end\n")
    cov = tmp_path / "c.csv"
    cov.write_text(_csv_text(["site", "time", "leadership_change", "team_size",
                              "training_access"], cov_rows, 0, False))
    h = _read(ev, cov, strict=strict)
    if h is not None:
        cp = h.counting_process("ag")
        assert np.isfinite(cp[["start", "stop"]].to_numpy(float)).all()
        assert np.isfinite(cp["team_size"].to_numpy(float)).all()


@st.composite
def valid_logs(draw):
    """A valid event log (numeric years) and its covariate log, with the truth."""
    n_sites = draw(st.integers(1, 4))
    ev_rows, cov_rows, truth = [], [], {}
    for s in range(n_sites):
        site = f"S{s}"
        t = draw(st.sampled_from([0.0, 0.5, 1.0]))
        ev_rows.append((site, t, "start"))
        cov_rows.append((site, t, draw(st.integers(0, 1)), draw(st.integers(0, 9))))
        active, active_time, n_disc = True, 0.0, 0
        for _ in range(draw(st.integers(0, 4))):
            gap = draw(st.sampled_from([0.25, 0.5, 1.0, 2.0]))
            if active:
                active_time += gap
            t += gap
            ev_rows.append((site, t, "discontinue" if active else "restart"))
            n_disc += active
            active = not active
        tail = draw(st.sampled_from([0.0, 0.5, 1.5])) if not active else \
            draw(st.sampled_from([0.5, 1.5]))
        if active:
            active_time += tail
        end = t + tail
        ev_rows.append((site, end, "end"))
        for _ in range(draw(st.integers(0, 2))):
            ct = round(ev_rows[-1][1] * draw(st.floats(0.05, 0.95)), 3)
            if ct > cov_rows[-1][1] and ct not in {r[1] for r in cov_rows if r[0] == site}:
                cov_rows.append((site, ct, draw(st.integers(0, 1)), draw(st.integers(0, 9))))
        truth[site] = (n_disc, active_time)
    return ev_rows, cov_rows, truth


@FUZZ
@given(log=valid_logs(), shuffle=st.randoms(use_true_random=False))
def test_valid_logs_round_trip(log, shuffle):
    ev_rows, cov_rows, truth = log
    shuffle.shuffle(ev_rows)  # row order must not matter
    ev = pd.DataFrame(ev_rows, columns=["site", "time", "event"])
    cov = pd.DataFrame(cov_rows, columns=["site", "time", "leadership_change", "team_size"])
    h = ims.read_history(ev, cov)
    assert h.n_sites == len(truth)
    cp = h.counting_process("ag")
    assert ((cp["stop"] - cp["start"]) > 0).all()
    for site, (n_disc, active_time) in truth.items():
        rows = cp[cp["site"] == site]
        assert int(rows["event"].sum()) == n_disc
        assert np.isclose((rows["stop"] - rows["start"]).sum(), active_time, atol=1e-9)
    sites = h.sites.set_index("site")
    assert (sites["discontinuations"] == pd.Series({s: t[0] for s, t in truth.items()})).all()


FORMULA_PIECES = st.sampled_from(
    ["x", "z", "g", "+", "-", "*", ":", "/", "**", "2", "1", "0", "(", ")", " ", "I(", "C(",
     "np.log(", "log(", "center(", "Q('x')", "`x`", ",", "'a'", "[", "]", "{", "}", ".",
     "__class__", "__import__('os')", ".system", "('touch MARK')", "lambda", ":=", "=",
     "Treatment(", "reference=", "bs(", "df=3", "eval", "open", "getattr", "os", "sys"])


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pieces=st.lists(FORMULA_PIECES, min_size=1, max_size=12))
def test_fuzzed_formulas_through_fit_cox_never_run_code(tmp_path, pieces):
    marker = tmp_path / "MARK"
    text = "".join(pieces).replace("MARK", str(marker))
    rng = np.random.default_rng(0)
    d = pd.DataFrame({"time": rng.uniform(0.5, 3, 30), "status": np.r_[1, 1, rng.integers(0, 2, 28)],
                      "x": rng.normal(size=30), "z": rng.uniform(1, 2, 30),
                      "g": rng.choice(["a", "b"], 30)})
    try:
        ims.fit_cox(d, text, stop="time", event="status")
    except DataError:
        pass
    except Exception as exc:  # a numerical failure is fine; running code is not
        assert not isinstance(exc, (NameError, AttributeError, SyntaxError, TypeError)), \
            (text, exc)
    assert not marker.exists(), text


SPEC_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 10), st.floats(allow_nan=True),
    st.sampled_from(["abc", "", "6", "ag", "bond2014", "x + I(__import__('os').getcwd())",
                     "/tmp", "nan"]),
    st.lists(st.sampled_from(["a", 1, 2.5, "ag", "summary", None]), max_size=3),
    st.dictionaries(st.sampled_from(["a", "b"]), st.integers(), max_size=2))


@FUZZ
@given(picks=st.lists(st.tuples(st.integers(0, 10_000), SPEC_VALUES), max_size=5))
def test_random_specs_load_or_raise_data_error(picks):
    from imrsurv.report.spec import KEYS, load_spec

    spec = {"study": {"title": "T"}, "data": {"dataset": "bond2014"}}
    for k, value in picks:
        key = KEYS[k % len(KEYS)]
        spec.setdefault(key.table, {})[key.name] = value
    try:
        load_spec(spec)
    except DataError as err:
        assert err.problems


CELLS = st.one_of(st.none(), st.just(np.nan), st.integers(-3, 8), st.floats(-1, 8),
                  st.sampled_from([pd.Timestamp("2016-07-01"), "2016-07-01", "NA", "", "x",
                                   "start", "end", "discontinue", "restart", True]))


@FUZZ
@given(rows=st.lists(st.tuples(CELLS, CELLS, CELLS), min_size=1, max_size=10))
def test_frames_with_odd_cell_types_give_history_or_data_error(rows):
    _read(pd.DataFrame(rows, columns=["site", "time", "event"]))


@FUZZ
@given(rows=st.lists(st.tuples(st.sampled_from(["a", "b", "NA", ""]), TIMES,
                               st.sampled_from(["0", "1", "2", "", "true", "x"]), COV_VALUES),
                     max_size=10))
def test_random_panels_read_or_raise_data_error(tmp_path, rows):
    path = tmp_path / "panel.csv"
    path.write_text(_csv_text(["site", "year", "active", "team_size"], rows, 0, False))
    try:
        pp = ims.read_panel(path)
    except DataError as err:
        assert err.problems
    else:
        assert set(pp["at_risk"] + pp["restart_at_risk"]) == {1}
        assert (pp.groupby("site")["year"].diff().dropna() == 1).all()

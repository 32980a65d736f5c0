"""Kaplan-Meier of time to first discontinuation (lifelines) against R survfit,
including late entry tied with event times; log-rank tests."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from imrsurv.errors import DataError
from imrsurv.models.km import km_first

HERE = Path(__file__).parent / "fixtures" / "states"
SPELLS = pd.read_csv(HERE / "ms_spells.csv")
REF = json.loads((HERE / "km.json").read_text())


def test_matches_r_with_late_entry():
    res = km_first(SPELLS, by="group", times=REF["A"]["time"])
    for g in ("A", "B"):
        t = res.table[res.table["group"] == g]
        np.testing.assert_allclose(t["survival"], REF[g]["surv"], atol=1e-12)
        np.testing.assert_allclose(t["se"], REF[g]["std_err"], atol=1e-10)
        # whole curve at R's time points
        full = res.fitters[g].survival_function_at_times(REF[g]["all_time"]).to_numpy()
        np.testing.assert_allclose(full, REF[g]["all_surv"], atol=1e-12)
    assert any("enter at an event time" in n for n in res.notes)
    assert res.logrank["method"].startswith("log-rank with late entry")


def test_logrank_matches_r_survdiff():
    first = SPELLS[(SPELLS["state"] == "sustained") & (SPELLS["start"] == 0)]
    res = km_first(first, by="group")
    assert len(first) == REF["logrank_entry0"]["n"]
    assert res.logrank["statistic"] == pytest.approx(REF["logrank_entry0"]["chisq"], rel=1e-8)
    assert res.logrank["df"] == 1
    # statsmodels' late-entry log-rank reduces to the same without late entry
    from statsmodels.duration.survfunc import survdiff

    d = res.data
    stat, _ = survdiff(d["stop"], d["event"], d["group"], entry=d["start"])
    assert stat == pytest.approx(res.logrank["statistic"], rel=1e-8)


KM_REF = json.loads((Path(__file__).parent / "fixtures" / "km" / "km.json").read_text())


def _r(values) -> np.ndarray:
    return np.array([np.nan if v == "NaN" else v for v in values], float)


@pytest.mark.parametrize("name", ["spells", "lost"])
def test_table_counts_follow_r_summary_survfit_times(name):
    data = SPELLS if name == "spells" else pd.read_csv(HERE.parent / "km" / "lost.csv")
    res = km_first(data, by="group", times=KM_REF["times"])
    for g, ref in KM_REF[name].items():
        t = res.table[res.table["group"] == g]
        # events and censorings per interval, risk set of R's next time point (late entry)
        np.testing.assert_array_equal(t["n_risk"], ref["n_risk"])
        np.testing.assert_array_equal(t["n_events"], ref["n_event"])
        np.testing.assert_array_equal(t["n_censor"], ref["n_censor"])
        inside = t["time"].to_numpy() <= ref["last_time"]
        np.testing.assert_allclose(t["survival"][inside], _r(ref["surv"])[inside], atol=1e-12)
        np.testing.assert_allclose(t["se"][inside], _r(ref["std_err"])[inside], atol=1e-10)
        # past the last follow-up: unknown (NaN) unless the curve reached 0 (R extend=TRUE
        # carries the last value forward; a curve at 0 stays at 0)
        past = t["survival"][~inside].to_numpy()
        r_past = _r(ref["surv"])[~inside]
        assert np.all(np.where(r_past == 0, past == 0, np.isnan(past)))


def test_group_that_lost_all_sites_shows_zero_not_nan():
    d = pd.read_csv(HERE.parent / "km" / "lost.csv")
    res = km_first(d, by="group", times=[1, 2, 3, 6])
    x = res.table[res.table["group"] == "x"]
    assert x["survival"].tolist() == pytest.approx([1 / 3, 0, 0, 0])
    assert x["n_risk"].tolist() == [1, 0, 0, 0]
    assert x["n_events"].sum() == 3


def test_medians_and_table_shape():
    res = km_first(SPELLS, by="group")
    m = res.medians.set_index("group")
    assert np.isinf(m.loc["A", "median"]) or m.loc["A", "median"] > 0
    assert m.loc["B", "median"] == pytest.approx(2.7)
    assert set(res.table.columns) == {"group", "time", "n_risk", "n_events", "n_censor",
                                      "survival", "se", "lower", "upper"}
    assert res.table["time"].max() == np.floor(SPELLS["stop"].max())
    assert "Kaplan-Meier" in str(res)


def test_no_events_single_site_and_beyond_follow_up():
    d = pd.DataFrame({"site": ["a", "b"], "start": [0, 0], "stop": [4.0, 6.0],
                      "event": [0, 1], "grp": ["x", "y"]})
    res = km_first(d, by="grp", times=[1, 5, 6, 7])
    x = res.table[res.table["group"] == "x"]
    assert x["survival"].tolist()[:1] == [1.0]
    assert x["survival"].isna().tolist() == [False, True, True, True]  # x followed to 4
    y = res.table[res.table["group"] == "y"].set_index("time")
    assert y.loc[5, "survival"] == 1.0 and y.loc[6, "survival"] == 0.0
    assert y.loc[7, "survival"] == 0.0  # a curve that reached 0 stays there
    one = km_first(d[d["site"] == "a"])
    assert one.logrank is None
    assert np.isinf(one.medians["median"].iloc[0])


def test_invalid_input():
    with pytest.raises(DataError):
        km_first(pd.DataFrame({"start": [0, 2], "stop": [1, 1], "event": [1, 0]}))
    with pytest.raises(DataError):
        km_first(pd.DataFrame({"foo": [1]}))


EVENTS = """site,time,event,practice
a,0,start,IMR
a,2,discontinue,IMR
a,3,restart,IMR
a,7,end,IMR
b,0,start,ACT
b,7,end,ACT
c,0,start,IMR
c,4,discontinue,IMR
c,4,end,IMR
d,0,start,ACT
d,1,discontinue,ACT
d,5,end,ACT
"""


def test_history_input_and_plot(tmp_path):
    import imrsurv

    if not hasattr(imrsurv, "read_history"):
        pytest.skip("read_history not available")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hist = imrsurv.read_history(pd.read_csv(io.StringIO(EVENTS)))
    res = km_first(hist, by="practice", times=[1, 2, 4])
    t = res.table.set_index(["group", "time"])
    assert t.loc[("IMR", 2), "survival"] == pytest.approx(0.5)
    assert t.loc[("IMR", 4), "survival"] == pytest.approx(0.0)
    assert t.loc[("ACT", 1), "survival"] == pytest.approx(0.5)
    ax = res.plot()
    ax.figure.savefig(tmp_path / "km.png")
    plt.close("all")
    assert (tmp_path / "km.png").stat().st_size > 0


def test_km_result_displays_in_notebooks():
    res = km_first(SPELLS, by="group", times=[1, 2])
    html = res._repr_html_()
    assert html.count("<table") == 2 and "log-rank" in html
    assert "n_censor" in html and "as R summary(survfit, times=)" in html

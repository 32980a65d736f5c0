"""Mean cumulative function: Nelson-Aalen with the Lawless-Nadeau (IJ) error,
against R survfit(Surv(start, stop, event) ~ 1, id=site); the pseudo-score test
against R coxph(..., ties="breslow")$rscore."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from imrsurv.errors import DataError
from imrsurv.models import mcf as mcf_module
from imrsurv.models.mcf import history_frame, mcf, mcf_at, mcf_test

HERE = Path(__file__).parent / "fixtures" / "states"
DATA = pd.read_csv(HERE / "mcf_data.csv")
REF = json.loads((HERE / "mcf.json").read_text())
KW = dict(start="start", stop="stop", event="event", id="site")


@pytest.mark.parametrize("key", ["all", "A", "B"])
def test_matches_r_survfit_id(key):
    d = DATA if key == "all" else DATA[DATA["group"] == key]
    res = mcf(d, **KW)
    ref = REF[key]
    np.testing.assert_allclose(res["time"], ref["time"])
    np.testing.assert_allclose(res["n_risk"], ref["n_risk"])
    np.testing.assert_allclose(res["n_event"], ref["n_event"])
    np.testing.assert_allclose(res["mcf"], ref["cumhaz"], rtol=1e-12)
    np.testing.assert_allclose(res["se"], ref["std_chaz"], rtol=1e-10)


def test_by_group_equals_separate_fits():
    res = mcf(DATA, **KW, by="group")
    for g in ("A", "B"):
        sub = res[res["group"] == g].drop(columns="group").reset_index(drop=True)
        alone = mcf(DATA[DATA["group"] == g], **KW)
        pd.testing.assert_frame_equal(sub, alone)
    assert list(res.columns[:2]) == ["group", "time"]


def test_log_confidence_limits():
    res = mcf(DATA, **KW, conf_level=0.9)
    z = 1.6448536269514722
    np.testing.assert_allclose(res["lower"], res["mcf"] * np.exp(-z * res["se"] / res["mcf"]))
    np.testing.assert_allclose(res["upper"], res["mcf"] * np.exp(z * res["se"] / res["mcf"]))


def test_blocked_variance_equals_one_block(monkeypatch):
    full = mcf(DATA, **KW)
    monkeypatch.setattr(mcf_module, "_BLOCK_CELLS", 50)  # one or two sites per block
    blocked = mcf(DATA, **KW)
    np.testing.assert_allclose(blocked["se"], full["se"], rtol=1e-12)


def test_robust_score_test_matches_r_coxph():
    t = mcf_test(DATA, **KW, by="group")
    assert t.statistic == pytest.approx(REF["rscore"], rel=1e-10)
    assert t.statistic == pytest.approx(t.score[0] ** 2 / t.variance[0, 0])
    assert t.df == 1
    assert 0 < t.p_value < 0.05
    assert "chi2" in str(t)


def test_mcf_test_displays_without_raw_arrays():
    t = mcf_test(DATA, **KW, by="group")
    assert t.p == t.p_value
    text = repr(t)
    assert text == str(t) and "MCFTest(" not in text and "array(" not in text
    assert "Lawless-Nadeau" in text and f"{t.p_value:.4g}" in text
    html = t._repr_html_()
    assert html.startswith("<div>") and "chi2" in html


def test_score_test_three_groups_and_differences():
    d = DATA.copy()
    d["g3"] = np.where(d["site"].str[-1].isin(list("0123")), "C", d["group"])
    t = mcf_test(d, **KW, by="g3")
    assert t.df == 2 and np.isfinite(t.statistic)
    t2 = mcf_test(DATA, **KW, by="group", at=[2.0, 5.0, 50.0])
    diff = t2.difference.set_index("time")
    curve = mcf(DATA, **KW, by="group")
    a = mcf_at(curve, [5.0], "A")["mcf"].iloc[0]
    b = mcf_at(curve, [5.0], "B")["mcf"].iloc[0]
    assert diff.loc[5.0, "difference"] == pytest.approx(a - b)
    assert np.isnan(diff.loc[50.0, "difference"])  # beyond follow-up
    with pytest.raises(ValueError, match="two groups"):
        mcf_test(DATA.assign(g="x"), **KW, by="g")


def test_without_censoring_mcf_is_mean_count():
    d = pd.DataFrame({"site": list("aabbbcd"), "start": [0, 2, 0, 1, 3, 0, 0],
                      "stop": [2, 10, 1, 3, 10, 10, 10], "event": [1, 0, 1, 1, 0, 0, 0]})
    res = mcf(d, **KW)
    assert res["mcf"].iloc[-1] == pytest.approx(3 / 4)
    assert mcf_at(res, [0.5, 1.0, 2.5])["mcf"].tolist() == pytest.approx([0, 0.25, 0.5])
    # Lawless-Nadeau: sample variance of counts (divisor n) / n when nobody is censored
    counts = np.array([1, 2, 0, 0])
    assert res["se"].iloc[-1] == pytest.approx(np.sqrt(((counts - counts.mean()) ** 2).sum()) / 4)


def test_group_with_no_events_and_single_site():
    d = pd.DataFrame({"site": ["a", "a", "b"], "start": [0, 1, 0], "stop": [1, 4, 5],
                      "event": [1, 1, 0], "grp": ["x", "x", "y"]})
    res = mcf(d, **KW, by="grp")
    assert set(res["group"]) == {"x"}  # y has no events: no rows, MCF 0 throughout
    one = mcf(d[d["site"] == "a"], **KW)
    assert one["mcf"].tolist() == [1.0, 2.0]
    assert one["se"].tolist() == [0.0, 0.0]


def test_invalid_rows_are_named():
    d = pd.DataFrame({"site": ["a", "b", "c"], "start": [0, 3, 0], "stop": [2, 1, 4],
                      "event": [1, 0, -1]})
    with pytest.raises(DataError) as e:
        mcf(d, **KW)
    assert {p.site for p in e.value.problems} == {"b", "c"}
    with pytest.raises(DataError, match="missing column"):
        mcf(d, start="start", stop="end", event="event", id="site")


EVENTS = """site,time,event,practice
a,0,start,IMR
a,2,discontinue,IMR
a,3,restart,IMR
a,5,discontinue,IMR
a,7,end,IMR
b,0,start,ACT
b,7,end,ACT
c,0,start,IMR
c,4,discontinue,IMR
c,7,end,IMR
"""


def test_history_input_keeps_discontinued_sites_in_denominator():
    import imrsurv

    if not hasattr(imrsurv, "read_history"):
        pytest.skip("read_history not available")
    hist = imrsurv.read_history(pd.read_csv(io.StringIO(EVENTS)))
    res = mcf(hist)
    # nobody censored before 7: MCF(7) = 3 discontinuations / 3 sites
    assert res["mcf"].iloc[-1] == pytest.approx(1.0)
    assert (res["n_risk"] == 3).all()
    fr = history_frame(hist, by="practice")
    by = mcf(hist, by="practice")
    np.testing.assert_allclose(by[by["group"] == "IMR"]["mcf"].iloc[-1], 1.5)
    assert len(fr) == len(hist.spells())
    restarts = mcf(hist, outcome="restart")
    assert restarts["mcf"].iloc[-1] == pytest.approx(1 / 3)
    # expected discontinuations from Aalen-Johansen agree when nobody is censored
    from imrsurv.models.multistate import expected_restarts

    er = expected_restarts(hist, 7.0).set_index("transition")
    assert er.loc["discontinuations", "expected"] == pytest.approx(1.0)


def test_plot_mcf(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from imrsurv.models.mcf import plot_mcf

    ax = plot_mcf(mcf(DATA, **KW, by="group"))
    ax.figure.savefig(tmp_path / "m.png")
    plt.close("all")
    assert len(ax.get_legend().get_texts()) == 2

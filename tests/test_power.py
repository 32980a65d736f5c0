"""Power analysis in a single process (imrsurv.simulate.power_analysis); Dask runs are in test_dask.py."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

import imrsurv as ims
from imrsurv import read_history
from imrsurv.simulate import parallel
from imrsurv.simulate.power_analysis import (
    RESULT_COLUMNS,
    annual_panel,
    design_grid,
    plot_power_curve,
    power,
)

DESIGN = {"n_sites": 49, "years": 6, "hr": [1.0, 2.5]}


@pytest.fixture(scope="module")
def small_run():
    return power(DESIGN, ["ag", "pwp-tt", "discrete"], n_replicates=6, seed=11, workers=1,
                 progress=False)


def test_results_are_tidy_and_ordered(small_run):
    res = small_run.results
    assert list(res.columns) == RESULT_COLUMNS
    assert len(res) == 2 * 6 * 3
    assert list(res["analysis"][:3]) == ["ag", "pwp-tt", "discrete"]
    keys = res[["design", "replicate"]].to_numpy()
    assert (np.diff(keys[:, 0] * 1000 + keys[:, 1]) >= 0).all()
    assert set(res.loc[res["analysis"] == "discrete", "term"]) == {"leadership_change"}
    ok = res["estimate"].notna()
    assert ok.all(), res.loc[~ok, "problem"]
    assert np.allclose(res.loc[res["design"] == 1, "true"], np.log(2.5))
    inside = (res["lower"] <= res["true"]) & (res["true"] <= res["upper"])
    assert (inside == res["covered"].astype(bool)).all()
    assert ((res["p"] < 0.05) == res["reject"].astype(bool)).all()
    # the default test: Firth's penalised LRT for Cox analyses; discrete keeps its own Wald
    assert set(res.loc[res["analysis"] != "discrete", "test"]) == {"firth-lrt"}
    assert set(res.loc[res["analysis"] == "discrete", "test"]) == {"wald"}
    assert res["flagged"].notna().all()


def test_summary(small_run):
    s = small_run.summary
    assert len(s) == 6
    assert {"n_sites", "years", "hr", "analysis", "rejection_rate", "bias", "coverage",
            "coverage_mcse", "flagged", "failed", "null"} <= set(s.columns)
    assert s.loc[s["hr"] == 1.0, "null"].all() and not s.loc[s["hr"] == 2.5, "null"].any()
    assert s["type_i_error"].notna().eq(s["null"]).all() and s["power"].isna().eq(s["null"]).all()
    assert {"rejection_rate_unflagged", "coverage_unflagged", "median_estimate"} <= set(s.columns)
    assert s["replicates"].eq(6).all()
    ag = s[(s["analysis"] == "ag") & (s["hr"] == 2.5)].iloc[0]
    sub = small_run.results.query("analysis == 'ag' and design == 1")
    assert ag["rejection_rate"] == pytest.approx(sub["reject"].astype(float).mean())
    assert ag["bias"] == pytest.approx(sub["estimate"].mean() - np.log(2.5))


def test_same_seed_same_results_whatever_the_batching(small_run):
    again = power(DESIGN, ["ag", "pwp-tt", "discrete"], n_replicates=6, seed=11, workers=1,
                  progress=False, batch_size=4)
    pd.testing.assert_frame_equal(small_run.results, again.results, check_exact=True)
    other = power(DESIGN, ["ag"], n_replicates=2, seed=12, workers=1, progress=False)
    assert not np.allclose(other.results["estimate"],
                           small_run.results.query("analysis == 'ag' and replicate < 2")
                           ["estimate"])


def test_replicates_share_seeds_across_designs(small_run):
    """Replicate r of every design uses seed child r (common random numbers)."""
    res = small_run.results.query("analysis == 'ag'")
    n_events = res.pivot(index="replicate", columns="design", values="n_sites_events")
    assert (n_events[0] != n_events[1]).any()  # the effect changes the histories ...
    run = power({"n_sites": 49, "years": 6, "hr": [2.5, 2.5]}, "ag", 3, seed=11, workers=1,
                progress=False)
    a, b = (run.results.query(f"design == {d}").reset_index(drop=True) for d in (0, 1))
    pd.testing.assert_frame_equal(a.drop(columns="design"), b.drop(columns="design"))


def test_tests_on_the_same_cohorts():
    """Every test on the same simulated cohorts: same data, own estimate, p and interval;
    flagged means the ordinary fit diverged, and is said in the notes."""
    from imrsurv.simulate.power_analysis import FLAGGED_MEANING, TESTS

    run = power({"n_sites": 12, "years": 6, "hr": 1.0}, "ag", n_replicates=8, seed=5,
                workers=1, progress=False, test=TESTS)
    res = run.results
    assert list(res["test"][:5]) == list(TESTS)
    by = {t: g.reset_index(drop=True) for t, g in res.groupby("test")}
    for t in TESTS:
        pd.testing.assert_series_equal(by[t]["flagged"], by["wald"]["flagged"])
        assert (by[t]["n_events"] == by["wald"]["n_events"]).all()
    # ordinary tests share the ordinary estimate; Firth's is finite where the ordinary diverges
    np.testing.assert_allclose(by["lrt"]["estimate"], by["wald"]["estimate"])
    flagged = by["wald"]["flagged"].astype(bool)
    assert flagged.any()
    assert (by["wald"].loc[flagged, "estimate"].abs() > 5).all()
    assert (by["firth-lrt"]["estimate"].abs() < 5).all()
    # a diverged fit's profile interval is half-infinite, never NaN
    lim = by["lrt"].loc[flagged, ["lower", "upper"]].to_numpy()
    assert np.isinf(lim).any(axis=1).all() and not np.isnan(lim).any()
    assert FLAGGED_MEANING in run.notes
    s = run.summary
    assert list(s["test"]) == list(TESTS)
    assert {"rejection_rate_flagged", "coverage_flagged", "median_estimate"} <= set(s.columns)
    # Wald rejects the flagged null fits; the likelihood-based tests do not
    w, f = (s.set_index("test").loc[t] for t in ("wald", "firth-lrt"))
    assert w["rejection_rate_flagged"] > f["rejection_rate_flagged"]
    with pytest.raises(ims.DataError, match="test='lr' is not allowed"):
        power({"n_sites": 12, "years": 6}, "ag", 2, seed=1, workers=1, test="lr")


def test_plot(small_run):
    import matplotlib

    matplotlib.use("Agg")
    ax = plot_power_curve(small_run.summary)
    assert len(ax.lines) >= 3
    ax.figure.clf()


def test_design_grid():
    grid = design_grid({"n_sites": [49, 100], "years": 6, "hr": [1, 2]})
    assert [(d["n_sites"], d["hr"]) for d in grid] == [(49, 1), (49, 2), (100, 1), (100, 2)]
    assert design_grid([{"n_sites": 5, "years": 2}])[0]["hr"] == 1.0
    with pytest.raises(ValueError, match="unknown key"):
        design_grid({"n_sites": 5, "years": 2, "sites": 3})
    with pytest.raises(ValueError, match="years is required"):
        design_grid({"n_sites": 5})
    with pytest.raises(ValueError, match="hr must be a positive"):
        design_grid({"n_sites": 5, "years": 2, "hr": 0})


def test_bad_power_arguments():
    with pytest.raises(ValueError, match="seed"):
        power(DESIGN, "ag", 2, seed=None, workers=1)
    with pytest.raises(ValueError, match="unknown analysis"):
        power(DESIGN, "cox", 2, seed=1, workers=1)
    with pytest.raises(ValueError, match="n_replicates"):
        power(DESIGN, "ag", 0, seed=1, workers=1)
    with pytest.raises(ValueError, match="entry"):
        power({**DESIGN, "entry": "rolling"}, "ag", 2, seed=1, workers=1)
    with pytest.raises(ValueError, match="not both"):
        power(DESIGN, "ag", 2, seed=1, workers=2, scheduler="tcp://127.0.0.1:1")


def test_failed_fits_are_recorded_not_raised():
    # no covariate processes: the target covariate does not exist, every fit fails
    run = power({"n_sites": 10, "years": 3, "hr": 1.0, "covariates": None}, "ag", 2, seed=1,
                workers=1, progress=False)
    assert run.results["estimate"].isna().all()
    assert run.results["problem"].str.len().gt(0).all()
    assert run.summary["failed"].iloc[0] == 2


def test_ctrl_c_keeps_finished_replicates(monkeypatch):
    calls = {"n": 0}
    real = parallel._Progress.update

    def interrupt_after_three(self, k=1):
        real(self, k)
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(parallel._Progress, "update", interrupt_after_three)
    run = power({"n_sites": 20, "years": 4, "hr": 2.0}, "ag", 10, seed=3, workers=1,
                batch_size=2, progress=False)
    assert run.interrupted
    assert sorted(run.results["replicate"].unique()) == [0, 1, 2, 3, 4, 5]
    assert "interrupted" in run.notes[0]
    full = power({"n_sites": 20, "years": 4, "hr": 2.0}, "ag", 6, seed=3, workers=1,
                 progress=False)
    pd.testing.assert_frame_equal(run.results, full.results)


def test_annual_panel():
    events = pd.DataFrame({"site": ["A"] * 4 + ["B"] * 2,
                           "time": [0, 1.5, 3.0, 3.5, 0, 2.2],
                           "event": ["start", "discontinue", "restart", "end", "start", "end"]})
    cov = pd.DataFrame({"site": ["A", "A", "A", "B"], "time": [0, 0.5, 2.0, 0],
                        "leadership_change": [0, 1, 0, 0], "team_size": [3, 3, 5, 4],
                        "training_access": [1, 1, 0, 0]})
    panel = annual_panel(read_history(events, cov))
    assert panel[["site", "year"]].values.tolist() == [["A", 1], ["A", 2], ["A", 3], ["B", 1],
                                                       ["B", 2]]
    assert panel["active"].tolist() == [1, 0, 1, 1, 1]
    assert panel["leadership_change"].tolist() == [1, 0, 0, 0, 0]
    assert panel["team_size"].tolist() == [3, 5, 5, 4, 4]
    assert panel["training_access"].tolist() == [1, 0, 0, 0, 0]
    assert panel["event"].tolist() == [0, 1, 0, 0, 0]
    assert panel["restart_event"].tolist() == [0, 0, 1, 0, 0]


# ---------------------------------------------------------------------------
# CLI


def _cli(argv):
    from imrsurv.simulate.cli import register

    parser = argparse.ArgumentParser(prog="imrsurv")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_power_single_process(tmp_path, capsys):
    out = tmp_path / "res.csv"
    rc = _cli(["power", "--sites", "30", "--years", "5", "--hr", "2", "--replicates", "3",
               "--workers", "1", "--quiet", "--out", str(out), "--analysis", "ag",
               "--analysis", "pwp-tt"])
    assert rc == 0
    res = pd.read_csv(out)
    assert len(res) == 6 and set(res["analysis"]) == {"ag", "pwp-tt"}
    summary = pd.read_csv(tmp_path / "res_summary.csv")
    assert len(summary) == 2
    assert "rejection_rate" in capsys.readouterr().out


def test_cli_ctrl_c_writes_finished_replicates(tmp_path):
    """A real SIGINT to a running `power` (single process) keeps what was done."""
    out = tmp_path / "res.csv"
    code = ("import argparse, sys\n"
            "from imrsurv.simulate.cli import register\n"
            "p = argparse.ArgumentParser(prog='imrsurv')\n"
            "register(p.add_subparsers(dest='command', required=True))\n"
            "a = p.parse_args(sys.argv[1:])\n"
            "sys.exit(a.func(a))\n")
    proc = subprocess.Popen([sys.executable, "-c", code, "power", "--sites", "30", "--years", "5",
                             "--hr", "2", "--replicates", "5000", "--workers", "1", "--quiet",
                             "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    time.sleep(5)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    res = pd.read_csv(out)  # the finished replicates (none if the machine was very slow)
    assert res["replicate"].nunique() < 5000
    assert list(res.columns[:3]) == ["design", "replicate", "analysis"]
    assert "interrupted" in stdout
    assert os.path.exists(tmp_path / "res_summary.csv")

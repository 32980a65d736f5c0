"""Dask back end: real LocalClusters (2 worker processes), an existing scheduler, out-of-core Cox."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from imrsurv.errors import DataError
from imrsurv.models.cox import fit_cox
from imrsurv.simulate import parallel, simulate
from imrsurv.simulate.parallel import SchedulerUnavailable
from imrsurv.simulate.power_analysis import power

distributed = pytest.importorskip("distributed")
dd = pytest.importorskip("dask.dataframe")
from imrsurv.models.cox_dask import fit_cox_dask  # noqa: E402

DESIGN = {"n_sites": 30, "years": 5, "hr": [1.0, 2.0]}
ANALYSES = ["ag", "discrete"]


@pytest.fixture(scope="module")
def cluster():
    """An 'existing' cluster: a scheduler and 2 worker processes, as a user would start."""
    import logging

    lc = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, silence_logs=logging.ERROR)
    yield lc
    lc.close()


@pytest.fixture(scope="module")
def serial_run():
    return power(DESIGN, ANALYSES, n_replicates=8, seed=21, workers=1, progress=False)


def test_two_local_workers_equal_one_process(serial_run):
    """The default back end (a LocalCluster started and stopped here) gives identical frames."""
    run = power(DESIGN, ANALYSES, n_replicates=8, seed=21, workers=2, progress=False)
    assert run.backend == "dask LocalCluster" and run.workers == 2
    pd.testing.assert_frame_equal(run.results, serial_run.results, check_exact=True)
    pd.testing.assert_frame_equal(run.summary, serial_run.summary, check_exact=True)


def test_existing_scheduler_gives_the_same_results(cluster, serial_run):
    run = power(DESIGN, ANALYSES, n_replicates=8, seed=21, scheduler=cluster.scheduler_address,
                progress=False, batch_size=3)
    assert run.backend.startswith("dask scheduler") and run.workers == 2
    pd.testing.assert_frame_equal(run.results, serial_run.results, check_exact=True)


def test_unanswered_scheduler_errors_within_the_timeout():
    import socket

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    with pytest.raises(SchedulerUnavailable, match="could not connect"):
        power(DESIGN, "ag", 2, seed=1, scheduler=f"tcp://127.0.0.1:{port}", connect_timeout=3,
              progress=False)
    assert time.monotonic() - t0 < 10


def test_ctrl_c_on_the_cluster_keeps_finished_replicates(cluster, monkeypatch, serial_run):
    calls = {"n": 0}
    real = parallel._Progress.update

    def interrupt_after_two(self, k=1):
        real(self, k)
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(parallel._Progress, "update", interrupt_after_two)
    run = power(DESIGN, ANALYSES, n_replicates=8, seed=21, scheduler=cluster.scheduler_address,
                progress=False, batch_size=2)
    assert run.interrupted
    done = run.results[["design", "replicate"]].drop_duplicates()
    assert len(done) == 4  # two batches of two replicates
    # the finished replicates are exactly those of the full run
    ref = serial_run.results.merge(done, on=["design", "replicate"])
    pd.testing.assert_frame_equal(run.results.reset_index(drop=True), ref, check_exact=True)
    # the cluster is still usable (queued tasks were cancelled, not the workers)
    with distributed.Client(cluster.scheduler_address, set_as_default=False) as c:
        assert c.submit(sum, [1, 2]).result() == 3


def test_without_dask_everything_runs_in_process(monkeypatch, serial_run):
    monkeypatch.setattr(parallel, "dask_available", lambda: False)
    run = power(DESIGN, ANALYSES, n_replicates=8, seed=21, progress=False)
    assert run.backend == "this process (one worker: Dask is not installed)"
    pd.testing.assert_frame_equal(run.results, serial_run.results, check_exact=True)
    with pytest.raises(parallel.DaskNotInstalled):
        power(DESIGN, "ag", 2, seed=1, scheduler="tcp://127.0.0.1:8786", progress=False)


def test_importing_imrsurv_simulate_does_not_import_dask():
    code = ("import sys, imrsurv, imrsurv.simulate, imrsurv.simulate.power_analysis, "
            "imrsurv.simulate.cli, imrsurv.models.cox_dask\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------
# out-of-core Cox


@pytest.fixture(scope="module")
def recurrent():
    hist = simulate(150, 6, hazards={"discontinue": 0.35, "restart": 0.5}, seed=31,
                    effects={"discontinue": {"recent_leader_change": 0.7, "team_size": -0.1,
                                             "training_access": -0.5}})
    cp = hist.counting_process("pwp-tt")
    # coarse times: many tied event times, so Efron and Breslow differ
    cp["start"], cp["stop"] = cp["start"].round(1), cp["stop"].round(1)
    cp = cp[cp["stop"] > cp["start"]].reset_index(drop=True)
    cp["w"] = np.random.default_rng(0).uniform(0.5, 2.0, len(cp))
    return cp


FORMULA = "recent_leader_change + team_size + training_access"


@pytest.mark.parametrize("kw", [
    {"ties": "efron"},
    {"ties": "breslow"},
    {"ties": "efron", "strata": "episode", "weights": "w"},
])
def test_out_of_core_cox_equals_in_memory(cluster, recurrent, kw):
    ddf = dd.from_pandas(recurrent, npartitions=4)
    ref = fit_cox(recurrent, FORMULA, start="start", stop="stop", event="event", cluster="site",
                  **kw)
    with distributed.Client(cluster.scheduler_address):
        got = fit_cox_dask(ddf, FORMULA, start="start", stop="stop", event="event",
                           cluster="site", **kw)
    assert got.n_partitions == 4 and got.n == ref.n and got.n_events == ref.n_events
    assert np.abs(got.params - ref.params).max() < 1e-8
    assert np.abs(got.se_naive - ref.se_naive).max() < 1e-8
    assert np.abs(got.se - ref.se).max() < 1e-8
    assert got.loglik == pytest.approx(ref.loglik, abs=1e-8)
    assert got.loglik_null == pytest.approx(ref.loglik_null, abs=1e-8)
    assert got.iterations == ref.iterations
    assert got.n_clusters == ref.n_clusters


def test_out_of_core_cox_timefix_as_in_memory(recurrent):
    """Round-off in times (R's timefix merges them) across partitions."""
    data = recurrent.copy()
    data["stop"] = data["stop"] + np.random.default_rng(2).choice([0, 1e-12, -1e-12, 3e-10],
                                                                  len(data))
    ref = fit_cox(data, FORMULA, start="start", stop="stop", event="event", strata="episode")
    got = fit_cox_dask(dd.from_pandas(data, npartitions=3), FORMULA, start="start", stop="stop",
                       event="event", strata="episode")
    assert any("timefix" in n for n in got.notes)
    assert np.abs(got.params - ref.params).max() < 1e-8
    assert got.loglik == pytest.approx(ref.loglik, abs=1e-8)


def test_out_of_core_cox_right_censored_local_threads(recurrent):
    """No distributed Client: Dask's local threads; right-censored data (no start)."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(400, 2))
    t = rng.exponential(np.exp(-(x @ [0.5, -0.3])))
    c = rng.exponential(1.5, size=400)
    first = pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "time": np.round(np.minimum(t, c), 1) + 0.1,
                          "dead": (t <= c).astype(int)})
    ref = fit_cox(first, "a + b", stop="time", event="dead")
    got = fit_cox_dask(dd.from_pandas(first, npartitions=3), ["a", "b"], stop="time",
                       event="dead", persist=False)
    assert np.abs(got.params - ref.params).max() < 1e-8
    assert np.abs(got.se - ref.se_naive).max() < 1e-8


def test_out_of_core_cox_bad_input(recurrent):
    bad = recurrent.copy()
    bad.loc[[3, 7], "team_size"] = np.nan
    bad.loc[5, "stop"] = bad.loc[5, "start"]
    ddf = dd.from_pandas(bad, npartitions=2)
    with pytest.raises(DataError) as err:
        fit_cox_dask(ddf, FORMULA, start="start", stop="stop", event="event")
    text = str(err.value)
    assert 'missing values in column "team_size": 2 row(s)' in text
    assert "stop <= start" in text
    with pytest.raises(DataError, match="plain numeric column names"):
        fit_cox_dask(ddf, "C(episode) + team_size", start="start", stop="stop", event="event")
    with pytest.raises(DataError, match="not found"):
        fit_cox_dask(ddf, "budget", start="start", stop="stop", event="event")
    nan_only = recurrent.copy()
    nan_only.loc[[3, 7], "team_size"] = np.nan
    got = fit_cox_dask(dd.from_pandas(nan_only, npartitions=2), FORMULA, start="start",
                       stop="stop", event="event", missing="drop")
    ref = fit_cox(nan_only.dropna(subset=["team_size"]), FORMULA, start="start", stop="stop",
                  event="event")
    assert got.n_dropped == 2 and got.n == ref.n
    assert np.abs(got.params - ref.params).max() < 1e-8


def test_fit_cox_forwards_a_dask_dataframe_to_the_out_of_core_engine():
    import imrsurv as ims

    cp = ims.datasets.load_bond2014().counting_process("ag")
    formula = "team_size + training_access"
    mem = ims.fit_cox(cp, formula, start="start", stop="stop", event="event", cluster="site")
    ddf = dd.from_pandas(cp[["start", "stop", "event", "team_size", "training_access", "site"]],
                         npartitions=3)
    ooc = ims.fit_cox(ddf, formula, start="start", stop="stop", event="event", cluster="site")
    assert np.allclose(ooc.params.to_numpy(), mem.params.to_numpy(), rtol=1e-8, atol=0)
    assert np.allclose(ooc.se.to_numpy(), mem.se.to_numpy(), rtol=1e-8, atol=0)

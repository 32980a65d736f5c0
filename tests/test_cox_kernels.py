"""The compiled (numba) Cox kernels against the numpy path and R.

Large fits (``_coxcore.FAST_MIN_ROWS`` rows or more) run ``_coxkernels``; here the
threshold is lowered to 0 to force them on the R fixtures of
tests/fixtures/cox and raised out of reach to force the numpy path, and every
fitted quantity is compared between the two (to 1e-10) and with R.  Below the
threshold the numpy path runs unchanged, so small fits (power simulations) stay
bit-identical.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numba  # noqa: F401  (a core dependency: its absence is a broken install, not a skip)
import numpy as np
import pandas as pd
import pytest

from imrsurv.models import _coxcore as core
from imrsurv.models import _coxkernels as kernels
from imrsurv.models.cox import CoxResult, fit_cox

HERE = Path(__file__).parent / "fixtures" / "cox"
REF = json.loads((HERE / "coxph_reference.json").read_text())
CASES = REF["cases"]
NUMPY_ONLY = 10**15


def _data(name: str) -> pd.DataFrame:
    if name == "first":
        rec = _data("recurrent")
        return rec[rec.episode == 1]
    return pd.read_csv(HERE / f"{name}.csv")


def _fit_case(name: str, min_rows: int, monkeypatch: pytest.MonkeyPatch) -> CoxResult:
    monkeypatch.setattr(core, "FAST_MIN_ROWS", min_rows)
    s = CASES[name]["spec"]
    return fit_cox(_data(s["data"]), s["rhs"].replace("practice", "C(practice)"),
                   start=s["start"], stop=s["stop"], event=s["event"], strata=s["strata"],
                   cluster=s["cluster"], weights=s["weights"], offset=s["offset"],
                   ties=s["ties"])


def _both(name: str, monkeypatch: pytest.MonkeyPatch) -> tuple[CoxResult, CoxResult]:
    fast = _fit_case(name, 0, monkeypatch)
    slow = _fit_case(name, NUMPY_ONLY, monkeypatch)
    return fast, slow


def close(a, b, rtol: float = 1e-10, atol: float = 0.0) -> None:
    np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), rtol=rtol,
                               atol=atol)


def close_matrix(a, b, rtol: float = 1e-10) -> None:
    """Entries to ``rtol`` of the largest one (an off-diagonal near 0 has no relative digits)."""
    b = np.asarray(b, float)
    close(a, b, rtol=rtol, atol=rtol * np.abs(b).max())


def test_kernels_are_available_and_used_only_above_the_threshold() -> None:
    assert kernels.AVAILABLE
    assert core.FAST_MIN_ROWS >= 50_000
    d = _data("recurrent")
    res = fit_cox(d, "team_size", start="start", stop="stop", event="event")
    assert len(d) < core.FAST_MIN_ROWS and not core.use_kernels(res._pb)


@pytest.mark.parametrize("name", sorted(CASES))
def test_compiled_path_matches_numpy_path_and_r(name: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    fast, slow = _both(name, monkeypatch)
    monkeypatch.setattr(core, "FAST_MIN_ROWS", 0)
    assert core.use_kernels(fast._pb)
    # the index is integer bookkeeping: equal exactly
    for key in ("a", "b", "event_time", "event_stratum", "death_rows", "death_k", "pk",
                "pfrac", "pcount"):
        np.testing.assert_array_equal(getattr(fast._pb.index, key), getattr(slow._pb.index, key))
    np.testing.assert_array_equal(fast._pb.start, slow._pb.start)
    np.testing.assert_array_equal(fast._pb.stop, slow._pb.stop)
    assert fast._pb.n_time_merged == slow._pb.n_time_merged
    close(fast.params, slow.params)
    close_matrix(fast.cov_naive, slow.cov_naive)
    close_matrix(fast.cov, slow.cov)
    close([fast.loglik_null, fast.loglik], [slow.loglik_null, slow.loglik])
    assert fast.iterations == slow.iterations
    close(fast.tests["statistic"], slow.tests["statistic"])
    st_f, st_s = fast._nr.state, slow._nr.state
    for key in ("s0", "s1", "den", "abar", "hj", "c1", "c2", "risk_u", "eta"):
        close(getattr(st_f, key), getattr(st_s, key), atol=1e-300)
    scale = np.abs(slow.residuals("score").to_numpy()).max()
    close(fast.residuals("score"), slow.residuals("score"), atol=1e-12 * scale)
    close(fast.residuals("martingale"), slow.residuals("martingale"), atol=1e-12)
    close(fast.residuals("schoenfeld"), slow.residuals("schoenfeld"), atol=1e-12)
    bf, bs = fast.baseline_cumulative_hazard, slow.baseline_cumulative_hazard
    close(bf["cumhaz"], bs["cumhaz"])
    # and R, as tests/test_cox_parity.py checks the numpy path
    c = CASES[name]
    close(fast.params, c["coef"], rtol=1e-6)
    close_matrix(fast.cov, c["var"], rtol=1e-6)
    close([fast.loglik_null, fast.loglik], c["loglik"], rtol=1e-6)


def _large(n: int, seed: int) -> pd.DataFrame:
    """Counting-process rows with tied (rounded) times, weights, an offset and 3 strata."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    start = np.round(rng.uniform(0, 5, n), 2)
    stop = start + np.round(rng.exponential(1 / (0.4 * np.exp(x @ [0.5, -0.3, 0.2])), n)
                            + 0.01, 2)
    return pd.DataFrame({"start": start, "stop": stop, "event": rng.random(n) < 0.7,
                         "x1": x[:, 0], "x2": x[:, 1], "x3": x[:, 2],
                         "w": rng.uniform(0.5, 2, n), "off": rng.normal(0, 0.1, n),
                         "s": rng.integers(0, 3, n), "id": rng.integers(0, n // 8, n)})


@pytest.mark.parametrize("kw", [dict(ties="efron"),
                                dict(ties="breslow", strata="s", weights="w", offset="off")])
def test_compiled_path_above_the_threshold_matches_numpy(kw: dict,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    n = core.FAST_MIN_ROWS + 5_000
    d = _large(n, seed=13)
    fits = []
    for min_rows in (core.FAST_MIN_ROWS, NUMPY_ONLY):
        monkeypatch.setattr(core, "FAST_MIN_ROWS", min_rows)
        fits.append(fit_cox(d, "x1 + x2 + x3", start="start", stop="stop", event="event",
                            cluster="id", **kw))
    fast, slow = fits
    assert fast._pb.index.n_extra > 0 or kw["ties"] == "breslow"   # tied times: Efron terms
    close(fast.params, slow.params)
    close_matrix(fast.cov_naive, slow.cov_naive)
    close_matrix(fast.cov, slow.cov)          # robust: the compiled score residuals
    close(fast.loglik, slow.loglik)


def test_time_fix_merges_and_refuses_zero_length_as_numpy(monkeypatch) -> None:
    d = _large(2_000, seed=5)
    d.loc[::7, "stop"] += 1e-10        # near-equal to other stop times: merged
    for min_rows in (0, NUMPY_ONLY):
        monkeypatch.setattr(core, "FAST_MIN_ROWS", min_rows)
        res = fit_cox(d, "x1 + x2", start="start", stop="stop", event="event")
        assert res._pb.n_time_merged > 0
        if min_rows == 0:
            fast = res
    close(fast.params, res.params)
    np.testing.assert_array_equal(fast._pb.stop, res._pb.stop)
    bad = d.copy()
    bad.loc[3, "stop"] = bad.loc[3, "start"] + 1e-12
    for min_rows in (0, NUMPY_ONLY):
        monkeypatch.setattr(core, "FAST_MIN_ROWS", min_rows)
        with pytest.raises(Exception, match="equal to within 1.5e-8"):
            fit_cox(bad, "x1", start="start", stop="stop", event="event")


_CHILD = textwrap.dedent("""
    import sys, json
    {setup}
    import numpy as np, pandas as pd
    from imrsurv.models import _coxcore as core, _coxkernels as kernels
    from imrsurv.models.cox import fit_cox
    core.FAST_MIN_ROWS = 0
    rng = np.random.default_rng(1)
    d = pd.DataFrame({{"t": rng.exponential(size=300), "e": rng.integers(0, 2, 300),
                      "x": rng.normal(size=300)}})
    res = fit_cox(d, "x", stop="t", event="e")
    print(json.dumps(dict(available=kernels.AVAILABLE, used=core.use_kernels(res._pb),
                          coef=float(res.params.iloc[0]))))
""")


def _child(setup: str, env: dict[str, str] | None = None) -> dict:
    out = subprocess.run([sys.executable, "-c", _CHILD.format(setup=setup)], check=True,
                         capture_output=True, text=True, env={**os.environ, **(env or {})})
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_numpy_path_when_numba_is_missing_or_switched_off() -> None:
    on = _child("")
    assert on["available"] and on["used"]
    missing = _child("sys.modules['numba'] = None   # import numba raises ImportError")
    off = _child("", env={"IMRSURV_NO_NUMBA": "1"})
    for r in (missing, off):
        assert not r["available"] and not r["used"]
        assert r["coef"] == pytest.approx(on["coef"], rel=1e-10)


def test_jit_falls_back_without_a_writable_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    calls, real = [], numba.njit

    def njit(**kw):
        calls.append(kw["cache"])
        if kw["cache"]:
            raise RuntimeError("cannot cache function: no locator available")
        return real(**kw)

    monkeypatch.setattr(kernels.numba, "njit", njit)
    f = kernels._jit(lambda v: v + 1)
    assert calls == [True, False] and f(1) == 2


def test_workspace_reuses_a_buffer_only_when_nothing_holds_it() -> None:
    ws = kernels.Workspace()
    a = ws.get("x", (3,))
    a[:] = 1.0
    b = ws.get("x", (3,))
    assert b is not a                      # a (a live state's array) is never overwritten
    view = b[1:]
    del b
    c = ws.get("x", (3,))
    assert c is not view.base              # a live view keeps its buffer too
    del view
    cid = id(c)
    del c
    d = ws.get("x", (3,), zero=True)
    assert id(d) == cid and not d.any()    # free: refilled (zeroed when asked)
    assert ws.get("x", (4,)).shape == (4,)


@pytest.mark.parametrize("kw", [dict(ties="efron"),
                                dict(ties="breslow", strata="s", weights="w", offset="off")])
def test_one_thread_and_two_give_the_same_bits(kw: dict,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The halves of each pass are fixed, so the thread count cannot change a result."""
    d = _large(core.FAST_MIN_ROWS + 5_000, seed=17)
    fits = []
    for threads in ("1", "2"):
        monkeypatch.setenv("IMRSURV_THREADS", threads)
        assert kernels._threads() == int(threads)
        fits.append(fit_cox(d, "x1 + x2 + x3", start="start", stop="stop", event="event",
                            cluster="id", **kw))
    one, two = fits
    assert core.use_kernels(one._pb)
    for a, b in [(one.params, two.params), (one.cov, two.cov), (one.cov_naive, two.cov_naive),
                 (one.loglik, two.loglik), (one._pb.index.a, two._pb.index.a),
                 (one._pb.index.b, two._pb.index.b),
                 (one._pb.index.death_rows, two._pb.index.death_rows)]:
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_halves_run_both_calls_and_propagate_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMRSURV_THREADS", "2")
    out = np.zeros(4)
    kernels._halves((out.__setitem__, (slice(0, 2), 1.0)), (out.__setitem__, (slice(2, 4), 2.0)))
    assert out.tolist() == [1.0, 1.0, 2.0, 2.0]

    def fail() -> None:
        raise RuntimeError("second half")

    with pytest.raises(RuntimeError, match="second half"):
        kernels._halves((out.fill, (0.0,)), (fail, ()))


def test_sorted_endpoints_equal_numpy_sort_with_ties_infinities_and_nan() -> None:
    rng = np.random.default_rng(3)
    t = np.round(rng.uniform(0, 10, 20_001), 1)
    t[::97] = np.inf
    t[5::101] = -np.inf
    t[7::113] = np.nan
    order, ts = kernels.sorted_endpoints(t)
    np.testing.assert_array_equal(ts, np.sort(t))
    np.testing.assert_array_equal(t[order], ts)
    assert np.array_equal(np.sort(order), np.arange(t.size))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
def test_a_forked_child_starts_its_own_worker_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """A child forked after a large fit (report lanes, Dask workers) inherits the executor
    but not its thread; it must not wait on it."""
    import signal
    import time

    monkeypatch.setenv("IMRSURV_THREADS", "2")
    d = _large(core.FAST_MIN_ROWS + 5_000, seed=19)
    kw = dict(start="start", stop="stop", event="event")
    before = fit_cox(d, "x1 + x2 + x3", **kw).params.to_numpy()
    assert kernels._POOL   # the parent's worker exists
    pid = os.fork()
    if pid == 0:
        signal.alarm(60)   # a hang kills the child: the parent sees the signal
        try:
            same = np.array_equal(fit_cox(d, "x1 + x2 + x3", **kw).params.to_numpy(), before)
        finally:
            os._exit(0 if same else 3)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("the forked child hung on the parent's worker thread")
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status

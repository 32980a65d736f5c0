"""A Cox fit that would exceed the machine's memory is refused early, with the estimate."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import imrsurv as ims
from imrsurv.models import _coxcore as core


def _data(n: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    return pd.DataFrame({"t": rng.exponential(size=n), "e": rng.integers(0, 2, n),
                         "x": rng.normal(size=n), "z": rng.normal(size=n)})


def test_estimate_grows_with_rows_and_columns() -> None:
    one = core.memory_estimate(1_000_000, 5, compiled=False)
    # benchmark: 526 MB traced at 1M x 5; peak RSS grew by 453 MiB (numpy path, cluster)
    assert 453 * 2**20 < one < 900 * 2**20
    assert core.memory_estimate(10_000_000, 5, compiled=False) == pytest.approx(10 * one,
                                                                                rel=1e-6)
    assert core.memory_estimate(1_000_000, 10, compiled=False) > one
    # compiled kernels: peak RSS growth during a fit with cluster was 363 MiB at 1M x 5
    # and 3.41 GiB at 10M x 5 (benchmarks/RESULTS.md, "Issue 13: compiled kernel")
    fast = core.memory_estimate(1_000_000, 5, compiled=True)
    assert 363 * 2**20 <= fast < 500 * 2**20
    assert core.memory_estimate(10_000_000, 5, compiled=True) >= 3.41 * 2**30
    assert core.memory_estimate(1_000_000, 10, compiled=True) > fast
    have = core.available_memory()
    assert have is None or have > 0


def test_estimate_follows_the_path_the_fit_takes(monkeypatch: pytest.MonkeyPatch) -> None:
    small = core.FAST_MIN_ROWS - 1
    assert core.memory_estimate(small, 5) == core.memory_estimate(small, 5, compiled=False)
    monkeypatch.setattr(core, "_kernels", lambda: None)       # numba missing or switched off
    big = core.FAST_MIN_ROWS * 10
    assert core.memory_estimate(big, 5) == core.memory_estimate(big, 5, compiled=False)
    monkeypatch.setattr(core, "_kernels", lambda: object())
    assert core.memory_estimate(big, 5) == core.memory_estimate(big, 5, compiled=True)
    assert core.memory_estimate(big, core.FAST_MAX_COLS + 1) == core.memory_estimate(
        big, core.FAST_MAX_COLS + 1, compiled=False)


def test_fit_refused_when_memory_is_short(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core, "available_memory", lambda: 10_000)
    with pytest.raises(ims.DataError, match=r"400 rows x 2 covariates needs about .* GiB"):
        ims.fit_cox(_data(), "x + z", stop="t", event="e")
    monkeypatch.setattr(core, "available_memory", lambda: None)  # unknown: no refusal
    res = ims.fit_cox(_data(), "x + z", stop="t", event="e")
    assert np.isfinite(res.params).all()

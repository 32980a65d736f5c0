"""The cached numeric-sum design equals formulaic's, and non-numeric formulas never use it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from imrsurv.errors import DataError
from imrsurv.models import design as dm


def _frame(seed: int, n: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"a": rng.normal(size=n) * 1e3, "b": rng.integers(0, 9, n),
                         "c": rng.integers(0, 2, n).astype(np.int8),
                         "g": rng.choice(["x", "y", "z"], n)})


@pytest.mark.parametrize("formula", ["a + b + c", "c + a", "b + a"])
def test_cached_design_equals_formulaic(formula: str, monkeypatch: pytest.MonkeyPatch) -> None:
    dm._NUMERIC_SPECS.clear()
    first = dm.build_design(_frame(0), formula)
    assert len(dm._NUMERIC_SPECS) == 1
    for seed in range(1, 8):
        df = _frame(seed)
        fast = dm.build_design(df, formula)
        monkeypatch.setattr(dm, "_NUMERIC_SPECS", {})
        slow = dm.build_design(df, formula)
        monkeypatch.undo()
        assert fast.matrix.dtype == slow.matrix.dtype
        assert fast.matrix.flags["F_CONTIGUOUS"] == slow.matrix.flags["F_CONTIGUOUS"]
        assert fast.matrix.flags["C_CONTIGUOUS"] == slow.matrix.flags["C_CONTIGUOUS"]
        w = np.linspace(0.5, 2.0, len(df))  # a BLAS sum depends on the layout too
        assert np.array_equal(w @ fast.matrix, w @ slow.matrix)
        np.testing.assert_array_equal(fast.matrix, slow.matrix)
        assert fast.columns == slow.columns == first.columns
        assert fast.terms == slow.terms
        assert fast.columns_read == slow.columns_read
        np.testing.assert_array_equal(fast.transform(df), slow.matrix)


def test_factor_and_missing_values_do_not_take_the_cache() -> None:
    dm._NUMERIC_SPECS.clear()
    dm.build_design(_frame(0), "a + C(g)")
    assert not dm._NUMERIC_SPECS
    dm.build_design(_frame(0), "a + b")
    df = _frame(1)
    df.loc[3, "a"] = np.nan
    with pytest.raises(DataError, match="design matrix"):
        dm.build_design(df, "a + b")
    const = _frame(2).assign(b=1)
    with pytest.raises(DataError, match='column "b" is constant'):
        dm.build_design(const, "a + b")


def test_large_frame_learns_its_coding_from_a_head_slice(monkeypatch: pytest.MonkeyPatch) -> None:
    """Above _HEAD_ROWS rows formulaic codes only the head; the matrix, terms and the rank
    check (in blocks above _BLOCK_ROWS) are those of the full formulaic build."""
    monkeypatch.setattr(dm, "_BLOCK_ROWS", 1_000)  # exercise the blocked rank check
    df = _frame(3, n=7_500)
    dm._NUMERIC_SPECS.clear()
    calls = []
    real = dm.model_matrix
    monkeypatch.setattr(dm, "model_matrix", lambda f, d, **kw: calls.append(len(d)) or
                        real(f, d, **kw))
    fast = dm.build_design(df, "a + b + c")
    assert calls == [dm._HEAD_ROWS]
    monkeypatch.setattr(dm, "_NUMERIC_SPECS", {})
    monkeypatch.setattr(dm, "_HEAD_ROWS", 10**9)  # the full formulaic build
    slow = dm.build_design(df, "a + b + c")
    assert calls[-1] == len(df)
    np.testing.assert_array_equal(fast.matrix, slow.matrix)
    assert fast.terms == slow.terms and fast.columns == slow.columns
    # a dependent column is still found by the blocked check
    dep = df.assign(d=2 * df["a"] - df["b"])
    with pytest.raises(DataError, match='"d" is a linear combination'):
        dm.build_design(dep, "a + b + d")
    # a non-finite value after the head sends the build to formulaic over every row (the
    # callers report such values first: tests/test_validation.py)
    monkeypatch.setattr(dm, "_HEAD_ROWS", 2_000)
    bad = df.astype({"a": float})
    bad.loc[5_000, "a"] = np.inf
    with pytest.raises(DataError, match='design column "a" is infinite in rows 5000'):
        dm.build_design(bad, "a + b")
    assert calls[-1] == len(bad)

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

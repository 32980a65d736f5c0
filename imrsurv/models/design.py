"""Right-hand-side formula -> design matrix for survival models, coded like R.

R's ``coxph`` builds ``model.matrix`` *with* an intercept and then drops it, so
factors keep treatment contrasts (first level is the reference) and a factor
interacting with a numeric variable whose main effect is absent gets one column
per level.  formulaic follows the same rules, so we always build with an
intercept and drop that column.

Formulas are user text: :mod:`imrsurv.formula` parses and checks them first,
and formulaic only ever sees the canonical string re-generated from the checked
tree, evaluated with :data:`~imrsurv.formula.SAFE_CONTEXT` (never the caller's
frame), after every column it reads was found in the data.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd
from formulaic import Formula, ModelMatrix, ModelSpec, model_matrix

from imrsurv.errors import DataError
from imrsurv.formula import SAFE_CONTEXT, ParsedFormula, parse_formula

__all__ = ["Design", "build_design", "check_columns", "required_columns", "row_labels",
           "safe_model_matrix"]


@dataclass(frozen=True)
class Design:
    """Numeric design matrix plus what is needed to rebuild it for new data.

    ``terms`` maps each formula term (e.g. ``"C(practice)"``) to the positions
    of its columns; multi-column terms are tested jointly by
    :meth:`CoxResult.check_proportional_hazards`.
    """

    matrix: np.ndarray
    columns: list[str]
    terms: dict[str, list[int]]
    spec: ModelSpec
    columns_read: tuple[str, ...] = ()

    def transform(self, data: pd.DataFrame) -> np.ndarray:
        """Design matrix of new data with the same coding (levels, contrasts)."""
        missing = [c for c in self.columns_read if c not in data.columns]
        if missing:
            raise DataError([f'new data lacks column "{c}"' for c in missing],
                            title="invalid new data")
        try:
            mm = self.spec.get_model_matrix(data, output="numpy", context=SAFE_CONTEXT)
        except Exception as exc:  # unseen factor level, bad type, ...
            raise DataError([f"cannot code the new data: {exc}"], title="invalid new data"
                            ) from None
        mm = np.asarray(mm, dtype=float)
        names = list(self.spec.column_names)
        return mm[:, [i for i, c in enumerate(names) if c != "Intercept"]]


def _parse(formula: str) -> tuple[ParsedFormula, Formula]:
    """Check ``formula`` with :func:`imrsurv.formula.parse_formula` (never evaluating
    it) and hand formulaic only the canonical text re-generated from the checked tree."""
    parsed = parse_formula(formula)
    return parsed, _formulaic(parsed.canonical)


@functools.lru_cache(maxsize=256)
def _formulaic(canonical: str) -> Formula:
    """formulaic's parse of a canonical formula (kept: parsing costs more than a small fit)."""
    # "+ 1" restores the intercept if the user removed it; R ignores "- 1" too
    return Formula(canonical + " + 1")


def check_columns(formula: str, data: pd.DataFrame, what: str = "data") -> None:
    """:class:`DataError` naming every column the formula reads that ``data`` lacks."""
    parsed = parse_formula(formula, allow_response=True)
    missing = [c for c in parsed.columns + ((parsed.response,) if parsed.response else ())
               if c not in data.columns]
    if missing:
        have = ", ".join(f'"{c}"' for c in data.columns[:30])
        raise DataError([f'formula "{formula}" names column "{c}", which is not in the {what} '
                         f"(columns: {have})" for c in missing], title="invalid formula")


def safe_model_matrix(formula: str, data: pd.DataFrame, **kwargs) -> ModelMatrix:
    """formulaic's ``model_matrix`` of the checked, canonical formula, with only
    :data:`imrsurv.formula.SAFE_CONTEXT` to evaluate in (no caller frame)."""
    check_columns(formula, data)
    parsed = parse_formula(formula, allow_response=True)
    try:  # the response, if any, is the caller's business: only the right-hand side here
        return model_matrix(parsed.canonical, data, context=SAFE_CONTEXT, **kwargs)
    except Exception as exc:  # formulaic raises several error types for bad data
        raise DataError([f'cannot build the design matrix of "{formula}": {exc}'],
                        title="invalid formula") from None


def required_columns(formula: str) -> list[str]:
    """Data columns the formula reads, sorted."""
    return sorted(parse_formula(formula).columns)


def row_labels(index: pd.Index, mask: np.ndarray, limit: int = 20) -> str:
    """``"3, 7, 9"`` for the first ``limit`` flagged row labels, then ``"and N more"``."""
    labels = [str(x) for x in index[mask][:limit]]
    extra = int(mask.sum()) - len(labels)
    text = ", ".join(labels)
    return f"{text} and {extra} more" if extra > 0 else text


def build_design(data: pd.DataFrame, formula: str) -> Design:
    """Build the design matrix; raise :class:`DataError` for unusable columns.

    The caller has already removed or reported missing values.  Constant
    columns and linearly dependent columns (R would give them ``NA``
    coefficients) are reported by name.
    """
    checked, parsed = _parse(formula)
    check_columns(formula, data)
    fast = _numeric_sum(checked, data)
    if fast is not None and fast not in _NUMERIC_SPECS and len(data) > _HEAD_ROWS:
        _learn_numeric_spec(parsed, checked, data.iloc[:_HEAD_ROWS], fast)
    if fast is not None and fast in _NUMERIC_SPECS:
        design = _numeric_design(data, *_NUMERIC_SPECS[fast])
        if design is not None:
            return design
    try:
        mm = model_matrix(parsed, data, output="numpy", na_action="raise",
                          context=SAFE_CONTEXT)
    except Exception as exc:
        raise DataError([f'cannot build the design matrix of "{formula}": {exc}'],
                        title="invalid formula") from exc
    spec = mm.model_spec
    names = list(spec.column_names)
    keep = [i for i, c in enumerate(names) if c != "Intercept"]
    cols = [names[i] for i in keep]
    if not cols:
        raise DataError([f'formula "{formula}" has no covariates'], title="invalid formula")
    x = np.asarray(mm, dtype=float)[:, keep]
    del mm
    terms: dict[str, list[int]] = {}
    for term, idx in spec.term_indices.items():
        name = str(term)
        if name == "1":
            continue
        terms[name] = [cols.index(names[i]) for i in idx]
    infinite = ~np.isfinite(x)
    if infinite.any():
        raise DataError([f'design column "{cols[j]}" is infinite in rows '
                         f"{row_labels(data.index, infinite[:, j])}"
                         for j in np.flatnonzero(infinite.any(axis=0))],
                        title="covariates are not finite")
    _check_rank(x, cols)
    if fast is not None and cols == list(checked.columns) and len(_NUMERIC_SPECS) < 256:
        _NUMERIC_SPECS[fast] = (spec, cols, terms)
    return Design(matrix=x, columns=cols, terms=terms, spec=spec,
                  columns_read=parse_formula(formula).columns)


# Formulas that are a sum of plain numeric columns (e.g. a power analysis fitting the same
# model to thousands of simulated cohorts): their coding does not depend on the data, so the
# formulaic spec of the first build is kept and the matrix is the columns as floats, the
# values formulaic gives (tests/test_design_fast.py).
_NUMERIC_SPECS: dict[tuple, tuple[ModelSpec, list[str], dict[str, list[int]]]] = {}
# a numeric sum's coding is learnt from this many leading rows of a larger frame
_HEAD_ROWS = 2_000
# _check_rank sums blocks of this many rows above it (below: one pass, as always)
_BLOCK_ROWS = 200_000


def _learn_numeric_spec(parsed: Formula, checked: ParsedFormula, head: pd.DataFrame,
                        key: tuple) -> None:
    """Cache formulaic's coding of a numeric sum from a head slice of the data (the coding
    of plain numeric columns does not depend on their values); on any failure leave it to
    the full build, which reports the problem."""
    try:
        spec = model_matrix(parsed, head, output="numpy", na_action="raise",
                            context=SAFE_CONTEXT).model_spec
    except Exception:  # noqa: BLE001 - the full build below reports it
        return
    names = list(spec.column_names)
    cols = [c for c in names if c != "Intercept"]
    if cols != list(checked.columns) or len(_NUMERIC_SPECS) >= 256:
        return
    terms = {str(t): [cols.index(names[i]) for i in idx]
             for t, idx in spec.term_indices.items() if str(t) != "1"}
    _NUMERIC_SPECS[key] = (spec, cols, terms)


def _numeric_sum(checked: ParsedFormula, data: pd.DataFrame) -> tuple | None:
    """Cache key when ``checked`` is ``a + b + ...`` over distinct numeric (non-bool)
    columns of ``data``, else None."""
    cols = checked.columns
    if (not cols or len(set(cols)) != len(cols) or checked.canonical != " + ".join(cols)
            or not all(c.isidentifier() for c in cols)):
        return None
    dtypes = []
    for c in cols:
        dt = data[c].dtype
        if not (isinstance(dt, np.dtype) and dt.kind in "iuf"):
            return None
        dtypes.append(dt.str)
    return (checked.canonical, tuple(dtypes))


def _numeric_design(data: pd.DataFrame, spec: ModelSpec, cols: list[str],
                    terms: dict[str, list[int]]) -> Design | None:
    """The cached coding applied to ``data``; None (use formulaic, which reports them)
    when a value is missing or infinite."""
    # column-major, as formulaic returns it: BLAS sums (the centring means) depend on layout
    x = np.empty((len(data), len(cols)), order="F")
    for j, c in enumerate(cols):
        x[:, j] = data[c].to_numpy(dtype=float)
        if not np.isfinite(x[:, j]).all():
            return None
    _check_rank(x, cols)
    return Design(matrix=x, columns=list(cols), terms={k: list(v) for k, v in terms.items()},
                  spec=spec, columns_read=tuple(cols))


def _check_rank(x: np.ndarray, cols: list[str]) -> None:
    """Constant columns and exact collinearity, from the correlation matrix.

    Columns are taken in order; a column whose residual variance, after
    regressing it on the accepted columns before it, is below 1e-10 of its
    variance is reported with the columns it depends on.  Works on the
    p x p correlation matrix, so it costs one pass over the data.
    """
    problems = []
    mean = x.mean(axis=0)
    if x.shape[0] <= _BLOCK_ROWS:
        xc = x - mean
        cov = xc.T @ xc / max(x.shape[0], 1)
        scale = np.maximum(np.abs(x).max(axis=0), 1e-300)
    else:  # large data: no n x p temporaries (their fresh memory costs more than the sums)
        cov = np.zeros((x.shape[1], x.shape[1]))
        for s in range(0, x.shape[0], _BLOCK_ROWS):
            xc = x[s: s + _BLOCK_ROWS] - mean
            cov += xc.T @ xc
        cov /= x.shape[0]
        scale = np.maximum(np.maximum(x.max(axis=0), -x.min(axis=0)), 1e-300)
    var = np.diag(cov).copy()
    const = np.sqrt(np.maximum(var, 0)) <= 1e-12 * scale
    for j in np.flatnonzero(const):
        problems.append(f'column "{cols[j]}" is constant (value {x[0, j]:g}) and cannot '
                        "be estimated in a Cox model (the baseline hazard absorbs it)")
    sd = np.sqrt(np.where(const, 1.0, var))
    corr = cov / np.outer(sd, sd)
    accepted: list[int] = []
    for j in np.flatnonzero(~const):
        if accepted:
            coef = np.linalg.solve(corr[np.ix_(accepted, accepted)], corr[accepted, j])
            resid = corr[j, j] - corr[j, accepted] @ coef
            if resid < 1e-10:
                big = np.abs(coef) > 1e-6 * np.abs(coef).max()
                dep = [cols[k] for k, keep in zip(accepted, big, strict=True) if keep]
                problems.append(f'column "{cols[j]}" is a linear combination of '
                                f"{', '.join(repr(c) for c in dep)}; drop one of them")
                continue
        accepted.append(int(j))
    if problems:
        raise DataError(problems, title="covariates cannot all be estimated")

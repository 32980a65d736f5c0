"""Right-hand-side formula -> design matrix for survival models, coded like R.

R's ``coxph`` builds ``model.matrix`` *with* an intercept and then drops it, so
factors keep treatment contrasts (first level is the reference) and a factor
interacting with a numeric variable whose main effect is absent gets one column
per level.  formulaic follows the same rules, so we always build with an
intercept and drop that column.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from formulaic import Formula, ModelSpec, model_matrix

from imrsurv.errors import DataError

__all__ = ["Design", "build_design", "required_columns", "row_labels"]


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

    def transform(self, data: pd.DataFrame) -> np.ndarray:
        """Design matrix of new data with the same coding (levels, contrasts)."""
        mm = np.asarray(self.spec.get_model_matrix(data, output="numpy"), dtype=float)
        names = list(self.spec.column_names)
        return mm[:, [i for i, c in enumerate(names) if c != "Intercept"]]


def _rhs(formula: str) -> str:
    text = formula.strip()
    if "~" in text:
        lhs, _, rhs = text.partition("~")
        if lhs.strip():
            raise DataError([f'formula "{formula}" has a left-hand side; give only the '
                             "covariates (the right-hand side) and pass the time and event "
                             "columns as start=, stop=, event="], title="invalid formula")
        text = rhs.strip()
    if not text:
        raise DataError(["formula is empty"], title="invalid formula")
    return text


def _parse(formula: str) -> Formula:
    try:
        # "+ 1" restores the intercept if the user removed it; R ignores "- 1" too
        return Formula(_rhs(formula) + " + 1")
    except DataError:
        raise
    except Exception as exc:  # formulaic raises several parser error types
        raise DataError([f'cannot parse formula "{formula}": {exc}'],
                        title="invalid formula") from exc


def required_columns(formula: str) -> list[str]:
    """Data columns the formula reads, sorted."""
    return sorted(str(v) for v in _parse(formula).required_variables)


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
    parsed = _parse(formula)
    try:
        mm = model_matrix(parsed, data, output="numpy", na_action="raise")
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
    _check_rank(x, cols)
    return Design(matrix=x, columns=cols, terms=terms, spec=spec)


def _check_rank(x: np.ndarray, cols: list[str]) -> None:
    """Constant columns and exact collinearity, from the correlation matrix.

    Columns are taken in order; a column whose residual variance, after
    regressing it on the accepted columns before it, is below 1e-10 of its
    variance is reported with the columns it depends on.  Works on the
    p x p correlation matrix, so it costs one pass over the data.
    """
    problems = []
    mean = x.mean(axis=0)
    xc = x - mean
    cov = xc.T @ xc / max(x.shape[0], 1)
    var = np.diag(cov).copy()
    scale = np.maximum(np.abs(x).max(axis=0), 1e-300)
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

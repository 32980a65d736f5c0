"""Input checking for the Cox fits: columns, missing values, survival arrays, strata.

:func:`prepare` turns a frame, a formula and the column roles into the engine's
sorted :class:`~._coxcore.CoxProblem`, raising :class:`~imrsurv.errors.DataError`
that names rows and columns; :func:`~.cox.fit_cox`, the frailty fit and the
Fine-Gray fit share it (here, so that none of them imports another's module).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from imrsurv.errors import DataError
from imrsurv.models import _coxcore as core
from imrsurv.models.design import Design, build_design, required_columns, row_labels

__all__ = ["Prepared", "prepare", "TIES"]

TIES = ("efron", "breslow")


# ---------------------------------------------------------------------------
# Input checking


def _as_list(x: str | Sequence[str] | None) -> list[str]:
    if x is None:
        return []
    return [x] if isinstance(x, str) else list(x)


def _check_columns(data: pd.DataFrame, formula_cols: list[str], roles: dict[str, list[str]]
                   ) -> None:
    problems = []
    for col in formula_cols:
        if col not in data.columns:
            problems.append(f'formula names column "{col}", which is not in the data')
    for role, cols in roles.items():
        for col in cols:
            if col not in data.columns:
                problems.append(f'{role}="{col}" is not a column of the data')
    if problems:
        problems.append(f"available columns: {', '.join(map(str, data.columns))}")
        raise DataError(problems, title="columns not found")


def _handle_missing(frame: pd.DataFrame, missing: str) -> tuple[pd.DataFrame, int, list[str]]:
    """Raise on missing values (naming rows) or drop them and say how many."""
    miss = frame.isna()
    bad = miss.any(axis=1).to_numpy()
    if not bad.any():
        return frame, 0, []
    per_col = [(c, miss[c].to_numpy()) for c in frame.columns if miss[c].any()]
    if missing == "raise":
        problems = [f'column "{c}": missing value in {int(m.sum())} row'
                    f'{"s" if m.sum() != 1 else ""} ({row_labels(frame.index, m)})'
                    for c, m in per_col]
        problems.append('pass missing="drop" to leave these rows out (the count is reported)')
        raise DataError(problems, title="missing values")
    counts = ", ".join(f"{c} ({int(m.sum())})" for c, m in per_col)
    note = (f"{int(bad.sum())} of {len(frame)} rows left out for missing values in: {counts}")
    return frame.loc[~bad], int(bad.sum()), [note]


def _numeric(frame: pd.DataFrame, col: str, role: str, problems: list[str]) -> np.ndarray:
    s = frame[col]
    if pd.api.types.is_bool_dtype(s):
        return s.to_numpy(dtype=float)
    if not pd.api.types.is_numeric_dtype(s):
        problems.append(f'{role} column "{col}" must be numeric (found {s.dtype})')
        return np.zeros(len(s))
    v = s.to_numpy(dtype=float)
    inf = ~np.isfinite(v)
    if inf.any():
        problems.append(f'{role} column "{col}" is infinite in rows '
                        f"{row_labels(frame.index, inf)}")
    return v


def _survival_arrays(frame: pd.DataFrame, start: str | None, stop: str, event: str,
                     weights: str | None, offset: str | None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    problems: list[str] = []
    n = len(frame)
    tstop = _numeric(frame, stop, "stop", problems)
    tstart = _numeric(frame, start, "start", problems) if start else np.full(n, -np.inf)
    ev = _numeric(frame, event, "event", problems)
    badev = ~np.isin(ev, (0.0, 1.0))
    if badev.any():
        vals = ", ".join(map(str, pd.unique(frame[event][badev])[:5]))
        problems.append(f'event column "{event}" must be 0/1 (or True/False); found {vals} '
                        f"in rows {row_labels(frame.index, badev)}")
    if start:
        order = tstop <= tstart
        if order.any():
            problems.append(f'stop ("{stop}") <= start ("{start}") in rows '
                            f"{row_labels(frame.index, order)}; every interval needs "
                            "start < stop")
    w = np.ones(n)
    if weights:
        w = _numeric(frame, weights, "weights", problems)
        nonpos = w <= 0
        if nonpos.any():
            problems.append(f'weights column "{weights}" must be > 0 (case weights, as R); '
                            f"rows {row_labels(frame.index, nonpos)} are <= 0")
    off = _numeric(frame, offset, "offset", problems) if offset else np.zeros(n)
    if not problems and not (ev == 1).any():
        problems.append(f'event column "{event}" has no events (all 0): a Cox model needs '
                        "at least one event")
    if problems:
        raise DataError(problems, title="invalid survival data")
    return tstart, tstop, ev.astype(bool), w, off


def _strata_codes(frame: pd.DataFrame, strata: list[str]) -> tuple[np.ndarray, list[str]]:
    if not strata:
        return np.zeros(len(frame), np.int64), []
    grouped = frame.groupby(strata, sort=True, observed=True)
    codes = grouped.ngroup().to_numpy(np.int64)
    labels = []
    for key in grouped.groups:
        key = key if isinstance(key, tuple) else (key,)
        labels.append(", ".join(f"{c}={_fmt_level(v)}" for c, v in zip(strata, key,
                                                                     strict=True)))
    return codes, labels


def _fmt_level(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


@dataclasses.dataclass
class Prepared:
    """Checked rows, design matrix and the engine's sorted problem, ready to fit."""

    frame: pd.DataFrame
    design: Design
    problem: core.CoxProblem
    notes: list[str]
    n_dropped: int
    strata_cols: list[str]
    strata_labels: list[str]


def prepare(data: pd.DataFrame, formula: str, *, start: str | None, stop: str, event: str,
            strata: str | Sequence[str] | None, ties: str, weights: str | None,
            offset: str | None, missing: str, timefix: bool,
            grouping: dict[str, list[str]]) -> Prepared:
    """Check arguments and columns, handle missing values and build the Cox problem.

    ``grouping`` names the extra columns a fit needs (``cluster`` for
    :func:`fit_cox`, ``frailty`` for the frailty fit). Every problem is a
    :class:`DataError` naming rows or columns.
    """
    if not isinstance(data, pd.DataFrame):
        raise DataError([f"data must be a pandas DataFrame, not {type(data).__name__}"])
    if ties not in TIES:
        raise DataError([f'ties must be "efron" or "breslow", not "{ties}"'],
                        title="invalid argument")
    if missing not in ("raise", "drop"):
        raise DataError([f'missing must be "raise" or "drop", not "{missing}"'],
                        title="invalid argument")
    strata_cols = _as_list(strata)
    fcols = required_columns(formula)
    roles = {"stop": [stop], "event": [event], "start": _as_list(start), **grouping,
             "strata": strata_cols, "weights": _as_list(weights), "offset": _as_list(offset)}
    _check_columns(data, fcols, roles)
    used = list(dict.fromkeys(fcols + [c for cols in roles.values() for c in cols]))
    frame, n_dropped, notes = _handle_missing(data[used], missing)
    tstart, tstop, ev, w, off = _survival_arrays(frame, start, stop, event, weights, offset)
    design = build_design(frame, formula)
    too_big = core.memory_problem(len(frame), design.matrix.shape[1])
    if too_big:  # refuse before the engine allocates, rather than be killed out of memory
        raise DataError([too_big], title="not enough memory")
    scodes, slabels = _strata_codes(frame, strata_cols)
    try:
        pb = core.make_problem(design.matrix, tstart, tstop, ev, w, off, scodes,
                               ties == "efron", timefix)
    except core.ZeroLengthInterval as exc:
        raise DataError([f"start and stop are equal to within 1.5e-8 (R's timefix) in rows "
                         f"{row_labels(frame.index, np.isin(np.arange(len(frame)), exc.rows))}"
                         "; fix them or pass timefix=False"],
                        title="invalid survival data") from None
    notes += _data_notes(start, weights, offset, strata_cols, slabels, pb)
    return Prepared(frame, design, pb, notes, n_dropped, strata_cols, slabels)


def _data_notes(start: str | None, weights: str | None,
                offset: str | None, strata: list[str], labels: list[str],
                pb: core.CoxProblem) -> list[str]:
    notes = []
    if start:
        notes.append("Counting-process data: a row is at risk at event time t when "
                     "start < t <= stop.")
    if pb.n_time_merged:
        notes.append(f"{pb.n_time_merged} distinct times lay within 1.5e-8 of a neighbour "
                     "and were treated as tied (R's timefix).")
    if weights:
        notes.append(f'Case weights from column "{weights}".')
    if offset:
        notes.append(f'Offset from column "{offset}".')
    if strata:
        ev = np.bincount(pb.strata, pb.event.astype(float), minlength=len(labels))
        empty = [labels[i] for i in np.flatnonzero(ev == 0)]
        notes.append(f"Stratified by {', '.join(strata)}: {len(labels)} strata, each "
                     "with its own baseline hazard.")
        if empty:
            notes.append(f"Strata without events (they contribute nothing): {', '.join(empty)}.")
    return notes

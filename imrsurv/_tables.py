"""Reading input tables and parsing their time columns, keeping line numbers.

Every input (path or DataFrame) becomes a :class:`Table`: the rows as read, a
label for each row that points the user back at it (``line 14`` for a file,
whose header is line 1; ``row 3`` for a DataFrame, by index label) and the
name of the source.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DataError, Problem

DAYS_PER_YEAR = 365.25
TIME_UNITS = {"years": 1.0, "months": 12.0, "weeks": DAYS_PER_YEAR / 7.0, "days": DAYS_PER_YEAR}
_MISSING_TEXT = {"", "na", "nan", "none", "null", "nat"}


@dataclass(frozen=True)
class Table:
    """An input table with the label of each row."""

    frame: pd.DataFrame  # positional index 0..n-1
    where: np.ndarray  # object array: "line 14" / "row 3"
    source: str
    path: Path | None = None


def read_table(obj: str | Path | pd.DataFrame, name: str) -> Table:
    """Read a CSV or Parquet file, or wrap a DataFrame, keeping row labels.

    CSV cells are read as text so that every value can be checked and reported
    as the user wrote it.
    """
    if isinstance(obj, pd.DataFrame):
        frame = obj.reset_index(drop=True).copy()
        frame.columns = [str(c).strip() for c in frame.columns]
        where = np.array([f"row {i}" for i in obj.index], dtype=object)
        return Table(frame, where, name)
    path = Path(obj)
    if not path.exists():
        raise DataError([Problem(str(path), None, None, "file not found")], f"cannot read {name}")
    try:
        if path.suffix.lower() in {".parquet", ".pq"}:
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except Exception as exc:  # the reader's own message, without its traceback
        raise DataError([Problem(path.name, None, None, f"unreadable: {exc}")],
                        f"cannot read {name}") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    where = np.array([f"line {i + 2}" for i in range(len(frame))], dtype=object)
    return Table(frame, where, path.name, path)


def missing_mask(values: pd.Series) -> np.ndarray:
    """True where a cell is empty: NaN/None or text such as '', 'NA', 'nan'."""
    if values.dtype == object or pd.api.types.is_string_dtype(values):
        text = values.astype("string").str.strip().str.lower()
        return (values.isna() | text.isin(_MISSING_TEXT)).to_numpy(dtype=bool)
    return values.isna().to_numpy(dtype=bool)


@dataclass(frozen=True)
class ParsedTimes:
    """Times parsed from one column: numbers or ISO dates, never both."""

    number: np.ndarray  # float, NaN where not a number
    date: np.ndarray  # datetime64[ns], NaT where not a date
    kind: np.ndarray  # object: "number" | "date" | "missing" | "bad"


def parse_times(values: pd.Series) -> ParsedTimes:
    """Classify each time cell as a number, an ISO date, missing, or unparseable."""
    n = len(values)
    number = np.full(n, np.nan)
    date = np.full(n, np.datetime64("NaT"), dtype="datetime64[ns]")
    kind = np.full(n, "bad", dtype=object)
    if pd.api.types.is_datetime64_any_dtype(values):
        date = values.to_numpy(dtype="datetime64[ns]")
        kind[:] = np.where(np.isnat(date), "missing", "date")
        return ParsedTimes(number, date, kind)
    missing = missing_mask(values)
    kind[missing] = "missing"
    num = pd.to_numeric(values.where(~missing), errors="coerce").to_numpy(dtype=float)
    is_num = np.isfinite(num) & ~missing
    number[is_num] = num[is_num]
    kind[is_num] = "number"
    rest = ~missing & ~is_num
    if rest.any():
        text = values[rest].astype(str).str.strip()
        parsed = pd.to_datetime(text, format="ISO8601", errors="coerce")
        ok = parsed.notna().to_numpy()
        idx = np.flatnonzero(rest)
        date[idx[ok]] = parsed[ok].to_numpy(dtype="datetime64[ns]")
        kind[idx[ok]] = "date"
    return ParsedTimes(number, date, kind)


def display(values: pd.Series) -> np.ndarray:
    """Cells as the user wrote them, for messages."""
    return values.astype(str).str.strip().to_numpy(dtype=object)

"""Reading input tables and parsing their time columns, keeping line numbers.

Every input (path or DataFrame) becomes a :class:`Table`: the rows as read, a
label for each row that points the user back at it (``line 14`` for a file,
whose header is line 1; ``row 3`` for a DataFrame, by index label) and the
name of the source.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import ArgumentError, DataError, Problem

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
    as the user wrote it; each row's label is the file's physical line where the
    row begins (blank lines and newlines inside quoted cells counted).
    """
    if isinstance(obj, pd.DataFrame):
        frame = obj.reset_index(drop=True).copy()
        frame.columns = [str(c).strip() for c in frame.columns]
        _check_header(list(frame.columns), name, name)
        where = np.array([f"row {i}" for i in obj.index], dtype=object)
        return Table(frame, where, name)
    if not isinstance(obj, (str, Path)) or (isinstance(obj, str) and not obj.strip()):
        raise ArgumentError([f"{name} must be a path (str or pathlib.Path) to a CSV or "
                             f"Parquet file, or a pandas DataFrame, not {type(obj).__name__} "
                             f"{obj!r:.80}"])
    path = Path(obj)
    if not path.exists():
        raise DataError([Problem(str(path), None, None, "file not found")], f"cannot read {name}")
    if path.is_dir():
        raise DataError([Problem(str(path), None, None, "is a directory, not a file")],
                        f"cannot read {name}")
    try:
        if path.suffix.lower() in {".parquet", ".pq"}:
            frame = pd.read_parquet(path)
            lines = [f"row {i}" for i in range(len(frame))]
        else:
            frame, lines = _read_csv(path)
    except DataError:
        raise
    except Exception as exc:  # the reader's own message, without its traceback
        raise DataError([Problem(path.name, None, None, f"unreadable: {exc}")],
                        f"cannot read {name}") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    _check_header(list(frame.columns), path.name, name)
    return Table(frame, np.array(lines, dtype=object), path.name, path)


def _read_csv(path: Path) -> tuple[pd.DataFrame, list[str]]:
    """All cells as text, and ``line N`` (physical line where each row starts)."""
    rows: list[list[str]] = []
    starts: list[int] = []
    header: list[str] | None = None
    header_line = 0
    problems = []
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh, skipinitialspace=True)
        end = 0
        for record in reader:
            start, end = end + 1, reader.line_num
            if not record or (len(record) == 1 and not record[0].strip()):
                continue  # a blank line
            if header is None:
                header, header_line = record, start
                continue
            if len(record) > len(header):
                problems.append(Problem(path.name, f"line {start}", None,
                                        f"{len(record)} cells but the header (line "
                                        f"{header_line}) has {len(header)}"))
                continue
            rows.append(record + [""] * (len(header) - len(record)))
            starts.append(start)
    if header is None:
        raise DataError([Problem(path.name, None, None, "empty file (no header line)")],
                        "cannot read input")
    if problems:
        raise DataError(problems, "cannot read input")
    frame = pd.DataFrame(rows, columns=header, dtype=object) if rows else \
        pd.DataFrame({c: pd.Series(dtype=object) for c in dict.fromkeys(header)})
    if len(set(header)) != len(header):  # keep the duplicates for _check_header to name
        frame = pd.DataFrame(rows, dtype=object)
        frame.columns = header
    return frame, [f"line {i}" for i in starts]


def _check_header(columns: list[str], source: str, name: str) -> None:
    """Duplicate or empty column names (after stripping spaces) are errors."""
    problems = []
    seen: dict[str, int] = {}
    for i, c in enumerate(columns):
        if c in seen:
            problems.append(Problem(source, None, None,
                                    f'column "{c}" appears more than once (columns {seen[c] + 1}'
                                    f" and {i + 1}, after stripping spaces); names must be unique"))
        else:
            seen[c] = i
        if not c:
            problems.append(Problem(source, None, None, f"column {i + 1} has no name"))
    if problems:
        raise DataError(problems, f"cannot read {name}")


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


def site_time_key(labels: Any, values: np.ndarray, ok: np.ndarray, name: str
                  ) -> tuple[pd.DataFrame, list[tuple[int, int, float]]]:
    """Rows sorted by (site, ``name``) with repeats set aside (first one kept).

    Returns the unique rows (columns ``site``, ``name``, ``i`` the row position)
    and, for each repeat, ``(row, first row with that site and value, value)``,
    so that the caller can name both lines in its message.
    """
    key = pd.DataFrame({"site": np.array(labels, dtype=object), name: values,
                        "i": np.arange(len(values))})[ok]
    key = key.sort_values(["site", name, "i"], kind="stable")
    dup = key.duplicated(["site", name], keep="first").to_numpy()
    first_of = key.drop_duplicates(["site", name]).set_index(["site", name])["i"]
    repeats = [(int(r["i"]), int(first_of.loc[(r["site"], r[name])]), r[name])
               for _, r in key[dup].iterrows()]
    return key[~dup], repeats


def interval_bounds(df: pd.DataFrame, start: str, stop: str,
                    bad: Any) -> tuple[np.ndarray, np.ndarray]:
    """(start, stop] as floats, reporting through ``bad(mask, message)`` every row whose
    bound is not a finite number or whose stop is not after its start."""
    t0 = pd.to_numeric(df[start], errors="coerce").to_numpy(float)
    t1 = pd.to_numeric(df[stop], errors="coerce").to_numpy(float)
    bad(~np.isfinite(t0), f"{start} is not a finite number")
    bad(~np.isfinite(t1), f"{stop} is not a finite number")
    for i in np.flatnonzero(np.isfinite(t0) & np.isfinite(t1) & (t1 <= t0)):
        mask = np.zeros(len(t0), bool)
        mask[i] = True
        bad(mask, f"{stop} {t1[i]:g} is not after {start} {t0[i]:g}")
    return t0, t1


def site_labels(column: pd.Series) -> tuple[np.ndarray, list[str | None]]:
    """Which rows lack a site, and each row's site label (None where missing).

    Site ids are labels: "NA" or "None" is a site name; only an empty cell is missing.
    """
    missing = (column.isna() | column.astype(str).str.strip().eq("")).to_numpy()
    labels = [None if m else str(s).strip() for s, m in zip(column, missing, strict=True)]
    return missing, labels


class RowProblems:
    """Problems of a table's rows, each named by its line (``where``) and site.

    Made from the site column: every row without a site is reported at once.
    ``raise_if_any(title)`` raises one :class:`DataError` listing them in row order.
    """

    def __init__(self, src: str, where: Any, site_column: pd.Series, site_name: str):
        self.src, self.where = src, where
        self.site_missing, self.labels = site_labels(site_column)
        self._rows: list[tuple[int, Problem]] = []
        for i in np.flatnonzero(self.site_missing):
            self.add(i, f"{site_name} is missing")

    def add(self, i: int, message: str) -> None:
        self._rows.append((int(i), Problem(self.src, str(self.where[i]), self.labels[i],
                                           message)))

    def raise_if_any(self, title: str) -> None:
        if self._rows:
            self._rows.sort(key=lambda ip: ip[0])
            raise DataError([p for _, p in self._rows], title)


def numeric_cells(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Cells as floats (NaN where empty or not a number) and as the text the user wrote."""
    values = pd.to_numeric(column.where(~pd.Series(missing_mask(column))), errors="coerce")
    return values.to_numpy(float), column.astype(str).str.strip().to_numpy(object)


def require_columns(df: pd.DataFrame, columns: list[Any], title: str) -> None:
    """A DataError naming the absent ``columns`` and those the frame has."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError([Problem("data", None, None,
                                 f"missing column(s) {', '.join(map(str, missing))} (have: "
                                 f"{', '.join(map(str, df.columns))})")], title)

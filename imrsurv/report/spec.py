"""Report specifications: a TOML file (or dict) saying what to analyse and how.

Example (``reports/bond2014.toml``)::

    [study]
    title = "Sustainment of evidence-based practices: 6-year follow-up"
    data_date = "2013-12-31"

    [data]
    dataset = "bond2014"          # or events = "...", covariates = "...", sites = "..."

    [analysis]
    horizon = 6.0
    group = "practice"
    covariates = ["recent_leader_change", "team_size", "training_access"]
    sections = ["summary", "bond", "km", "mcf", "states", "recurrent", "ph", "discrete"]

Every key is listed in :data:`KEYS` (type, default, meaning); ``reports/README.md``
documents them and :func:`starter_spec` writes a commented starter file. Unknown
keys and values of the wrong type are errors that name the key, the value and
what is allowed, so a typo never silently switches an analysis off. Relative
paths are relative to the spec file.
"""

from __future__ import annotations

import hashlib
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DataError, Problem

SECTIONS = ("summary", "bond", "km", "mcf", "states", "recurrent", "ph", "discrete", "frailty",
            "panel_markov", "causes", "predictions")
DEFAULT_SECTIONS = SECTIONS[:8]   # frailty, panel_markov, causes, predictions when asked for
SCHEMES = ("ag", "pwp-tt", "pwp-gt", "wlw")
TIES = ("efron", "breslow")
LINKS = ("cloglog", "logit")
COX_TESTS = ("firth-lrt", "wald")
TIME_UNITS = ("years", "months", "weeks", "days")
_DEFAULT_COVARIATES = ["recent_leader_change", "team_size", "training_access"]


@dataclass(frozen=True)
class Key:
    """One spec key: its table, name, kind (see :func:`_check`), default and meaning."""

    table: str
    name: str
    kind: str
    default: Any
    doc: str
    choices: tuple[str, ...] = ()


KEYS: tuple[Key, ...] = (
    Key("study", "title", "text", None, "report title (required)"),
    Key("study", "subtitle", "text", "", "line under the title"),
    Key("study", "authors", "text", "", "authors, shown on the title page"),
    Key("study", "data_date", "text", "", "date the data were extracted (free text)"),
    Key("study", "description", "text", "", "your own note for the title page, shown as "
        "'From the spec'; the title page always describes the data actually read"),
    Key("data", "dataset", "text", None, "a shipped dataset (bond2014, norway_imr) instead of "
        "files"),
    Key("data", "events", "file", None, "event log CSV/Parquet: site, time, event[, practice] "
        "(required unless dataset is given)"),
    Key("data", "covariates", "file", None, "covariate log: site, time, covariates"),
    Key("data", "sites", "file", None, "site table: site, site-level columns"),
    Key("data", "panel", "file", None, "annual panel: site, year, active, covariates (for the "
        "discrete section)"),
    Key("data", "waves", "file", None, "interview waves: site, time, state, covariates (for the "
        "panel_markov section; any interview times)"),
    Key("data", "time_unit", "choice", "years", "unit of numeric times", TIME_UNITS),
    Key("data", "recent_window", "positive", 1.0, "years a leadership change counts as recent"),
    Key("analysis", "horizon", "positive", 6.0, "years at which status is classified (Bond: 6)"),
    Key("analysis", "group", "text", "practice", "site column to compare groups by; \"\" for "
        "none"),
    Key("analysis", "covariates", "texts", _DEFAULT_COVARIATES, "model covariates (those "
        "present in the data are used)"),
    Key("analysis", "sections", "choices", list(DEFAULT_SECTIONS), "sections, in order", SECTIONS),
    Key("analysis", "schemes", "choices", list(SCHEMES), "recurrent-event Cox layouts", SCHEMES),
    Key("analysis", "ties", "choice", "efron", "tie handling of the Cox models", TIES),
    Key("analysis", "test", "choice", "firth-lrt", "test and interval of the Cox hazard-ratio "
        "tables: firth-lrt (Firth-penalised fit, penalised likelihood-ratio test, profile "
        "limits: holds its size at 12-49 sites, see benchmarks/RESULTS.md) or wald (robust "
        "Wald, R's coxph output); the other is shown beside it", COX_TESTS),
    Key("analysis", "times", "positives", [], "times (years) for the tables; default every "
        "whole year to the horizon"),
    Key("analysis", "discrete_formula", "text", None, "formula of the discrete-time model; "
        "default C(year) + the covariates in the panel"),
    Key("analysis", "waves_formula", "text", None, "formula of the panel_markov model; default "
        "the covariates (analysis.covariates) present in the wave table"),
    Key("analysis", "change_year", "positive", 2.0, "year of the new leader in the "
        "predictions section's second profile (when the models use leadership change)"),
    Key("analysis", "link", "choice", "cloglog", "link of the discrete-time model", LINKS),
    Key("analysis", "seed", "integer", 0, "random seed (recorded; no section draws random "
        "numbers today)"),
)
_ALLOWED = {"": {"study", "data", "analysis"},
            **{t: {k.name for k in KEYS if k.table == t} for t in ("study", "data", "analysis")}}
_EXPECTED = {
    "text": "a string", "file": "a file path (string)", "choice": "one of {choices}",
    "positive": "a positive finite number", "integer": "an integer",
    "texts": "a list of strings", "choices": "a list of values from {choices}",
    "positives": "a list of positive finite numbers",
}


@dataclass(frozen=True)
class ReportSpec:
    """A validated report specification."""

    title: str
    data_date: str
    subtitle: str = ""
    authors: str = ""
    description: str = ""
    dataset: str | None = None
    events: Path | None = None
    covariates: Path | None = None
    sites: Path | None = None
    panel: Path | None = None
    waves: Path | None = None
    time_unit: str = "years"
    recent_window: float = 1.0
    horizon: float = 6.0
    group: str | None = "practice"
    model_covariates: tuple[str, ...] = tuple(_DEFAULT_COVARIATES)
    sections: tuple[str, ...] = DEFAULT_SECTIONS
    schemes: tuple[str, ...] = SCHEMES
    ties: str = "efron"
    test: str = "firth-lrt"
    times: tuple[float, ...] = ()
    discrete_formula: str | None = None
    waves_formula: str | None = None
    change_year: float = 2.0
    link: str = "cloglog"
    seed: int = 0
    source_bytes: bytes = field(default=b"", repr=False)
    source_name: str = "spec"

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.source_bytes).hexdigest()

    def input_files(self) -> dict[str, Path]:
        """The data files the report reads, by role."""
        if self.dataset:
            from ..datasets import data_path

            root = data_path(self.dataset)
            files = {"events": root / "events.csv", "covariates": root / "covariates.csv",
                     "sites": root / "sites.csv", "panel": root / "panel.csv",
                     "waves": self.waves or root / "waves.csv"}
            return {k: v for k, v in files.items() if v.exists()}
        files = {"events": self.events, "covariates": self.covariates, "sites": self.sites,
                 "panel": self.panel, "waves": self.waves}
        return {k: v for k, v in files.items() if v is not None}


def _number(v: Any) -> float | None:
    """``v`` as a finite float, or None (bools, strings, nan and inf are not numbers here)."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _check(key: Key, value: Any) -> tuple[Any, bool]:
    """(converted value, ok) for ``value`` of ``key``."""
    k = key.kind
    if k in ("text", "file"):
        return value, isinstance(value, str)
    if k == "choice":
        return value, isinstance(value, str) and value in key.choices
    if k == "positive":
        x = _number(value)
        return x, x is not None and x > 0
    if k == "integer":
        ok = isinstance(value, int) and not isinstance(value, bool)
        return value, ok
    if not isinstance(value, list):
        return value, False
    if k == "texts":
        return tuple(value), all(isinstance(v, str) for v in value)
    if k == "choices":
        return tuple(value), all(isinstance(v, str) and v in key.choices for v in value)
    xs = [_number(v) for v in value]  # positives
    return tuple(xs), all(x is not None and x > 0 for x in xs)


def _expected(key: Key) -> str:
    return _EXPECTED[key.kind].format(choices=", ".join(key.choices))


def load_spec(spec: str | Path | dict) -> ReportSpec:
    """Read and validate a spec from a TOML path or a dict."""
    if isinstance(spec, dict):
        raw, base, data, name = spec, Path.cwd(), json.dumps(spec, sort_keys=True).encode(), "spec"
    else:
        path = Path(spec)
        if not path.is_file():
            why = "is a directory, not a spec file" if path.is_dir() else "spec file not found"
            raise DataError([Problem(str(path), None, None, why)], "invalid report spec")
        data = path.read_bytes()
        try:
            raw = tomllib.loads(data.decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise DataError([Problem(path.name, None, None, f"not valid TOML: {exc}")],
                            "invalid report spec") from None
        base, name = path.parent, path.name
    problems = _unknown_keys(raw, name)
    values: dict[str, Any] = {}  # by "table.name" ([data] and [analysis] both have covariates)
    for key in KEYS:
        table = raw.get(key.table, {})
        if not isinstance(table, dict) or key.name not in table:
            values[f"{key.table}.{key.name}"] = key.default
            continue
        value, ok = _check(key, table[key.name])
        if not ok:
            problems.append(Problem(name, f"[{key.table}] {key.name}", None,
                                    f"got {table[key.name]!r} ({type(table[key.name]).__name__}); "
                                    f"expected {_expected(key)}"))
        values[f"{key.table}.{key.name}"] = value
    values = {k.split(".", 1)[1] if not k.startswith("data.covariates") else "covariate_log": v
              for k, v in values.items()}
    if values["title"] is None:
        problems.append(Problem(name, "[study]", None, "title is required"))
    if values["dataset"] is None and values["events"] is None:
        problems.append(Problem(name, "[data]", None, "give either dataset = NAME or events = PATH"))
    if isinstance(values["dataset"], str):
        from ..datasets import DATASETS

        if values["dataset"] not in DATASETS:
            problems.append(Problem(name, "[data] dataset", None,
                                    f"unknown dataset {values['dataset']!r} (allowed: "
                                    f"{', '.join(DATASETS)})"))
    files: dict[str, Path | None] = {}
    for role in ("events", "covariates", "sites", "panel", "waves"):
        v = values["covariate_log" if role == "covariates" else role]
        if not isinstance(v, str):
            files[role] = None
            continue
        p = Path(v)
        p = p if p.is_absolute() else base / p
        if not p.exists():
            problems.append(Problem(name, f"[data] {role}", None, f"file not found: {p}"))
        elif not p.is_file():
            problems.append(Problem(name, f"[data] {role}", None, f"not a file: {p}"))
        files[role] = p
    if problems:
        raise DataError(problems, "invalid report spec")
    return ReportSpec(
        title=values["title"], data_date=values["data_date"], subtitle=values["subtitle"],
        authors=values["authors"], description=values["description"],
        dataset=values["dataset"], time_unit=values["time_unit"],
        recent_window=float(values["recent_window"]), horizon=float(values["horizon"]),
        group=values["group"] or None, model_covariates=tuple(values["covariates"]),
        sections=tuple(values["sections"]), schemes=tuple(values["schemes"]),
        ties=values["ties"], test=values["test"], times=tuple(float(t) for t in values["times"]),
        discrete_formula=values["discrete_formula"], link=values["link"],
        waves_formula=values["waves_formula"], change_year=float(values["change_year"]),
        seed=int(values["seed"]), source_bytes=data, source_name=name, **files,
    )


def _unknown_keys(raw: dict, name: str) -> list[Problem]:
    problems = []
    for key, value in raw.items():
        if key not in _ALLOWED[""]:
            problems.append(Problem(name, None, None, f"unknown section [{key}] "
                                    f"(allowed: {', '.join(sorted(_ALLOWED['']))})"))
            continue
        if not isinstance(value, dict):
            problems.append(Problem(name, None, None, f"[{key}] must be a table"))
            continue
        for sub in value:
            if sub not in _ALLOWED[key]:
                problems.append(Problem(name, f"[{key}]", None, f"unknown key {sub!r} "
                                        f"(allowed: {', '.join(sorted(_ALLOWED[key]))})"))
    return problems


def _toml(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


_STARTER_VALUES = {"study.title": "My programme: sustainment at N sites",
                   "data.events": "events.csv", "data.covariates": "covariates.csv",
                   "data.sites": "sites.csv"}


def starter_spec() -> str:
    """A commented starter spec for one's own files: every key, with its default."""
    lines = ["# imrsurv report spec (TOML). Build:  imrsurv report THIS.toml --out report.pdf",
             "# Every key is optional except [study] title and [data] events (or dataset).",
             "# Paths are relative to this file. Keys: see reports/README.md.", ""]
    for table in ("study", "data", "analysis"):
        lines.append(f"[{table}]")
        for key in (k for k in KEYS if k.table == table):
            lines.append(f"# {key.doc}; {_expected(key)}")
            starter = _STARTER_VALUES.get(f"{key.table}.{key.name}")
            if starter is not None:
                lines.append(f"{key.name} = {_toml(starter)}")
            elif key.default is None:
                lines.append(f"# {key.name} = ")
            else:
                lines.append(f"# {key.name} = {_toml(key.default)}")
        lines.append("")
    return "\n".join(lines)


def write_starter(path: str | Path) -> Path:
    """Write :func:`starter_spec` to ``path`` (never over an existing file)."""
    path = Path(path)
    if path.exists():
        raise DataError([Problem(str(path), None, None, "already exists; not overwritten")],
                        "cannot write starter spec")
    if not path.parent.exists():
        raise DataError([Problem(str(path), None, None, f"directory {path.parent} does not "
                                 "exist")], "cannot write starter spec")
    path.write_text(starter_spec(), encoding="utf-8")
    return path


def reference_markdown() -> str:
    """The table of spec keys for ``reports/README.md``."""
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for k in KEYS:
        default = "—" if k.default is None else f"`{_toml(k.default)}`"
        rows.append(f"| `[{k.table}] {k.name}` | {_expected(k)} | {default} | {k.doc} |")
    return "\n".join(rows)

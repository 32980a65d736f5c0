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

Unknown keys are errors that name the key and the allowed ones, so a typo never
silently switches an analysis off. Relative paths are relative to the spec file.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError, Problem

SECTIONS = ("summary", "bond", "km", "mcf", "states", "recurrent", "ph", "discrete", "frailty")
SCHEMES = ("ag", "pwp-tt", "pwp-gt", "wlw")
_ALLOWED = {
    "": {"study", "data", "analysis"},
    "study": {"title", "subtitle", "data_date", "authors", "description"},
    "data": {"dataset", "events", "covariates", "sites", "panel", "time_unit", "recent_window"},
    "analysis": {"horizon", "group", "covariates", "sections", "schemes", "ties", "times",
                 "discrete_formula", "link", "seed"},
}
_DEFAULT_COVARIATES = ["recent_leader_change", "team_size", "training_access"]


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
    time_unit: str = "years"
    recent_window: float = 1.0
    horizon: float = 6.0
    group: str | None = "practice"
    model_covariates: tuple[str, ...] = tuple(_DEFAULT_COVARIATES)
    sections: tuple[str, ...] = SECTIONS[:-1]
    schemes: tuple[str, ...] = SCHEMES
    ties: str = "efron"
    times: tuple[float, ...] = ()
    discrete_formula: str | None = None
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
                     "sites": root / "sites.csv", "panel": root / "panel.csv"}
            return {k: v for k, v in files.items() if v.exists()}
        files = {"events": self.events, "covariates": self.covariates, "sites": self.sites,
                 "panel": self.panel}
        return {k: v for k, v in files.items() if v is not None}


def load_spec(spec: str | Path | dict) -> ReportSpec:
    """Read and validate a spec from a TOML path or a dict."""
    if isinstance(spec, dict):
        raw, base, data, name = spec, Path.cwd(), json.dumps(spec, sort_keys=True).encode(), "spec"
    else:
        path = Path(spec)
        if not path.exists():
            raise DataError([Problem(str(path), None, None, "spec file not found")], "invalid report spec")
        data = path.read_bytes()
        try:
            raw = tomllib.loads(data.decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise DataError([Problem(path.name, None, None, f"not valid TOML: {exc}")],
                            "invalid report spec") from None
        base, name = path.parent, path.name
    problems = _unknown_keys(raw, name)
    study, dat, ana = raw.get("study", {}), raw.get("data", {}), raw.get("analysis", {})
    if "title" not in study:
        problems.append(Problem(name, "[study]", None, "title is required"))
    if "dataset" not in dat and "events" not in dat:
        problems.append(Problem(name, "[data]", None, "give either dataset = NAME or events = PATH"))
    sections = tuple(ana.get("sections", SECTIONS[:-1]))
    for s in sections:
        if s not in SECTIONS:
            problems.append(Problem(name, "[analysis] sections", None,
                                    f"unknown section {s!r} (allowed: {', '.join(SECTIONS)})"))
    schemes = tuple(ana.get("schemes", SCHEMES))
    for s in schemes:
        if s not in SCHEMES:
            problems.append(Problem(name, "[analysis] schemes", None,
                                    f"unknown scheme {s!r} (allowed: {', '.join(SCHEMES)})"))

    def path_of(key: str) -> Path | None:
        if key not in dat:
            return None
        p = Path(dat[key])
        p = p if p.is_absolute() else base / p
        if not p.exists():
            problems.append(Problem(name, f"[data] {key}", None, f"file not found: {p}"))
        return p

    files = {k: path_of(k) for k in ("events", "covariates", "sites", "panel")}
    if problems:
        raise DataError(problems, "invalid report spec")
    return ReportSpec(
        title=str(study["title"]), data_date=str(study.get("data_date", "")),
        subtitle=str(study.get("subtitle", "")), authors=str(study.get("authors", "")),
        description=str(study.get("description", "")), dataset=dat.get("dataset"),
        time_unit=str(dat.get("time_unit", "years")),
        recent_window=float(dat.get("recent_window", 1.0)),
        horizon=float(ana.get("horizon", 6.0)), group=ana.get("group", "practice") or None,
        model_covariates=tuple(ana.get("covariates", _DEFAULT_COVARIATES)),
        sections=sections, schemes=schemes, ties=str(ana.get("ties", "efron")),
        times=tuple(float(t) for t in ana.get("times", ())),
        discrete_formula=ana.get("discrete_formula"), link=str(ana.get("link", "cloglog")),
        seed=int(ana.get("seed", 0)), source_bytes=data, source_name=name, **files,
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

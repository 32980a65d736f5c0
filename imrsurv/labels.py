"""Human labels for covariates, model terms and table columns: one place for every output.

Tables, figures and the forest plot show ``label(name)`` instead of a raw
snake_case name. Unknown names are shown as they are, with underscores turned
into spaces, so a user's own covariate stays recognisable; formula terms such
as ``C(year)[T.3]`` become "Year 3".
"""

from __future__ import annotations

import re

LABELS: dict[str, str] = {
    # standard covariates and their derived forms
    "leadership_change": "Leadership change",
    "leader_changes": "Leadership changes so far",
    "recent_leader_change": "Recent leadership change (1 yr)",
    "team_size": "Team size",
    "training_access": "Training access",
    "fidelity": "Fidelity",
    "practice": "Practice",
    "setting": "Setting",
    "region": "Region",
    "financing": "Financing",
    # summary and accounting columns
    "input": "Input",
    "read": "Rows read",
    "used": "Rows used",
    "set_aside": "Rows set aside",
    "sites": "Sites",
    "years_active": "Years active",
    "years_discontinued": "Years discontinued",
    "discontinuations": "Discontinuations",
    "restarts": "Restarts",
    "site": "Site",
    "group": "Group",
    "time": "Years",
    "state": "State",
    "n_risk": "At risk",
    "n_events": "Events",
    "n_censor": "Censored",
    "chisq": "Chi-square",
    "df": "df",
    "p": "p",
    "GLOBAL": "Global test",
    "(Intercept)": "Intercept",
    "sustained": "Sustained",
    "restarted": "Restarted",
    "discontinued": "Discontinued",
    "active": "Active (sustained + restarted)",
}


def label(name: object, window: float | None = None) -> str:
    """The label shown for ``name``; ``window`` (years) replaces the "1 yr" of recent terms."""
    key = str(name)
    if key in LABELS:
        out = LABELS[key]
        if window is not None and key == "recent_leader_change":
            out = f"Recent leadership change ({window:g} yr)"
        return out
    m = re.fullmatch(r"C\((\w+)\)\[T\.(.+)\]", key)
    if m:
        return f"{label(m.group(1))} {m.group(2)}"
    m = re.fullmatch(r"C\((\w+)\)", key)
    if m:
        return label(m.group(1))
    if key == "year":
        return "Year"
    return key.replace("_", " ")


def relabel(frame, columns: bool = True, index: bool = False, window: float | None = None):
    """A copy of ``frame`` with labelled column names (and index labels)."""
    out = frame.copy()
    if columns:
        out.columns = [label(c, window) for c in out.columns]
    if index:
        out.index = [label(i, window) for i in out.index]
    return out

"""Shipped example datasets.

``load_bond2014()`` and ``load_norway_imr()`` return validated ``History`` objects
built with :func:`imrsurv.read_history`; the ``*_panel()`` loaders return the annual
interview panels as DataFrames for the discrete-time models.  Both datasets are
(partly) SYNTHETIC: see the README.md next to the files (``data_path(name)``).
``load_bond_causes()`` is bond2014 with a seeded, simulated ``cause`` on each
discontinuation (financing, priorities, workforce, or empty = unknown).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:  # pragma: no cover
    from imrsurv.history import History
    from imrsurv.waves import Waves

__all__ = [
    "DATASETS",
    "data_path",
    "load_bond2014",
    "load_bond2014_panel",
    "load_bond_causes",
    "load_norway_imr",
    "load_norway_imr_panel",
    "load_peterson_waves",
]

DATASETS = ("bond2014", "norway_imr", "bond_causes", "peterson_waves")


def _roots() -> list[Path]:
    package = Path(__file__).resolve().parents[1]  # .../imrsurv
    return [
        package / "_datasets",  # installed wheel: top-level datasets/ force-included here
        package.parent / "datasets",  # editable checkout: repo_root/datasets
    ]


def data_path(name: str) -> Path:
    """Folder holding the files of dataset ``name`` (``"bond2014"`` or ``"norway_imr"``).

    Looks in ``imrsurv/_datasets/NAME`` (installed wheel) first, then in
    ``REPO_ROOT/datasets/NAME`` (editable checkout).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(DATASETS)}")
    roots = _roots()
    for root in roots:
        folder = root / name
        if (folder / "events.csv").is_file() or (folder / "waves.csv").is_file():
            return folder
    tried = ", ".join(str(r / name) for r in roots)
    raise FileNotFoundError(f"dataset {name!r} not found (looked in {tried})")


def _load_history(name: str) -> History:
    from imrsurv import read_history  # lazy: avoids an import cycle with imrsurv/__init__

    folder = data_path(name)
    return read_history(
        folder / "events.csv",
        covariates=folder / "covariates.csv",
        sites=folder / "sites.csv",
    )


def _load_panel(name: str) -> pd.DataFrame:
    return pd.read_csv(data_path(name) / "panel.csv", dtype={"site": str})


def load_bond2014() -> History:
    """Synthetic 49-site, 5-practice, 6-year cohort with Bond et al. (2014)'s 23/8/18 split.

    Only the 6-year status split (47% sustained, 16% restarted, 37% discontinued)
    reproduces the publication; per-practice splits, event timing, covariate
    histories and effects are simulated.
    """
    return _load_history("bond2014")


def load_bond2014_panel() -> pd.DataFrame:
    """Annual interview panel of the bond2014 cohort: site, year (1-6), active, covariates."""
    return _load_panel("bond2014")


def load_bond_causes() -> History:
    """The bond2014 cohort with a SIMULATED cause on each discontinuation.

    Events from ``datasets/bond_causes/events.csv`` (bond2014's event log plus a
    ``cause`` column: financing, priorities, workforce, or empty = ``unknown``);
    covariates and site table are copies of bond2014's. See its README for the
    cause model.
    """
    return _load_history("bond_causes")


def load_norway_imr() -> History:
    """Nine Norwegian IMR services (Egeland et al. 2019) with a SYNTHETIC 6-year follow-up.

    Setting, practitioner count and 12-month fidelity in the site table are
    published; the event and covariate histories are simulated.
    """
    return _load_history("norway_imr")


def load_norway_imr_panel() -> pd.DataFrame:
    """Annual interview panel of the synthetic norway_imr follow-up."""
    return _load_panel("norway_imr")


def load_peterson_waves() -> Waves:
    """49 SYNTHETIC sites interviewed at baseline and years 2, 4, 8 (Peterson et al. 2014
    design), with ``supervisor_turnover`` since the previous wave: a validated
    :class:`imrsurv.waves.Waves` for :func:`imrsurv.fit_panel_markov`."""
    from imrsurv.waves import read_waves

    return read_waves(data_path("peterson_waves") / "waves.csv")

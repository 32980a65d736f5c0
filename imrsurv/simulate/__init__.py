"""Cohort simulation, calibration to target state probabilities, and power analysis."""

from __future__ import annotations

from .cohort import (
    BOND_HAZARDS,
    BOND_TARGET,
    Cohort,
    CovariateModel,
    simulate,
    simulate_cohort,
    write_cohort,
)

__all__ = ["BOND_HAZARDS", "BOND_TARGET", "Cohort", "CovariateModel", "simulate", "simulate_cohort",
           "write_cohort"]

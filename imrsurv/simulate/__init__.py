"""Cohort simulation, calibration to target state probabilities, and power analysis.

* :func:`simulate` / :func:`simulate_cohort`: exact multi-state simulation of
  programme histories (:mod:`imrsurv.simulate.cohort`); :func:`write_cohort`.
* :func:`calibrate`: baseline hazards that hit target state probabilities
  (:mod:`imrsurv.simulate.calibration`).
* :func:`power`: power, type-I error, bias and coverage by simulation, in this
  process or on Dask (:mod:`imrsurv.simulate.power_analysis`, :mod:`imrsurv.simulate.parallel`).

The package itself is callable as :func:`simulate`, so ``imrsurv.simulate(...)``
works whether ``imrsurv.simulate`` resolves to this package (after any
``import imrsurv.simulate...``) or to the function. Nothing here imports Dask.
"""

from __future__ import annotations

import inspect
import sys
import types

from imrsurv._lazy import lazy_exports

from .cohort import (
    BOND_HAZARDS,
    BOND_TARGET,
    Cohort,
    CovariateModel,
    simulate,
    simulate_cohort,
    write_cohort,
)

# imported on first use (scipy.optimize / scipy.stats are not needed to register the CLI)
_LAZY = {"Calibration": ".calibration", "calibrate": ".calibration",
         "DaskNotInstalled": ".parallel", "SchedulerUnavailable": ".parallel",
         **dict.fromkeys(("PowerResult", "annual_panel", "design_grid", "plot_power_curve",
                          "power", "summarize"), ".power_analysis")}

__all__ = ["BOND_HAZARDS", "BOND_TARGET", "Calibration", "Cohort", "CovariateModel",
           "DaskNotInstalled", "PowerResult", "SchedulerUnavailable", "annual_panel", "calibrate",
           "design_grid", "plot_power_curve", "power", "simulate", "simulate_cohort", "summarize",
           "write_cohort"]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())


class _CallablePackage(types.ModuleType):
    """``imrsurv.simulate(n_sites, years, ...)`` calls :func:`simulate`."""

    def __call__(self, *args, **kwargs):
        return simulate(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
# what ``imrsurv.simulate?`` / ``inspect.signature`` show: the function, then the package
__signature__ = inspect.signature(simulate)
__doc__ = (f"simulate{__signature__}\n\n{inspect.getdoc(simulate)}\n\n"
           f"The package imrsurv.simulate\n----------------------------\n{__doc__}")

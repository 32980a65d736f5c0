"""imrsurv: survival, recurrent-event and multi-state analysis of programme sustainment.

Sites adopt an evidence-based practice (e.g. Illness Management and Recovery),
may discontinue it, restart it and discontinue it again. imrsurv turns event and
covariate logs into validated histories, fits the models the field uses (Cox
with AG/PWP/WLW layouts and robust errors, Aalen-Johansen, MCF, discrete-time
hazards) with numbers that match R ``survival``, and writes reproducible reports.
"""

from __future__ import annotations

from . import datasets
from .errors import DataError, Problem
from .history import History, read_history
from .models.cox import CoxResult, fit_cox, fit_recurrent
from .models.discrete import DiscreteTimeResult, fit_discrete_time
from .models.km import KMResult, km_first
from .models.mcf import MCFTest, mcf, mcf_at, mcf_test
from .models.multistate import (
    BondStatus,
    bond_status,
    expected_restarts,
    restricted_mean_time_in_state,
    state_probabilities,
)
from .panel import read_panel
from .plots import plot_km, plot_mcf, plot_state_probabilities

__version__ = "0.1.0"

__all__ = [
    "BondStatus", "CoxResult", "DataError", "DiscreteTimeResult", "History", "KMResult", "MCFTest",
    "Problem", "__version__", "bond_status", "datasets", "expected_restarts", "fit_cox",
    "fit_discrete_time", "fit_recurrent", "km_first", "mcf", "mcf_at", "mcf_test", "plot_km",
    "plot_mcf", "plot_state_probabilities", "read_history", "read_panel",
    "restricted_mean_time_in_state", "state_probabilities",
]

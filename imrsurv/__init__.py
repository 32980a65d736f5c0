"""imrsurv: survival, recurrent-event and multi-state analysis of programme sustainment.

Sites adopt an evidence-based practice (e.g. Illness Management and Recovery),
may discontinue it, restart it and discontinue it again. imrsurv turns event and
covariate logs into validated histories, fits the models the field uses (Cox
with AG/PWP/WLW layouts and robust errors, Aalen-Johansen, MCF, discrete-time
hazards) with numbers that match R ``survival``, and writes reproducible reports.

Estimators are imported on first use, so ``import imrsurv`` (and the
``imrsurv validate`` command) does not pay for lifelines, statsmodels and
matplotlib until a model or plot is asked for.
"""

from __future__ import annotations

from ._lazy import lazy_exports
from .errors import ArgumentError, DataError, Problem
from .history import History, read_history

__version__ = "0.1.0"

_LAZY = {
    "datasets": ".datasets",
    "CoxResult": ".models.cox", "CoxConvergenceWarning": ".models.cox", "fit_cox": ".models.cox",
    "fit_recurrent": ".models.cox", "FrailtyResult": ".models.frailty",
    "Frailty": ".models.frailty", "NotEstimable": ".errors",
    "DiscreteTimeResult": ".models.discrete", "fit_discrete_time": ".models.discrete",
    "KMResult": ".models.km", "km_first": ".models.km",
    "MCFTest": ".models.mcf", "mcf": ".models.mcf", "mcf_at": ".models.mcf",
    "mcf_test": ".models.mcf",
    "BondStatus": ".models.multistate", "bond_status": ".models.multistate",
    "expected_restarts": ".models.multistate",
    "restricted_mean_time_in_state": ".models.multistate",
    "state_probabilities": ".models.multistate",
    "cumulative_incidence": ".models.causes", "CumulativeIncidence": ".models.causes",
    "gray_test": ".models.gray", "GrayTest": ".models.gray",
    "competing_risks_frame": ".models.causes", "cause_state_probabilities": ".models.causes",
    "state_occupation": ".models.custom_states",
    "fit_state_transitions": ".models.state_transitions",
    "bootstrap_transitions": ".models.predictions",
    "plot_state_occupation": ".models.custom_states",
    "fit_fine_gray": ".models.finegray", "finegray_frame": ".models.finegray",
    "FineGrayResult": ".models.finegray",
    "fit_transitions": ".models.transitions", "TransitionsResult": ".models.transitions",
    "read_panel": ".panel",
    "read_waves": ".waves", "Waves": ".waves", "sample_waves": ".waves",
    "fit_panel_markov": ".models.panel_markov", "PanelMarkovResult": ".models.panel_markov",
    "simulate": ".simulate", "simulate_cohort": ".simulate", "write_cohort": ".simulate",
    "calibrate": ".simulate", "Calibration": ".simulate", "power": ".simulate",
    "PowerResult": ".simulate", "plot_power_curve": ".simulate", "annual_panel": ".simulate",
    "fit_cox_dask": ".models.cox_dask", "DaskCoxResult": ".models.cox_dask",
    "plot_km": ".plots", "plot_mcf": ".plots", "plot_state_probabilities": ".plots",
    "report": ".report.build",
    "parse_formula": ".formula",
}

__all__ = ["ArgumentError", "DataError", "History", "Problem", "__version__", "read_history", *_LAZY]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals(),
                                    modules=frozenset({"datasets", "simulate"}))

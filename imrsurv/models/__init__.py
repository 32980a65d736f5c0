"""Estimators: each takes plain pandas frames and returns a result object."""

from imrsurv.models.cox import CoxConvergenceWarning, CoxResult, fit_cox, fit_recurrent

__all__ = ["CoxConvergenceWarning", "CoxResult", "fit_cox", "fit_recurrent"]

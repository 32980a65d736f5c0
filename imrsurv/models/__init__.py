"""Estimators: each takes plain pandas frames and returns a result object.

Names are imported on first use (like the top-level package), so importing
one estimator module does not load the others' dependencies.
"""

from __future__ import annotations

from imrsurv._lazy import lazy_exports

_LAZY = {
    "CoxConvergenceWarning": ".cox", "CoxResult": ".cox", "fit_cox": ".cox",
    "fit_recurrent": ".cox",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())

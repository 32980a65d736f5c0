"""Estimators: each takes plain pandas frames and returns a result object.

Names are imported on first use (like the top-level package), so importing
one estimator module does not load the others' dependencies.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "CoxConvergenceWarning": ".cox", "CoxResult": ".cox", "fit_cox": ".cox",
    "fit_recurrent": ".cox",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'imrsurv.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value
    return value

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

__version__ = "0.1.0"

__all__ = ["datasets", "DataError", "History", "Problem", "__version__", "read_history"]

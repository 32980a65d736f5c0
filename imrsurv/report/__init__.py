"""The PDF report: spec, figures, tables, provenance.

The package is callable as :func:`imrsurv.report.build.report`, so ``ims.report(spec,
out)`` works whether or not ``imrsurv.report`` (this package) has been imported:
importing a subpackage binds its name on the parent, shadowing the function.
"""

from __future__ import annotations

import sys
import types
from typing import Any


class _CallablePackage(types.ModuleType):
    """``imrsurv.report(spec, out, ...)`` calls :func:`imrsurv.report.build.report`."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from .build import report

        return report(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage

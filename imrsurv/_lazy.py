"""Lazy package exports: a name's module is imported the first time it is used.

Keeps ``import imrsurv`` (and the ``imrsurv validate`` command) from loading
lifelines, statsmodels, matplotlib or dask until a model, plot or cluster is
asked for.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, names: dict[str, str], namespace: dict[str, Any],
                 modules: frozenset[str] = frozenset()
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``.

    ``names`` maps an exported name to the relative module that defines it;
    names in ``modules`` are the module itself. A resolved value is cached in
    the package's ``namespace``.
    """

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(names[name], package)
        value = module if name in modules else getattr(module, name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        # the package's API and submodules, not the helpers its own code imported
        # (``from __future__ import annotations``, this function)
        hidden = {k for k, v in namespace.items()
                  if v is lazy_exports or type(v).__name__ == "_Feature"}
        return sorted((set(namespace) - hidden) | set(names))

    return __getattr__, __dir__

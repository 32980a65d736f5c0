"""Provenance: what went into a report, so that a reader can rebuild it."""

from __future__ import annotations

import hashlib
import platform
from importlib import metadata
from pathlib import Path

import pandas as pd

PACKAGES = ("imrsurv", "numpy", "scipy", "pandas", "lifelines", "statsmodels", "matplotlib",
            "seaborn", "formulaic", "reportlab", "pypdf")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def versions() -> pd.DataFrame:
    rows = []
    for name in PACKAGES:
        try:
            rows.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            rows.append((name, "not installed"))
    rows.append(("python", platform.python_version()))
    return pd.DataFrame(rows, columns=["package", "version"])


def input_table(files: dict[str, Path], spec_name: str, spec_sha: str) -> pd.DataFrame:
    """Role, file name and SHA-256 of every input and of the spec."""
    rows = [(role, path.name, sha256_file(path)) for role, path in files.items()]
    rows.append(("spec", spec_name, spec_sha))
    return pd.DataFrame(rows, columns=["input", "file", "SHA-256"])

"""Shared test helpers."""

from __future__ import annotations

import io
import textwrap

import pandas as pd
import pytest


def csv(text: str) -> pd.DataFrame:
    """A DataFrame from indented CSV text (all cells as text, like a file)."""
    return pd.read_csv(io.StringIO(textwrap.dedent(text).strip()), dtype=str,
                       keep_default_na=False)


@pytest.fixture
def write_csv(tmp_path):
    """Write indented CSV text to a file and return its path."""

    def _write(name: str, text: str):
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).strip() + "\n")
        return path

    return _write

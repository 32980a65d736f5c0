"""Errors raised for invalid input."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One problem found in the input.

    ``where`` is a human label of the location, e.g. ``line 14`` for a file or
    ``row 3`` for a DataFrame; ``site`` is the site concerned (or None).
    """

    source: str
    where: str | None
    site: str | None
    message: str

    def __str__(self) -> str:
        parts = []
        if self.source:
            parts.append(self.source)
        if self.where:
            parts.append(self.where)
        if self.site is not None:
            parts.append(f'site "{self.site}"')
        prefix = ", ".join(parts)
        return f"{prefix}: {self.message}" if prefix else self.message


class DataError(ValueError):
    """Invalid input. ``.problems`` lists every problem found, not only the first."""

    def __init__(self, problems: list[Problem] | list[str], title: str = "invalid input"):
        self.problems = [p if isinstance(p, Problem) else Problem("", None, None, p)
                         for p in problems]
        self.title = title
        n = len(self.problems)
        lines = [f"{title}: {n} problem{'s' if n != 1 else ''}"]
        lines += [f"  {p}" for p in self.problems]
        super().__init__("\n".join(lines))

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


class NotEstimable(DataError):
    """A quantity the data cannot determine (a singular information matrix, ...).

    The message is one sentence saying what cannot be estimated and why, fit
    to print in a report.
    """

    def __init__(self, message: str, title: str = "cannot be estimated"):
        super().__init__([message], title=title)
        self.reason = message


class ArgumentError(DataError):
    """An invalid function argument (a :class:`DataError`, hence a ``ValueError``).

    Each problem names the argument, the value given and what is allowed.
    """

    def __init__(self, problems: list[Problem] | list[str], title: str = "invalid argument"):
        super().__init__(problems, title=title)


def bad_argument(name: str, value: object, allowed: str) -> ArgumentError:
    """``ArgumentError`` saying ``name=value`` is not allowed and what is."""
    return ArgumentError([f"{name}={value!r} is not allowed: {name} must be {allowed}"])


def check_choice(name: str, value: object, choices: tuple[str, ...] | list[str]) -> str:
    """``value`` if it is one of ``choices``, else :class:`ArgumentError`."""
    if not isinstance(value, str) or value not in choices:
        raise bad_argument(name, value, "one of " + ", ".join(f'"{c}"' for c in choices))
    return value


def check_number(name: str, value: object, *, minimum: float | None = None,
                 strict: bool = False, integer: bool = False) -> float:
    """``value`` as a finite float (``>= minimum``, or ``> minimum`` when ``strict``).

    Strings, booleans, None, nan and inf are refused with :class:`ArgumentError`.
    """
    import math
    import numbers

    kind = "a whole number" if integer else "a finite number"
    if minimum is not None:
        kind += f" {'>' if strict else '>='} {minimum:g}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise bad_argument(name, value, kind)
    v = float(value)
    if not math.isfinite(v) or (integer and v != int(v)):
        raise bad_argument(name, value, kind)
    if minimum is not None and (v <= minimum if strict else v < minimum):
        raise bad_argument(name, value, kind)
    return v

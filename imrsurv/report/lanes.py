"""Run a report's sections in parallel lanes of forked processes, results in order.

A report's sections are independent computations except where one reads
another's fits (``after``: the PH diagnostics reuse the recurrent section's
Cox fits). :func:`plan` groups each section with those it needs and packs the
groups into ``jobs`` lanes by their expected cost, heaviest first (greedy
longest-processing-time). Lane 0 runs in this process; every other lane runs
in a child made by ``os.fork`` right away, so it inherits the loaded data and
imports, and returns its sections' results through a pipe, pickled.

:func:`run` returns the results in the order of ``names`` whatever lane
computed them, so a caller that applies them in that order gets the same
outcome as a serial loop (the report tests compare the PDF bytes of both).

A child that fails for any reason (an exception in a step, a result that does
not pickle, a crash) is not trusted: its steps are run again in this process,
where a genuine error then propagates with its own traceback. :data:`last_run`
says how the last call went. Without ``os.fork`` (Windows), on macOS (where
forking a process that has used system frameworks is unsafe) and with
``jobs=1`` everything runs in this process.
"""

from __future__ import annotations

import os
import pickle
import sys
import traceback
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# default cost (seconds of a Bond-sized report, first build, imports included) of an
# unlisted step; the plan only needs the costs' order of magnitude
DEFAULT_COST = 0.2


@dataclass
class LaneRun:
    """How :func:`run` went: the lanes planned and any lane rerun here, with why."""

    lanes: list[list[str]] = field(default_factory=list)
    forked: int = 0
    rerun: dict[int, str] = field(default_factory=dict)


last_run = LaneRun()
_in_child = False


def is_parent() -> bool:
    """False inside a lane's forked child (which must not write to the terminal)."""
    return not _in_child


def can_fork() -> bool:
    return hasattr(os, "fork") and sys.platform.startswith("linux")


def default_jobs() -> int:
    """2 where forking is safe and the process may use 2 CPUs, else 1."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return 2 if can_fork() and cpus >= 2 else 1


def plan(names: Sequence[str], jobs: int, cost: Mapping[str, float],
         after: Mapping[str, str]) -> list[list[str]]:
    """``names`` split into at most ``jobs`` lanes, each in the order of ``names``.

    A step and the step it runs ``after`` (when both are asked for) share a lane.
    Groups go heaviest first to the lightest lane; lane 0 (this process's) is
    the lightest, since this process also merges the results and writes.
    """
    group_of = {n: n for n in names}
    for n in names:
        dep = after.get(n)
        if dep in group_of:
            root = group_of[dep]
            for m, g in group_of.items():
                if g == group_of[n]:
                    group_of[m] = root
    groups: dict[str, list[str]] = {}
    for n in names:
        groups.setdefault(group_of[n], []).append(n)
    weight = {g: sum(cost.get(n, DEFAULT_COST) for n in members) for g, members in groups.items()}
    lanes: list[list[str]] = [[] for _ in range(max(1, min(jobs, len(groups))))]
    load = [0.0] * len(lanes)
    for g in sorted(groups, key=lambda g: (-weight[g], names.index(g))):
        i = min(range(len(lanes)), key=lambda i: (load[i], -i))
        lanes[i].extend(groups[g])
        load[i] += weight[g]
    order = {n: i for i, n in enumerate(names)}
    lanes = [sorted(lane, key=order.__getitem__) for lane in lanes if lane]
    lanes.sort(key=lambda lane: sum(cost.get(n, DEFAULT_COST) for n in lane))
    return lanes


class _Child:
    """One lane computed in a forked process; :meth:`collect` reads its results."""

    def __init__(self, steps: Sequence[str], step: Callable[[str], Any]) -> None:
        read, write = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        with warnings.catch_warnings():
            # Python >= 3.12 warns that forking a multi-threaded process (BLAS threads)
            # may deadlock; the child runs numpy, matplotlib and reportlab code only
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # the child: compute, send, leave without running exit handlers
            global _in_child
            _in_child = True
            os.close(read)
            code = 0
            try:
                payload = pickle.dumps(("ok", [step(n) for n in steps]),
                                       protocol=pickle.HIGHEST_PROTOCOL)
            except BaseException:  # noqa: BLE001 - any failure sends the lane back
                payload = pickle.dumps(("failed", traceback.format_exc()))
                code = 1
            try:
                with os.fdopen(write, "wb") as pipe:
                    pipe.write(payload)
            finally:
                os._exit(code)
        os.close(write)
        self.pid, self._read, self.steps = pid, read, list(steps)

    def collect(self) -> tuple[list[Any] | None, str]:
        """The lane's results, or None and why it failed."""
        try:
            with os.fdopen(self._read, "rb") as pipe:
                data = pipe.read()
        finally:
            _, status = os.waitpid(self.pid, 0)
        try:
            kind, value = pickle.loads(data)
        except Exception as exc:  # noqa: BLE001 - a truncated pipe: the child died
            return None, f"no result from the child (exit status {status}): {exc!r}"
        return (value, "") if kind == "ok" else (None, value)


def run(names: Sequence[str], step: Callable[[str], Any], *, jobs: int,
        cost: Mapping[str, float] | None = None,
        after: Mapping[str, str] | None = None) -> list[Any]:
    """``[step(n) for n in names]``, the lanes of :func:`plan` in parallel processes.

    ``step`` must not depend on state changed by steps of other lanes, and its
    results must pickle. Forking is used only where :func:`can_fork`.
    """
    global last_run
    names = list(names)
    lanes = plan(names, jobs if can_fork() else 1, cost or {}, after or {})
    last_run = LaneRun(lanes=lanes)
    if len(lanes) == 1:
        return [step(n) for n in names]
    children = [_Child(lane, step) for lane in lanes[1:]]
    last_run.forked = len(children)
    results = {n: step(n) for n in lanes[0]}
    for i, child in enumerate(children, start=1):
        values, why = child.collect()
        if values is None:
            last_run.rerun[i] = why
            values = [step(n) for n in child.steps]
        results.update(zip(child.steps, values, strict=True))
    return [results[n] for n in names]

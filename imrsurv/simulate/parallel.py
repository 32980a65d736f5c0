"""Run independent tasks in this process or on Dask (a LocalCluster or an existing scheduler).

Dask is optional and imported only when used. ``run_tasks(fn, tasks, ...)``
returns the results **in task order** whatever the number of workers and the
order in which tasks finish, so that callers that give every task its own
random seed get identical results on 1 or 20 workers.

Back ends
---------
* ``workers=1`` (or Dask not installed and no ``scheduler``): a loop in this
  process.
* ``scheduler=None`` and ``workers`` None or > 1: a ``distributed.LocalCluster``
  with ``workers`` processes (default: the number of CPUs), one thread each,
  started here and closed when the run ends (also on Ctrl-C or an error);
  on Linux the worker processes are forked (they inherit the imports) unless
  Dask's ``distributed.worker.multiprocessing-method`` says otherwise.
* ``scheduler="tcp://host:port"``: an existing cluster. Its workers must be able
  to import ``imrsurv`` (same version). If the scheduler does not answer within
  ``connect_timeout`` seconds a :class:`SchedulerUnavailable` error says so.

Ctrl-C (KeyboardInterrupt) stops the run: queued tasks are cancelled, a
LocalCluster and its worker processes are shut down, and the results of the
tasks that had finished are returned with ``interrupted=True``.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


class SchedulerUnavailable(ConnectionError):
    """A Dask scheduler address that did not answer within the timeout."""


class DaskNotInstalled(ImportError):
    """Dask is needed for this request (e.g. a scheduler address) but is not installed."""


@dataclass
class TaskRun:
    """Results in task order (None for tasks that did not finish) and how the run went."""

    results: list[Any]
    done: list[bool]
    interrupted: bool
    backend: str
    workers: int
    elapsed: float


def dask_available() -> bool:
    try:
        import distributed  # noqa: F401
    except ImportError:
        return False
    return True


def _need_dask() -> None:
    if not dask_available():
        raise DaskNotInstalled("Dask is not installed: pip install 'imrsurv[dask]' "
                               "(or 'dask[distributed]'), or run with workers=1")


class _Progress:
    """tqdm if installed; otherwise a one-line counter on a terminal; or nothing."""

    def __init__(self, total: int, enabled: bool, desc: str):
        self.bar = None
        self.total, self.n, self.desc = total, 0, desc
        self.text = False
        # quiet when stderr is a file or pipe (logs, CI); a notebook shows tqdm's widget
        if not enabled or not (sys.stderr.isatty() or "ipykernel" in sys.modules):
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:
            self.text = sys.stderr.isatty()
            self._last = 0.0
            return
        self.bar = tqdm(total=total, desc=desc, unit="task", leave=False)

    def update(self, k: int = 1) -> None:
        self.n += k
        if self.bar is not None:
            self.bar.update(k)
        elif self.text and (time.monotonic() - self._last > 0.5 or self.n == self.total):
            self._last = time.monotonic()
            sys.stderr.write(f"\r{self.desc}: {self.n}/{self.total}")
            sys.stderr.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.text:
            sys.stderr.write("\n")


def connect(scheduler: str, connect_timeout: float = 10.0):
    """A ``distributed.Client`` for an existing scheduler, or :class:`SchedulerUnavailable`."""
    _need_dask()
    from distributed import Client

    t0 = time.monotonic()
    try:
        return Client(scheduler, timeout=connect_timeout, set_as_default=False)
    except (OSError, TimeoutError) as exc:  # CommClosedError is an OSError subclass
        waited = time.monotonic() - t0
        raise SchedulerUnavailable(
            f"could not connect to the Dask scheduler at {scheduler} (gave up after "
            f"{waited:.1f} s, timeout {connect_timeout:g} s): {exc}. Is a scheduler running "
            "there (dask scheduler / dask-scheduler)? Or leave out --scheduler to start a "
            "local cluster.") from None


def _start_method() -> str | None:
    """``"fork"`` on Linux when Dask's worker start method is its default (``spawn``).

    A spawned worker is a fresh interpreter that imports numpy, pandas, scipy and
    imrsurv again: 4-10 s for a 2-worker cluster on a busy 2-core machine, more than
    1,000 power replicates take. A forked worker inherits the imports (start-up
    0.7 s there). Elsewhere (macOS, Windows), or when the user configured
    ``distributed.worker.multiprocessing-method``, Dask's setting is kept.
    """
    import dask

    configured = dask.config.get("distributed.worker.multiprocessing-method", "spawn")
    return "fork" if sys.platform.startswith("linux") and configured == "spawn" else None


def start_local_cluster(workers: int, memory_limit: str | int | None = None):
    """A LocalCluster of ``workers`` single-threaded processes and a client on it
    (forked on Linux, see :func:`_start_method`)."""
    _need_dask()
    import dask
    from distributed import Client, LocalCluster

    kw: dict[str, Any] = {"n_workers": workers, "threads_per_worker": 1, "processes": True,
                          "dashboard_address": None, "silence_logs": logging.ERROR}
    if memory_limit is not None:
        kw["memory_limit"] = memory_limit
    method = _start_method()
    if method is None:
        cluster = LocalCluster(**kw)
    else:
        with dask.config.set({"distributed.worker.multiprocessing-method": method}):
            cluster = LocalCluster(**kw)
    try:
        client = Client(cluster, set_as_default=False)
        # Ctrl-C in a terminal reaches the whole process group: let only this process
        # handle it (it cancels the tasks and closes the cluster), not the workers
        client.run(_ignore_sigint)
    except BaseException:
        cluster.close()
        raise
    return cluster, client


def _ignore_sigint() -> None:
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def default_workers() -> int:
    return max(1, os.cpu_count() or 1)


def run_tasks(fn: Callable[[Any], Any], tasks: Sequence[Any], *, scheduler: str | None = None,
              workers: int | None = None, progress: bool = True, desc: str = "tasks",
              connect_timeout: float = 10.0) -> TaskRun:
    """Apply ``fn`` (an importable top-level function) to every task; see the module docstring."""
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                or workers < 1):
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if scheduler is not None and workers is not None:
        raise ValueError("give workers (a local cluster) or scheduler (an existing one), not both")
    if scheduler is None and workers is not None and workers > 1 and not dask_available():
        # an explicit request for parallel workers is not quietly run on one
        raise DaskNotInstalled(f"workers={workers} needs Dask, which is not installed: pip "
                               "install 'imrsurv[dask]' (or 'dask[distributed]'), or run with "
                               "workers=1")
    t0 = time.monotonic()
    if scheduler is None and (workers == 1 or not dask_available()):
        run = _run_serial(fn, tasks, progress, desc)
        if workers is None:
            run.backend = "this process (one worker: Dask is not installed)"
    elif scheduler is not None:
        client = connect(scheduler, connect_timeout)
        try:
            n = len(client.scheduler_info().get("workers", {}))
            run = _run_dask(client, fn, tasks, progress, desc, f"dask scheduler {scheduler}", n)
        finally:
            client.close()
    else:
        n = workers or default_workers()
        cluster, client = start_local_cluster(n)
        try:
            run = _run_dask(client, fn, tasks, progress, desc, "dask LocalCluster", n)
        finally:
            client.close()
            cluster.close()
    run.elapsed = time.monotonic() - t0
    return run


def _run_serial(fn: Callable[[Any], Any], tasks: Sequence[Any], progress: bool, desc: str
                ) -> TaskRun:
    results: list[Any] = [None] * len(tasks)
    done = [False] * len(tasks)
    bar = _Progress(len(tasks), progress, desc)
    interrupted = False
    try:
        for i, task in enumerate(tasks):
            results[i] = fn(task)
            done[i] = True
            bar.update()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
    return TaskRun(results, done, interrupted, "this process", 1, 0.0)


def _run_dask(client: Any, fn: Callable[[Any], Any], tasks: Sequence[Any], progress: bool,
              desc: str, backend: str, n_workers: int) -> TaskRun:
    from distributed import as_completed

    results: list[Any] = [None] * len(tasks)
    done = [False] * len(tasks)
    bar = _Progress(len(tasks), progress, desc)
    futures = []
    interrupted = False
    try:
        futures = [client.submit(fn, task, pure=False, key=f"imrsurv-{desc}-{i}-{os.getpid()}-"
                                 f"{time.monotonic_ns()}") for i, task in enumerate(tasks)]
        index = {f.key: i for i, f in enumerate(futures)}
        for fut in as_completed(futures, loop=client.loop):
            i = index[fut.key]
            results[i] = fut.result()  # re-raises a task's exception here
            done[i] = True
            bar.update()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
        pending = [f for f in futures if not f.done()]
        if pending:
            client.cancel(pending)
    return TaskRun(results, done, interrupted, backend, n_workers, 0.0)


__all__ = ["DaskNotInstalled", "SchedulerUnavailable", "TaskRun", "connect", "dask_available",
           "default_workers", "run_tasks", "start_local_cluster"]

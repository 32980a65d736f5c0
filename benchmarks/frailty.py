"""Time imrsurv's shared frailty fit against R ``coxph(... + frailty(cluster))`` (sparse).

Data: ``tests/fixtures/frailty/make_data.py``'s seeded ``simulate`` (recurrent
(start, stop] rows, about 14.3 per cluster, so 7,000 clusters are 100,000
rows; gamma frailty, tied event times), written to a CSV that both sides read.
Model: ``Surv(start, stop, event) ~ x1 + x2 + frailty(cluster)``, Efron ties,
gamma frailty by R's default method (em, sparse for more than 5 groups).

Every fit runs in its own subprocess:

* imrsurv: wall time of ``fit_cox_frailty`` (best of ``--repeat``), the peak
  of traced allocations during a further fit (tracemalloc) and the
  subprocess's peak RSS (interpreter, pandas and the data included);
* R: ``system.time(coxph(...))`` and the Rscript process's peak RSS (VmHWM), only up
  to ``--r-max-clusters`` clusters (R's sparse code costs O(deaths x
  clusters) per Newton step).

For sizes both ran, the largest relative difference of the coefficients,
theta and the log-likelihood is reported; the growth slope is the least
squares slope of log(time) on log(clusters).

Usage::

    python benchmarks/frailty.py                              # 100 .. 10,000 clusters
    python benchmarks/frailty.py --clusters 1000 7000 --r-max-clusters 7000
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ROWS_PER_CLUSTER = 100_000 / 7_000
FORMULA = "x1 + x2"

PY_FIT = textwrap.dedent("""
    import json, resource, sys, time, tracemalloc
    import pandas as pd
    from imrsurv.models.frailty import fit_cox_frailty
    d = pd.read_csv(sys.argv[1])
    repeat = int(sys.argv[2])
    def fit():
        return fit_cox_frailty(d, "@FORMULA@", start="start", stop="stop", event="event",
                               frailty="cluster")
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        res = fit()
        best = min(best, time.perf_counter() - t)
    tracemalloc.start()
    fit()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(json.dumps({"time": best, "traced_peak": peak,
                      "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                      "coef": res.params.tolist(), "theta": res.frailty_variance,
                      "loglik": res.loglik, "iter": list(res.iterations),
                      "rows": res.n, "events": res.n_events}))
""").replace("@FORMULA@", FORMULA)

R_FIT = textwrap.dedent("""
    suppressPackageStartupMessages({library(survival); library(jsonlite)})
    a <- commandArgs(TRUE)
    d <- read.csv(a[1])
    t <- system.time(f <- coxph(Surv(start, stop, event) ~ @FORMULA@ + frailty(cluster), data = d))
    h <- f$history[[1]]$history
    hwm <- grep("^VmHWM", readLines("/proc/self/status"), value = TRUE)
    rss <- as.numeric(gsub("[^0-9]", "", hwm)) * 1024
    cat(toJSON(list(time = t[["elapsed"]], coef = unname(coef(f)), theta = h[nrow(h), 1],
                    loglik = f$loglik[2], iter = f$iter, rss = rss), digits = NA,
               auto_unbox = TRUE))
""").replace("@FORMULA@", FORMULA)


def _simulate():
    spec = importlib.util.spec_from_file_location(
        "make_data", ROOT / "tests" / "fixtures" / "frailty" / "make_data.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.simulate


def _run(cmd: list[str], timeout: float) -> dict | None:
    """Run ``cmd`` and parse the JSON line it prints last (None on failure or timeout)."""
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True)
    except (subprocess.TimeoutExpired, subprocess.CalledProcessError) as exc:
        print(f"  failed: {' '.join(cmd[:2])}: {type(exc).__name__}", file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def _rel(a, b) -> float:
    a, b = np.atleast_1d(np.asarray(a, float)), np.atleast_1d(np.asarray(b, float))
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


def _slope(x: list[float], y: list[float]) -> float:
    ok = np.isfinite(y)
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(np.asarray(x)[ok]), np.log(np.asarray(y)[ok]), 1)[0])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clusters", type=int, nargs="+",
                    default=[100, 300, 1000, 3000, 7000, 10000])
    ap.add_argument("--r-max-clusters", type=int, default=7000)
    ap.add_argument("--r-timeout", type=float, default=600.0)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--seed", type=int, default=20261203)
    ap.add_argument("--out", type=Path, default=None, help="also write the rows as JSON")
    args = ap.parse_args(argv)
    simulate = _simulate()
    have_r = shutil.which("Rscript") is not None
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rscript = Path(tmp) / "fit.R"
        rscript.write_text(R_FIT)
        for q in args.clusters:
            csv = Path(tmp) / f"frailty_{q}.csv"
            simulate(q, ROWS_PER_CLUSTER, seed=args.seed).to_csv(csv, index=False)
            py = _run([sys.executable, "-c", PY_FIT, str(csv), str(args.repeat)], 3600)
            r = None
            if have_r and q <= args.r_max_clusters:
                r = _run(["Rscript", str(rscript), str(csv)], args.r_timeout)
            row = {"clusters": q, "rows": py["rows"] if py else None,
                   "events": py["events"] if py else None,
                   "imrsurv_s": py["time"] if py else float("nan"),
                   "imrsurv_traced_mb": py["traced_peak"] / 1e6 if py else float("nan"),
                   "imrsurv_rss_mb": py["rss"] / 1e6 if py else float("nan"),
                   "r_s": r["time"] if r else float("nan"),
                   "r_rss_mb": r["rss"] / 1e6 if r else float("nan")}
            if py and r:
                row.update(rel_coef=_rel(py["coef"], r["coef"]),
                           rel_theta=_rel(py["theta"], r["theta"]),
                           rel_loglik=_rel(py["loglik"], r["loglik"]),
                           same_iterations=list(py["iter"]) == list(r["iter"]))
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    qs = [r["clusters"] for r in rows]
    print(f"\nmachine: {platform.machine()}, {platform.python_version()}, "
          f"{_cpu_count()} CPUs; seed {args.seed}; {ROWS_PER_CLUSTER:.1f} rows per cluster\n")
    print("| clusters | rows | events | imrsurv s | imrsurv traced MB | imrsurv RSS MB "
          "| R frailty() s | R RSS MB | R / imrsurv | max rel diff (coef, theta, loglik) "
          "| same iterations |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for r in rows:
        diff = (f"{r['rel_coef']:.1e}, {r['rel_theta']:.1e}, {r['rel_loglik']:.1e}"
                if "rel_coef" in r else "")
        print(f"| {r['clusters']:,} | {r['rows']:,} | {r['events']:,} | {r['imrsurv_s']:.2f} "
              f"| {r['imrsurv_traced_mb']:.0f} | {r['imrsurv_rss_mb']:.0f} | {_f(r['r_s'])} "
              f"| {_f(r['r_rss_mb'], 0)} | {_f(r['r_s'] / r['imrsurv_s'], 1)} | {diff} "
              f"| {r.get('same_iterations', '')} |")
    print(f"\ngrowth slope d log(time) / d log(clusters): imrsurv "
          f"{_slope(qs, [r['imrsurv_s'] for r in rows]):.2f}, R "
          f"{_slope(qs, [r['r_s'] for r in rows]):.2f}")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))


def _f(v: float, digits: int = 2) -> str:
    return "" if not np.isfinite(v) else f"{v:.{digits}f}"


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


if __name__ == "__main__":
    main()

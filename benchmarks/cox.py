"""Time imrsurv's Cox engine against R survival::coxph, lifelines and statsmodels.

Andersen-Gill (start, stop] data with 5 covariates (two time-varying),
continuous event times and clusters of repeated events (about 10 rows per
cluster).  Every fit runs in its own subprocess so that its peak memory can
be measured:

* imrsurv: after one warm-up fit on the first 60,000 rows (one-off costs:
  importing numba and loading the compiled kernels from its cache, the
  formula coding; its time is kept as ``warmup_seconds``), wall and CPU time
  of ``fit_cox`` (robust variance included when clustered; best of 3 up to
  2M rows, one fit above), peak of traced allocations during the fit
  (tracemalloc, a further run; up to 2M rows) and the subprocess's peak RSS
  after the fits (interpreter, pandas and the data included; the parquet
  reader's memory pool is released first); then (up to 2M rows) the time of
  the lazily computed ``tests`` and ``concordance`` that R computes inside
  ``coxph``;
* R: ``system.time(coxph(...))`` (naive: best of 3 up to 100k rows, of 2 up
  to 2M) and ``gc()``'s "max used" during the fit (the R heap), plus the
  Rscript process's peak RSS;
* lifelines ``CoxTimeVaryingFitter`` and statsmodels ``PHReg`` (Efron, entry
  times) only up to ``--peer-max-rows`` rows and under ``--peer-timeout``.

Usage::

    python benchmarks/cox.py                       # 10k .. 1M rows
    python benchmarks/cox.py --max-rows 10000000   # up to 10M
    python benchmarks/cox.py --sizes 10000 100000 --out /tmp/cox.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
from pathlib import Path

import numpy as np
import pandas as pd

BETA = np.array([0.4, -0.3, 0.2, 0.0, 0.25])
COVS = [f"x{j}" for j in range(1, 6)]


# From this many rows on, make_ag drops intervals shorter than 1e-6: at 10M rows a few
# of them merge to length 0 under R's time fix, which R and imrsurv then both refuse.
SHORT_DROP_ROWS = 5_000_000


def make_ag(n_rows: int, seed: int = 1, rows_per_id: int = 10,
            min_length: float | None = None) -> pd.DataFrame:
    """Seeded AG data: per row an exponential gap with rate 0.5 exp(x'beta), censored.

    Rows with ``stop - start <= min_length`` are dropped (default: 0 below
    ``SHORT_DROP_ROWS`` rows, 1e-6 from there on).
    """
    if min_length is None:
        min_length = 1e-6 if n_rows >= SHORT_DROP_ROWS else 0.0
    rng = np.random.default_rng(seed)
    n_id = max(1, n_rows // rows_per_id)
    ids = np.repeat(np.arange(n_id), rows_per_id)[:n_rows]
    n = ids.size
    x = np.empty((n, 5))
    x[:, 0] = rng.normal(size=n_id)[ids]              # cluster-level
    x[:, 1] = rng.integers(0, 2, n_id)[ids]           # cluster-level binary
    x[:, 2] = rng.normal(size=n)                      # time-varying
    x[:, 3] = rng.integers(0, 2, n)                   # time-varying binary
    x[:, 4] = rng.gamma(2.0, 1.0, n_id)[ids]          # cluster-level skewed
    frail = rng.gamma(4.0, 0.25, n_id)[ids]
    rate = 0.5 * frail * np.exp(x @ BETA)
    gap = rng.exponential(1 / rate)
    cens = rng.exponential(4.0, n)
    length = np.minimum(gap, cens)
    event = (gap <= cens).astype(np.int8)
    cs = np.cumsum(length)
    first = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    before = (cs[first] - length[first])[ids]
    stop = cs - before
    # each row starts exactly where the previous one stopped (no round-off gaps)
    start_ = np.r_[0.0, stop[:-1]]
    start_[first] = 0.0
    keep = stop - start_ > min_length
    ids, x, stop, start_, event = ids[keep], x[keep], stop[keep], start_[keep], event[keep]
    df = pd.DataFrame(x, columns=COVS)
    df.insert(0, "id", ids)
    df.insert(1, "start", start_)
    df.insert(2, "stop", stop)
    df.insert(3, "event", event)
    return df


# -- runners (each a subprocess) -------------------------------------------------

PY_IMRSURV = """
import json, os, sys, time, tracemalloc, resource
import pandas as pd, pyarrow as pa
from imrsurv.models import _coxcore as core
from imrsurv.models.cox import fit_cox
df = pd.read_parquet(sys.argv[1]); cluster = sys.argv[2] or None
heavy = len(df) > 2_000_000          # one timed fit; no traced run, no tests / concordance
pa.default_memory_pool().release_unused()   # the parquet reader's pool, not the fit's
f = " + ".join(["x1", "x2", "x3", "x4", "x5"])
kw = dict(start="start", stop="stop", event="event", cluster=cluster)
t0 = time.perf_counter()    # one-off costs: numba import and compiled-kernel cache, formula coding
fit_cox(df.head(min(len(df), core.FAST_MIN_ROWS + 10_000)), f, **kw)
warmup = time.perf_counter() - t0
times, cpu, res = [], [], None
for _ in range(1 if heavy else 3):
    res = None   # keep one result alive, as a user would
    t0, c0 = time.perf_counter(), time.process_time()
    res = fit_cox(df, f, **kw)
    times.append(time.perf_counter() - t0); cpu.append(time.process_time() - c0)
rss_fit = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
peak = extras = None
if not heavy:
    tracemalloc.start(); fit_cox(df, f, **kw); _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop(); peak /= 2**20
    t0 = time.perf_counter(); res.tests; res.concordance; extras = time.perf_counter() - t0
print(json.dumps(dict(seconds=min(times), cpu_seconds=min(cpu), warmup_seconds=warmup,
     traced_peak_mb=peak, extras_seconds=extras, rss_mb=rss_fit,
     rss_with_extras_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
     compiled=core.use_kernels(res._pb), coef=res.params.tolist(), se=res.se.tolist(),
     iterations=res.iterations)))
"""

PY_LIFELINES = """
import json, sys, time, resource, warnings
import pandas as pd
from lifelines import CoxTimeVaryingFitter
warnings.simplefilter("ignore")
df = pd.read_parquet(sys.argv[1])
t0 = time.perf_counter()
m = CoxTimeVaryingFitter().fit(df, id_col="id", start_col="start", stop_col="stop",
                               event_col="event")
print(json.dumps(dict(seconds=time.perf_counter() - t0,
     rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
     coef=m.params_.tolist())))
"""

PY_STATSMODELS = """
import json, sys, time, resource
import pandas as pd
from statsmodels.duration.hazard_regression import PHReg
df = pd.read_parquet(sys.argv[1])
t0 = time.perf_counter()
r = PHReg(df["stop"].to_numpy(), df[["x1","x2","x3","x4","x5"]].to_numpy(),
          status=df["event"].to_numpy(), entry=df["start"].to_numpy(), ties="efron").fit()
print(json.dumps(dict(seconds=time.perf_counter() - t0,
     rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
     coef=list(map(float, r.params)))))
"""

R_SCRIPT = r"""
suppressPackageStartupMessages(library(survival))
args <- commandArgs(TRUE)
d <- read.csv(args[1])
reps <- as.integer(args[3])
f <- Surv(start, stop, event) ~ x1 + x2 + x3 + x4 + x5
invisible(gc(reset = TRUE))
best <- Inf
for (r in seq_len(reps)) {
  if (args[2] == "cluster") {
    tm <- system.time(fit <- coxph(f, data = d, ties = "efron", cluster = id))
  } else {
    tm <- system.time(fit <- coxph(f, data = d, ties = "efron"))
  }
  if (tm[["elapsed"]] < best) cpu <- tm[["user.self"]] + tm[["sys.self"]]
  best <- min(best, tm[["elapsed"]])
}
g <- gc()
cat(sprintf('{"seconds": %.6f, "cpu_seconds": %.6f, "heap_max_mb": %.1f, "coef": [%s], "se": [%s]}\n',
    best, cpu, sum(g[, ncol(g)]),
    paste(sprintf("%.17g", coef(fit)), collapse = ", "),
    paste(sprintf("%.17g", sqrt(diag(fit$var))), collapse = ", ")))
"""


def run_child(cmd: list[str], timeout: float) -> dict:
    """Run a subprocess; return its last JSON line plus its peak RSS (from wait4)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        timed_out = not timer.is_alive()
        timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if timed_out:
        return {"error": f"> {timeout:.0f} s (stopped)", "timeout": timeout}
    if proc.returncode != 0:
        return {"error": stderr.strip().splitlines()[-1] if stderr.strip() else "failed"}
    line = [ln for ln in stdout.splitlines() if ln.startswith("{")][-1]
    res = json.loads(line)
    res["process_rss_mb"] = usage.ru_maxrss / 1024
    return res


def bench_size(n: int, tmp: Path, args: argparse.Namespace) -> list[dict]:
    df = make_ag(n, seed=n)
    pq = tmp / f"ag_{n}.parquet"
    df.to_parquet(pq)
    rows = []
    n_events = int(df.event.sum())
    n_id = int(df.id.nunique())

    def rec(tool: str, variant: str, r: dict) -> None:
        r.update(tool=tool, variant=variant, rows=n, events=n_events, clusters=n_id,
                 load=os.getloadavg()[0])
        rows.append(r)
        secs = r.get("seconds")
        print(f"  {tool:<28}{variant:<12}"
              + (f"{secs:9.3f} s" if secs is not None else f"  {r.get('error')}"), flush=True)

    print(f"{n:,} rows, {n_events:,} events, {n_id:,} clusters", flush=True)
    py, only = sys.executable, set(args.only)
    if "imrsurv" in only:
        rec("imrsurv", "naive", run_child([py, "-c", PY_IMRSURV, str(pq), ""], args.timeout))
        rec("imrsurv", "cluster", run_child([py, "-c", PY_IMRSURV, str(pq), "id"], args.timeout))
    if n <= args.peer_max_rows and "lifelines" in only:
        rec("lifelines CoxTimeVarying", "naive",
            run_child([py, "-c", PY_LIFELINES, str(pq)], args.peer_timeout))
    if n <= args.peer_max_rows and "statsmodels" in only:
        rec("statsmodels PHReg", "naive",
            run_child([py, "-c", PY_STATSMODELS, str(pq)], args.peer_timeout))
    rscript = shutil.which("Rscript")
    if rscript and not args.no_r and only & {"r-naive", "r-cluster"}:
        csv = tmp / f"ag_{n}.csv"
        df.to_csv(csv, index=False)
        rfile = tmp / "bench.R"
        rfile.write_text(R_SCRIPT)
        if "r-naive" in only:
            reps = "3" if n <= 100_000 else "2" if n <= 2_000_000 else "1"
            rec("R coxph", "naive",
                run_child([rscript, str(rfile), str(csv), "naive", reps], args.timeout))
        if "r-cluster" in only:
            rec("R coxph", "cluster", run_child([rscript, str(rfile), str(csv), "cluster", "1"],
                                                args.r_cluster_timeout))
        csv.unlink()
    pq.unlink()
    return rows


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, {platform.system()}"


def versions() -> str:
    import lifelines
    import numpy
    import statsmodels

    r = ""
    if shutil.which("Rscript"):
        r = subprocess.run(["Rscript", "-e", 'cat(R.version.string, "/ survival",'
                            ' format(packageVersion("survival")))'],
                           capture_output=True, text=True).stdout.strip()
    return (f"Python {platform.python_version()}, numpy {numpy.__version__}, lifelines "
            f"{lifelines.__version__}, statsmodels {statsmodels.__version__}; {r}")


def markdown(rows: list[dict], cmd: str) -> str:
    df = pd.DataFrame(rows)
    out = ["| rows | events | tool | variance | seconds | CPU s | peak memory in fit (MB) "
           "| process peak RSS (MB) | max rel. diff vs R: coef | se | load |",
           "|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for _, r in df.iterrows():
        mem = r.get("traced_peak_mb")
        if mem is None or pd.isna(mem):
            mem = r.get("heap_max_mb")
        ref = df[(df.rows == r.rows) & (df.tool == "R coxph") & (df.variant == r.variant)]
        diff = {"coef": "", "se": ""}
        for key in diff:
            if r.tool != "R coxph" and len(ref) and isinstance(ref.iloc[0].get(key), list) \
                    and isinstance(r.get(key), list):
                a, b = np.array(r[key]), np.array(ref.iloc[0][key])
                diff[key] = f"{np.max(np.abs(a - b) / np.abs(b)):.1e}"
        secs = f"{r.seconds:.3f}" if pd.notna(r.get("seconds")) else r.get("error", "")
        mem_s = f"{mem:.0f}" if mem is not None and pd.notna(mem) else ""
        rss = r.get("rss_mb") if r.tool == "imrsurv" else r.get("process_rss_mb")
        rss_s = f"{rss:.0f}" if rss is not None and pd.notna(rss) else ""
        cpu = r.get("cpu_seconds")
        cpu_s = f"{cpu:.3f}" if cpu is not None and pd.notna(cpu) else ""
        out.append(f"| {r.rows:,} | {r.events:,} | {r.tool} | {r.variant} | {secs} | {cpu_s} | "
                   f"{mem_s} | {rss_s} | {diff['coef']} | {diff['se']} | {_load(r)} |")
    out.append("")
    out += ratio_lines(df)
    out.append("")
    out += growth_lines(df)
    out.append("")
    out.append(f"Command: `{cmd}`")
    return "\n".join(out)


def _load(r: pd.Series) -> str:
    load = r.get("load")
    return f"{load:.1f}" if load is not None and pd.notna(load) else ""


def _seconds(sub: pd.DataFrame, tool: str, variant: str) -> float | None:
    try:
        v = sub.loc[(tool, variant), "seconds"]
    except KeyError:
        return None
    return float(v) if pd.notna(v) else None


def ratio_lines(df: pd.DataFrame) -> list[str]:
    lines = []
    for n in sorted(df.rows.unique()):
        sub = df[df.rows == n].set_index(["tool", "variant"])
        parts = []
        for peer, var in [("R coxph", "naive"), ("R coxph", "cluster"),
                          ("lifelines CoxTimeVarying", "naive"), ("statsmodels PHReg", "naive")]:
            mine, theirs = _seconds(sub, "imrsurv", var), _seconds(sub, peer, var)
            if mine and theirs:
                parts.append(f"{theirs / mine:.1f}x vs {peer} ({var})")
            elif mine and (peer, var) in sub.index and "timeout" in sub.columns \
                    and pd.notna(sub.loc[(peer, var), "timeout"]):
                bound = float(sub.loc[(peer, var), "timeout"]) / mine
                parts.append(f"> {bound:.0f}x vs {peer} ({var}, stopped)")
        extra = _seconds(sub.rename(columns={"seconds": "_s", "extras_seconds": "seconds"}),
                         "imrsurv", "cluster") if "extras_seconds" in sub.columns else None
        if parts:
            lines.append(f"- {n:,} rows: imrsurv is " + ", ".join(parts)
                         + (f"; the lazily computed tests and concordance (which R's coxph "
                            f"computes inside the fit) add {extra:.2f} s" if extra else ""))
    return lines


def growth_lines(df: pd.DataFrame) -> list[str]:
    """Per tool and variance: wall seconds against rows and the slope ``d log t / d log n``
    between consecutive sizes (1 = linear; per decade when the sizes are 10x apart)."""
    lines = []
    for (tool, var), g in df[df.seconds.notna()].groupby(["tool", "variant"], sort=False):
        g = g.sort_values("rows")
        if len(g) < 2:
            continue
        n, t = g.rows.to_numpy(float), g.seconds.to_numpy(float)
        slope = np.log(t[1:] / t[:-1]) / np.log(n[1:] / n[:-1])
        steps = [f"{int(n[i]):,} -> {int(n[i + 1]):,}: {slope[i]:.2f}" for i in range(len(slope))]
        lines.append(f"- growth, {tool} ({var}): slope d log t / d log n " + "; ".join(steps))
    return lines


TOOLS = ("imrsurv", "lifelines", "statsmodels", "r-naive", "r-cluster")
ORDER = ["imrsurv", "lifelines CoxTimeVarying", "statsmodels PHReg", "R coxph"]


def merge(previous: Path | None, rows: list[dict]) -> list[dict]:
    """Earlier results overridden by this run's, per (rows, tool, variant)."""
    if previous is None or not previous.exists():
        return rows
    new = {(r["rows"], r["tool"], r["variant"]) for r in rows}
    old = [r for r in json.loads(previous.read_text())
           if (r["rows"], r["tool"], r["variant"]) not in new]
    out = old + rows
    return sorted(out, key=lambda r: (r["rows"], ORDER.index(r["tool"]), r["variant"] != "naive"))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-rows", type=int, default=1_000_000)
    ap.add_argument("--sizes", type=int, nargs="*")
    ap.add_argument("--peer-max-rows", type=int, default=20_000)
    ap.add_argument("--peer-timeout", type=float, default=300)
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--r-cluster-timeout", type=float, default=3600)
    ap.add_argument("--no-r", action="store_true")
    ap.add_argument("--only", nargs="+", default=list(TOOLS), choices=TOOLS,
                    help="run only these fits")
    ap.add_argument("--merge", type=Path,
                    help="JSON of an earlier run: keep its results for fits not re-run here")
    ap.add_argument("--out", type=Path, help="write raw results as JSON here")
    ap.add_argument("--markdown", type=Path, help="write the results table here")
    args = ap.parse_args(argv)
    sizes = args.sizes or [s for s in (10_000, 20_000, 100_000, 1_000_000, 10_000_000)
                           if s <= args.max_rows]
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as d:
        for n in sizes:
            rows += bench_size(n, Path(d), args)
            if args.out:
                args.out.write_text(json.dumps(merge(args.merge, rows), indent=1))
    rows = merge(args.merge, rows)
    cmd = "python benchmarks/cox.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = textwrap.dedent(f"""\
        Machine: {machine()}
        Software: {versions()}

        """) + markdown(rows, cmd.strip())
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")


if __name__ == "__main__":
    main()

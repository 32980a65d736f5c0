"""Out-of-core Cox (imrsurv.models.cox_dask.fit_cox_dask) on a generated Parquet dataset.

    python benchmarks/dask_cox.py                      # 2,000,000 rows
    python benchmarks/dask_cox.py --rows 20000000      # 20M rows
    python benchmarks/dask_cox.py --compare            # also the in-memory fit_cox

The dataset is a seeded Andersen-Gill cohort in counting-process form: sites
with 10 consecutive (start, stop] intervals each (planned lengths uniform on
0.2-1.0 years), covariates constant on each interval (``x1`` normal with a
site component, ``x2`` 0/1, ``team`` 1-8), and a discontinuation hazard
``0.3 exp(0.5 x1 - 0.4 x2 - 0.1 (team - 4))``: the event time within an
interval is drawn exactly (exponential), an event ends the interval early and
the site goes on (recurrent events). Times are rounded to 0.001 years, so
event times tie (Efron matters). Written as Parquet files of 250,000 rows
(one Dask partition each), chunk ``i`` from ``SeedSequence(seed).spawn``.

The fit runs on a LocalCluster of 2 worker processes (1 thread each) with
``memory_limit`` 2 GB per worker, Efron ties, robust errors clustered by site.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

CHUNK = 250_000
INTERVALS = 10
TRUE = {"x1": 0.5, "x2": -0.4, "team": -0.1}


def make_chunk(i: int, rows: int, seed: np.random.SeedSequence, site0: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n_sites = rows // INTERVALS
    shape = (n_sites, INTERVALS)
    site_effect = rng.normal(0, 0.5, size=(n_sites, 1))
    x1 = site_effect + rng.normal(0, 0.8, size=shape)
    x2 = (rng.random(shape) < 0.5).astype(float)
    team = np.clip(rng.integers(2, 8, size=(n_sites, 1)) + rng.integers(-1, 2, size=shape), 1, 8)
    planned = rng.uniform(0.2, 1.0, size=shape)
    rate = 0.3 * np.exp(TRUE["x1"] * x1 + TRUE["x2"] * x2 + TRUE["team"] * (team - 4))
    t_event = rng.exponential(1.0 / rate)
    event = t_event < planned
    length = np.round(np.where(event, t_event, planned), 3)
    length = np.maximum(length, 0.001)
    stop = np.round(np.cumsum(length, axis=1), 3)
    start = np.round(np.c_[np.zeros(n_sites), stop[:, :-1]], 3)
    return pd.DataFrame({
        "site": np.repeat(np.arange(site0, site0 + n_sites, dtype=np.int64), INTERVALS),
        "start": start.ravel(), "stop": stop.ravel(), "event": event.ravel().astype(np.int8),
        "x1": x1.ravel(), "x2": x2.ravel(), "team": team.ravel().astype(float)})


def make_dataset(path: Path, rows: int, seed: int) -> float:
    t0 = time.perf_counter()
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    n_chunks = -(-rows // CHUNK)
    seeds = np.random.SeedSequence(seed).spawn(n_chunks)
    site0 = 0
    for i in range(n_chunks):
        r = min(CHUNK, rows - i * CHUNK)
        df = make_chunk(i, r, seeds[i], site0)
        site0 += r // INTERVALS
        df.to_parquet(path / f"part-{i:05d}.parquet", index=False)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--memory-limit", default="2GB")
    ap.add_argument("--data", type=Path, default=None,
                    help="Parquet folder (default: a temporary folder, removed afterwards)")
    ap.add_argument("--compare", action="store_true",
                    help="also fit the in-memory fit_cox on the same rows and compare")
    ap.add_argument("--json", type=Path, help="write the figures as JSON here")
    args = ap.parse_args(argv)

    import dask.dataframe as dd
    from distributed import Client, LocalCluster
    from distributed.diagnostics import MemorySampler

    from imrsurv.models.cox_dask import fit_cox_dask

    data = args.data or Path(os.environ.get("TMPDIR", "/tmp")) / f"imrsurv_dask_cox_{args.rows}"
    gen_s = make_dataset(data, args.rows, args.seed)
    size_mb = sum(f.stat().st_size for f in data.glob("*.parquet")) / 1e6
    print(f"dataset: {args.rows:,} rows in {len(list(data.glob('*.parquet')))} Parquet files, "
          f"{size_mb:.0f} MB, generated in {gen_s:.1f} s")
    figures: dict = {"rows": args.rows, "parquet_mb": round(size_mb, 1),
                     "workers": args.workers, "memory_limit": args.memory_limit}
    t0 = time.perf_counter()
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                      memory_limit=args.memory_limit, dashboard_address=None,
                      silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        t_cluster = time.perf_counter() - t0
        ddf = dd.read_parquet(str(data))
        sampler = MemorySampler()
        t1 = time.perf_counter()
        with sampler.sample("fit", client=client, measure="process", interval=0.5):
            res = fit_cox_dask(ddf, "x1 + x2 + team", start="start", stop="stop",
                               event="event", cluster="site", ties="efron")
        fit_s = time.perf_counter() - t1
    print(f"cluster start {t_cluster:.1f} s; fit {fit_s:.1f} s "
          f"({res.iterations} Newton iterations, {res.passes} passes over the data)")
    print(res)
    print(f"phases (s): {res.timings}")
    peak_mb = round(float(sampler.to_pandas()["fit"].max()) / 1e6)
    print(f"peak process memory of the {args.workers} workers together during the fit: "
          f"{peak_mb} MB (limit {args.memory_limit} each)")
    worker_mb = peak_mb
    figures.update({"cluster_start_s": round(t_cluster, 2), "fit_s": round(fit_s, 2),
                    "iterations": res.iterations, "passes": res.passes,
                    "n_events": res.n_events, "event_times": res.n_event_times,
                    "n_clusters": res.n_clusters, "partitions": res.n_partitions,
                    "params": res.params.round(6).to_dict(), "se": res.se.round(6).to_dict(),
                    "loglik": res.loglik, "phases_s": res.timings, "true": TRUE,
                    "workers_peak_memory_mb": worker_mb})
    if args.compare:
        from imrsurv.models.cox import fit_cox

        t2 = time.perf_counter()
        frame = pd.read_parquet(data)
        ref = fit_cox(frame, "x1 + x2 + team", start="start", stop="stop", event="event",
                      cluster="site", ties="efron")
        mem_s = time.perf_counter() - t2
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
        dparams = float(np.abs(ref.params - res.params).max())
        dse = float(np.abs(ref.se - res.se).max())
        print(f"in-memory fit_cox: {mem_s:.1f} s (read + fit), client peak RSS {rss:.0f} MB; "
              f"max |coef diff| {dparams:.2e}, max |robust se diff| {dse:.2e}, "
              f"loglik diff {ref.loglik - res.loglik:.2e}")
        figures.update({"in_memory_s": round(mem_s, 2), "in_memory_peak_rss_mb": round(rss),
                        "max_abs_coef_diff": dparams, "max_abs_se_diff": dse,
                        "loglik_diff": ref.loglik - res.loglik})
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=float) + "\n")
    if args.data is None:
        shutil.rmtree(data, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

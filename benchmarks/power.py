"""Power-analysis benchmark: speed on 2 local Dask workers, and CI coverage.

    python benchmarks/power.py                 # the figures in RESULTS.md (~13 min on 2 cores)
    python benchmarks/power.py --quick         # a smoke run
    python benchmarks/power.py --runs size --size-replicates 2000   # the small-sample table
    python benchmarks/power.py --runs speed --old 7bdb309    # speed beside an older imrsurv

Runs (each a separate ``imrsurv.simulate.power_analysis`` call on a LocalCluster of
``--workers`` processes started and stopped by imrsurv; cluster start-up is
included in the wall time):

1. speed: ``--replicates`` (1000) cohorts of the Bond-sized design, 49 sites
   followed 6 years (common entry), HR 2 for a leadership change in the past
   year, analysed with the Andersen-Gill model (robust errors by site);
2. null: the same design with HR 1 (type-I error at 49 sites), AG and PWP-TT;
3. coverage: ``--coverage-replicates`` (2000) cohorts of a large design
   (``--large-sites`` 500 sites, 6 years, HR 2), AG and PWP-TT: coverage of the
   95% robust (Lin-Wei) Wald intervals, with its Monte Carlo standard error;
4. size: ``--size-replicates`` (2000) cohorts of 12 and of 49 sites over 6 years, at
   HR 1 and HR 2, Andersen-Gill, every test of ``power(test=...)`` on the same
   cohorts: type-I error, power and coverage of each test's 95% interval.

``--old REF`` (speed run only): the same speed run is repeated, in a fresh
process, with the ``imrsurv`` package of git revision ``REF`` (``git archive``
into a temporary directory, put first on ``PYTHONPATH`` of the run and its
Dask workers); both wall times are printed and the two replicate-level result
frames must be identical (``pandas.testing.assert_frame_equal(check_exact=True)``).

Model (all runs): default covariate processes, Bond-calibrated baseline
hazards, log HRs -0.1 per team member and -0.5 for training access
(discontinuation), no frailty (so the AG model is correctly specified and
its robust intervals should cover at 95% in large samples).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from imrsurv.simulate.power_analysis import TESTS, power

OTHER = {"discontinue": {"team_size": -0.1, "training_access": -0.5}}


def run(name: str, design: dict, analyses: list[str], n: int, seed: int, workers: int,
        test: str | tuple[str, ...] = "wald", save: Path | None = None) -> dict:
    t0 = time.perf_counter()
    res = power(design, analyses, n_replicates=n, seed=seed, workers=workers, progress=False,
                test=test)
    wall = time.perf_counter() - t0
    if save is not None:
        res.results.to_pickle(save)
    s = res.summary
    cols = ["analysis", "test", "replicates", "failed", "flagged", "rejection_rate",
            "rejection_mcse", "rejection_rate_flagged", "rejection_rate_unflagged", "bias",
            "median_estimate", "empirical_sd", "mean_se", "coverage", "coverage_mcse",
            "coverage_unflagged"]
    print(f"\n## {name}: {n} replicates, design {design_label(design)}, "
          f"{res.workers} workers ({res.backend}): {wall:.1f} s wall")
    with pd.option_context("display.width", 160):
        print(s[cols].round(4).to_string(index=False))
    return {"name": name, "design": design_label(design), "replicates": n, "seed": seed,
            "workers": res.workers, "backend": res.backend, "wall_s": round(wall, 1),
            "summary": s[cols].round(5).to_dict("records")}


def size_markdown(runs: list[dict]) -> str:
    """The small-sample table of RESULTS.md: one row per design and test."""
    head = ("| sites | HR | test | rejection rate (MC se) | among flagged | among unflagged | "
            "95% CI coverage (MC se) | flagged | failed | median estimate |")
    lines = [head, "|---" * (head.count("|") - 1) + "|"]
    for run in runs:
        sites, hr = run["design"].split(" sites")[0], run["design"].split("HR ")[1].split(",")[0]
        for r in run["summary"]:
            n = r["replicates"] - r["failed"]
            lines.append(
                f"| {sites} | {hr} | {r['test']} | {r['rejection_rate']:.3f} "
                f"({r['rejection_mcse']:.3f}) | {r['rejection_rate_flagged']:.3f} | "
                f"{r['rejection_rate_unflagged']:.3f} | {r['coverage']:.3f} "
                f"({r['coverage_mcse']:.3f}) | {r['flagged']}/{n} | {r['failed']} | "
                f"{r['median_estimate']:.3f} |")
    return "\n".join(lines)


def design_label(d: dict) -> str:
    return f"{d['n_sites']} sites, {d['years']} years, HR {d['hr']}, entry {d['entry']}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicates", type=int, default=1000)
    ap.add_argument("--null-replicates", type=int, default=1000)
    ap.add_argument("--coverage-replicates", type=int, default=2000)
    ap.add_argument("--large-sites", type=int, default=500)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=20140228)
    ap.add_argument("--quick", action="store_true", help="20 replicates of each run")
    ap.add_argument("--size-replicates", type=int, default=2000)
    ap.add_argument("--runs", default="speed,null,coverage",
                    help="comma-separated subset of speed, null, coverage, size "
                         "(default: speed,null,coverage)")
    ap.add_argument("--json", type=Path, help="write the figures as JSON here")
    ap.add_argument("--old", metavar="REF",
                    help="repeat the speed run with imrsurv from git revision REF and check "
                         "that the results are identical")
    ap.add_argument("--save", type=Path, help=argparse.SUPPRESS)  # used by --old
    args = ap.parse_args(argv)
    if args.quick:
        args.replicates = args.null_replicates = args.coverage_replicates = 20
        args.size_replicates = 20
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}")
    base = {"n_sites": 49, "years": 6, "entry": "common", "effects": OTHER}
    runs = set(args.runs.split(","))
    out = []
    if "speed" in runs:
        save = args.save
        if args.old and save is None:
            save = Path(tempfile.gettempdir()) / f"imrsurv_power_speed_{os.getpid()}.pkl"
        out.append(run("speed (AG, 49 sites)", {**base, "hr": 2.0}, ["ag"], args.replicates,
                       args.seed, args.workers, save=save))
        if args.old:
            out[-1]["old"] = run_old(args, save)
            if args.save is None:
                save.unlink(missing_ok=True)
    if "null" in runs:
        out.append(run("type-I error (49 sites)", {**base, "hr": 1.0}, ["ag", "pwp-tt"],
                       args.null_replicates, args.seed + 1, args.workers))
    if "coverage" in runs:
        out.append(run("coverage (large sample)",
                       {**base, "n_sites": args.large_sites, "hr": 2.0}, ["ag", "pwp-tt"],
                       args.coverage_replicates, args.seed + 2, args.workers))
    if "size" in runs:
        for k, (sites, hr) in enumerate([(49, 1.0), (49, 2.0), (12, 1.0), (12, 2.0)]):
            out.append(run(f"size and coverage ({sites} sites, HR {hr:g})",
                           {**base, "n_sites": sites, "hr": hr}, ["ag"], args.size_replicates,
                           args.seed + 10 + k, args.workers, test=TESTS))
    size_runs = [r for r in out if r["name"].startswith("size")]
    if size_runs:
        print("\n" + size_markdown(size_runs))
    z = 1.96 * math.sqrt(0.95 * 0.05 / max(args.coverage_replicates, 1))
    print(f"\n95% CI coverage is consistent with 0.95 at this many replicates if within "
          f"0.95 +- {z:.4f}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=float) + "\n")
    return 0


def run_old(args: argparse.Namespace, new_pkl: Path) -> dict:
    """The speed run with the imrsurv of ``args.old``, in a subprocess; results compared."""
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "old"
        tree.mkdir()
        archive = subprocess.run(["git", "-C", str(root), "archive", args.old, "imrsurv"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
        old_pkl = Path(tmp) / "old.pkl"
        env = {**os.environ, "PYTHONPATH": str(tree)}
        cmd = [sys.executable, __file__, "--runs", "speed", "--replicates", str(args.replicates),
               "--workers", str(args.workers), "--seed", str(args.seed)]
        t0 = time.perf_counter()
        subprocess.run(cmd + ["--save", str(old_pkl)], check=True, env=env)
        wall = time.perf_counter() - t0
        pd.testing.assert_frame_equal(pd.read_pickle(new_pkl), pd.read_pickle(old_pkl),
                                      check_exact=True)
    print(f"\nimrsurv {args.old}: the same run took {wall:.1f} s wall (process start "
          "included); replicate-level results identical (check_exact=True)")
    return {"ref": args.old, "wall_s": round(wall, 1), "identical": True}


if __name__ == "__main__":
    sys.exit(main())

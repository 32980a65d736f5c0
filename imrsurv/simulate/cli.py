"""``imrsurv simulate`` and ``imrsurv power``: add them with ``register(subparsers)``."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

EFFECT_HELP = ("log hazard ratio of discontinuation for COVARIATE=VALUE (repeatable), e.g. "
               "--effect recent_leader_change=0.69 --effect training_access=-0.5")


def _effects(items: list[str] | None, hr: float | None = None) -> dict:
    eff: dict[str, dict[str, float]] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        transition = "discontinue"
        if ":" in name:
            transition, name = name.split(":", 1)
        if not sep:
            raise SystemExit(f"imrsurv: --effect needs COVARIATE=LOG_HR, got {item!r}")
        try:
            eff.setdefault(transition, {})[name.strip()] = float(value)
        except ValueError:
            raise SystemExit(f"imrsurv: --effect {item!r}: {value!r} is not a number") from None
    if hr is not None:
        eff.setdefault("discontinue", {})["recent_leader_change"] = math.log(hr)
    return eff


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sites", type=int, required=True, metavar="N", help="number of sites")
    p.add_argument("--years", type=float, required=True, metavar="Y", help="study length in years")
    p.add_argument("--seed", type=int, default=1, metavar="S", help="master seed (default: 1)")
    p.add_argument("--entry", choices=["staggered", "common"], default="staggered",
                   help="staggered: sites start uniformly over the first half of the study "
                        "(default); common: all followed Y years")
    p.add_argument("--discontinue-rate", type=float, metavar="RATE",
                   help="baseline discontinuation hazard per year (default: calibrated to Bond "
                        "et al. 2014, 47/16/37%% at 6 years)")
    p.add_argument("--restart-rate", type=float, metavar="RATE",
                   help="baseline restart hazard per year (default: as above)")
    p.add_argument("--frailty-var", type=float, default=0.0, metavar="V",
                   help="variance of the gamma site frailty (default: 0)")
    p.add_argument("--censoring", type=float, default=0.0, metavar="RATE",
                   help="rate of random loss to follow-up per year (default: 0)")
    p.add_argument("--no-covariates", action="store_true",
                   help="simulate no covariate processes (no covariates.csv)")


def _hazards(args: argparse.Namespace) -> dict | None:
    from .cohort import BOND_HAZARDS

    if args.discontinue_rate is None and args.restart_rate is None:
        return None
    hz = dict(BOND_HAZARDS)
    if args.discontinue_rate is not None:
        hz["discontinue"] = args.discontinue_rate
    if args.restart_rate is not None:
        hz["restart"] = args.restart_rate
    return hz


def cmd_simulate(args: argparse.Namespace) -> int:
    from .cohort import describe_model, simulate_cohort, write_cohort

    try:
        cohort = simulate_cohort(args.sites, args.years, hazards=_hazards(args),
                                 effects=_effects(args.effect), frailty_var=args.frailty_var,
                                 covariates=None if args.no_covariates else "default",
                                 entry=args.entry, censoring=args.censoring, seed=args.seed)
    except ValueError as exc:
        print(f"imrsurv simulate: {exc}", file=sys.stderr)
        return 2
    paths = write_cohort(cohort, args.out)
    spec = {"n_sites": args.sites, "years": args.years, "seed": args.seed, "entry": args.entry,
            "censoring": args.censoring, **describe_model(cohort.model)}
    meta = Path(args.out) / "simulation.json"
    meta.write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n")
    hist = cohort.history()
    print(repr(hist))
    for path in [*paths, meta]:
        print(f"wrote {path}")
    return 0


def cmd_power(args: argparse.Namespace) -> int:
    from .parallel import DaskNotInstalled, SchedulerUnavailable
    from .power_analysis import power

    hrs = list(dict.fromkeys(args.hr))
    bad = [h for h in hrs if not (math.isfinite(h) and h > 0)]
    if bad:
        print(f"imrsurv power: --hr must be positive finite numbers, got {bad}", file=sys.stderr)
        return 2
    design = {"n_sites": args.sites, "years": args.years, "hr": hrs if len(hrs) > 1 else hrs[0],
              "entry": args.entry, "frailty_var": args.frailty_var, "censoring": args.censoring,
              "covariates": "default"}
    hz = _hazards(args)
    if hz is not None:
        design["hazards"] = hz
    eff = _effects(args.effect)
    if eff:
        design["effects"] = eff
    extra = {}
    if args.test:
        from . import power_analysis

        allowed = getattr(power_analysis, "TESTS", ())
        bad = [t for t in args.test if t not in allowed]
        if bad:
            print(f"imrsurv power: unknown --test {', '.join(map(repr, bad))} (allowed: "
                  f"{', '.join(allowed)})", file=sys.stderr)
            return 2
        extra["test"] = list(dict.fromkeys(args.test))
    try:
        res = power(design, analyses=args.analysis or ["ag"], n_replicates=args.replicates, **extra,
                    seed=args.seed, workers=args.workers, scheduler=args.scheduler,
                    alpha=args.alpha, progress=not args.quiet and sys.stderr.isatty(),
                    connect_timeout=args.connect_timeout)
    except (SchedulerUnavailable, DaskNotInstalled) as exc:
        print(f"imrsurv power: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"imrsurv power: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    res.results.to_csv(out, index=False, lineterminator="\n", float_format="%.10g")
    summary = res.summary
    summary_path = out.with_name(out.stem + "_summary.csv")
    summary.to_csv(summary_path, index=False, lineterminator="\n", float_format="%.10g")
    cols = [c for c in ("hr", "n_sites", "years", "analysis", "replicates", "failed", "flagged",
                        "rejection_rate", "bias", "coverage") if c in summary.columns]
    with __import__("pandas").option_context("display.width", 140):
        print(summary[cols].round(4).to_string(index=False))
    print(f"\n{res!r}")
    for note in res.notes:
        print(f"note: {note}")
    print(f"wrote {out} and {summary_path}")
    plot = args.plot or (out.with_name(out.stem + "_power.png") if len(hrs) > 1 else None)
    if plot:
        import matplotlib

        matplotlib.use("Agg")
        ax = res.plot()
        ax.figure.savefig(plot, bbox_inches="tight")
        print(f"wrote {plot}" + (" (power curve over --hr)" if len(hrs) > 1 else ""))
    return 130 if res.interrupted else 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``simulate`` and ``power`` sub-commands to ``imrsurv``'s parser."""
    p = sub.add_parser(
        "simulate", help="simulate a cohort of programme histories (events, covariates, sites CSV)",
        description="Simulate sites that sustain, discontinue and restart a programme (exact "
                    "multi-state simulation with time-varying covariates) and write "
                    "events.csv, covariates.csv, sites.csv and simulation.json into --out. "
                    "Same seed, same bytes.")
    _model_args(p)
    p.add_argument("--effect", action="append", metavar="COVARIATE=LOG_HR", help=EFFECT_HELP)
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser(
        "power", help="power, type-I error, bias and CI coverage by simulation",
        description="Simulate --replicates cohorts, fit each analysis and report power (type-I "
                    "error when --hr 1), bias and coverage of the 95% robust CI for the hazard "
                    "ratio of discontinuation in the year after a leadership change. Runs on a "
                    "local Dask cluster (--workers) or an existing one (--scheduler); identical "
                    "results for the same --seed whatever the number of workers. Ctrl-C stops "
                    "and writes the finished replicates.")
    _model_args(p)
    p.add_argument("--hr", type=float, nargs="+", required=True, metavar="HR",
                   help="hazard ratio(s) of a recent leadership change (1 = no effect); "
                        "several values (--hr 1 1.5 2 3) draw the power curve, saved to "
                        "--plot or FILE_power.png")
    p.add_argument("--effect", action="append", metavar="COVARIATE=LOG_HR",
                   help="other " + EFFECT_HELP)
    p.add_argument("--replicates", type=int, default=200, metavar="R",
                   help="simulated cohorts (default: 200)")
    p.add_argument("--analysis", action="append", choices=["ag", "pwp-tt", "pwp-gt", "first",
                                                           "discrete"],
                   help="analysis to run (repeatable; default: ag)")
    p.add_argument("--test", action="append", metavar="TEST",
                   help="test of the target effect (repeatable): wald, wald-cr2, lrt, score, "
                        "firth-lrt (default: the recommended one, see imrsurv.power)")
    p.add_argument("--alpha", type=float, default=0.05, help="test level (default: 0.05)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, metavar="W",
                       help="local Dask worker processes (default: one per CPU, or one here "
                            "when Dask is not installed; 1 = run here; more than 1 without "
                            "Dask is an error)")
    where.add_argument("--scheduler", metavar="ADDR",
                       help="address of an existing Dask scheduler, e.g. tcp://host:8786")
    p.add_argument("--connect-timeout", type=float, default=10.0, metavar="SEC",
                   help="seconds to wait for --scheduler (default: 10)")
    p.add_argument("--out", required=True, metavar="FILE",
                   help="replicate-level results CSV (the summary goes to FILE_summary.csv)")
    p.add_argument("--plot", metavar="FILE", help="also save the power plot (PNG/SVG/PDF)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_power)


__all__ = ["register"]

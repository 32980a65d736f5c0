"""Time the Bond replication report: the whole command and the build inside one process.

    python benchmarks/report.py                   # 5 runs of this checkout
    python benchmarks/report.py --old 520c15d     # the same runs beside imrsurv at 520c15d
    python benchmarks/report.py --runs 9 --old 520c15d --json /tmp/report.json
    python benchmarks/report.py --old 520c15d --split   # and where a warm build's time goes
    python benchmarks/report.py --old 14fc7eb --serial  # and this checkout with --jobs 1

Three figures per revision, each the median over ``--runs`` runs:

* ``command``: wall time of ``imrsurv replicate bond2014 --out FILE`` (the
  console script next to this interpreter), process start, imports and exit
  included: what a user rebuilding the report waits for;
* ``imports``: in a fresh process, the time to import ``imrsurv.cli`` and
  ``imrsurv.report.build`` (what the command loads before any section runs;
  the sections import their own models, which counts under ``first build``);
* ``first build``: that process's first ``main(["replicate", ...])`` call;
* ``warm build``: a second call in the same process, every module already
  imported (the analyses, figures and PDF alone).

``--serial``: this checkout is timed a second time with ``--jobs 1`` (every section in
one process) beside the default (two lanes where the machine allows, see
``imrsurv/report/lanes.py``).

``--split``: one more process per revision builds the report once to warm up,
then three times (with ``--jobs 1``, so that every section runs where it is timed) with
each section, the figure conversions
(``figures.drawing``: savefig and embedding, summed over the report) and the
PDF layout and write (``Document.save``) timed; medians of the three.

The old revision (``--old REV``) is checked out with ``git worktree add
/tmp/wt_REV REV`` (kept for later runs) and put first on ``PYTHONPATH`` of its
runs, which start in a temporary directory so that this checkout is not on
``sys.path``. Runs of the two revisions alternate, so that a change in the
machine's load hits both. Each revision's PDFs must be byte-identical across
its runs (the script stops otherwise); the two revisions' PDFs are compared
and the result printed (they differ where the change altered the figures).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = "bond2014.pdf"

INPROCESS = r"""
import json, sys, time
t0 = time.perf_counter()
import imrsurv.cli
import imrsurv.report.build
t1 = time.perf_counter()
imrsurv.cli.main(["replicate", "bond2014", "--out", sys.argv[1], "--quiet", *sys.argv[2:]])
t2 = time.perf_counter()
imrsurv.cli.main(["replicate", "bond2014", "--out", sys.argv[1], "--quiet", *sys.argv[2:]])
t3 = time.perf_counter()
print(json.dumps({"imports": t1 - t0, "first build": t2 - t1, "warm build": t3 - t2,
                  "package": imrsurv.__file__}))
"""

SPLIT = r"""
import json, statistics, sys, time
from imrsurv.cli import main
import imrsurv.report.build as b
from imrsurv.report import figures, pdf
times = {}
def timed(key, fn):
    def wrapper(*a, **k):
        t = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            times.setdefault(key(a), []).append(time.perf_counter() - t)
    return wrapper
b._run_section = timed(lambda a: "section " + a[1], b._run_section)
figures.drawing = timed(lambda a: "figures", figures.drawing)
pdf.Document.save = timed(lambda a: "PDF layout and write", pdf.Document.save)
# one process (--jobs 1, where the revision has lanes), so that every section is timed here
try:
    import imrsurv.report.lanes  # noqa: F401
    serial = ["--jobs", "1"]
except ImportError:
    serial = []
argv = ["replicate", "bond2014", "--out", sys.argv[1], "--quiet", *serial]
main(argv)
times.clear()
for _ in range(3):
    main(argv)
per = len(times["figures"]) // 3
times["figures"] = [sum(times["figures"][i * per:(i + 1) * per]) for i in range(3)]
print(json.dumps({k: statistics.median(v) for k, v in times.items()}))
"""


def worktree(rev: str) -> Path:
    """``/tmp/wt_REV`` holding revision ``rev`` (created once with ``git worktree add``)."""
    path = Path(f"/tmp/wt_{rev}")
    if not (path / "imrsurv" / "__init__.py").exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), rev],
                       check=True, capture_output=True)
    return path


def console_script() -> list[str]:
    script = Path(sys.executable).parent / "imrsurv"
    return [str(script)] if script.exists() else [sys.executable, "-m", "imrsurv.cli"]


class Revision:
    """One imrsurv to time: this checkout (``path=None``) or a worktree."""

    def __init__(self, name: str, path: Path | None, work: Path, args: tuple[str, ...] = ()):
        self.name, self.path, self.args = name, path, args
        self.dir = work / name
        self.dir.mkdir()
        self.env = dict(os.environ)
        self.env.pop("PYTHONPATH", None)
        self.env["PYTHONPATH"] = str(path if path is not None else ROOT)
        self.times: dict[str, list[float]] = {"command": [], "imports": [], "first build": [],
                                              "warm build": []}
        self.digests: set[str] = set()

    def run_command(self) -> None:
        out = self.dir / OUT   # relative on the command line: the same Provenance for both
        t = time.perf_counter()
        subprocess.run([*console_script(), "replicate", "bond2014", "--out", OUT,
                        "--quiet", *self.args], check=True, cwd=self.dir, env=self.env,
                       stdout=subprocess.DEVNULL)
        self.times["command"].append(time.perf_counter() - t)
        self.digests.add(hashlib.sha256(out.read_bytes()).hexdigest())

    def run_inprocess(self) -> None:
        out = self.dir / OUT
        res = subprocess.run([sys.executable, "-c", INPROCESS, OUT, *self.args], check=True,
                             cwd=self.dir, env=self.env, capture_output=True, text=True)
        got = json.loads(res.stdout.strip().splitlines()[-1])
        expected = (self.path or ROOT) / "imrsurv" / "__init__.py"
        if Path(got["package"]).resolve() != expected.resolve():
            raise SystemExit(f"{self.name}: imported {got['package']}, not {expected}")
        for key in ("imports", "first build", "warm build"):
            self.times[key].append(got[key])
        self.digests.add(hashlib.sha256(out.read_bytes()).hexdigest())

    def split(self) -> dict[str, float]:
        res = subprocess.run([sys.executable, "-c", SPLIT, OUT], check=True, cwd=self.dir,
                             env=self.env, capture_output=True, text=True)
        return json.loads(res.stdout.strip().splitlines()[-1])

    def medians(self) -> dict[str, float]:
        return {k: statistics.median(v) for k, v in self.times.items()}


def load() -> str:
    try:
        one, five, _ = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} CPUs"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="runs per revision (default: 5)")
    ap.add_argument("--old", metavar="REV", help="also time imrsurv at git revision REV")
    ap.add_argument("--split", action="store_true",
                    help="also time each section, the figures and the PDF of a warm build")
    ap.add_argument("--serial", action="store_true",
                    help="also time this checkout with --jobs 1 (sections in one process)")
    ap.add_argument("--json", type=Path, help="write the figures to this file")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="imrsurv-report-bench-") as tmp:
        revs = [Revision("new", None, Path(tmp))]
        if args.serial:
            revs.append(Revision("new-jobs1", None, Path(tmp), ("--jobs", "1")))
        if args.old:
            revs.append(Revision(f"old-{args.old}", worktree(args.old), Path(tmp)))
        print(f"load before: {load()}; {platform.python_version()} on {platform.machine()}")
        for rev in revs:        # one unmeasured run each: file caches, .pyc files
            rev.run_command()
        for rev in revs:
            rev.times["command"].clear()
        for _ in range(args.runs):
            for rev in revs:
                rev.run_command()
                rev.run_inprocess()
        print(f"load after: {load()}")
        result = {"runs": args.runs, "load_after": load(), "revisions": {}}
        for rev in revs:
            if len(rev.digests) != 1:
                raise SystemExit(f"{rev.name}: the PDF differs between runs "
                                 f"({len(rev.digests)} different files)")
            med = rev.medians()
            result["revisions"][rev.name] = {**{k: round(v, 3) for k, v in med.items()},
                                             "sha256": next(iter(rev.digests))}
        others = revs[1:]
        print(f"\nmedian of {args.runs} runs (s)   " + "  ".join(f"{r.name:>14}" for r in revs)
              + "".join(f"  {'new/' + r.name:>18}" for r in others))
        for key in revs[0].times:
            vals = [rev.medians()[key] for rev in revs]
            line = f"{key:<28}" + "  ".join(f"{v:14.2f}" for v in vals)
            line += "".join(f"  {vals[0] / v:18.2f}" for v in vals[1:])
            print(line)
        if len(revs) >= 2:
            same = all(r.digests == revs[0].digests for r in others)
            print(f"\nPDFs of all runs {'identical' if same else 'differ'}; "
                  "each revision's PDFs identical across its runs")
            result["pdfs_identical_between_revisions"] = same
        if args.split:
            splits = [rev.split() for rev in revs]
            result["split"] = {rev.name: sp for rev, sp in zip(revs, splits, strict=True)}
            print("\nwarm build, median of 3 (s)  " + "  ".join(f"{r.name:>14}" for r in revs))
            for key in splits[0]:
                print(f"{key:<28}" + "  ".join(f"{sp.get(key, float('nan')):14.2f}"
                                             for sp in splits))
            print("(sections include the figures they draw; the figures row is their sum)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

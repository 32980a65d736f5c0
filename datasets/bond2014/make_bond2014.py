"""Generate the synthetic ``bond2014`` cohort (49 sites, 5 practices, 6 years).

The cohort reproduces the published 6-year status split of Bond et al. (2014) --
23 sustained / 8 restarted / 18 discontinued out of 49 sites (47 / 16 / 37 %) --
while everything else (practice of each site, event timing, covariate histories,
covariate effects, site attributes) is SIMULATED.

How it works
------------
1. Candidate sites are generated one at a time, candidate ``i`` using its own
   generator ``default_rng(SeedSequence(SEED).spawn(...)[i])``, so a candidate's
   history does not depend on how many candidates came before it.
2. Each candidate gets site attributes, covariate histories (leadership changes
   as a Poisson process, team size with turnover, training access switching)
   and a two-state (active / inactive) history on (0, 6] whose discontinuation
   and restart hazards depend on those covariates (see ``discontinue_rate`` and
   ``restart_rate``).
3. Calibration by rejection: candidates are scanned in generation order and a
   candidate is accepted while its 6-year status category (sustained /
   restarted / discontinued) AND its practice still have open slots.  Scanning
   stops when all 49 slots are filled.

Run ``python datasets/bond2014/make_bond2014.py`` (optionally ``--out DIR``);
the files it writes are byte-identical on every run.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SEED = 20140232
"""Entropy of the root ``SeedSequence``: the first value from 20140228 upward for
which ``check_cohort`` passes (at least two restarted sites with two or more
restarts, and at least two discontinued sites that had restarted before)."""
MAX_CANDIDATES = 20_000
HORIZON = 6.0
DECIMALS = 3
RECENT_WINDOW = 1.0
"""Years after a leadership change during which the discontinuation hazard is raised."""

STATUS_QUOTA = {"sustained": 23, "restarted": 8, "discontinued": 18}
PRACTICE_QUOTA = {"ACT": 10, "SE": 10, "IDDT": 10, "FPE": 9, "IMR": 10}
PRACTICES = tuple(PRACTICE_QUOTA)
STATES = ("CA", "IN", "KS", "MN", "NH", "NY", "OH", "OR")
FINANCING = ("medicaid_billable", "mixed", "grant")
FINANCING_P = (0.45, 0.35, 0.20)

# --- data-generating model (all values are simulation choices, not estimates) ---
LEADER_RATE = 0.15  # leadership changes per year
TURNOVER_RATE = 0.6  # team-size changes per year
TEAM_LOSS_P = 0.55  # probability a team-size change is a loss
TEAM_MIN, TEAM_MAX = 1, 8
TRAINING_SWITCH_RATE = 0.2  # switches of training access per year
TRAINING_P0 = {"medicaid_billable": 0.70, "mixed": 0.60, "grant": 0.45}

DISC_BASE = {"ACT": 0.105, "SE": 0.12, "IDDT": 0.165, "FPE": 0.18, "IMR": 0.18}
DISC_LOG_HR = {
    "recent_leader_change": math.log(2.5),
    "small_team": math.log(2.0),  # team_size < 3
    "training_access": math.log(0.55),
    "supervision": math.log(0.7),
    "fidelity_monitoring": math.log(0.75),
    "baseline_fidelity_per_point": math.log(0.75),  # centred at 4.0
    "previously_discontinued": math.log(1.5),
}
DISC_FINANCING_LOG_HR = {"medicaid_billable": 0.0, "mixed": math.log(1.2), "grant": math.log(1.6)}
RESTART_BASE = 0.12
RESTART_LOG_HR = {
    "training_access": math.log(2.5),
    "supervision": math.log(1.4),
    "small_team": math.log(0.6),
}


@dataclass
class Site:
    """One candidate site: attributes, covariate log and event log."""

    practice: str
    state: str
    financing: str
    supervision: int
    fidelity_monitoring: int
    baseline_fidelity: float
    # covariate log: (time, leadership_change, team_size, training_access), time 0 first
    covariates: list[tuple[float, int, int, int]] = field(default_factory=list)
    # event log: (time, event)
    events: list[tuple[float, str]] = field(default_factory=list)
    valid: bool = True

    def status_at(self, horizon: float = HORIZON) -> str:
        """Bond category at ``horizon``: sustained, restarted or discontinued."""
        seen = [e for t, e in self.events if t <= horizon and e != "end"]
        if "discontinue" not in seen:
            return "sustained"
        return "restarted" if seen[-1] == "restart" else "discontinued"

    def n_restarts(self) -> int:
        return sum(e == "restart" for _, e in self.events)


def rnd(t: float) -> float:
    """Round a time to the published precision."""
    return round(float(t), DECIMALS)


def poisson_times(rng: np.random.Generator, rate: float, horizon: float) -> list[float]:
    """Rounded event times of a homogeneous Poisson process on (0, horizon)."""
    n = int(rng.poisson(rate * horizon))
    times = sorted(rnd(t) for t in rng.uniform(0.0, horizon, size=n))
    return [t for t in times if 0.0 < t < horizon]


def simulate_covariates(rng: np.random.Generator, site: Site) -> None:
    """Fill ``site.covariates`` with a leadership / team / training history."""
    leader_times = poisson_times(rng, LEADER_RATE, HORIZON)
    team0 = int(rng.integers(2, TEAM_MAX + 1))
    turnover_times = poisson_times(rng, TURNOVER_RATE, HORIZON)
    steps = np.where(rng.random(len(turnover_times)) < TEAM_LOSS_P, -1, 1)
    train0 = int(rng.random() < TRAINING_P0[site.financing])
    switch_times = poisson_times(rng, TRAINING_SWITCH_RATE, HORIZON)

    changes: dict[float, dict[str, int]] = {}
    for t in leader_times:
        changes.setdefault(t, {})["leader"] = 1
    team = team0
    for t, step in zip(turnover_times, steps, strict=True):
        new = min(TEAM_MAX, max(TEAM_MIN, team + int(step)))
        if new != team:
            changes.setdefault(t, {})["team"] = new
            team = new
    train = train0
    for t in switch_times:
        train = 1 - train
        changes.setdefault(t, {})["train"] = train

    rows = [(0.0, 0, team0, train0)]
    team, train = team0, train0
    for t in sorted(changes):
        c = changes[t]
        team = c.get("team", team)
        train = c.get("train", train)
        lc = c.get("leader", 0)
        if lc == 0 and team == rows[-1][2] and train == rows[-1][3]:
            continue  # e.g. two training switches at the same rounded time
        rows.append((t, lc, team, train))
    site.covariates = rows


def covariates_at(site: Site, t: float) -> tuple[int, int, int]:
    """(recent_leader_change, team_size, training_access) in force at time ``t``."""
    team = train = 0
    recent = 0
    for time, lc, ts, tr in site.covariates:
        if time > t:
            break
        team, train = ts, tr
        if lc and t < time + RECENT_WINDOW:
            recent = 1
    return recent, team, train


def discontinue_rate(site: Site, t: float, n_disc: int) -> float:
    """Hazard of discontinuing an active programme at time ``t``."""
    recent, team, train = covariates_at(site, t)
    b = DISC_LOG_HR
    lp = (
        b["recent_leader_change"] * recent
        + b["small_team"] * (team < 3)
        + b["training_access"] * train
        + b["supervision"] * site.supervision
        + b["fidelity_monitoring"] * site.fidelity_monitoring
        + b["baseline_fidelity_per_point"] * (site.baseline_fidelity - 4.0)
        + b["previously_discontinued"] * (n_disc > 0)
        + DISC_FINANCING_LOG_HR[site.financing]
    )
    return DISC_BASE[site.practice] * math.exp(lp)


def restart_rate(site: Site, t: float) -> float:
    """Hazard of restarting a discontinued programme at time ``t``."""
    _, team, train = covariates_at(site, t)
    b = RESTART_LOG_HR
    lp = b["training_access"] * train + b["supervision"] * site.supervision + b["small_team"] * (team < 3)
    return RESTART_BASE * math.exp(lp)


def breakpoints(site: Site) -> list[float]:
    """Times at which a hazard may jump: covariate changes and window ends."""
    pts = {HORIZON}
    for time, lc, _, _ in site.covariates[1:]:
        pts.add(time)
        if lc and time + RECENT_WINDOW < HORIZON:
            pts.add(time + RECENT_WINDOW)
    return sorted(pts)


def simulate_events(rng: np.random.Generator, site: Site) -> None:
    """Two-state (active/inactive) history on (0, HORIZON] by piecewise-constant hazards."""
    pts = breakpoints(site)
    events: list[tuple[float, str]] = [(0.0, "start")]
    active, n_disc = True, 0
    t, acc, target = 0.0, 0.0, float(rng.exponential())
    while t < HORIZON:
        nxt = next(p for p in pts if p > t)
        rate = discontinue_rate(site, t, n_disc) if active else restart_rate(site, t)
        if rate * (nxt - t) >= target - acc:
            t = t + (target - acc) / rate
            events.append((rnd(t), "discontinue" if active else "restart"))
            n_disc += active
            active = not active
            acc, target = 0.0, float(rng.exponential())
        else:
            acc += rate * (nxt - t)
            t = nxt
    events.append((HORIZON, "end"))
    times = [e[0] for e in events]
    # rounding must not create zero-length episodes or events at 0 or at the horizon
    site.valid = all(a < b for a, b in zip(times, times[1:], strict=False))
    site.events = events


def make_candidate(index: int, seed: np.random.SeedSequence) -> Site:
    """Generate candidate ``index`` from its own child seed."""
    rng = np.random.default_rng(seed)
    financing = str(rng.choice(FINANCING, p=FINANCING_P))
    site = Site(
        practice=PRACTICES[index % len(PRACTICES)],
        state=str(rng.choice(STATES)),
        financing=financing,
        supervision=int(rng.random() < 0.6),
        fidelity_monitoring=int(rng.random() < 0.5),
        baseline_fidelity=round(float(rng.uniform(3.0, 5.0)), 2),
    )
    simulate_covariates(rng, site)
    simulate_events(rng, site)
    return site


def select_cohort() -> list[Site]:
    """Calibration by rejection: accept candidates in generation order while slots are open."""
    status_left = dict(STATUS_QUOTA)
    practice_left = dict(PRACTICE_QUOTA)
    children = np.random.SeedSequence(SEED).spawn(MAX_CANDIDATES)
    chosen: list[Site] = []
    for i, child in enumerate(children):
        site = make_candidate(i, child)
        status = site.status_at()
        if site.valid and status_left[status] > 0 and practice_left[site.practice] > 0:
            chosen.append(site)
            status_left[status] -= 1
            practice_left[site.practice] -= 1
            if not any(status_left.values()):
                break
    if any(status_left.values()) or any(practice_left.values()):
        raise RuntimeError(f"pool exhausted: {status_left} {practice_left}")
    return chosen


def check_cohort(sites: list[Site]) -> None:
    """Assert the properties the README promises."""
    counts = {k: 0 for k in STATUS_QUOTA}
    for s in sites:
        counts[s.status_at()] += 1
    multi = sum(s.status_at() == "restarted" and s.n_restarts() >= 2 for s in sites)
    again = sum(s.status_at() == "discontinued" and s.n_restarts() >= 1 for s in sites)
    problems = []
    if counts != STATUS_QUOTA:
        problems.append(f"status counts {counts} != {STATUS_QUOTA}")
    if multi < 2:
        problems.append("fewer than two restarted sites restarted more than once")
    if again < 2:
        problems.append("fewer than two discontinued sites had restarted and stopped again")
    if problems:
        raise RuntimeError("; ".join(problems))


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    """Write a CSV with '\\n' line endings and pre-formatted string cells."""
    lines = [",".join(header)] + [",".join(r) for r in rows]
    path.write_bytes(("\n".join(lines) + "\n").encode("utf-8"))


def ftime(t: float) -> str:
    return f"{t:.{DECIMALS}f}"


def panel_rows(sid: str, site: Site) -> list[list[str]]:
    """Annual interviews at years 1..6: status and covariates at the interview."""
    rows = []
    for year in range(1, int(HORIZON) + 1):
        state_events = [e for t, e in site.events if t <= year and e != "end"]
        active = int(state_events[-1] in ("start", "restart"))
        lc = int(any(lc_ and year - 1 < t <= year for t, lc_, _, _ in site.covariates))
        _, team, train = covariates_at(site, float(year))
        rows.append([sid, str(year), str(active), str(lc), str(team), str(train)])
    return rows


def write_files(sites: list[Site], out: Path) -> None:
    """Write events.csv, covariates.csv, sites.csv and panel.csv into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    ids = [f"S{k:02d}" for k in range(1, len(sites) + 1)]
    ev, cov, att, pan = [], [], [], []
    for sid, s in zip(ids, sites, strict=True):
        ev += [[sid, ftime(t), e, s.practice] for t, e in s.events]
        cov += [[sid, ftime(t), str(lc), str(ts), str(tr)] for t, lc, ts, tr in s.covariates]
        att.append(
            [
                sid,
                s.practice,
                s.state,
                s.financing,
                str(s.supervision),
                str(s.fidelity_monitoring),
                f"{s.baseline_fidelity:.2f}",
            ]
        )
        pan += panel_rows(sid, s)
    write_csv(out / "events.csv", ["site", "time", "event", "practice"], ev)
    write_csv(
        out / "covariates.csv",
        ["site", "time", "leadership_change", "team_size", "training_access"],
        cov,
    )
    write_csv(
        out / "sites.csv",
        ["site", "practice", "state", "financing", "supervision", "fidelity_monitoring", "baseline_fidelity"],
        att,
    )
    write_csv(
        out / "panel.csv",
        ["site", "year", "active", "leadership_change", "team_size", "training_access"],
        pan,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent,
        help="output folder (default: this script's folder)",
    )
    args = parser.parse_args(argv)
    sites = select_cohort()
    check_cohort(sites)
    write_files(sites, args.out)


if __name__ == "__main__":
    main()

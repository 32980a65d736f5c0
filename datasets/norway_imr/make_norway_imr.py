"""Generate the ``norway_imr`` dataset: 9 Norwegian IMR services, synthetic 6-year follow-up.

PUBLISHED (Egeland et al. 2019), written verbatim to sites.csv: the nine services
A-I, their setting (primary / specialized), number of IMR practitioners, and
12-month IMR fidelity (service E was not rated: NA).

SIMULATED (this script): everything in events.csv, covariates.csv and panel.csv,
i.e. the timing of discontinuations and restarts, leadership changes, team-size
turnover and training access over 6 years.  The only links to the paper are the
starting team sizes (the published practitioner counts) and the qualitative story
the draw is required to show (see ``story_holds``): a service whose team shrank
below three practitioners discontinued, and a discontinuation followed a change
of leadership.

How it works: cohort draw ``k`` (k = 0, 1, 2, ...) simulates all nine services,
service ``j`` with ``default_rng(SeedSequence(SEED).spawn(MAX_DRAWS)[k].spawn(9)[j])``;
the first draw whose histories show the story is written.

Run ``python datasets/norway_imr/make_norway_imr.py`` (optionally ``--out DIR``);
the files it writes are byte-identical on every run.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SEED = 20190601
"""Entropy of the root ``SeedSequence``."""
MAX_DRAWS = 1000
HORIZON = 6.0
DECIMALS = 3
RECENT_WINDOW = 1.0

# Published: Egeland et al. (2019).  Fidelity kept as text so it is written exactly.
SERVICES: tuple[tuple[str, str, int, str], ...] = (
    # site, setting, practitioners, fidelity_12m
    ("A", "primary", 3, "4.69"),
    ("B", "primary", 2, "4.77"),
    ("C", "primary", 5, "4.69"),
    ("D", "primary", 3, "4.77"),
    ("E", "specialized", 2, "NA"),
    ("F", "primary", 3, "4.62"),
    ("G", "specialized", 2, "4.62"),
    ("H", "primary", 3, "4.46"),
    ("I", "primary", 3, "4.23"),
)

# --- simulation model (choices, not estimates) ---
LEADER_RATE = 0.15
TURNOVER_RATE = 0.5
TEAM_LOSS_P = 0.55
TEAM_MIN, TEAM_MAX = 1, 8
TRAINING_P0 = 0.8
TRAINING_SWITCH_RATE = 0.2
DISC_BASE = 0.08
DISC_LOG_HR = {
    "recent_leader_change": math.log(2.5),
    "small_team": math.log(3.0),  # team_size < 3
    "training_access": math.log(0.55),
}
RESTART_BASE = 0.15
RESTART_LOG_HR = {"training_access": math.log(2.5), "small_team": math.log(0.3)}


@dataclass
class Service:
    """One service: published attributes plus simulated logs."""

    site: str
    setting: str
    practitioners: int
    fidelity_12m: str
    covariates: list[tuple[float, int, int, int]] = field(default_factory=list)
    events: list[tuple[float, str]] = field(default_factory=list)
    valid: bool = True

    def status_at(self, horizon: float = HORIZON) -> str:
        seen = [e for t, e in self.events if t <= horizon and e != "end"]
        if "discontinue" not in seen:
            return "sustained"
        return "restarted" if seen[-1] == "restart" else "discontinued"


def rnd(t: float) -> float:
    return round(float(t), DECIMALS)


def poisson_times(rng: np.random.Generator, rate: float, horizon: float) -> list[float]:
    """Rounded event times of a homogeneous Poisson process on (0, horizon)."""
    n = int(rng.poisson(rate * horizon))
    times = sorted(rnd(t) for t in rng.uniform(0.0, horizon, size=n))
    return [t for t in times if 0.0 < t < horizon]


def simulate_covariates(rng: np.random.Generator, svc: Service) -> None:
    """Leadership changes, team turnover from the published team size, training access."""
    leader_times = poisson_times(rng, LEADER_RATE, HORIZON)
    turnover_times = poisson_times(rng, TURNOVER_RATE, HORIZON)
    steps = np.where(rng.random(len(turnover_times)) < TEAM_LOSS_P, -1, 1)
    train0 = int(rng.random() < TRAINING_P0)
    switch_times = poisson_times(rng, TRAINING_SWITCH_RATE, HORIZON)

    changes: dict[float, dict[str, int]] = {}
    for t in leader_times:
        changes.setdefault(t, {})["leader"] = 1
    team = svc.practitioners
    for t, step in zip(turnover_times, steps, strict=True):
        new = min(TEAM_MAX, max(TEAM_MIN, team + int(step)))
        if new != team:
            changes.setdefault(t, {})["team"] = new
            team = new
    train = train0
    for t in switch_times:
        train = 1 - train
        changes.setdefault(t, {})["train"] = train

    rows = [(0.0, 0, svc.practitioners, train0)]
    team, train = svc.practitioners, train0
    for t in sorted(changes):
        c = changes[t]
        team = c.get("team", team)
        train = c.get("train", train)
        lc = c.get("leader", 0)
        if lc == 0 and team == rows[-1][2] and train == rows[-1][3]:
            continue
        rows.append((t, lc, team, train))
    svc.covariates = rows


def covariates_at(svc: Service, t: float) -> tuple[int, int, int]:
    """(recent_leader_change, team_size, training_access) in force at time ``t``."""
    team = train = recent = 0
    for time, lc, ts, tr in svc.covariates:
        if time > t:
            break
        team, train = ts, tr
        if lc and t < time + RECENT_WINDOW:
            recent = 1
    return recent, team, train


def rate(svc: Service, t: float, active: bool) -> float:
    """Discontinuation hazard when active, restart hazard when not."""
    recent, team, train = covariates_at(svc, t)
    if active:
        b = DISC_LOG_HR
        lp = b["recent_leader_change"] * recent + b["small_team"] * (team < 3) + b["training_access"] * train
        return DISC_BASE * math.exp(lp)
    b = RESTART_LOG_HR
    return RESTART_BASE * math.exp(b["training_access"] * train + b["small_team"] * (team < 3))


def simulate_events(rng: np.random.Generator, svc: Service) -> None:
    """Two-state history on (0, HORIZON] by piecewise-constant hazards."""
    pts = {HORIZON}
    for time, lc, _, _ in svc.covariates[1:]:
        pts.add(time)
        if lc and time + RECENT_WINDOW < HORIZON:
            pts.add(time + RECENT_WINDOW)
    pts_sorted = sorted(pts)
    events: list[tuple[float, str]] = [(0.0, "start")]
    active = True
    t, acc, target = 0.0, 0.0, float(rng.exponential())
    while t < HORIZON:
        nxt = next(p for p in pts_sorted if p > t)
        r = rate(svc, t, active)
        if r * (nxt - t) >= target - acc:
            t = t + (target - acc) / r
            events.append((rnd(t), "discontinue" if active else "restart"))
            active = not active
            acc, target = 0.0, float(rng.exponential())
        else:
            acc += r * (nxt - t)
            t = nxt
    events.append((HORIZON, "end"))
    times = [e[0] for e in events]
    svc.valid = all(a < b for a, b in zip(times, times[1:], strict=False))
    svc.events = events


def draw_cohort(seed: np.random.SeedSequence) -> list[Service]:
    """Simulate all nine services from one cohort seed."""
    services = []
    for (site, setting, n, fid), child in zip(SERVICES, seed.spawn(len(SERVICES)), strict=True):
        rng = np.random.default_rng(child)
        svc = Service(site, setting, n, fid)
        simulate_covariates(rng, svc)
        simulate_events(rng, svc)
        services.append(svc)
    return services


def team_fell_apart(svc: Service) -> bool:
    """Started with >= 3 practitioners, shrank below 3, discontinued then, never restarted."""
    if svc.practitioners < 3 or svc.status_at() != "discontinued":
        return False
    if any(e == "restart" for _, e in svc.events):
        return False
    t_disc = next(t for t, e in svc.events if e == "discontinue")
    return covariates_at(svc, t_disc)[1] < 3


def leader_then_stop(svc: Service) -> bool:
    """A discontinuation within RECENT_WINDOW years after a leadership change."""
    return any(e == "discontinue" and covariates_at(svc, t)[0] for t, e in svc.events)


def story_holds(services: list[Service]) -> bool:
    """The qualitative pattern the synthetic follow-up must show."""
    return (
        all(s.valid for s in services)
        and any(team_fell_apart(s) for s in services)
        and any(leader_then_stop(s) for s in services)
        and sum(s.status_at() == "sustained" for s in services) >= 3
    )


def first_story_draw() -> tuple[int, list[Service]]:
    for k, seed in enumerate(np.random.SeedSequence(SEED).spawn(MAX_DRAWS)):
        services = draw_cohort(seed)
        if story_holds(services):
            return k, services
    raise RuntimeError(f"no draw among {MAX_DRAWS} shows the story")


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    lines = [",".join(header)] + [",".join(r) for r in rows]
    path.write_bytes(("\n".join(lines) + "\n").encode("utf-8"))


def ftime(t: float) -> str:
    return f"{t:.{DECIMALS}f}"


def panel_rows(svc: Service) -> list[list[str]]:
    """Annual interviews at years 1..6: status and covariates at the interview."""
    rows = []
    for year in range(1, int(HORIZON) + 1):
        state_events = [e for t, e in svc.events if t <= year and e != "end"]
        active = int(state_events[-1] in ("start", "restart"))
        lc = int(any(lc_ and year - 1 < t <= year for t, lc_, _, _ in svc.covariates))
        _, team, train = covariates_at(svc, float(year))
        rows.append([svc.site, str(year), str(active), str(lc), str(team), str(train)])
    return rows


def synthetic_note(k: int, services: list[Service]) -> str:
    lines = [
        "SYNTHETIC FOLLOW-UP. sites.csv (setting, practitioners, fidelity_12m) is published",
        "(Egeland et al. 2019). events.csv, covariates.csv and panel.csv are SIMULATED by",
        f"make_norway_imr.py (SEED={SEED}, accepted cohort draw k={k}); they are not data",
        "observed at these services and must not be cited as findings.",
        "",
        "Simulated status at 6 years:",
    ]
    for s in services:
        lines.append(f"  {s.site}: {s.status_at()}")
    lines.append(
        "Story shown: team fell apart (<3 practitioners, then discontinued): "
        + ", ".join(s.site for s in services if team_fell_apart(s))
    )
    lines.append(
        "Story shown: discontinued within a year of a leadership change: "
        + ", ".join(s.site for s in services if leader_then_stop(s))
    )
    return "\n".join(lines) + "\n"


def write_files(k: int, services: list[Service], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    ev, cov, att, pan = [], [], [], []
    for s in services:
        ev += [[s.site, ftime(t), e, "IMR"] for t, e in s.events]
        cov += [[s.site, ftime(t), str(lc), str(ts), str(tr)] for t, lc, ts, tr in s.covariates]
        att.append([s.site, "IMR", s.setting, str(s.practitioners), s.fidelity_12m])
        pan += panel_rows(s)
    write_csv(out / "events.csv", ["site", "time", "event", "practice"], ev)
    write_csv(
        out / "covariates.csv",
        ["site", "time", "leadership_change", "team_size", "training_access"],
        cov,
    )
    write_csv(out / "sites.csv", ["site", "practice", "setting", "practitioners", "fidelity_12m"], att)
    write_csv(
        out / "panel.csv",
        ["site", "year", "active", "leadership_change", "team_size", "training_access"],
        pan,
    )
    (out / "SYNTHETIC.txt").write_bytes(synthetic_note(k, services).encode("utf-8"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent,
        help="output folder (default: this script's folder)",
    )
    args = parser.parse_args(argv)
    k, services = first_story_draw()
    write_files(k, services, args.out)


if __name__ == "__main__":
    main()

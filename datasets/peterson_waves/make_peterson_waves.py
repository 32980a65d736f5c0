"""Write datasets/peterson_waves: 49 SYNTHETIC sites interviewed at baseline and years 2, 4, 8.

Run from the repository root:  python datasets/peterson_waves/make_peterson_waves.py [--out DIR]

The design of Peterson et al. (2014): 49 sites, status from interviews at baseline and
years 2, 4 and 8, supervisor turnover at year 4 as a predictor of status at year 8.
Histories come from ``imrsurv.simulate.simulate_cohort`` (seed 20140408, 8 years, common
entry, Bond-calibrated baseline hazards, hazard of discontinuing multiplied by 2.5 for
4 years after a leadership change); the state at each wave is read off the history with
``imrsurv.waves.sample_waves`` (sustained / discontinued / restarted).
``supervisor_turnover`` at a wave is 1 if the leader changed since the previous wave
(0 at baseline): the value at wave 4 is the year-4 turnover, in force from 4 to 8.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from imrsurv.simulate.cohort import simulate_cohort
from imrsurv.waves import sample_waves

HERE = Path(__file__).resolve().parent
SEED = 20140408
WAVES = (0.0, 2.0, 4.0, 8.0)


def main(out: Path = HERE) -> None:
    hr = math.log(2.5)
    cohort = simulate_cohort(49, 8.0, seed=SEED, entry="common", recent_window=4.0,
                             effects={"discontinue": {"recent_leader_change": hr},
                                      "rediscontinue": {"recent_leader_change": hr}})
    w = sample_waves(cohort.events, list(WAVES))
    cov = cohort.covariates
    change = cov.loc[cov["leadership_change"] == 1, ["site", "time"]]
    prev = dict(zip(WAVES[1:], WAVES[:-1], strict=True))
    turnover = []
    for site, t in zip(w["site"], w["time"], strict=True):
        if t == 0:
            turnover.append(0)
            continue
        c = change[change["site"] == site]["time"].to_numpy()
        turnover.append(int(((c > prev[t]) & (c <= t)).any()))
    w["supervisor_turnover"] = np.asarray(turnover, dtype=int)
    w["time"] = w["time"].astype(int)
    out.mkdir(parents=True, exist_ok=True)
    w.to_csv(out / "waves.csv", index=False, lineterminator="\n")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE)
    main(ap.parse_args().out)

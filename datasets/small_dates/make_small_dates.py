"""Write datasets/small_dates: a SYNTHETIC 10-site cohort with ISO calendar dates.

Run from the repository root:  python datasets/small_dates/make_small_dates.py

Histories come from ``imrsurv.simulate.simulate_cohort`` (seed 20240610, the
Bond-calibrated hazards, a doubled hazard while a leadership change is recent),
each site followed 6 years from a start date staggered over 2016; times in
years are written as dates (day = round(years * 365.25) after the site's start),
so the event and covariate logs hold only ISO dates, as a user's own records do;
the end of follow-up is the 6th anniversary of each start.
"""

from __future__ import annotations

import math
from datetime import date, timedelta
from pathlib import Path

import pandas as pd

from imrsurv.simulate.cohort import simulate_cohort

HERE = Path(__file__).resolve().parent
SEED = 20240610
N_SITES, YEARS = 10, 6.0


def main() -> None:
    cohort = simulate_cohort(N_SITES, YEARS, seed=SEED, entry="common",
                             effects={"discontinue": {"recent_leader_change": math.log(2.0)}})
    sites = sorted(cohort.events["site"].unique())
    # start dates: the first of a month in 2016, one site a month (deterministic)
    starts = {s: date(2016, 1 + i % 12, 1) for i, s in enumerate(sites)}

    def as_date(site: str, years: float) -> str:
        return (starts[site] + timedelta(days=round(float(years) * 365.25))).isoformat()

    ev = cohort.events.copy()
    ev["time"] = [as_date(s, t) for s, t in zip(ev["site"], ev["time"], strict=True)]
    # follow-up ends on the 6th anniversary of the start, as a study's records would say
    end = ev["event"] == "end"
    ev.loc[end, "time"] = [starts[s].replace(year=starts[s].year + 6).isoformat()
                           for s in ev.loc[end, "site"]]
    ev["practice"] = ["IMR" if sites.index(s) % 2 == 0 else "ACT" for s in ev["site"]]
    ev[["site", "time", "event", "practice"]].to_csv(HERE / "events.csv", index=False,
                                                      lineterminator="\n")
    cov = cohort.covariates.copy()
    cov["time"] = [as_date(s, t) for s, t in zip(cov["site"], cov["time"], strict=True)]
    # two covariate rows on the same day after rounding: keep the later one
    cov = cov.drop_duplicates(["site", "time"], keep="last")
    cov.to_csv(HERE / "covariates.csv", index=False, lineterminator="\n")
    st = pd.DataFrame({"site": sites,
                       "practice": ["IMR" if i % 2 == 0 else "ACT" for i in range(len(sites))],
                       "region": ["North" if i < 5 else "South" for i in range(len(sites))]})
    st.to_csv(HERE / "sites.csv", index=False, lineterminator="\n")


if __name__ == "__main__":
    main()

"""The cohort's status split beside the published Bond et al. (2014) split, with a fit test.

Bond et al. (2014) report 47% sustained, 16% discontinued and restarted and 37%
discontinued at 6 years (49 sites). For the sites followed to the horizon the
cohort's counts get exact (Clopper-Pearson) 95% intervals, and the split is
tested against the published proportions with

* the exact multinomial test: p = sum of P(x) over all splits x of n with
  P(x) <= P(observed) (multinomial probabilities under the published split), and
* Pearson's chi-square on 2 df, whose chi-square reference is poor when an
  expected count is below 5 (said in the result).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

PUBLISHED = {"sustained": 0.47, "restarted": 0.16, "discontinued": 0.37}


@dataclass(frozen=True)
class BondComparison:
    """``table`` (status, published %, n, cohort %, lower, upper) and the two tests."""

    table: pd.DataFrame
    n: int
    exact_p: float
    chisq: float
    chisq_p: float
    min_expected: float

    @property
    def caveat(self) -> str:
        if self.min_expected < 5:
            return (f"the smallest expected count is {self.min_expected:.1f} (< 5), so the "
                    "chi-square p is approximate; the exact multinomial p is the one to read")
        return ""


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact binomial interval for k successes in n."""
    a = (1 - level) / 2
    lo = 0.0 if k == 0 else float(stats.beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(stats.beta.ppf(1 - a, k + 1, n - k))
    return lo, hi


def exact_multinomial_p(counts, probs) -> float:
    """Exact multinomial goodness-of-fit p-value (3 categories: all splits enumerated)."""
    counts = np.asarray(counts, int)
    probs = np.asarray(probs, float)
    n = int(counts.sum())
    a, b = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    ok = a + b <= n
    x = np.stack([a[ok], b[ok], n - a[ok] - b[ok]], axis=1)
    logp = stats.multinomial.logpmf(x, n, probs)
    obs = stats.multinomial.logpmf(counts, n, probs)
    # ties at the observed probability count, up to rounding
    return float(min(1.0, np.exp(logp[logp <= obs + 1e-9]).sum()))


def compare(status: pd.Series) -> BondComparison:
    """Compare per-site statuses (sustained / restarted / discontinued / censored) to Bond's."""
    counts = status.astype(str).value_counts()
    n_by = [int(counts.get(s, 0)) for s in PUBLISHED]
    n = sum(n_by)
    rows = []
    for (s, p), k in zip(PUBLISHED.items(), n_by, strict=True):
        lo, hi = clopper_pearson(k, n) if n else (np.nan, np.nan)
        rows.append({"status": s, "published %": 100 * p, "n": k,
                     "cohort %": 100 * k / n if n else np.nan,
                     "95% CI": f"{100 * lo:.0f}–{100 * hi:.0f}%" if n else "–"})
    expected = n * np.array(list(PUBLISHED.values()))
    if n:
        chisq = float(((np.array(n_by) - expected) ** 2 / expected).sum())
        chisq_p = float(stats.chi2.sf(chisq, 2))
        exact = exact_multinomial_p(n_by, list(PUBLISHED.values()))
    else:
        chisq = chisq_p = exact = np.nan
    return BondComparison(pd.DataFrame(rows), n, exact, chisq, chisq_p,
                          float(expected.min()) if n else np.nan)

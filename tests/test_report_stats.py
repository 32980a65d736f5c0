"""Numbers behind report sections, against R: scaled Schoenfeld residuals (cox.zph$y) and
the goodness of fit of a status split to Bond et al. (2014)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import imrsurv as ims
from imrsurv.models.zph import plot_zph, smooth, zph_residuals
from imrsurv.report.bondcheck import PUBLISHED, clopper_pearson, compare, exact_multinomial_p

FIX = Path(__file__).parent / "fixtures"


def test_scaled_schoenfeld_residuals_match_r_cox_zph():
    ref = json.loads((FIX / "km" / "zph.json").read_text())
    d = pd.read_csv(FIX / "cox" / "recurrent.csv")
    fit = ims.fit_cox(d, "recent_leader_change + team_size + training_access", start="start",
                      stop="stop", event="event")
    z = zph_residuals(fit)
    np.testing.assert_allclose(z["time"], ref["time"], atol=0)
    # R orders tied event times its own way: compare within each time
    ours = z.sort_values(["time", *ref["terms"]]).to_numpy()[:, 1:]
    theirs = (pd.DataFrame(np.column_stack([ref["time"], *ref["y"]]),
                           columns=["time", *ref["terms"]])
              .sort_values(["time", *ref["terms"]]).to_numpy()[:, 1:])
    np.testing.assert_allclose(ours, theirs, rtol=1e-7, atol=1e-9)
    # beta(t) smooths around the coefficient: the mean scaled residual is the estimate
    np.testing.assert_allclose(z[ref["terms"]].mean(), fit.params, atol=0.05 * 3)


def test_zph_plot_has_one_panel_per_term_with_a_smooth():
    d = pd.read_csv(FIX / "cox" / "recurrent.csv")
    fit = ims.fit_cox(d, "team_size + training_access", start="start", stop="stop",
                      event="event")
    fig = plot_zph(fit)
    axes = [a for a in fig.axes if a.get_visible()]
    assert [a.get_title() for a in axes] == ["team_size", "training_access"]
    for a in axes:
        assert len(a.get_lines()) == 3  # points, smooth, coefficient
    x, y = smooth(np.arange(3.0), np.ones(3))
    assert np.isnan(y).all()  # too few points: no smooth, not a made-up one


@pytest.mark.parametrize("k", range(4))
def test_bond_goodness_of_fit_matches_r(k):
    ref = json.loads((FIX / "km" / "bond_gof.json").read_text())["splits"][k]
    counts = ref["counts"]
    assert exact_multinomial_p(counts, list(PUBLISHED.values())) == pytest.approx(
        ref["exact_p"], rel=1e-9)
    status = pd.Series(sum(([s] * n for s, n in zip(PUBLISHED, counts, strict=True)), [])
                       + ["censored"] * 3)
    res = compare(status)
    assert res.n == sum(counts)  # censored sites are not in the split
    assert res.chisq == pytest.approx(ref["chisq"], rel=1e-10)
    assert res.chisq_p == pytest.approx(ref["chisq_p"], rel=1e-10)
    for j, n in enumerate(counts):
        lo, hi = clopper_pearson(n, sum(counts))
        assert (lo, hi) == pytest.approx((ref["lower"][j], ref["upper"][j]), rel=1e-9)
    small = min(counts) < 5 or sum(counts) * 0.16 < 5
    assert bool(res.caveat) == (sum(counts) * 0.16 < 5)
    assert small or not res.caveat


def test_bond_split_of_the_shipped_cohort():
    res = compare(ims.datasets.load_bond2014().status_at(6))
    t = res.table.set_index("status")
    assert t["n"].tolist() == [23, 8, 18]
    assert t["published %"].tolist() == [47, 16, 37]
    assert res.exact_p > 0.99 and res.caveat == ""

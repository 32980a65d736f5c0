"""Cohort simulation and calibration (imrsurv.simulate.cohort / .calibrate)."""

from __future__ import annotations

import argparse
import hashlib
import math

import numpy as np
import pandas as pd
import pytest

from imrsurv.errors import DataError
from imrsurv.history import History
from imrsurv.models.cox import fit_recurrent
from imrsurv.simulate import BOND_HAZARDS, BOND_TARGET, simulate, simulate_cohort, write_cohort
from imrsurv.simulate.calibration import calibrate, expm_batch

EFFECTS = {"discontinue": {"recent_leader_change": math.log(2.0), "team_size": -0.1,
                           "training_access": -0.5},
           "restart": {"training_access": 0.7}}
SMALL = dict(effects=EFFECTS, frailty_var=0.3, censoring=0.05, seed=2024)

# sha256 of events.csv, covariates.csv, sites.csv of simulate_cohort(30, 6, **SMALL):
# the same seed must give the same bytes on every machine and numpy version that keeps
# numpy's documented stream compatibility of PCG64 and its distributions.
GOLDEN = {
    "events.csv": "2b09ff243e4786ef71b47a17bdc99e22df30b919977296ee5b8cc292e1fa47b7",
    "covariates.csv": "8eb0d48fdff0a2840d57b4cc032419fc25ff3bfe7afd4ff3462a19b679334e7c",
    "sites.csv": "2e20c8ef843570eaa06cb51259a65cb67036c565b87fa60825891749a1631fe4",
}


def _digests(folder) -> dict[str, str]:
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in GOLDEN}


def test_same_seed_same_bytes(tmp_path):
    write_cohort(simulate_cohort(30, 6, **SMALL), tmp_path / "a")
    write_cohort(simulate_cohort(30, 6, **SMALL), tmp_path / "b")
    a, b = _digests(tmp_path / "a"), _digests(tmp_path / "b")
    assert a == b
    assert a == GOLDEN
    write_cohort(simulate_cohort(30, 6, **{**SMALL, "seed": 2025}), tmp_path / "c")
    assert _digests(tmp_path / "c")["events.csv"] != a["events.csv"]


def test_csv_round_trip_gives_the_same_history(tmp_path):
    from imrsurv import read_history

    cohort = simulate_cohort(30, 6, **SMALL)
    write_cohort(cohort, tmp_path)
    h1 = cohort.history()
    h2 = read_history(tmp_path / "events.csv", tmp_path / "covariates.csv", tmp_path / "sites.csv")
    cols = ["site", "start", "stop", "event", "episode", "recent_leader_change", "team_size"]
    pd.testing.assert_frame_equal(h1.counting_process("ag")[cols], h2.counting_process("ag")[cols])


def test_seed_sequence_is_not_consumed():
    ss = np.random.SeedSequence(99)
    a = simulate_cohort(20, 6, seed=ss)
    b = simulate_cohort(20, 6, seed=ss)
    pd.testing.assert_frame_equal(a.events, b.events)


def test_history_is_valid_and_follows_the_design():
    hist = simulate(200, 6, **SMALL)
    assert isinstance(hist, History)
    assert hist.n_sites == 200
    ev = hist.events
    assert (ev.loc[ev["event"] == "start", "time"] == 0).all()
    sites = hist.sites
    # staggered entry over [0, 3): follow-up <= 6 - entry_year
    assert (sites["exit"] <= 6 - sites["entry_year"] + 1e-9).all()
    assert sites["entry_year"].between(0, 3).all()
    assert set(hist.covariate_names) == {"leadership_change", "team_size", "training_access"}
    cov = hist.covariates
    assert cov["team_size"].between(1, 8).all()
    assert set(cov["training_access"].unique()) <= {0, 1}
    assert hist.sites["discontinuations"].sum() > 0 and hist.sites["restarts"].sum() > 0
    common = simulate(50, 6, entry="common", seed=1)
    assert np.allclose(common.sites["exit"], 6.0)


def test_common_random_numbers_across_effect_sizes():
    a = simulate_cohort(40, 6, effects={"discontinue": {"recent_leader_change": 0.0}}, seed=5)
    b = simulate_cohort(40, 6, effects={"discontinue": {"recent_leader_change": 1.5}}, seed=5)
    pd.testing.assert_frame_equal(a.covariates, b.covariates)
    pd.testing.assert_frame_equal(a.sites, b.sites)
    assert not a.events.equals(b.events)


def test_known_effects_are_recovered_on_a_large_sample():
    hist = simulate(2000, 8, effects=EFFECTS, hazards={"discontinue": 0.3, "restart": 0.5},
                    covariates={"leadership_rate": 0.5}, entry="common", seed=11)
    ag = fit_recurrent(hist, "recent_leader_change + team_size + training_access", "ag")
    truth = pd.Series(EFFECTS["discontinue"])
    err = (ag.params - truth[ag.params.index]).abs()
    assert (err < 0.1).all(), err
    assert (ag.se < 0.05).all()
    rs = fit_recurrent(hist, "training_access", "ag", outcome="restart")
    assert abs(rs.params["training_access"] - 0.7) < 0.1


def test_exact_simulation_matches_the_analytic_state_probabilities():
    """Covariate-free model: Kaplan-Meier-free check of P(state at 6) on 6000 sites."""
    cal = calibrate(BOND_TARGET, horizon=6)
    hist = simulate(6000, 6, hazards=cal.hazards, covariates=None, entry="common", seed=3)
    share = hist.status_at(6.0).value_counts(normalize=True)
    for state, p in BOND_TARGET.items():
        se = math.sqrt(p * (1 - p) / 6000)
        assert abs(share[state] - p) < 3.5 * se, (state, share[state], p)


def test_piecewise_baseline_hazard():
    hz = {"discontinue": {0: 0.05, 2: 0.4}, "restart": 0.2}
    hist = simulate(4000, 4, hazards=hz, covariates=None, entry="common", seed=8)
    p_sust = (hist.status_at(4.0) == "sustained").mean()
    expect = math.exp(-(0.05 * 2 + 0.4 * 2))
    assert abs(p_sust - expect) < 3.5 * math.sqrt(expect * (1 - expect) / 4000)
    first = hist.counting_process("first")
    early = first[(first["event"] == 1)]["stop"]
    assert (early < 2).mean() < 0.35  # hazard is low before year 2


def test_frailty_variance_and_censoring():
    cohort = simulate_cohort(4000, 6, frailty_var=0.5, censoring=0.2, entry="common",
                             covariates=None, seed=4)
    z = cohort.sites["frailty"]
    assert abs(z.mean() - 1) < 0.05 and abs(z.var() - 0.5) < 0.06
    ends = cohort.events.loc[cohort.events["event"] == "end", "time"].to_numpy()
    lost = (ends < 6).mean()
    assert abs(lost - (1 - math.exp(-0.2 * 6))) < 0.03


@pytest.mark.parametrize("kwargs, match", [
    (dict(effects={"discontinue": {"budget": 1.0}}), "unknown covariate"),
    (dict(effects={"stop": {"team_size": 1.0}}), "unknown transition"),
    (dict(hazards={"discontinue": -0.1, "restart": 0.1}), ">= 0"),
    (dict(hazards={"discontinue": {1: 0.1}, "restart": 0.1}), "start at time 0"),
    (dict(hazards={"restart": 0.1}), "discontinue"),
    (dict(covariates=None, effects=EFFECTS), "need covariates"),
    (dict(covariates={"team_size_max": 3}), "unknown covariate-model"),
    (dict(frailty_var=-1), "frailty_var"),
    (dict(entry="rolling"), "entry"),
    (dict(censoring=-0.1), "censoring"),
])
def test_bad_simulation_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        simulate_cohort(10, 6, seed=1, **kwargs)


def test_seed_and_size_are_required():
    with pytest.raises(TypeError):
        simulate_cohort(10, 6)  # no seed
    with pytest.raises(ValueError, match="n_sites"):
        simulate_cohort(0, 6, seed=1)
    with pytest.raises(ValueError, match="years"):
        simulate_cohort(5, 0, seed=1)


# ---------------------------------------------------------------------------
# calibrate


def test_expm_batch_matches_scipy():
    from scipy.linalg import expm

    rng = np.random.default_rng(0)
    q = rng.uniform(-3, 3, size=(20, 3, 3)) * rng.uniform(0.01, 30, size=(20, 1, 1))
    ref = np.stack([expm(m) for m in q])
    assert np.allclose(expm_batch(q), ref, rtol=1e-10, atol=1e-12 * np.abs(ref).max())


def test_calibrate_bond_analytic():
    cal = calibrate()
    assert cal.method == "analytic"
    for s, p in BOND_TARGET.items():
        assert abs(cal.achieved[s] - p) < 1e-10
    assert cal.hazards["discontinue"] == pytest.approx(-math.log(0.47) / 6, rel=1e-10)
    for k, v in BOND_HAZARDS.items():  # the shipped defaults are this calibration, rounded
        assert cal.hazards[k] == pytest.approx(v, abs=1e-6)


def test_calibrate_with_covariates_and_frailty_hits_the_target_in_simulation():
    target = {"sustained": 0.5, "restarted": 0.2, "discontinued": 0.3}
    kw = dict(effects=EFFECTS, covariates="default", frailty_var=0.4)
    cal = calibrate(target, horizon=5, n_paths=4000, seed=12, **kw)
    assert cal.method == "monte-carlo"
    for s, p in target.items():
        assert abs(cal.achieved[s] - p) < 1e-8
        assert cal.mc_se[s] < 0.01
    hist = simulate(3000, 5, entry="common", seed=13, **cal.simulate_kwargs())
    share = hist.status_at(5.0).value_counts(normalize=True)
    for s, p in target.items():
        assert abs(share[s] - p) < 0.03, (s, share[s], p)


def test_calibrate_frailty_quadrature_and_no_restarts():
    cal = calibrate(frailty_var=1.0)
    assert cal.method == "analytic+quadrature"
    assert all(abs(cal.achieved[s] - p) < 1e-9 for s, p in BOND_TARGET.items())
    # frailty: the population hazard falls over time, so the site-level baseline is higher
    assert cal.hazards["discontinue"] > BOND_HAZARDS["discontinue"]
    none = calibrate({"sustained": 0.6, "restarted": 0.0, "discontinued": 0.4})
    assert none.hazards["restart"] == 0.0
    assert none.achieved["discontinued"] == pytest.approx(0.4, abs=1e-10)


@pytest.mark.parametrize("target, match", [
    ({"sustained": 0.5, "restarted": 0.2, "discontinued": 0.2}, "sum to 0.9"),
    ({"sustained": 0.9, "restarted": 0.1, "discontinued": 0.0}, "no discontinued share"),
    ({"sustained": 1.1, "restarted": 0.1, "discontinued": -0.2}, "negative"),
    ({"sustained": 0.0, "restarted": 0.5, "discontinued": 0.5}, "sustained = 0"),
    ({"sustained": 0.5, "restarted": 0.5}, "missing state"),
    ({"sustained": 0.5, "restarted": 0.2, "discontinued": 0.3, "closed": 0}, "unknown state"),
    ({"sustained": "half", "restarted": 0.2, "discontinued": 0.3}, "not a number"),
])
def test_impossible_targets_raise_clear_errors(target, match):
    with pytest.raises(DataError, match=match):
        calibrate(target)


def test_every_problem_of_a_target_is_listed():
    with pytest.raises(DataError) as err:
        calibrate({"sustained": -0.1, "restarted": 1.5, "discontinued": 0.3, "x": 1})
    assert len(err.value.problems) == 3


def test_calibrate_with_covariates_needs_a_seed():
    with pytest.raises(DataError, match="seed"):
        calibrate(covariates="default", effects=EFFECTS)


# ---------------------------------------------------------------------------
# CLI


def _cli(argv):
    from imrsurv.simulate.cli import register

    parser = argparse.ArgumentParser(prog="imrsurv")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_simulate_writes_identical_files(tmp_path, capsys):
    for d in ("a", "b"):
        assert _cli(["simulate", "--sites", "12", "--years", "6", "--seed", "7",
                     "--effect", "recent_leader_change=0.7", "--out", str(tmp_path / d)]) == 0
    for name in ("events.csv", "covariates.csv", "sites.csv", "simulation.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert "wrote" in capsys.readouterr().out


def test_cli_help(capsys):
    for cmd in ("simulate", "power"):
        with pytest.raises(SystemExit) as ex:
            _cli([cmd, "--help"])
        assert ex.value.code == 0
        assert "--sites" in capsys.readouterr().out


def test_package_is_callable_and_exports_lazily():
    import imrsurv
    import imrsurv.simulate as sim

    hist = imrsurv.simulate(5, 3, seed=1)  # the package (or the function) simulates
    assert isinstance(hist, History) and hist.n_sites == 5
    assert sim.calibrate.__module__ == "imrsurv.simulate.calibration"
    assert sim.power.__module__ == "imrsurv.simulate.power_analysis"
    with pytest.raises(AttributeError):
        sim.no_such_thing  # noqa: B018
